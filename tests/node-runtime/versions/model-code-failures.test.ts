/**
 * A runtime whose model code fails where nobody awaits it (review 48d): a `release()` that throws
 * as an upgrade retires the old version, a code factory that throws, and `stop()` with such a
 * code. None may leave an engine alive (tfjs tensors counted on the cpu backend), nor the caches
 * open; the failure is reported. And two handles of one model folder: a rollback from the handle
 * left behind says so instead of "rolling back" to the version it serves. A real coordinator and
 * runtime, on models of a few hundred bytes.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest'
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
    await expect(rt.stop()).rejects.toThrow("r@5: its model code's release() failed: release failed")
    expect(tensors()).toBe(start)
    // The disk cache's lock went with it: a new runtime opens the same data dir.
    const again = await createNodeRuntime({ dataDir, accessHistory: false, codes: { r: () => tfjsPassthrough() } })
    const reloaded = await again.load(config('r'))
    expect(reloaded.manifest.version).toBe(5)
    await again.stop()
  })

  it.each([
    ['throws', (): void => { throw new Error('listener threw') }],
    ['rejects', async (): Promise<void> => { throw new Error('listener threw') }]
  ])('keeps serving when the onModelCodeError listener itself %s: both failures go to stderr', async (how, listener) => {
    const m = `l${how}`
    const said = vi.spyOn(console, 'error').mockImplementation(() => {})
    const rt = await createNodeRuntime({
      dataDir: join(root, `listener-${how}`),
      accessHistory: false,
      codes: { [m]: () => ({ ...tfjsPassthrough(), release: async () => { throw new Error('release failed') } }) },
      onModelCodeError: listener
    })
    try {
      await publish(m)
      const handle = await rt.load(config(m))
      await publish(m)
      expect(await handle.update()).toMatchObject({ action: 'upgraded', to: 2 })
      await expect.poll(() => said.mock.calls.map(c => String(c[0])), { timeout: 10_000 })
        .toContain(`blockfed: ${m}@1: its model code's release() failed (its engine was freed): release failed; onModelCodeError threw: listener threw`)
      // Still alive and serving: the next upgrade goes through.
      await publish(m)
      expect(await handle.update()).toMatchObject({ action: 'upgraded', to: 3 })
    } finally {
      await rt.stop().catch(() => undefined)
      said.mockRestore()
    }
  })

  it('stop() says every release() that failed, not the first alone', async () => {
    const rt = await createNodeRuntime({
      dataDir: join(root, 'two-release-throws'),
      accessHistory: false,
      codes: { s1: () => ({ ...tfjsPassthrough(), release: async () => { throw new Error('s1 failed') } }), s2: () => ({ ...tfjsPassthrough(), release: async () => { throw new Error('s2 failed') } }) }
    })
    await publish('s1')
    await publish('s2')
    await rt.load(config('s1'))
    await rt.load(config('s2'))
    const stopped = await rt.stop().then(() => undefined, (err: unknown) => err)
    expect(stopped).toBeInstanceOf(AggregateError)
    // Each named by its model and version, the code's own error kept as the cause.
    expect((stopped as AggregateError).errors.map(e => (e as Error).message)).toEqual(["s1@1: its model code's release() failed: s1 failed", "s2@1: its model code's release() failed: s2 failed"])
    expect((stopped as AggregateError).errors.map(e => ((e as Error).cause as Error).message)).toEqual(['s1 failed', 's2 failed'])
    expect((stopped as Error).message).toBe("2 model codes failed at release (their engines were freed): s1@1: its model code's release() failed: s1 failed; s2@1: its model code's release() failed: s2 failed")
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

  it('check() from the handle left behind does not roll back, and says why (review 48f)', async () => {
    // Every version scores under the bound: check() would roll back if it could.
    const rt = await createNodeRuntime({ dataDir: join(root, 'two-handles-check'), accessHistory: false, codes: { c: () => ({ ...tfjsPassthrough(), evaluate: async () => 0.1 }) } })
    const bounded = { ...config('c'), rollback: { below: 0.5 } }
    try {
      await publish('c')
      await publish('c')
      const [h1, h2] = [await rt.load(bounded), await rt.load(bounded)]
      await publish('c')
      expect(await h1.update()).toMatchObject({ action: 'upgraded', from: 2, to: 3 })
      expect(await h2.check()).toMatchObject({ action: 'none', from: 2, to: 2, reason: 'c: this handle serves version 2, and another handle of c moved it to 3; name the version to roll back to, or update() first' })
      expect(h2.manifest.version).toBe(2)
      // h2 catches up; then h1 rolls the folder back to 1, which keeps 2 as the folder's previous.
      expect(await h2.update()).toMatchObject({ action: 'upgraded', from: 2, to: 3 })
      expect(await h1.rollback(1)).toMatchObject({ action: 'rolled-back', from: 3, to: 1 })
      // h2 serves 3, which the folder refused. From there check() would "roll back" to 2, moving
      // the folder forward; and update() does not go back, so the advice is to load again.
      const advice = 'c: this handle serves version 3, and another handle of c rolled it back to 1, refusing 3; release this handle and load the model again to serve 1'
      expect(await h2.check()).toMatchObject({ action: 'none', from: 3, to: 3, reason: advice })
      await expect(h2.rollback()).rejects.toThrow(advice)
      await h2.release()
      expect((await rt.load(bounded)).manifest.version).toBe(1)
    } finally {
      await rt.stop()
    }
  })

  it('a score that is not a finite number loses to any finite one, in validation and in check() (reviews 51a, 51b)', async () => {
    let versionScores: Record<number, number> = {}
    const code = (): ReturnType<typeof tfjsPassthrough> => {
      let version = 0
      const base = tfjsPassthrough()
      return { ...base, evaluate: async () => versionScores[version] as number, init: context => { version = context.manifest.version; base.init(context) } }
    }
    const rt = await createNodeRuntime({ dataDir: join(root, 'nan-scores'), accessHistory: false, codes: { n: code } })
    let other: Awaited<ReturnType<typeof createNodeRuntime>> | undefined
    try {
      await publish('n')
      const validating = await rt.load({ ...config('n'), upgrade: { validate: { margin: 0 } } })
      await publish('n')
      // A candidate scoring ∞ (or NaN, which was taken: NaN < x is false) is rejected, for good.
      versionScores = { 1: 0.5, 2: Infinity }
      expect(await validating.update()).toMatchObject({ action: 'rejected', from: 1, to: 1, reason: '2 scored Infinity locally, needs ≥ 0.5000 (current 0.5000 + margin 0)' })
      expect((await validating.update()).action).toBe('none')
      await validating.release()
      // A serving version scoring NaN fails its bound and loses to a previous version that scores
      // (another runtime: this one refuses 2 for good).
      other = await createNodeRuntime({ dataDir: join(root, 'nan-scores-check'), accessHistory: false, codes: { n: code } })
      await (await other.load({ ...config('n'), pin: 1 })).release()
      const bounded = await other.load({ ...config('n'), pin: 2, rollback: { below: 0.9 } })
      expect(bounded.manifest.version).toBe(2)
      versionScores = { 1: 0.5, 2: NaN }
      expect(await bounded.check()).toMatchObject({ action: 'rolled-back', from: 2, to: 1 })
      await bounded.release()
      // A previous version scoring NaN is not gone back to.
      await publish('n')
      const staying = await other.load({ ...config('n'), pin: 3, rollback: { below: 0.9 } })
      versionScores = { 1: NaN, 3: 0.5 }
      expect(await staying.check()).toMatchObject({ action: 'none', from: 3, to: 3, reason: 'metric 0.5000 < bound 0.9, but 1 scores NaN, no better: staying' })
    } finally {
      await rt.stop()
      await other?.stop()
    }
  })

  it('does not advise loading again when the folder went back without refusing what this handle serves (review 49a)', async () => {
    const rt = await createNodeRuntime({ dataDir: join(root, 'two-handles-back'), accessHistory: false, codes: { k: () => tfjsPassthrough() } })
    try {
      await publish('k')
      await publish('k')
      const [h1, h2] = [await rt.load(config('k')), await rt.load(config('k'))]
      await publish('k')
      expect(await h1.update()).toMatchObject({ action: 'upgraded', from: 2, to: 3 })
      // h2, left on 2, rolls back to 1 by name: it refuses 2, not 3, which a load would serve again.
      expect(await h2.rollback(1)).toMatchObject({ action: 'rolled-back', from: 2, to: 1 })
      await expect(h1.rollback()).rejects.toThrow('k: this handle serves version 3, and another handle of k moved it back to 1; name the version to roll back to')
    } finally {
      await rt.stop()
    }
  })

  it('check() does not roll the folder back past a move another handle made while it prepared (review 49a)', async () => {
    // Version 1's init waits for the test: h2's check() decides, then h1 upgrades the folder.
    let initStarted!: () => void
    const started = new Promise<void>(resolve => { initStarted = resolve })
    let letInit!: () => void
    const gate = new Promise<void>(resolve => { letInit = resolve })
    let holdV1 = false
    const rt = await createNodeRuntime({
      dataDir: join(root, 'two-handles-race'),
      accessHistory: false,
      codes: {
        q: () => {
          const code = tfjsPassthrough()
          // Version 1 scores higher, so check() would go back to it (it scores the way back first).
          let version = 0
          return { ...code, evaluate: async () => version === 1 ? 0.3 : 0.1, init: async context => { version = context.manifest.version; if (holdV1 && context.manifest.version === 1) { initStarted(); await gate } code.init(context) } }
        }
      }
    })
    const bounded = { ...config('q'), rollback: { below: 0.5 } }
    try {
      await publish('q')
      const h1 = await rt.load(bounded)
      await publish('q')
      expect(await h1.update()).toMatchObject({ action: 'upgraded', from: 1, to: 2 })
      const h2 = await rt.load(bounded)
      await publish('q')
      holdV1 = true
      const checking = h2.check()
      await started
      expect(await h1.update()).toMatchObject({ action: 'upgraded', from: 2, to: 3 })
      letInit()
      expect(await checking).toMatchObject({ action: 'none', from: 2, to: 2, reason: 'q: this handle serves version 2, and another handle of q moved it to 3; name the version to roll back to, or update() first' })
      expect(h2.manifest.version).toBe(2)
      // The folder is where h1 took it, its way back intact.
      holdV1 = false
      expect(await h1.rollback()).toMatchObject({ action: 'rolled-back', from: 3, to: 2 })
    } finally {
      await rt.stop()
    }
  })
})
