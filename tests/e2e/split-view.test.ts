/**
 * A split view through the ledger (the attack found in stop 30's ledger review): a coordinator
 * that holds the log key appends a second entry for a version it already anchored, naming another
 * manifest. The log stays append-only and every checkpoint consistent, every inclusion proof
 * sound, so one runtime can be told entry 3 and another entry 4 for the same digits@4.
 *
 * Runtimes read the log's entries (shared/ledger/monitor.ts), so a second entry is seen whichever
 * index a runtime is given: a fresh runtime refuses digits@4, a runtime serving it reports the
 * log (and keeps serving), a rollback into it is refused, and the next clean version is taken.
 *
 * A real coordinator, real runtimes; the coordinator's SQLite is edited while it is stopped, as
 * its operator could (the table's UNIQUE (model, version) is the honest coordinator's own rule).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { openDatabase } from '../../coordinator/store/database.ts'
import { loadIdentity } from '../../coordinator/keys/identity.ts'
import { versionLog } from '../../coordinator/ledger/log.ts'
import { createNodeRuntime, type NodeRuntime } from '../../node-runtime/runtime.ts'
import { mnistDigitsCode } from '../../node-runtime/examples/mnist-mlp.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { IMAGE_SIZE } from '../../node-runtime/data/mnist.ts'
import { parseEntry } from '../../shared/ledger/entry.ts'
import { LedgerSecurityError } from '../../shared/errors/errors.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { seededVersionFiles } from '../helpers/seeded-versions.ts'

let root: string
let coordinatorDir: string
let coordinator: Coordinator
let url: string
let port = 0
let edgeToken: string
const runtimes: NodeRuntime[] = []
const images = Float32Array.from({ length: 2 * IMAGE_SIZE }, mulberry32(5))

const config = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  version: '1.0.0', tag: 'digits', runtime: 'tensorflow', source: 'blockfed', modelDir: 'digits', modelName: 'digits', updateURL: url, token: edgeToken, ...extra
})

async function start (): Promise<void> {
  coordinator = await createCoordinator({ dataDir: coordinatorDir, port, partition: { targetBytes: 16 << 10, maxBytes: 64 << 10 } })
  url = await coordinator.start()
  port = Number(new URL(url).port)
}

async function runtime (name: string, reported: LedgerSecurityError[] = []): Promise<NodeRuntime> {
  const rt = await createNodeRuntime({ dataDir: join(root, name), codes: { digits: mnistDigitsCode }, onSecurityError: (_model, err) => reported.push(err) })
  runtimes.push(rt)
  return rt
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-split-view-'))
  coordinatorDir = join(root, 'coordinator')
  await tfjsBackend()
  await start()
  edgeToken = await coordinator.createToken('edge')
  for (const seed of [1, 2, 3, 4]) expect((await coordinator.ingest('digits', await seededVersionFiles(seed))).version).toBe(seed)
}, 60_000)

afterAll(async () => {
  for (const rt of runtimes) await rt.stop()
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('a version anchored twice', () => {
  it('is refused by every runtime that reads the log, reported by one serving it, and the next clean version is taken', async () => {
    const reportedA: LedgerSecurityError[] = []
    const a = await (await runtime('a', reportedA)).load(config())
    expect(a.manifest.version).toBe(4)
    expect(a.report.ledgerIndex).toBe(3)
    const before = Array.from(await a.infer(images) as Int32Array)

    // The operator appends digits@4 again, naming version 3's manifest, and signs the log.
    await coordinator.stop()
    const database = openDatabase(join(coordinatorDir, 'coordinator.sqlite'))
    try {
      database.db.exec(`CREATE TABLE leaves_any (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL, model TEXT NOT NULL, version INTEGER NOT NULL);
        INSERT INTO leaves_any SELECT idx, entry, model, version FROM ledger_leaves;
        DROP TABLE ledger_leaves;
        ALTER TABLE leaves_any RENAME TO ledger_leaves;`)
      const log = versionLog({ database, signing: (await loadIdentity(coordinatorDir)).signing, keyId: coordinator.identity.keyId })
      const v4 = parseEntry(log.entry(3))
      const v3 = parseEntry(log.entry(2))
      expect(database.transaction(() => log.append({ ...v4, manifestCid: v3.manifestCid }))).toBe(4)
      expect(log.checkpoint().checkpoint.size).toBe(5)
    } finally {
      database.close()
    }
    await start()

    // The runtime serving digits@4 (verified at entry 3) learns of entry 4 at its next update:
    // it reports the log and keeps serving what it verified.
    const err = await a.update().then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(LedgerSecurityError)
    expect((err as Error).message).toBe('digits@4, served here: the log now anchors it 2 times (entries 3, 4), so runtimes can be shown different manifests under it')
    expect(reportedA).toEqual([err])
    expect(a.manifest.version).toBe(4)
    expect(Array.from(await a.infer(images) as Int32Array)).toEqual(before)

    // A fresh runtime refuses digits@4, whichever entry the coordinator names for it.
    const reportedB: LedgerSecurityError[] = []
    const b = await runtime('b', reportedB)
    await expect(b.load(config())).rejects.toThrow('digits@4: the log anchors this version 2 times (entries 3, 4), so runtimes can be shown different manifests under it; refusing it')
    await expect(b.load(config({ pin: 4 }))).rejects.toBeInstanceOf(LedgerSecurityError)
    // With nothing to keep serving, the load rejects with the error itself; onSecurityError is
    // for a runtime that goes on serving.
    expect(reportedB).toEqual([])
    // Versions the log anchors once are still taken.
    expect((await b.load(config({ pin: 3 }))).manifest.version).toBe(3)

    // The next version is clean: both move to it, and going back into digits@4 is refused.
    expect((await coordinator.ingest('digits', await seededVersionFiles(5))).version).toBe(5)
    expect(await a.update()).toMatchObject({ action: 'upgraded', from: 4, to: 5 })
    expect((await b.load(config())).manifest.version).toBe(5)
    await expect(a.rollback(4)).rejects.toThrow(/digits@4: the log anchors this version 2 times/)
    expect(a.manifest.version).toBe(5)
  })
})
