/**
 * obtainVersion (node-runtime/versions/obtain.ts) against a coordinator that holds its own
 * signing key and lies with it: a real Merkle log (shared/ledger/memory-tree.ts), real
 * Ed25519-signed manifests and checkpoints, a real local version store on disk. The design
 * says runtimes need not trust the coordinator: what it signs must still add up in the log.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { localVersions } from '../../../node-runtime/versions/local-store.ts'
import { obtainVersion, type ObtainContext } from '../../../node-runtime/versions/obtain.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import type { CoordinatorClient } from '../../../shared/client/coordinator-client.ts'
import { parseAoeConfig } from '../../../shared/config/aoe.ts'
import { generateSigningKey } from '../../../shared/crypto/sign.ts'
import { LedgerSecurityError } from '../../../shared/errors/errors.ts'
import { signCheckpoint } from '../../../shared/ledger/checkpoint.ts'
import { entryBytes } from '../../../shared/ledger/entry.ts'
import { memoryTree } from '../../../shared/ledger/memory-tree.ts'
import { ed25519Signer, verifierKey } from '../../../shared/ledger/note.ts'
import type { Manifest, SignedManifest } from '../../../shared/manifest/schema.ts'
import { signManifest } from '../../../shared/manifest/sign.ts'
import { testManifest } from '../../helpers/manifest.ts'
import { treeClient } from '../../helpers/ledger-fake-log.ts'

const ORIGIN = 'blockfed.local/obtain-test'
let dataDir: string
beforeEach(async () => { dataDir = await mkdtemp(join(tmpdir(), 'blockfed-obtain-')) })
afterEach(async () => { await rm(dataDir, { recursive: true, force: true }) })

/** A manifest with no blocks: what is checked here is the ledger, not the loading. */
const manifestAt = (version: number, createdAt: string): Manifest => testManifest({
  version,
  parent: version === 1 ? null : version - 1,
  createdAt,
  erasure: { scheme: 'reed-solomon-gf8', k: 1, m: 0 },
  partition: { targetBytes: 1, maxBytes: 1 }
})

/** A coordinator whose log, manifests and version list are whatever the test makes them. */
function lyingCoordinator (): { ctx: ObtainContext, key: ReturnType<typeof generateSigningKey>, append: (signed: SignedManifest) => number, serve: (signed: SignedManifest, ledgerIndex: number | null) => void } {
  const key = generateSigningKey()
  const tree = memoryTree()
  const leaves: Uint8Array[] = []
  let served: { signed: SignedManifest, ledgerIndex: number | null } | undefined
  const ledger = treeClient(tree, leaves, {
    checkpoint: async () => signCheckpoint({ origin: ORIGIN, size: tree.size, root: tree.root(), extensions: [] }, ed25519Signer(ORIGIN, key.secretKey)),
    key: async () => verifierKey(ORIGIN, key.publicKey)
  })
  const client = {
    baseUrl: 'http://coordinator.test',
    manifest: async () => served?.signed,
    versions: async () => served === undefined ? [] : [{ version: served.signed.manifest.version, ledgerIndex: served.ledgerIndex }],
    keys: async () => ({ keys: new Map(), denied: [] })
  } as unknown as CoordinatorClient
  const config = parseAoeConfig({ version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: 'http://coordinator.test', token: 't' })
  return {
    ctx: { dataDir, config, client, ledger, coordinatorKey: key.publicKey, local: localVersions(join(dataDir, 'm')), source: { name: 'none', get: async () => { throw new Error('no blocks here') } }, cache: memoryCache({ name: 'obtain' }) },
    append: signed => {
      const leaf = entryBytes({ model: 'm', version: signed.manifest.version, manifestCid: signed.cid, parent: signed.manifest.parent, time: signed.manifest.createdAt })
      leaves.push(leaf)
      return tree.append(leaf)
    },
    serve: (signed, ledgerIndex) => { served = { signed, ledgerIndex } },
    key
  }
}

