/**
 * A runtime whose model code fails where nobody awaits it (review 48d): a `release()` that throws
 * as an upgrade retires the old version, a code factory that throws, and `stop()` with such a
 * code. None may leave an engine alive (tfjs tensors counted on the cpu backend), nor the caches
 * open; the failure is reported. And two handles of one model folder: a rollback from the handle
 * left behind says so instead of "rolling back" to the version it serves. A real coordinator and
 * runtime, on models of a few hundred bytes.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import { createCoordinator, type Coordinator } from '../../../coordinator/coordinator.ts'
import { coordinatorClient, type CoordinatorClient } from '../../../shared/client/coordinator-client.ts'
import { createNodeRuntime } from '../../../node-runtime/runtime.ts'
import { tfjsPassthrough } from '../../../shared/runtime/passthrough.ts'
import { denseModelFiles } from '../../helpers/dense-model.ts'

let root: string
let coordinator: Coordinator
let url: string
let admin: CoordinatorClient
let token: string
let published = 0

const files = async (seed: number): Promise<Awaited<ReturnType<typeof denseModelFiles>>> =>
  await denseModelFiles(16, [['a', 8, seed], ['b', 4, seed + 1]])
const config = (model: string, modelDir = model): Record<string, unknown> => ({ version: '1', runtime: 'tfjs', source: 'blockfed', modelDir, modelName: model, updateURL: url, token })
const publish = async (model: string): Promise<void> => { await admin.ingest(model, await files(++published * 10)) }
/** Tensors the tfjs engine holds now. */
const tensors = (): number => tf.memory().numTensors

beforeAll(async () => {
  await tf.setBackend('cpu')
  root = await mkdtemp(join(tmpdir(), 'blockfed-code-failures-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0 })
  url = await coordinator.start()
  admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
  token = await admin.createToken('edge')
}, 60_000)

afterAll(async () => {
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('model code that fails unawaited', () => {
  it('frees a retired version\'s engine when its release() throws, says so, and stop() still closes everything', async () => {
    const failures: string[] = []
    const dataDir = join(root, 'release-throws')
    const rt = await createNodeRuntime({
      dataDir,
      accessHistory: false,
      codes: { r: () => ({ ...tfjsPassthrough(), release: async () => { throw new Error('release failed') } }) },
      onModelCodeError: (model, version, err) => { failures.push(`${model}@${version}: ${err.message}`) }
    })
    await publish('r')
    const start = tensors()
    const handle = await rt.load(config('r'))
    const one = tensors() - start
    expect(one).toBeGreaterThan(0)
    for (let i = 0; i < 4; i++) {
      await publish('r')
      expect(await handle.update()).toMatchObject({ action: 'upgraded' })
    }
    // Each old version retired in the background: its engine gone though release() threw.
    await expect.poll(() => tensors() - start, { timeout: 10_000 }).toBe(one)
    expect(failures).toEqual([1, 2, 3, 4].map(v => `r@${v}: release failed`))
    // stop() releases the handle (which throws), closes the rest, then says what failed.
    await expect(rt.stop()).rejects.toThrow('release failed')
    expect(tensors()).toBe(start)
    // The disk cache's lock went with it: a new runtime opens the same data dir.
    const again = await createNodeRuntime({ dataDir, accessHistory: false, codes: { r: () => tfjsPassthrough() } })
    const reloaded = await again.load(config('r'))
    expect(reloaded.manifest.version).toBe(5)
    await again.stop()
  })

  it('frees the engine built for a model code whose factory throws', async () => {
    const rt = await createNodeRuntime({ dataDir: join(root, 'factory-throws'), accessHistory: false, codes: { f: () => { throw new Error('no code for you') } } })
    try {
      await publish('f')
      const start = tensors()
      for (let i = 0; i < 3; i++) await expect(rt.load(config('f'))).rejects.toThrow('no code for you')
      expect(tensors()).toBe(start)
    } finally {
      await rt.stop()
    }
  })
})

describe('two handles of one model folder', () => {
  it('refuses a rollback, with no version named, from the handle another one left behind', async () => {
    const rt = await createNodeRuntime({ dataDir: join(root, 'two-handles'), accessHistory: false, codes: { t: () => tfjsPassthrough() } })
    try {
      await publish('t')
      await publish('t')
      const [h1, h2] = [await rt.load(config('t')), await rt.load(config('t'))]
      expect([h1.manifest.version, h2.manifest.version]).toEqual([2, 2])
      await publish('t')
      expect(await h1.update()).toMatchObject({ action: 'upgraded', from: 2, to: 3 })
      // h2 still serves 2, the folder's current is 3: "back" from h2 is not the folder's previous.
      await expect(h2.rollback()).rejects.toThrow('t: this handle serves version 2, and another handle of t moved it to 3; name the version to roll back to, or update() first')
      // The folder's rollback target is intact: h1 goes back to 2.
      expect(await h1.rollback()).toMatchObject({ action: 'rolled-back', from: 3, to: 2 })
    } finally {
      await rt.stop()
    }
  })
})
