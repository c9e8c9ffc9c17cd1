/**
 * A runtime's fetch and a handle's rollback hold the version they obtain (runtime.ts, through
 * local-store.ts `holding`) from its anchor's save until they are done: a save of keys by another
 * operation meanwhile (a handle's upgrade, a fetch of another version) must not drop that anchor,
 * or a rollback would record as in use a version it kept no anchor of (offline, the runtime could
 * not serve it again). The version's blocks are held back by the test's block source until the
 * other operation has pruned, so the order is fixed, not timed. A real coordinator and runtime.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../../coordinator/coordinator.ts'
import { coordinatorClient, type CoordinatorClient } from '../../../shared/client/coordinator-client.ts'
import { createNodeRuntime, type NodeRuntime } from '../../../node-runtime/runtime.ts'
import { signedManifestSchema } from '../../../shared/manifest/schema.ts'
import { tfjsPassthrough } from '../../../shared/runtime/passthrough.ts'
import { denseModelFiles } from '../../helpers/dense-model.ts'
import { gatedSource } from '../../helpers/gated-source.ts'

let root: string
let coordinator: Coordinator
let url: string
let admin: CoordinatorClient
let rt: NodeRuntime
let token: string
/** The runtimes' block source: the coordinator's HTTP API, holding back the blocks `gate` names. */
const gated = gatedSource(() => url)

const files = async (seed: number): Promise<Awaited<ReturnType<typeof denseModelFiles>>> =>
  await denseModelFiles(16, [['a', 32, seed], ['b', 4, seed + 1]])
const config = (): Record<string, unknown> => ({ version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: url, token })
const anchors = async (dir = 'runtime'): Promise<number[]> => (await readdir(join(root, dir, 'm', 'anchors'))).map(name => Number(name.replace('.json', ''))).sort((a, b) => a - b)
const blocksOf = async (v: number): Promise<string[]> => signedManifestSchema.parse(await admin.manifest('m', v)).manifest.blocks.map(b => b.cid)

/** Holds back the blocks only `v` has (of versions 1 … `of`); resolves once one of them is asked for, with the function that lets them through. */
async function gate (v: number, of: number): Promise<{ asked: Promise<void>, open: () => void }> {
  const others = new Set<string>()
  for (let o = 1; o <= of; o++) if (o !== v) for (const cid of await blocksOf(o)) others.add(cid)
  const blocks = (await blocksOf(v)).filter(cid => !others.has(cid))
  expect(blocks.length).toBeGreaterThan(0)
  return gated.gate(blocks)
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-held-by-operations-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0, partition: { targetBytes: 1 << 10, maxBytes: 2 << 10 } })
  url = await coordinator.start()
  admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
  token = await admin.createToken('edge')
  rt = await createNodeRuntime({ dataDir: join(root, 'runtime'), accessHistory: false, source: gated.source, codes: { m: () => tfjsPassthrough() } })
}, 60_000)

afterAll(async () => {
  await rt?.stop()
  gated.close()
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('a version an operation is obtaining', () => {
  it('keeps its anchor through the prunes of other operations: a fetch while a handle upgrades, a rollback while a fetch saves keys', async () => {
    await admin.ingest('m', await files(1))
    const handle = await rt.load(config())
    for (const seed of [20, 30, 40]) await admin.ingest('m', await files(seed))

    // A fetch of 2 waits for its blocks, its anchor saved; the handle moves 1 → 4 and prunes.
    const two = await gate(2, 4)
    const fetching = rt.fetch(config(), 2)
    await two.asked
    expect(await handle.update()).toMatchObject({ action: 'upgraded', from: 1, to: 4 })
    two.open()
    expect((await fetching).manifest.version).toBe(2)
    // Before: the upgrade's prune took 2's anchor from under the fetch (in use 4, rollback target 1).
    expect(await anchors()).toEqual([1, 2, 4])

    // The handle rolls back to 3, which waits for its blocks; a fetch of 5 saves its keys and prunes.
    await admin.ingest('m', await files(50))
    const three = await gate(3, 5)
    const rolling = handle.rollback(3)
    await three.asked
    expect((await rt.fetch(config(), 5)).manifest.version).toBe(5)
    three.open()
    expect(await rolling).toMatchObject({ action: 'rolled-back', from: 4, to: 3 })
    // 3 is now in use: before, its anchor was gone (pruned while the rollback obtained it).
    expect(await anchors()).toEqual([1, 3, 5])
  }, 120_000)

  it('keeps its anchor through a fetch\'s prune: a load of an older pinned version, and a rollback of a model no handle serves', async () => {
    // Versions 1 … 5 from the test above; a runtime of its own, which fetched none of them.
    const other = await createNodeRuntime({ dataDir: join(root, 'other'), accessHistory: false, source: gated.source, codes: { m: () => tfjsPassthrough() } })
    try {
      const four = await other.load({ ...config(), pin: 4 })
      const two = await gate(2, 5)
      const loading = other.load({ ...config(), pin: 2 })
      await two.asked
      expect((await other.fetch(config(), 5)).manifest.version).toBe(5)
      two.open()
      const pinned = await loading
      expect(pinned.manifest.version).toBe(2)
      // 2 is in use, 4 its rollback target, 5 newer.
      expect(await anchors('other')).toEqual([2, 4, 5])

      await four.release()
      await pinned.release()
      const one = await gate(1, 5)
      const rolling = other.rollback(config(), 1)
      await one.asked
      expect((await other.fetch(config(), 3)).manifest.version).toBe(3)
      one.open()
      expect(await rolling).toMatchObject({ action: 'rolled-back', from: 2, to: 1 })
      // 1 in use, 4 its rollback target, 3 and 5 newer (2 was refused).
      expect(await anchors('other')).toEqual([1, 3, 4, 5])
    } finally {
      await other.stop()
    }
  }, 120_000)
})