describe('obtainVersion against a lying coordinator', () => {
  it('refuses a version the log anchors twice, whichever entry the runtime is given, though the log proves both', async () => {
    const c = lyingCoordinator()
    const { key } = c
    const first = await signManifest(manifestAt(1, '2026-01-01T00:00:00.000Z'), key)
    c.serve(first, c.append(first))
    expect((await obtainVersion(c.ctx, 1)).ledgerIndex).toBe(0)

    // Same model and version, another manifest, appended as a consistent second entry: the
    // split view — one runtime is told entry 0, another entry 1, each entry proved included.
    const other = await signManifest(manifestAt(1, '2026-06-01T00:00:00.000Z'), key)
    const second = c.append(other)
    const otherRuntime = { ...c.ctx, dataDir: join(dataDir, 'other'), local: localVersions(join(dataDir, 'other', 'm')) }
    for (const [ctx, signed, index] of [[c.ctx, other, second], [c.ctx, first, 0], [otherRuntime, other, second], [otherRuntime, first, 0]] as const) {
      c.serve(signed, index)
      const err = await obtainVersion(ctx, 1).then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(LedgerSecurityError)
      expect((err as Error).message).toBe('m@1: the log anchors this version 2 times (entries 0, 1), so runtimes can be shown different manifests under it; refusing it')
    }
    // The anchor kept is still the first one; the other runtime kept none.
    expect(JSON.parse(await readFile(join(dataDir, 'm', 'anchors', '1.json'), 'utf8')).signed.cid).toBe(first.cid)
    await expect(readFile(join(dataDir, 'other', 'm', 'anchors', '1.json'))).rejects.toThrow(/ENOENT/)
  })

  it('refuses a version the coordinator names no entry for, or an entry that names another manifest, as a ledger security failure', async () => {
    const c = lyingCoordinator()
    const { key } = c
    const v1 = await signManifest(manifestAt(1, '2026-01-01T00:00:00.000Z'), key)
    const index = c.append(v1)
    const unanchored = await signManifest(manifestAt(2, '2026-02-01T00:00:00.000Z'), key)
    c.serve(unanchored, null)
    await expect(obtainVersion(c.ctx, 2)).rejects.toThrow(LedgerSecurityError)
    await expect(obtainVersion(c.ctx, 2)).rejects.toThrow(/m@2: the coordinator names no ledger entry for this version; refusing it/)
    // v2 pointed at v1's entry: the entry names another version.
    c.serve(unanchored, index)
    await expect(obtainVersion(c.ctx, 2)).rejects.toThrow(LedgerSecurityError)
    await expect(obtainVersion(c.ctx, 2)).rejects.toThrow(/ledger entry's version \(1\) does not match the manifest/)
  })

  it('refuses a version whose entry is off the model\'s chain (a parent it never had); the versions on it still load', async () => {
    const c = lyingCoordinator()
    const { key } = c
    const v1 = await signManifest(manifestAt(1, '2026-01-01T00:00:00.000Z'), key)
    const v2 = await signManifest(manifestAt(2, '2026-02-01T00:00:00.000Z'), key)
    c.append(v1)
    c.append(v2)
    // Version 3 naming parent 1 while the chain ends at 2: every proof holds, the chain does not.
    const replayed = await signManifest({ ...manifestAt(3, '2026-03-01T00:00:00.000Z'), parent: 1 }, key)
    const index = c.append(replayed)
    c.serve(replayed, index)
    const err = await obtainVersion(c.ctx, 3).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(LedgerSecurityError)
    expect((err as Error).message).toBe('m@3: its entry is off the model\'s chain of versions (entry 2: m@3 with parent 1, where the model\'s chain ends at @2 (entry 1) and @3 with parent 2 comes next); refusing it')
    c.serve(v2, 1)
    expect((await obtainVersion(c.ctx, 2)).ledgerIndex).toBe(1)
  })
})
