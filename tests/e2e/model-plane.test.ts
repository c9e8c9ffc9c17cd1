/**
 * The model plane end to end on real models from npm: ingest → sealed blocks → Node runtime
 * loads from AoE configs → outputs identical to the original model's; pull reproduces the files
 * byte for byte; a restart loads from cache; tampering is detected.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import { loadGraphModel } from '@tensorflow/tfjs-converter'
import * as ort from 'onnxruntime-node'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { coordinatorClient, type CoordinatorClient } from '../../shared/client/coordinator-client.ts'
import { createNodeRuntime, type HistoryPrefetch } from '../../node-runtime/runtime.ts'
import { ACCESS_HISTORY_FILE } from '../../node-runtime/access-log.ts'
import { accessHistorySchema } from '../../shared/load/access-history.ts'
import type { LoadReport } from '../../shared/load/loader.ts'
import { pullModel } from '../../node-runtime/pull.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { modelFiles, mnistMlp } from '../../node-runtime/examples/mnist-mlp.ts'
import type { TensorData } from '../../shared/runtime/passthrough.ts'
import type { ModelFile } from '../../shared/model/types.ts'
import type { SignedManifest } from '../../shared/manifest/schema.ts'
import { movenetFiles, sileroFiles } from '../helpers/models.ts'

let root: string
let coordinator: Coordinator
let url: string
let admin: CoordinatorClient
let edgeToken: string
let layersFiles: ModelFile[]
let layersModel: tfl.LayersModel

const config = (modelName: string, runtime: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  version: '1.0.0', tag: 'tag_e2e', runtime, source: 'blockfed', modelDir: modelName, modelName, updateURL: url, token: edgeToken, ...extra
})

function fixedFloats (n: number, seed = 1): Float32Array {
  const out = new Float32Array(n)
  let s = seed
  for (let i = 0; i < n; i++) { s = (s * 1664525 + 1013904223) >>> 0; out[i] = (s / 2 ** 32) * 2 - 1 }
  return out
}

beforeAll(async () => {
  await tfjsBackend()
  root = await mkdtemp(join(tmpdir(), 'blockfed-e2e-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0 })
  url = await coordinator.start()
  admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
  edgeToken = await admin.createToken('edge')
  layersModel = mnistMlp()
  layersFiles = await modelFiles(layersModel)
  await admin.ingest('movenet', movenetFiles())
  await admin.ingest('silero', sileroFiles())
  await admin.ingest('mnist-mlp', layersFiles)
})

afterAll(async () => {
  layersModel?.dispose()
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('round trip exactness', () => {
  it('tfjs graph (movenet-lightning): runtime outputs equal the original model\'s, pull is byte-identical', async () => {
    const runtime = await createNodeRuntime({ dataDir: join(root, 'rt-movenet') })
    const handle = await runtime.load(config('movenet', 'tensorflow'))
    expect(handle.engine.kind).toBe('tfjs-graph')
    const pixels = Int32Array.from(fixedFloats(192 * 192 * 3), v => Math.floor((v + 1) * 127))
    const input = tf.tensor4d(pixels, [1, 192, 192, 3], 'int32')
    const [viaRuntime] = await handle.infer(input) as TensorData[]

    const [json, bin] = movenetFiles() as [ModelFile, ModelFile]
    const parsed = JSON.parse(new TextDecoder().decode(json.bytes))
    const original = await loadGraphModel(tf.io.fromMemory({ ...parsed, weightSpecs: parsed.weightsManifest[0].weights, weightData: bin.bytes.slice().buffer }))
    const expected = await original.executeAsync(input) as tf.Tensor
    expect(Array.from(viaRuntime!.data)).toEqual(Array.from(await expected.data()))
    expect(viaRuntime!.shape).toEqual([1, 1, 17, 3])
    tf.dispose([input, expected]); original.dispose()
    await runtime.stop()

    const pulled = await pullModel({ baseUrl: url, token: edgeToken, model: 'movenet', version: 1, home: join(root, 'pull-home') })
    expect(pulled.files.map(f => f.path).sort()).toEqual(['model.json', 'movenet-lightning.bin'])
    expect(Buffer.compare(pulled.files.find(f => f.path === 'movenet-lightning.bin')!.bytes, bin.bytes)).toBe(0)
    expect(Buffer.compare(pulled.files.find(f => f.path === 'model.json')!.bytes, json.bytes)).toBe(0)
  })

  it('ONNX (silero_vad_legacy): runtime outputs equal the original session\'s, pull is byte-identical', async () => {
    const runtime = await createNodeRuntime({ dataDir: join(root, 'rt-silero') })
    const handle = await runtime.load(config('silero', 'onnx'))
    expect(handle.engine.kind).toBe('onnx')
    const feeds = () => ({
      input: new ort.Tensor('float32', fixedFloats(512, 7), [1, 512]),
      sr: new ort.Tensor('int64', BigInt64Array.from([16000n]), [1]),
      h: new ort.Tensor('float32', new Float32Array(128), [2, 1, 64]),
      c: new ort.Tensor('float32', new Float32Array(128), [2, 1, 64])
    })
    const viaRuntime = await handle.infer(feeds()) as Record<string, ort.Tensor>
    const original = await ort.InferenceSession.create(sileroFiles()[0]!.bytes)
    const expected = await original.run(feeds())
    expect(Object.keys(viaRuntime).sort()).toEqual(Object.keys(expected).sort())
    for (const name of Object.keys(expected)) expect(Array.from(viaRuntime[name]!.data as Float32Array)).toEqual(Array.from(expected[name]!.data as Float32Array))
    await original.release()
    await runtime.stop()

    const pulled = await pullModel({ baseUrl: url, token: edgeToken, model: 'silero', version: 'latest', home: join(root, 'pull-home') })
    expect(pulled.files).toHaveLength(1)
    expect(Buffer.compare(pulled.files[0]!.bytes, sileroFiles()[0]!.bytes)).toBe(0)
  })

  it('tfjs layers (MNIST MLP): predictions equal the original model\'s, pull is byte-identical', async () => {
    const runtime = await createNodeRuntime({ dataDir: join(root, 'rt-mlp') })
    const handle = await runtime.load(config('mnist-mlp', 'tfjs'))
    const x = tf.tensor2d(fixedFloats(5 * 784, 3), [5, 784])
    const [viaRuntime] = await handle.infer(x) as TensorData[]
    const expected = layersModel.predict(x) as tf.Tensor
    expect(Array.from(viaRuntime!.data)).toEqual(Array.from(await expected.data()))
    tf.dispose([x, expected])
    await runtime.stop()
    const pulled = await pullModel({ baseUrl: url, token: edgeToken, model: 'mnist-mlp', version: 1, home: join(root, 'pull-home') })
    for (const f of layersFiles) expect(Buffer.compare(pulled.files.find(p => p.path === f.path)!.bytes, f.bytes), f.path).toBe(0)
  })

  it('does not leak tfjs tensors across load, inference and release', async () => {
    const before = tf.memory().numTensors
    const runtime = await createNodeRuntime({ dataDir: join(root, 'rt-leak') })
    const handle = await runtime.load(config('mnist-mlp', 'tfjs'))
    const x = tf.tensor2d(fixedFloats(784), [1, 784])
    await handle.infer(x)
    x.dispose()
    await runtime.stop()
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe('runtime behaviour', () => {
  it('a second start loads every block from its cache without fetching', async () => {
    const dir = join(root, 'rt-cache')
    const first = await createNodeRuntime({ dataDir: dir })
    const cold = await first.load(config('movenet', 'tensorflow'))
    expect(cold.report.fromCache).toBe(0)
    expect(cold.report.bytesFetched).toBeGreaterThan(4_000_000)
    await first.stop()
    const second = await createNodeRuntime({ dataDir: dir })
    const warm = await second.load(config('movenet', 'tensorflow'))
    expect(warm.report).toMatchObject({ fromCache: warm.report.blocks, fetchedBlocks: 0, bytesFetched: 0, shardsFetched: 0 })
    const disk = second.cacheOf('movenet')!.stats()
    expect(disk.hits).toBeGreaterThan(0)
    await second.stop()
  })

  it('stop ends a load under way and waits for it: no live model or open cache is left, and nothing starts afterwards', async () => {
    const runtime = await createNodeRuntime({ dataDir: join(root, 'rt-stop') })
    const loading = runtime.load(config('movenet', 'tensorflow'))
    await runtime.stop()
    // Before, the load went on after stop and returned a live handle, with its cache reopened.
    const ended = await loading.then(() => undefined, (err: Error) => err)
    expect(ended?.message).toMatch(/stop/)
    expect(runtime.byTag('tag_e2e')).toHaveLength(0)
    expect(runtime.cacheOf('movenet')).toBeUndefined()
    await expect(runtime.load(config('movenet', 'tensorflow'))).rejects.toThrow('load: the runtime has stopped')
    await expect(runtime.fetch(config('movenet', 'tensorflow'), 'latest')).rejects.toThrow('fetch: the runtime has stopped')
    expect(runtime.cacheOf('movenet')).toBeUndefined()
  })

  it('several models share one tag', async () => {
    const runtime = await createNodeRuntime({ dataDir: join(root, 'rt-tag') })
    await runtime.load(config('mnist-mlp', 'tfjs', { tag: 'digits' }))
    await runtime.load(config('silero', 'onnx', { tag: 'digits' }))
    await runtime.load(config('movenet', 'tfjs', { tag: 'pose' }))
    expect(runtime.byTag('digits').map(h => h.config.modelName).sort()).toEqual(['mnist-mlp', 'silero'])
    expect(runtime.byTag('pose')).toHaveLength(1)
    await runtime.stop()
    expect(runtime.byTag('digits')).toHaveLength(0)
  })

  it('prefetches the model this runtime usually loads next (access history), whose load then fetches nothing', async () => {
    await admin.ingest('mnist-next', await modelFiles(mnistMlp({ hidden: [48], seed: 5 })))
    const dir = await mkdtemp(join(root, 'history-'))
    const dataDir = join(dir, 'runtime')
    const [first, next] = [join(dir, 'first.aoe.json'), join(dir, 'next.aoe.json')]
    await writeFile(first, JSON.stringify(config('mnist-mlp', 'tfjs')))
    await writeFile(next, JSON.stringify(config('mnist-next', 'tfjs')))
    // One runtime's life: load mnist-mlp, then mnist-next. A prefetch still running when
    // mnist-next's load starts, or when the runtime stops, is stopped and reported as an error.
    const life = async (options: Partial<Parameters<typeof createNodeRuntime>[0]> = {}, expectPrefetch = false): Promise<{ nextReport: LoadReport, prefetches: HistoryPrefetch[], metrics: string }> => {
      const prefetches: HistoryPrefetch[] = []
      let prefetched: () => void = () => {}
      const onPrefetch = new Promise<void>(resolve => { prefetched = resolve })
      const runtime = await createNodeRuntime({ dataDir, ...options, onPrefetch: event => { prefetches.push(event); prefetched() } })
      await (await runtime.load(first)).release()
      if (expectPrefetch) await Promise.race([onPrefetch, new Promise(resolve => setTimeout(resolve, 10_000))])
      const nextReport = (await runtime.load(next)).report
      const metrics = runtime.metricsText()
      await runtime.stop()
      return { nextReport, prefetches, metrics }
    }
    // Two lives in which mnist-next follows mnist-mlp: the second time it becomes the likely next.
    expect((await life()).prefetches).toEqual([])
    expect((await life()).prefetches).toEqual([])
    const dropCache = async (): Promise<void> => { await rm(join(dataDir, 'mnist-next', 'blocks'), { recursive: true, force: true }) }

    // Control: history off, mnist-next's evicted blocks are fetched by its own load.
    await dropCache()
    const off = await life({ accessHistory: false })
    expect(off.prefetches).toEqual([])
    expect(off.nextReport.bytesFetched).toBeGreaterThan(0)

    await dropCache()
    const on = await life({}, true)
    expect(on.prefetches).toHaveLength(1)
    expect(on.prefetches[0]).toMatchObject({ after: 'mnist-mlp', model: 'mnist-next', version: 1, blocks: off.nextReport.fetchedBlocks })
    expect(on.prefetches[0]?.error).toBeUndefined()
    expect(on.prefetches[0]?.bytesFetched).toBe(off.nextReport.bytesFetched)
    expect(on.nextReport).toMatchObject({ fromCache: on.nextReport.blocks, fetchedBlocks: 0, bytesFetched: 0 })
    // The same prefetch, as the runtime's Prometheus counters say it.
    expect(on.metrics).toMatch(/^blockfed_prefetch_prefetches_total 1$/m)
    expect(on.metrics).toMatch(/^blockfed_prefetch_failures_total 0$/m)
    expect(on.metrics).toContain(`\nblockfed_prefetch_blocks_total ${off.nextReport.fetchedBlocks}\n`)
    expect(on.metrics).toContain(`\nblockfed_prefetch_bytes_fetched_total ${off.nextReport.bytesFetched}\n`)
    expect(off.metrics).toMatch(/^blockfed_prefetch_prefetches_total 0$/m)

    const saved = accessHistorySchema.parse(JSON.parse(await readFile(join(dataDir, ACCESS_HISTORY_FILE), 'utf8')))
    expect(saved.models['mnist-next']?.config).toBe(next)
    expect(JSON.stringify(saved)).not.toContain(edgeToken)
  })

  it('a corrupt access-history file is set aside: loads work and the file is written afresh', async () => {
    const dataDir = await mkdtemp(join(root, 'history-bad-'))
    const path = join(dataDir, 'm.aoe.json')
    await writeFile(path, JSON.stringify(config('mnist-mlp', 'tfjs')))
    for (const junk of ['{ "version": 1, "models": ', JSON.stringify({ version: 1, models: { a: { uses: 'many', next: {} } } })]) {
      await writeFile(join(dataDir, ACCESS_HISTORY_FILE), junk)
      const runtime = await createNodeRuntime({ dataDir })
      const handle = await runtime.load(path)
      expect(handle.report.blocks).toBeGreaterThan(0)
      await runtime.stop()
      const saved = accessHistorySchema.parse(JSON.parse(await readFile(join(dataDir, ACCESS_HISTORY_FILE), 'utf8')))
      expect(Object.keys(saved.models)).toEqual(['mnist-mlp'])
    }
  })

  it('rejects a malformed AoE config file naming the bad field, before any network call', async () => {
    const runtime = await createNodeRuntime({ dataDir: join(root, 'rt-bad') })
    const path = join(root, 'bad.aoe.json')
    await writeFile(path, JSON.stringify({ ...config('movenet', 'tensorflow'), modelDir: '../escape', cache: { memoryBytes: -1 } }))
    await expect(runtime.load(path)).rejects.toThrow(/modelDir[\s\S]*cache\.memoryBytes|cache\.memoryBytes[\s\S]*modelDir/)
    await writeFile(path, '{ "version": "1.0.0", ')
    await expect(runtime.load(path)).rejects.toMatchObject({ name: 'InvalidConfigError' })
    await expect(runtime.load(config('nosuch', 'tfjs'))).rejects.toMatchObject({ name: 'NotFoundError' })
    await expect(runtime.load(config('movenet', 'tfjs', { pin: 7 }))).rejects.toThrow(/has no version 7/)
    await expect(runtime.load(config('silero', 'tensorflow'))).rejects.toThrow(/cannot run a onnx model/)
    await runtime.stop()
  })
})

describe('integrity', () => {
  async function shardPath (cid: string): Promise<string> {
    return join(root, 'coordinator', 'blocks', cid.slice(-2), cid)
  }
  async function freshCopy (name: string, files: ModelFile[]): Promise<SignedManifest> {
    // A fresh coordinator data dir would be cleaner, but a new model name with equal weights
    // reuses the blocks; so tamper with blocks of a model ingested only here.
    await admin.ingest(name, files)
    return await admin.manifest(name, 1) as SignedManifest
  }

  it('tolerates a corrupt and a missing shard (reported), refuses a block with too few intact shards (never cached)', async () => {
    // A model no other test loads, so its shards were never served (and never held in the coordinator's hot cache).
    const model = tfl.sequential()
    model.add(tfl.layers.dense({ inputShape: [300], units: 500, name: 'tamper_me' }))
    const files = await modelFiles(model)
    const expected = model.predict(tf.ones([1, 300])) as tf.Tensor
    const signed = await freshCopy('tamper', files)
    const block = signed.manifest.blocks[0]!
    const p0 = await shardPath(block.shards.cids[0]!)
    const bytes = await readFile(p0)
    bytes[10] = (bytes[10] as number) ^ 0xff
    await writeFile(p0, bytes)
    await rm(await shardPath(block.shards.cids[3]!)) // and one shard missing altogether

    const runtime = await createNodeRuntime({ dataDir: join(root, 'rt-tamper') })
    const handle = await runtime.load(config('tamper', 'tfjs'))
    expect(handle.report.faults.map(f => f.shard).sort()).toEqual([0, 3])
    // The coordinator checks its own file against the CID now and answers 502 (store-damage.test);
    // the runtime's check of what a source serves is shown where a source lies (loader.test, the
    // swarm's corrupt-peer tests).
    expect(handle.report.faults.find(f => f.shard === 0)!.reason).toMatch(/HTTP 502/)
    expect(handle.report.faults.find(f => f.shard === 3)!.reason).toMatch(/NotFoundError/)
    const [out] = await handle.infer(tf.ones([1, 300])) as TensorData[]
    expect(Array.from(out!.data)).toEqual(Array.from(await expected.data()))
    await runtime.stop()

    // Another model, tampered before anything served it: three of six shards of one block bad.
    const other = tfl.sequential()
    other.add(tfl.layers.dense({ inputShape: [300], units: 500, name: 'tamper_more' }))
    const otherSigned = await freshCopy('tamper-more', await modelFiles(other))
    other.dispose()
    const broken = otherSigned.manifest.blocks[0]!
    for (const i of [1, 2, 5]) {
      const p = await shardPath(broken.shards.cids[i]!)
      const b = await readFile(p); b[0] = (b[0] as number) ^ 1; await writeFile(p, b)
    }
    const second = await createNodeRuntime({ dataDir: join(root, 'rt-tamper-2') })
    await expect(second.load(config('tamper-more', 'tfjs'))).rejects.toThrow(/only 3 of 6 shards intact, need 4/)
    expect(await second.cacheOf('tamper-more')!.has(broken.cid)).toBe(false)
    await second.stop()
    tf.dispose(expected); model.dispose()
  })

  it('refuses a manifest whose signature or content was tampered with in the coordinator\'s database', async () => {
    const { DatabaseSync } = await import('node:sqlite')
    const db = new DatabaseSync(join(root, 'coordinator', 'coordinator.sqlite'))
    const row = db.prepare("SELECT signed_manifest FROM versions WHERE model = 'silero' AND version = 1").get() as { signed_manifest: string }
    const signed = JSON.parse(row.signed_manifest) as SignedManifest
    const runtime = await createNodeRuntime({ dataDir: join(root, 'rt-forged') })
    try {
      const badSig = { ...signed, signature: { ...signed.signature, value: signed.signature.value.replace(/^./, c => c === 'A' ? 'B' : 'A') } }
      db.prepare("UPDATE versions SET signed_manifest = ? WHERE model = 'silero' AND version = 1").run(JSON.stringify(badSig))
      await expect(runtime.load(config('silero', 'onnx'))).rejects.toThrow(/signature does not verify/)

      const edited = { ...signed, manifest: { ...signed.manifest, metadata: { ...signed.manifest.metadata, producer: 'mallory' } } }
      db.prepare("UPDATE versions SET signed_manifest = ? WHERE model = 'silero' AND version = 1").run(JSON.stringify(edited))
      await expect(runtime.load(config('silero', 'onnx'))).rejects.toThrow(/hashes to .*not the claimed/)
    } finally {
      db.prepare("UPDATE versions SET signed_manifest = ? WHERE model = 'silero' AND version = 1").run(row.signed_manifest)
      db.close()
      await runtime.stop()
    }
  })
})
