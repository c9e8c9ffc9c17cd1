/**
 * A cold start that moves to a new version keeps its rollback target: the version in use is
 * pinned before the new version's blocks arrive, so a cache too small for both fills with what
 * it can of the new version (used anyway, reported as uncached) and never evicts the way back.
 * So do a restart that stays on the version in use, a background prefetch of a model not
 * loaded, and runtime.fetch with no handle. Real coordinator, real runtimes, a real tfjs model, the runtime's real disk cache.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { createNodeRuntime, type NodeRuntime } from '../../node-runtime/runtime.ts'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

let root: string
let coordinator: Coordinator
let url: string
let token: string
const runtimes: NodeRuntime[] = []

/** About 170 kB of float32 weights in several blocks; every layer's weights follow `seed`. */
const files = async (seed: number): ReturnType<typeof denseModelFiles> =>
  await denseModelFiles(64, [['a', 128, seed], ['b', 128, seed + 1], ['c', 128, seed + 2], ['d', 10, seed + 3]])

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-cold-pins-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0, partition: { targetBytes: 16 << 10, maxBytes: 32 << 10 } })
  url = await coordinator.start()
  token = await coordinatorClient({ baseUrl: url, token: coordinator.adminToken }).createToken('edge')
}, 60_000)

afterAll(async () => {
  for (const rt of runtimes) await rt.stop().catch(() => {})
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

/** Ingests `name` v1 (weights from `seed`: blocks are shared by content, so each model has its own) and returns an AoE config whose disk cache holds v1 and a little more. */
async function smallCacheModel (name: string, seed: number): Promise<{ config: Record<string, unknown>, v1: string[], diskBytes: number }> {
  const admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
  await admin.ingest(name, await files(seed))
  const blocks = (await admin.manifest(name, 1) as { manifest: { blocks: Array<{ cid: string, sealedLength: number }> } }).manifest.blocks
  const v1Bytes = blocks.reduce((n, b) => n + b.sealedLength, 0)
  // Room for one version and a little: no kernel of the next version fits beside it.
  const diskBytes = Math.round(v1Bytes * 1.05)
  const config = { version: '1', tag: 't', runtime: 'tfjs', source: 'blockfed', modelDir: name, modelName: name, updateURL: url, token, cache: { memoryBytes: 1024, diskBytes } }
  return { config, v1: blocks.map(b => b.cid), diskBytes }
}

/** A runtime on `dir` (a restart when the dir was used before), stopped after the tests. */
async function runtimeAt (dir: string, options: Partial<Parameters<typeof createNodeRuntime>[0]> = {}): Promise<NodeRuntime> {
  const rt = await createNodeRuntime({ dataDir: join(root, dir), accessHistory: false, ...options })
  runtimes.push(rt)
  return rt
}

async function cachedOf (rt: NodeRuntime, model: string, cids: string[]): Promise<number> {
  let n = 0
  for (const cid of cids) if (await rt.cacheOf(model)?.has(cid) === true) n++
  return n
}

describe('the rollback target stays cached', () => {
  it('when a restart stays on the version in use and fetches what its cache could not keep', async () => {
    const { config, v1 } = await smallCacheModel('stay', 100)
    const start = async (): Promise<NodeRuntime> => await runtimeAt('runtime-stay')
    let rt = await start()
    expect((await rt.load(config)).manifest.version).toBe(1)
    await rt.stop()
    await coordinatorClient({ baseUrl: url, token: coordinator.adminToken }).ingest('stay', await files(110))
    rt = await start()
    const moved = await rt.load(config)
    expect(moved.manifest.version).toBe(2)
    expect(moved.report.uncached).toBeGreaterThan(0)
    await rt.stop()

    rt = await start()
    const stayed = await rt.load(config)
    expect(stayed.manifest.version).toBe(2)
    // It fetched v2's blocks left uncached; none of them may take v1's place.
    expect(stayed.report.fetchedBlocks).toBeGreaterThan(0)
    expect(await cachedOf(rt, 'stay', v1)).toBe(v1.length)
  })

  it('when the access history prefetches the next version of a model that is not loaded', async () => {
    const { config, v1 } = await smallCacheModel('later', 200)
    const admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
    await admin.ingest('before', await denseModelFiles(4, [['x', 2, 1]]))
    const before = join(root, 'before.json')
    const later = join(root, 'later.json')
    await writeFile(before, JSON.stringify({ ...config, modelDir: 'before', modelName: 'before', cache: undefined }))
    await writeFile(later, JSON.stringify(config))
    let prefetched: ((event: unknown) => void) | undefined
    const start = async (): Promise<NodeRuntime> => await runtimeAt('runtime-later', { accessHistory: { minWeight: 0.5 }, onPrefetch: event => prefetched?.(event) })
    let rt = await start()
    await rt.load(before)
    expect((await rt.load(later)).manifest.version).toBe(1)
    await rt.stop()
    await admin.ingest('later', await files(210))

    rt = await start()
    const done = new Promise<unknown>(resolve => { prefetched = resolve })
    await rt.load(before) // the history says "later" follows: its v2 is prefetched in the background
    const event = await done
    expect(event).toMatchObject({ after: 'before', model: 'later', version: 2 })
    expect(event).not.toHaveProperty('error')
    expect(await cachedOf(rt, 'later', v1)).toBe(v1.length)
  })

  it('when runtime.fetch fetches another version with no handle loaded', async () => {
    const { config, v1 } = await smallCacheModel('fetched', 300)
    const admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
    let rt = await runtimeAt('runtime-fetched')
    expect((await rt.load({ ...config, pin: 1 })).manifest.version).toBe(1)
    await rt.stop()
    await admin.ingest('fetched', await files(310))
    // An FL participant's fetchVersion, `blockfed pull`: no handle, no pins of their own.
    rt = await runtimeAt('runtime-fetched')
    const got = await rt.fetch(config, 2)
    expect(got.manifest.version).toBe(2)
    expect(got.report.uncached).toBeGreaterThan(0)
    expect(await cachedOf(rt, 'fetched', v1)).toBe(v1.length)
    await rt.stop()
    // The version recorded in use (v1) still serves from the cache alone.
    rt = await runtimeAt('runtime-fetched')
    const again = await rt.load({ ...config, pin: 1 })
    expect(again.report.fetchedBlocks).toBe(0)
    await rt.stop()
  })
})

describe('a disk capacity lowered between runs', () => {
  it('is trimmed at open around the version in use and its rollback target', async () => {
    const admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
    const { config, v1, diskBytes } = await smallCacheModel('lowered', 400)
    // Room for three versions at first: v1, a refused v2, v3.
    const roomy = { ...config, cache: { memoryBytes: 1024, diskBytes: diskBytes * 4 } }
    let rt = await runtimeAt('runtime-lowered')
    await rt.load({ ...roomy, pin: 1 })
    await rt.stop()
    await admin.ingest('lowered', await files(410))
    await admin.ingest('lowered', await files(420))
    const v3 = (await admin.manifest('lowered', 3) as { manifest: { blocks: Array<{ cid: string }> } }).manifest.blocks.map(b => b.cid)
    rt = await runtimeAt('runtime-lowered')
    // Fetched after v1 (so scored above it), never moved to.
    await rt.fetch(roomy, 2)
    await rt.stop()
    rt = await runtimeAt('runtime-lowered')
    expect((await rt.load({ ...roomy, pin: 3 })).manifest.version).toBe(3)
    await rt.stop()
    // Restarted with room for a little over two versions: v2's blocks go, not v1's (the rollback target).
    rt = await runtimeAt('runtime-lowered')
    const again = await rt.load({ ...roomy, pin: 3, cache: { memoryBytes: 1024, diskBytes: Math.round(diskBytes * 2.1) } })
    expect(again.report.fetchedBlocks).toBe(0)
    expect(await cachedOf(rt, 'lowered', v1)).toBe(v1.length)
    expect(await cachedOf(rt, 'lowered', v3)).toBe(v3.length)
    await rt.stop()
  })
})

describe('a cold start onto a new version', () => {
  it('keeps every block of the version it leaves, so rolling back works with the coordinator down', async () => {
    const admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
    const { config, diskBytes } = await smallCacheModel('pins', 1)
    const start = async (): Promise<NodeRuntime> => await runtimeAt('runtime')

    const first = await start()
    expect((await first.load(config)).manifest.version).toBe(1)
    await first.stop()

    const v2 = await admin.ingest('pins', await files(10))
    // The zero biases are the same blocks in both versions; every kernel is new.
    expect(v2.newBlocks).toBeGreaterThanOrEqual(4)
    const restarted = await start()
    const handle = await restarted.load(config)
    expect(handle.manifest.version).toBe(2)
    // v2 ran although the cache could not keep all of it beside the pinned v1.
    expect(handle.report.uncached).toBeGreaterThan(0)
    expect(handle.report.fetchedBlocks + handle.report.fromCache).toBe(handle.report.blocks)
    const disk = restarted.cacheOf('pins')?.stats()
    expect(disk?.bytes).toBeLessThanOrEqual(diskBytes)

    await coordinator.stop()
    const back = await handle.rollback()
    expect(back).toMatchObject({ action: 'rolled-back', from: 2, to: 1, bytesFetched: 0 })
    expect(handle.report.offline).toBe(true)
  })
})
