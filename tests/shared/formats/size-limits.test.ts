/**
 * Model files whose size is fine for the upload limit but not for what ingest builds from them:
 * the manifest (model.json text, ONNX skeleton, one entry per tensor), the call stack (arguments
 * spread from huge arrays) and the heap (a walk that kept an entry per JSON element). Each must be
 * refused with a typed error (an HTTP 4xx), never a RangeError or an out-of-memory crash.
 */
import { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import { InvalidModelError, TooLargeError } from '../../../shared/errors/errors.ts'
import { readModel } from '../../../shared/formats/index.ts'
import { MAX_TENSORS } from '../../../shared/formats/model_files.ts'
import { MAX_MANIFEST_BYTES } from '../../../shared/manifest/sign.ts'
import type { ModelFile } from '../../../shared/model/types.ts'
import { modelFile, movenetFiles, onnxBytes, VAD_DIR } from './fixtures.ts'

/** The TooLargeError that reading `files` throws (fails the test on anything else). */
async function tooLarge (files: ModelFile[]): Promise<TooLargeError> {
  const e = await readModel(files).then(() => undefined, (err: unknown) => err)
  expect(e).toBeInstanceOf(TooLargeError)
  return e as TooLargeError
}

describe('tfjs model.json', () => {
  it('one larger than a manifest may hold is refused before it is decoded', async () => {
    // Not UTF-8: decoding first would give "not UTF-8 text" instead.
    const bytes = new Uint8Array(MAX_MANIFEST_BYTES + 1).fill(0xff)
    const e = await tooLarge([{ path: 'model.json', bytes }])
    expect(e.message).toBe(`model.json is ${MAX_MANIFEST_BYTES + 1} bytes, more than the ${MAX_MANIFEST_BYTES} a manifest may hold (it carries the model.json)`)
    expect(e.status).toBe(413)
  })

  it('one array of 4 million numbers is checked in a heap that holds little more than the array', async () => {
    // The depth check once kept a [value, depth] pair per element: ~64 bytes each, 256 MB here,
    // so this worker (64 MB old space) died of out-of-memory. A 114 MiB upload killed the coordinator.
    const script = `
      const { parentPort, workerData } = require('node:worker_threads')
      import(workerData.module).then(({ modelJsonOf }) => {
        const value = { format: 'graph-model', modelTopology: { node: [] }, weightsManifest: [], userDefinedMetadata: { a: new Array(4_000_000).fill(0) } }
        parentPort.postMessage(Object.keys(modelJsonOf(value, 'model.json')).join(','))
      })`
    const module = new URL('../../../shared/formats/_tfjs_json.ts', import.meta.url).href
    const worker = new Worker(script, { eval: true, workerData: { module }, resourceLimits: { maxOldGenerationSizeMb: 64 } })
    const answer = await new Promise((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    }).finally(() => worker.terminate())
    expect(answer).toBe('format,modelTopology,weightsManifest,userDefinedMetadata')
  })

  /** The InvalidModelError that reading a model.json of `json`'s text throws. */
  const refused = async (text: string): Promise<Error> => {
    const e = await readModel([{ path: 'model.json', bytes: new TextEncoder().encode(text) }]).then(() => undefined, (err: unknown) => err)
    expect(e).toBeInstanceOf(InvalidModelError)
    return e as Error
  }
  const numbers = (n: number): string => new Array(n).fill('1').join(',')

  // Review 46c: zod kept an issue per bad entry, and 200,000 of them overflowed its stack (an HTTP 500).
  it('more weights than a model may have: refused by their count before any is checked', async () => {
    const e = await tooLarge([{ path: 'model.json', bytes: new TextEncoder().encode(`{"format":"graph-model","modelTopology":{"node":[]},"weightsManifest":[{"paths":[],"weights":[${numbers(200_000)}]}]}`) }])
    expect(e.message).toBe(`model.json has 200000 tensors, more than the ${MAX_TENSORS} a model may have (each is listed in the signed manifest); merge small tensors into fewer, larger ones`)
  })

  it('more weight groups than a model may have tensors: said as groups', async () => {
    const e = await refused(`{"format":"graph-model","modelTopology":{"node":[]},"weightsManifest":[${new Array(MAX_TENSORS + 1).fill('{"paths":[],"weights":[]}').join(',')}]}`)
    expect(e.message).toBe(`model.json: its weights manifest has ${MAX_TENSORS + 1} groups, more than a model has tensors (limit ${MAX_TENSORS})`)
  })

  it('as many bad weight entries as a model may have weights: the first five named', async () => {
    const e = await refused(`{"format":"graph-model","modelTopology":{"node":[]},"weightsManifest":[{"paths":[${numbers(3)}],"weights":[${numbers(MAX_TENSORS)}]}]}`)
    expect(e.message).toBe('model.json is not a valid tfjs model.json: ' + [
      'weightsManifest.0.paths.0: Invalid input: expected string, received number',
      'weightsManifest.0.paths.1: Invalid input: expected string, received number',
      'weightsManifest.0.paths.2: Invalid input: expected string, received number',
      'weightsManifest.0.weights.0: Invalid input: expected object, received number',
      'weightsManifest.0.weights.1: Invalid input: expected object, received number'
    ].join('; '))
  })

  // Review 46c: the layer check kept an output shape per call; a million calls took 1.2 GB.
  it('a functional model calling one layer 200,001 times, or of 100,001 layers: refused by their count', async () => {
    const functional = (layers: unknown[]): string => JSON.stringify({
      format: 'layers-model',
      modelTopology: { class_name: 'Functional', config: { name: 'm', layers, input_layers: [['x', 0, 0]], output_layers: [['x', 0, 0]] } },
      weightsManifest: []
    })
    const input = { class_name: 'InputLayer', name: 'x', config: { name: 'x', batch_input_shape: [null, 2] }, inbound_nodes: [] }
    const dense = { class_name: 'Dense', name: 'd', config: { name: 'd', units: 1 }, inbound_nodes: new Array(200_001).fill([['x', 0, 0, {}]]) }
    expect((await refused(functional([input, dense]))).message).toBe('model.json: its layers are called with 200001 inputs in all, more than this check follows (limit 200000)')
    expect((await refused(functional(new Array(100_001).fill({})))).message).toBe('model.json: a model of 100001 layers, more than this check follows (limit 100000)')
  })

  // Review 46c: each name of the input layer copied its shape, whose length nothing bounded.
  it('a Keras config naming one input 100,000 times, or an input shape of 100,000 dims', async () => {
    const model = (inputs: number, rank: number): string => JSON.stringify({
      format: 'layers-model',
      modelTopology: { class_name: 'Functional', config: { name: 'm', layers: [{ class_name: 'InputLayer', name: 'x', config: { name: 'x', batch_input_shape: new Array(rank).fill(1) } }], input_layers: new Array(inputs).fill(['x', 0, 0]), output_layers: [['x', 0, 0]] } },
      weightsManifest: []
    })
    expect((await refused(model(100_000, 2))).message).toBe('model.json: the model config names 100000 input layers, more than a model has (limit 4096)')
    expect((await refused(model(1, 100_000))).message).toBe('model.json: input layer "x" has a shape of 100000 dims, more than a tensor has (limit 64)')
  })
})

describe('ONNX', () => {
  it('a skeleton whose base64 would not fit a manifest is refused before it is encoded', async () => {
    // A graph doc_string of 48 MB: 64 MB in base64. At 450 MB the string passed V8's limit (a RangeError).
    const doc = new Uint8Array(Math.ceil(MAX_MANIFEST_BYTES * 3 / 4) + 1).fill(0x61)
    const file = onnxBytes(g => { g.uint32(10 << 3 | 2).bytes(doc) })
    const e = await tooLarge([{ path: 'doc.onnx', bytes: file }])
    expect(e.message).toMatch(new RegExp(`^doc\\.onnx: the model without its tensor data \\(graph, attributes, doc strings\\) is ${file.length} bytes, \\d+ in base64, more than the ${MAX_MANIFEST_BYTES} a manifest may hold$`))
  })

  it(`more than MAX_TENSORS (${MAX_TENSORS}) tensors is refused, naming the count; real models are far below`, async () => {
    const file = onnxBytes(g => {
      for (let i = 0; i <= MAX_TENSORS; i++) g.uint32(5 << 3 | 2).fork().uint32(9 << 3 | 2).bytes(new Uint8Array(0)).ldelim()
    })
    const e = await tooLarge([{ path: 'many.onnx', bytes: file }])
    expect(e.message).toBe(`many.onnx has ${MAX_TENSORS + 1} tensors, more than the ${MAX_TENSORS} a model may have (each is listed in the signed manifest); merge small tensors into fewer, larger ones`)
    for (const files of [movenetFiles(), [modelFile(VAD_DIR, 'silero_vad_v5.onnx')]]) {
      expect((await readModel(files)).tensors.length).toBeLessThan(MAX_TENSORS / 100)
    }
  })

  it('a gap after each of 99,999 external tensors: TooLargeError, not a stack overflow', async () => {
    // Each gap (a non-zero byte) becomes a piece of its own; they were spread into one push()
    // call, and 150,000 overflowed the stack. More tensors than MAX_TENSORS are now refused when
    // counted, before any piece is made, so this stays just under it.
    const n = MAX_TENSORS - 1
    const file = onnxBytes(g => {
      for (let i = 0; i < n; i++) {
        g.uint32(5 << 3 | 2).fork()
        g.uint32(2 << 3).int64(2) // uint8 scalar
        g.uint32(13 << 3 | 2).fork().uint32(1 << 3 | 2).string('location').uint32(2 << 3 | 2).string('d').ldelim()
        g.uint32(13 << 3 | 2).fork().uint32(1 << 3 | 2).string('offset').uint32(2 << 3 | 2).string(String(2 * i)).ldelim()
        g.uint32(14 << 3).int64(1) // data_location: EXTERNAL
        g.ldelim()
      }
    })
    const e = await tooLarge([{ path: 'gaps.onnx', bytes: file }, { path: 'd', bytes: new Uint8Array(2 * n).fill(0xff) }])
    expect(e.message).toMatch(new RegExp(`^gaps\\.onnx has ${2 * n} tensors, more than the `))
  })
})
