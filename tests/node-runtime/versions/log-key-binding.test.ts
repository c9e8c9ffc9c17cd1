/**
 * The log key a coordinator serves at /ledger/key is taken (and pinned) only if it is the
 * coordinator's own key (node-runtime/versions/ledger-trust.ts), the one the runtime trusts for
 * manifests. Review 39b: every test passed with that comparison removed; a first contact then
 * pinned whatever log key was served (another key's, e.g. one a man in the middle holds, while
 * manifests still verified under the configured coordinator key), and every later checkpoint of
 * that key's log was trusted. When offline the pinned key stands in for the served one: only
 * unreachability may do that, any other failure of the key request surfaces.
 */
import { describe, it, expect } from 'vitest'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateSigningKey } from '../../../shared/crypto/sign.ts'
import { verifierKey } from '../../../shared/ledger/note.ts'
import type { LedgerClient } from '../../../shared/ledger/client.ts'
import { parseAoeConfig } from '../../../shared/config/aoe.ts'
import { IntegrityError, TimeoutError } from '../../../shared/errors/errors.ts'
import { ledgerTrust } from '../../../node-runtime/versions/ledger-trust.ts'

const coordinator = generateSigningKey()
const stranger = generateSigningKey()
const ORIGIN = 'blockfed.local/main'
const config = parseAoeConfig({ version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: 'http://127.0.0.1:7070', token: 't' })

/** Only /ledger/key is asked for by ledgerTrust. */
const serving = (key: () => Promise<string>): LedgerClient => ({ key }) as unknown as LedgerClient

describe('the log key served by the coordinator', () => {
  it('is refused, and not pinned, when it is not the coordinator key, though it is a valid Ed25519 log key', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'blockfed-log-binding-'))
    try {
      const other = ledgerTrust(dataDir, config, coordinator.publicKey, serving(async () => verifierKey(ORIGIN, stranger.publicKey)))
      await expect(other).rejects.toThrow(IntegrityError)
      await expect(other).rejects.toThrow(/serves log key blockfed\.local\/main\+\S+, which is not the coordinator key/)
      await expect(readdir(join(dataDir, 'ledger'))).rejects.toThrow(/ENOENT/)
      // The coordinator's own key is taken and pinned.
      const trust = await ledgerTrust(dataDir, config, coordinator.publicKey, serving(async () => verifierKey(ORIGIN, coordinator.publicKey)))
      expect(trust.log.name).toBe(ORIGIN)
      expect(await readdir(join(dataDir, 'ledger'))).toHaveLength(1)
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  it('falls back to the pinned key only when the coordinator is unreachable, not on any other failure', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'blockfed-log-binding-'))
    try {
      await ledgerTrust(dataDir, config, coordinator.publicKey, serving(async () => verifierKey(ORIGIN, coordinator.publicKey)))
      const offline = await ledgerTrust(dataDir, config, coordinator.publicKey, serving(async () => { throw new TimeoutError('GET /ledger/key: no answer') }))
      expect(offline.log.name).toBe(ORIGIN)
      const broken = ledgerTrust(dataDir, config, coordinator.publicKey, serving(async () => { throw new IntegrityError('GET /ledger/key: not a verifier key') }))
      await expect(broken).rejects.toThrow(/not a verifier key/)
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})
