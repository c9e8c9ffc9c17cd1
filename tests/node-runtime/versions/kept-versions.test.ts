/**
 * What a runtime keeps per model as it follows versions (node-runtime/versions/local-store.ts):
 * the anchors and data keys of the version in use and its rollback target, not one of each per
 * version it ever took (before, a runtime following a model trained every few minutes kept every
 * anchor, every key, and read them all at each upgrade). A real coordinator and runtime.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../../coordinator/coordinator.ts'
import { coordinatorClient, type CoordinatorClient } from '../../../shared/client/coordinator-client.ts'
import { createNodeRuntime, type NodeRuntime } from '../../../node-runtime/runtime.ts'
import { signedManifestSchema } from '../../../shared/manifest/schema.ts'
import { tfjsPassthrough } from '../../../shared/runtime/passthrough.ts'
import { denseModelFiles } from '../../helpers/dense-model.ts'

let root: string
let coordinator: Coordinator | undefined
let url: string
let admin: CoordinatorClient
let rt: NodeRuntime
let token: string

const files = async (seed: number): Promise<Awaited<ReturnType<typeof denseModelFiles>>> =>
  await denseModelFiles(16, [['a', 32, seed], ['b', 4, seed + 1]])
const config = (): Record<string, unknown> => ({ version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: url, token })
const modelDir = (): string => join(root, 'runtime', 'm')
const anchors = async (): Promise<number[]> => (await readdir(join(modelDir(), 'anchors'))).map(name => Number(name.replace('.json', ''))).sort((a, b) => a - b)
const keptKeyIds = async (): Promise<string[]> => Object.keys(JSON.parse(await readFile(join(modelDir(), 'keys.json'), 'utf8')) as Record<string, string>).sort()
const keyIdsOf = async (...versions: number[]): Promise<string[]> => {
  const ids = new Set<string>()
  for (const v of versions) for (const b of signedManifestSchema.parse(await admin.manifest('m', v)).manifest.blocks) ids.add(b.keyId)
  return [...ids].sort()
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-kept-versions-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0, partition: { targetBytes: 1 << 10, maxBytes: 2 << 10 } })
  url = await coordinator.start()
  admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
  token = await admin.createToken('edge')
  rt = await createNodeRuntime({ dataDir: join(root, 'runtime'), accessHistory: false, codes: { m: () => tfjsPassthrough() } })
}, 60_000)

afterAll(async () => {
  await rt?.stop()
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('a runtime following versions', () => {
  it('keeps the anchors and keys of the version in use and its rollback target only, and still rolls back offline', async () => {
    await admin.ingest('m', await files(1))
    const handle = await rt.load(config())
    for (let v = 2; v <= 6; v++) {
      await admin.ingest('m', await files(10 * v))
      expect(await handle.update()).toMatchObject({ action: 'upgraded', to: v })
    }
    // Before: anchors 1 … 6, and the keys of all six versions.
    expect(await anchors()).toEqual([5, 6])
    expect(await keptKeyIds()).toEqual(await keyIdsOf(5, 6))

    // Back to an old version, online: it is verified and granted again; the version rolled back
    // from is refused from now on, so its anchor and keys go too.
    expect(await handle.rollback(3)).toMatchObject({ action: 'rolled-back', from: 6, to: 3 })
    expect(await anchors()).toEqual([3, 5])
    expect(await keptKeyIds()).toEqual(await keyIdsOf(3, 5))

    // The next version: the version rolled back to becomes the rollback target, 5 goes.
    await admin.ingest('m', await files(70))
    expect(await handle.update()).toMatchObject({ action: 'upgraded', from: 3, to: 7 })
    expect(await anchors()).toEqual([3, 7])
    expect(await keptKeyIds()).toEqual(await keyIdsOf(3, 7))

    // What was kept is enough to roll back with the coordinator gone.
    await coordinator?.stop()
    coordinator = undefined
    expect(await handle.rollback()).toMatchObject({ action: 'rolled-back', from: 7, to: 3 })
    expect(handle.manifest.version).toBe(3)
  }, 120_000)
})
