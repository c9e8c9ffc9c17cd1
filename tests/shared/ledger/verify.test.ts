/**
 * advanceCheckpoint (shared/ledger/verify.ts) against a coordinator whose database was restored
 * from a backup: its log is shorter than the checkpoint a client already trusts, and it answers
 * the consistency proof up to that size with 400 "beyond the log's size". That is a log unable
 * to back what it signed — a LedgerSecurityError, not a plain InvalidInputError (found by
 * review: no security alarm and no fall-back). Real coordinator over HTTP on 127.0.0.1.
 */
import { describe, it, expect, afterAll } from 'vitest'
import { copyFile, mkdtemp, rm } from 'node:fs/promises'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../../coordinator/coordinator.ts'
import { ledgerClient } from '../../../shared/ledger/client.ts'
import { advanceCheckpoint, type CheckpointStore } from '../../../shared/ledger/verify.ts'
import { ed25519Verifier } from '../../../shared/ledger/note.ts'
import { LedgerSecurityError } from '../../../shared/errors/errors.ts'

let root: string | undefined
let coordinator: Coordinator | undefined

afterAll(async () => {
  await coordinator?.stop()
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

const entry = (version: number): { model: string, version: number, manifestCid: string, parent: number | null, time: string } =>
  ({ model: 'm', version, manifestCid: `bafy${version}`, parent: version === 1 ? null : version - 1, time: new Date(0).toISOString() })

describe('advanceCheckpoint against a rolled-back log', () => {
  it('raises LedgerSecurityError when the log cannot prove the size it signed before, and keeps the trusted checkpoint', async () => {
    root = await mkdtemp(join(tmpdir(), 'blockfed-ledger-verify-'))
    const dataDir = join(root, 'coordinator')
    const database = join(dataDir, 'coordinator.sqlite')
    const backup = join(root, 'backup.sqlite')
    coordinator = await createCoordinator({ dataDir, port: 0, host: '127.0.0.1' })
    let url = await coordinator.start()
    const trust = { log: ed25519Verifier(coordinator.log.origin, coordinator.identity.signing.publicKey), witnesses: [], minWitnesses: 0 }
    let saved: string | undefined
    const store: CheckpointStore = { load: async () => saved, save: async note => { saved = note } }

    for (const v of [1, 2, 3]) coordinator.log.append(entry(v))
    coordinator.log.checkpoint()
    const db = new DatabaseSync(database)
    db.exec(`VACUUM INTO '${backup}'`) // the backup, taken at size 3
    db.close()
    coordinator.log.append(entry(4))
    coordinator.log.checkpoint()
    expect((await advanceCheckpoint(ledgerClient({ baseUrl: url }), trust, store)).checkpoint.size).toBe(4)
    const trusted = saved

    // Restored from the backup: same key, three entries.
    await coordinator.stop()
    coordinator = undefined
    for (const f of [`${database}-wal`, `${database}-shm`]) await rm(f, { force: true })
    await copyFile(backup, database)
    coordinator = await createCoordinator({ dataDir, port: 0, host: '127.0.0.1' })
    url = await coordinator.start()
    expect(coordinator.log.size()).toBe(3)

    const err = await advanceCheckpoint(ledgerClient({ baseUrl: url }), trust, store).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(LedgerSecurityError)
    expect((err as Error).message).toMatch(/checkpoint 3 is not consistent with the persisted checkpoint 4 — the log cannot prove a size it signed .*beyond the log's size 3/)
    expect((err as LedgerSecurityError).evidence).toMatchObject({ trusted, proof: { kind: 'consistency', from: 3, to: 4, hashes: [] } })
    expect(saved).toBe(trusted)
  })
})
