/**
 * The log's verifier key, and with it the log's name (which keys the trusted checkpoint), is
 * pinned per coordinator key. Pinned per URL, the same coordinator reached under another spelling
 * (a trailing '/') could serve the same key under a new log name, and a history contradicting the
 * checkpoint this runtime already trusted was accepted as fresh.
 */
import { describe, it, expect } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateSigningKey } from '../../../shared/crypto/sign.ts'
import { memoryTree } from '../../../shared/ledger/memory-tree.ts'
import { signCheckpoint } from '../../../shared/ledger/checkpoint.ts'
import { ed25519Signer, verifierKey } from '../../../shared/ledger/note.ts'
import { entryBytes } from '../../../shared/ledger/entry.ts'
import type { LedgerClient } from '../../../shared/ledger/client.ts'
import { parseAoeConfig } from '../../../shared/config/aoe.ts'
import { IntegrityError, LedgerSecurityError } from '../../../shared/errors/errors.ts'
import { advanceTrusted, ledgerTrust } from '../../../node-runtime/versions/ledger-trust.ts'
import { treeClient } from '../../helpers/ledger-fake-log.ts'

const key = generateSigningKey()

/** A log of m@1… with these manifest CIDs, signed by `key` under `origin`. */
function log (origin: string, cids: string[]): LedgerClient {
  const tree = memoryTree()
  const leaves: Uint8Array[] = []
  cids.forEach((cid, i) => {
    const leaf = entryBytes({ model: 'm', version: i + 1, manifestCid: cid, parent: i === 0 ? null : i, time: new Date(0).toISOString() })
    leaves.push(leaf)
    tree.append(leaf)
  })
  return treeClient(tree, leaves, {
    checkpoint: async () => signCheckpoint({ origin, size: tree.size, root: tree.root(), extensions: [] }, ed25519Signer(origin, key.secretKey)),
    key: async () => verifierKey(origin, key.publicKey)
  })
}
const config = (updateURL: string): ReturnType<typeof parseAoeConfig> => parseAoeConfig({ version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL, token: 't' })

describe('the log key pin', () => {
  it('is per coordinator key: another URL spelling cannot bring a new log name, nor a rewritten history under it', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'blockfed-log-pin-'))
    try {
      const honest = log('blockfed.local/main', ['bafy1', 'bafy2', 'bafy3', 'bafygood'])
      const trust = await ledgerTrust(dataDir, config('http://127.0.0.1:7070'), key.publicKey, honest)
      expect((await advanceTrusted(dataDir, trust, honest)).checkpoint.size).toBe(4)
      // Rewritten under the pinned name: refused as a fork.
      await expect(advanceTrusted(dataDir, trust, log('blockfed.local/main', ['bafy1', 'bafy2', 'bafy3', 'bafyevil']))).rejects.toThrow(LedgerSecurityError)
      // Rewritten under a new name, reached as http://127.0.0.1:7070/: the new name is refused.
      const renamed = log('blockfed.local/main2', ['bafy1', 'bafy2', 'bafy3', 'bafyevil'])
      const refused = ledgerTrust(dataDir, config('http://127.0.0.1:7070/'), key.publicKey, renamed)
      await expect(refused).rejects.toThrow(IntegrityError)
      await expect(refused).rejects.toThrow(/now serves log key blockfed\.local\/main2\+.*, but blockfed\.local\/main\+.* was pinned/)
      // The honest log under either spelling is still fine.
      expect((await ledgerTrust(dataDir, config('http://127.0.0.1:7070/'), key.publicKey, honest)).log.name).toBe('blockfed.local/main')
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})
