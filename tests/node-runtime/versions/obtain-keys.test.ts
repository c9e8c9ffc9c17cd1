/**
 * Which data keys obtainVersion keeps (node-runtime/versions/obtain.ts, keepKeys): the version in
 * use, its rollback target, and every version anchored here since the one in use — one of those
 * may be on its way in through another load whose move is not recorded yet. Keeping only the
 * first two dropped the keys of a version fetched but not yet moved to whenever another version
 * was fetched meanwhile (an FL participant's fetch beside a handle's update), and the runtime
 * could not open the version it then moved to without the coordinator (review). A real
 * coordinator with a real model over HTTP on 127.0.0.1.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../../coordinator/coordinator.ts'
import { obtainVersion, type ObtainContext } from '../../../node-runtime/versions/obtain.ts'
import { localVersions } from '../../../node-runtime/versions/local-store.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import { coordinatorClient } from '../../../shared/client/coordinator-client.ts'
import { parseAoeConfig } from '../../../shared/config/aoe.ts'
import { ledgerClient } from '../../../shared/ledger/client.ts'
import { httpBlockSource } from '../../../shared/load/http-source.ts'
import { denseModelFiles } from '../../helpers/dense-model.ts'

let root: string
let coordinator: Coordinator
let url: string

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-obtain-keys-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0, host: '127.0.0.1', partition: { targetBytes: 16 << 10, maxBytes: 32 << 10 } })
  url = await coordinator.start()
  // Layer a changes at every version, layer b never: its blocks (and their keys) are v1's.
  for (let v = 1; v <= 4; v++) await coordinator.ingest('m', await denseModelFiles(64, [['a', 64, v], ['b', 64, 100]]))
}, 60_000)

afterAll(async () => {
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

async function runtimeContext (name: string): Promise<{ ctx: ObtainContext, dataDir: string }> {
    const token = await coordinator.createToken('edge')
    const config = parseAoeConfig({ version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: url, token })
    const dataDir = join(root, name)
    const local = localVersions(join(dataDir, 'm'))
    const ctx: ObtainContext = {
      dataDir,
      config,
      local,
      client: coordinatorClient({ baseUrl: url, token, timeoutMs: 10_000 }),
      ledger: ledgerClient({ baseUrl: url, timeoutMs: 10_000 }),
      coordinatorKey: coordinator.identity.signing.publicKey,
      source: httpBlockSource({ baseUrl: url, timeoutMs: 10_000 }),
      cache: memoryCache()
    }
    return { ctx, dataDir }
}

describe('kept data keys', () => {
  it('are asked for again when a kept one does not open its block, and replaced once the granted one has', async () => {
    const { ctx, dataDir } = await runtimeContext('damaged')
    await obtainVersion(ctx, 1)
    const path = join(dataDir, 'm', 'keys.json')
    const keys = JSON.parse(await readFile(path, 'utf8')) as Record<string, string>
    const [id, good] = Object.entries(keys)[0] as [string, string]
    // Damaged on disk: still base64 of 32 bytes, still valid JSON, not the key.
    const damaged = Buffer.from(Buffer.from(good, 'base64').map(b => b ^ 1)).toString('base64')
    await writeFile(path, JSON.stringify({ ...keys, [id]: damaged }))
    const again = await obtainVersion(ctx, 1)
    expect(again.offline).toBe(false)
    expect((JSON.parse(await readFile(path, 'utf8')) as Record<string, string>)[id]).toBe(good)
    // A value that is not a 256-bit key is not kept either: granted again.
    await writeFile(path, JSON.stringify({ ...keys, [id]: 'AAAA' }))
    await obtainVersion(ctx, 1)
    expect((JSON.parse(await readFile(path, 'utf8')) as Record<string, string>)[id]).toBe(good)
  })

  it('are asked for again on an upgrade whose unchanged blocks use a damaged kept key', async () => {
    const { ctx, dataDir } = await runtimeContext('upgrade')
    await obtainVersion(ctx, 1)
    const ids = async (v: number): Promise<Set<string>> => new Set((await ctx.local.anchor(v))?.signed.manifest.blocks.map(b => b.keyId))
    const path = join(dataDir, 'm', 'keys.json')
    const keys = JSON.parse(await readFile(path, 'utf8')) as Record<string, string>
    // v2 changes layer a only: layer b's blocks and keys are v1's.
    const v2 = (await ctx.client.manifest('m', 2) as { manifest: { blocks: Array<{ keyId: string }> } }).manifest.blocks.map(b => b.keyId)
    const shared = [...await ids(1)].find(id => v2.includes(id)) as string
    expect(shared).toBeDefined()
    const good = keys[shared] as string
    await writeFile(path, JSON.stringify({ ...keys, [shared]: Buffer.from(Buffer.from(good, 'base64').map(b => b ^ 1)).toString('base64') }))
    // Some of v2's keys are kept (one damaged), the others granted: the damaged one is asked again.
    expect((await obtainVersion(ctx, 2)).manifest.version).toBe(2)
    expect((JSON.parse(await readFile(path, 'utf8')) as Record<string, string>)[shared]).toBe(good)
  })

  it('keep only the manifest\'s keys from an answer, so extra ids never reach the kept keys', async () => {
    const { ctx, dataDir } = await runtimeContext('extra')
    await obtainVersion(ctx, 1)
    const path = join(dataDir, 'm', 'keys.json')
    const before = JSON.parse(await readFile(path, 'utf8')) as Record<string, string>
    const v2 = (await ctx.client.manifest('m', 2) as { manifest: { blocks: Array<{ keyId: string }> } }).manifest.blocks.map(b => b.keyId)
    const [v1Only, v1Key] = Object.entries(before).find(([id]) => !v2.includes(id)) as [string, string]
    const [shared, sharedKey] = Object.entries(before).find(([id]) => v2.includes(id)) as [string, string]
    // Damage the kept key v2 shares with v1 (forcing a re-ask), and answer with an extra key
    // under an id only v1 uses (a man in the middle, a buggy coordinator).
    await writeFile(path, JSON.stringify({ ...before, [shared]: Buffer.from(Buffer.from(sharedKey, 'base64').map(b => b ^ 1)).toString('base64') }))
    const client = ctx.client
    const withExtra: ObtainContext = {
      ...ctx,
      client: {
        ...client,
        keys: async (...args: Parameters<typeof client.keys>) => {
          const answer = await client.keys(...args)
          answer.keys.set(v1Only, new Uint8Array(32).fill(7))
          return answer
        }
      }
    }
    await obtainVersion(withExtra, 2)
    const after = JSON.parse(await readFile(path, 'utf8')) as Record<string, string>
    expect(after[shared]).toBe(sharedKey)
    expect(after[v1Only]).toBe(v1Key)
  })

  it('keep a version fetched but not yet moved to when another version is fetched meanwhile', async () => {
    const { ctx, dataDir } = await runtimeContext('moving')
    const local = ctx.local
    const keyIds = async (v: number): Promise<string[]> => (await local.anchor(v))?.signed.manifest.blocks.map(b => b.keyId) ?? []
    const kept = async (): Promise<string[]> => Object.keys(JSON.parse(await readFile(join(dataDir, 'm', 'keys.json'), 'utf8')) as object)
    await obtainVersion(ctx, 1)
    await local.updateState(s => ({ ...s, current: 1, previous: null }))
    await obtainVersion(ctx, 2)
    await local.updateState(s => ({ ...s, current: 2, previous: 1 }))
    // v3 comes in (a handle's update: fetched, its move still to be recorded) ...
    await obtainVersion(ctx, 3)
    // ... while v4 is fetched (a participant's base version).
    await obtainVersion(ctx, 4)
    for (const v of [1, 2, 3, 4]) for (const id of await keyIds(v)) expect(await kept(), `v${v}`).toContain(id)
    await local.updateState(s => ({ ...s, current: 3, previous: 2 }))
    // The coordinator gone, the version now in use opens from what was kept.
    await coordinator.stop()
    const offline = await obtainVersion(ctx, 3)
    expect(offline.offline).toBe(true)
  })
})
