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
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0, host: '127.0.0.1' })
  url = await coordinator.start()
  for (let v = 1; v <= 4; v++) await coordinator.ingest('m', await denseModelFiles(16, [['a', 8, v]]))
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
