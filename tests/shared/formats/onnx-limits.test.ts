/**
 * ONNX reading under hostile or unusual files: a record budget (unknown fields are legal, so a
 * file can be nothing but skippable records), rank caps, and tensor values held in protobuf
 * records other than raw_data, which must leave the public skeleton like any other weights.
 */
import { describe, expect, it } from 'vitest'
import protobuf from 'protobufjs/minimal.js'
import { readModel, writeModel } from '../../../shared/formats/index.ts'
import { walkOnnx } from '../../../shared/formats/_onnx_proto.ts'
import { MAX_RECORDS, WireLimitError } from '../../../shared/formats/_protobuf.ts'
import type { ModelFile, NormalisedModel, OnnxTopology } from '../../../shared/model/types.ts'
import { readError } from './fixtures.ts'

type W = protobuf.Writer
const msg = (w: W, field: number, body: (w: W) => void): void => { body(w.uint32(field << 3 | 2).fork()); w.ldelim() }
const str = (w: W, field: number, s: string): void => { w.uint32(field << 3 | 2).string(s) }
const varint = (w: W, field: number, v: number): void => { w.uint32(field << 3).int64(v) }
const packedDims = (w: W, dims: number[]): void => msg(w, 1, p => { for (const d of dims) p.int64(d) })

/** A model of ir_version 8 and opset 13 whose graph `body` writes. */
function onnxOf (body: (graph: W) => void, after: (model: W) => void = () => {}): ModelFile {
  const w = protobuf.Writer.create()
  varint(w, 1, 8)
  msg(w, 7, g => { str(g, 2, 'g'); body(g) })
  msg(w, 8, o => { str(o, 1, ''); varint(o, 2, 13) })
  after(w)
  return { path: 'm.onnx', bytes: Uint8Array.from(w.finish()) }
}

/** `n` 2-byte unknown ModelProto fields (field 15, varint 0) after a valid model. */
function withUnknownFields (model: ModelFile, n: number): ModelFile {
  const bytes = new Uint8Array(model.bytes.length + 2 * n)
  bytes.set(model.bytes)
  for (let i = model.bytes.length; i < bytes.length; i += 2) bytes[i] = 15 << 3
  return { path: model.path, bytes }
}

const tiny = (): ModelFile => onnxOf(g => msg(g, 5, t => { packedDims(t, [2]); varint(t, 2, 1); str(t, 8, 'W'); t.uint32(9 << 3 | 2).bytes(new Uint8Array(8)) }))

function skeletonOf (model: NormalisedModel): Buffer {
  return Buffer.from((model.topology as OnnxTopology).skeleton, 'base64')
}

describe('ONNX record budget', () => {
  it('skips unknown fields: the model reads as without them and writes back byte for byte', async () => {
    const file = withUnknownFields(tiny(), 100_000)
    const model = await readModel([file])
    expect(model.tensors.map(t => t.name)).toEqual(['W'])
    expect(Buffer.from(writeModel(model)[0]!.bytes).equals(Buffer.from(file.bytes))).toBe(true)
  })

  it('counts every record of the file against the walker\'s budget', () => {
    const file = withUnknownFields(tiny(), 5_000)
    expect(walkOnnx(file.bytes, 10_000).tensors).toHaveLength(1)
    expect(() => walkOnnx(file.bytes, 1_000)).toThrow(WireLimitError)
    expect(() => walkOnnx(file.bytes, 1_000)).toThrow(/^more than 1000 protobuf records \(at byte \d+\)/)
  })

  it(`refuses a file of more than ${MAX_RECORDS} records (2-byte unknown fields) as InvalidModelError`, async () => {
    const e = await readError([withUnknownFields(tiny(), MAX_RECORDS)])
    expect(e.message).toMatch(new RegExp(`^m\\.onnx: more than ${MAX_RECORDS} protobuf records \\(at byte \\d+\\); refused`))
  })

  it('refuses more than 1000 opset imports (they are copied into the manifest)', async () => {
    const file = onnxOf(() => {}, w => { for (let i = 0; i < 1_001; i++) msg(w, 8, o => varint(o, 2, 13)) })
    expect((await readError([file])).message).toMatch(/^m\.onnx: more than 1000 opset imports/)
  })
})

describe('ONNX rank cap', () => {
  const rawTensor = (rank: number) => onnxOf(g => msg(g, 5, t => {
    packedDims(t, new Array<number>(rank).fill(1)); varint(t, 2, 1); str(t, 8, 'W'); t.uint32(9 << 3 | 2).bytes(new Uint8Array(4))
  }))

  it('reads a tensor of rank 64 and refuses rank 65 (packed or not) and a 65-dim graph input', async () => {
    expect((await readModel([rawTensor(64)])).tensors[0]!.shape).toHaveLength(64)
    expect((await readError([rawTensor(65)])).message).toMatch(/^m\.onnx: tensor at byte \d+ has more than 64 dims$/)
    expect((await readError([rawTensor(4_000_000)])).message).toMatch(/more than 64 dims/)
    const unpacked = onnxOf(g => msg(g, 5, t => { for (let i = 0; i < 65; i++) varint(t, 1, 1); varint(t, 2, 1); str(t, 8, 'W') }))
    expect((await readError([unpacked])).message).toMatch(/more than 64 dims/)
    const input = onnxOf(g => msg(g, 11, v => {
      str(v, 1, 'X')
      msg(v, 2, tp => msg(tp, 1, tt => { varint(tt, 1, 1); msg(tt, 2, s => { for (let i = 0; i < 65; i++) msg(s, 1, d => varint(d, 1, 1)) }) }))
    }))
    expect((await readError([input])).message).toMatch(/^m\.onnx: graph input\/output at byte \d+ has more than 64 dims$/)
  })
})

describe('ONNX values outside raw_data leave the public skeleton', () => {
  const secretInt8 = [11, -22, 33, -44, 55, -66, 77, -88]
  const secretInt64 = [1234567890123, -987654321]
  const secretFloats = [1.5, -2.25, 3.125]
  const secretString = 'a secret vocabulary entry'
  const sparseValues = [0.75, -8.5]
  const sparseIndices = [314159, 271828]
  const model = (): ModelFile => onnxOf(g => {
    msg(g, 1, n => { str(n, 1, 'X'); str(n, 1, 'q'); str(n, 2, 'Y'); str(n, 4, 'Add') })
    msg(g, 5, t => { packedDims(t, [2, 4]); varint(t, 2, 3); msg(t, 5, p => { for (const v of secretInt8) p.int32(v) }); str(t, 8, 'q') }) // int32_data, packed
    msg(g, 5, t => { packedDims(t, [2]); varint(t, 2, 7); str(t, 8, 'ids'); for (const v of secretInt64) t.uint32(7 << 3).int64(v) }) // int64_data, unpacked
    msg(g, 5, t => { packedDims(t, [3]); varint(t, 2, 1); for (const v of secretFloats) t.uint32(4 << 3 | 5).float(v); str(t, 8, 'f') }) // float_data, unpacked
    msg(g, 5, t => { packedDims(t, [1]); varint(t, 2, 8); str(t, 6, secretString); str(t, 8, 'vocab') }) // string_data
    msg(g, 5, t => { packedDims(t, [2]); varint(t, 2, 1); str(t, 8, 'W'); t.uint32(9 << 3 | 2).bytes(new Uint8Array(8)) }) // raw_data
    msg(g, 15, s => { // sparse_initializer: values (raw float) + indices (int64_data)
      msg(s, 1, t => { packedDims(t, [2]); varint(t, 2, 1); str(t, 8, 'sp'); t.uint32(9 << 3 | 2).bytes(new Uint8Array(Float32Array.from(sparseValues).buffer)) })
      msg(s, 2, t => { packedDims(t, [2]); varint(t, 2, 7); msg(t, 7, p => { for (const v of sparseIndices) p.int64(v) }) })
      packedDims(s, [1000, 1000])
    })
  })

  it('cuts out int32_data, int64_data, unpacked float_data, string_data and sparse initializers', async () => {
    const file = model()
    const read = await readModel([file])
    expect(read.tensors.map(t => [t.name, t.dtype, t.layer])).toEqual([
      ['q', 'onnx-encoded', 'Add:Y'], // consumed by the Add node (no name: op:output)
      ['ids', 'onnx-encoded', 'ids'],
      ['f', 'onnx-encoded', 'f'],
      ['vocab', 'onnx-encoded', 'vocab'],
      ['W', 'float32', 'W'],
      ['sp', 'float32', 'sp'],
      ['sp:indices', 'onnx-encoded', 'sp']
    ])
    for (const t of read.tensors.filter(t => t.dtype === 'onnx-encoded')) expect(t.shape).toEqual([t.byteLength])

    const skeleton = skeletonOf(read)
    const encoded = (write: (w: W) => void): Buffer => { const x = protobuf.Writer.create(); write(x); return Buffer.from(x.finish()) }
    expect(skeleton.includes(encoded(x => { for (const v of secretInt8) x.int32(v) }))).toBe(false)
    expect(skeleton.includes(encoded(x => x.int64(secretInt64[0]!)))).toBe(false)
    expect(skeleton.includes(encoded(x => x.float(secretFloats[0]!)))).toBe(false)
    expect(skeleton.includes(Buffer.from(secretString))).toBe(false)
    expect(skeleton.includes(encoded(x => x.int64(sparseIndices[0]!)))).toBe(false)
    expect(skeleton.includes(Buffer.from(Float32Array.from(sparseValues).buffer))).toBe(false)

    expect(Buffer.from(writeModel(read)[0]!.bytes).equals(Buffer.from(file.bytes))).toBe(true)
    expect(read.metadata.inputs.map(i => i.name)).toEqual([])
  })

  it('refuses values split by other fields, naming the tensor and the way out', async () => {
    const file = onnxOf(g => msg(g, 5, t => {
      packedDims(t, [2]); varint(t, 2, 6); t.uint32(5 << 3).int32(7); str(t, 8, 'split'); t.uint32(5 << 3).int32(9)
    }))
    expect((await readError([file])).message).toBe('m.onnx: tensor "split" (int32 [2]) holds its values in int32_data records with other fields between them, ' +
      'which cannot be kept out of the public manifest; re-save the model with raw_data (onnx.numpy_helper.from_array)')
  })
})

describe('tfjs rank cap', () => {
  const layers = (rank: number): ModelFile[] => [
    { path: 'model.json', bytes: new TextEncoder().encode(JSON.stringify({
      format: 'layers-model',
      modelTopology: { class_name: 'Sequential', config: { layers: [] } },
      weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'd/k', shape: new Array<number>(rank).fill(1), dtype: 'float32' }] }]
    })) },
    { path: 'w.bin', bytes: new Uint8Array(4) }
  ]

  it('reads a weight of rank 64 and refuses rank 65', async () => {
    expect((await readModel(layers(64))).tensors[0]!.shape).toHaveLength(64)
    expect((await readError(layers(65))).message).toMatch(/^model\.json is not a valid tfjs model\.json: weightsManifest\.0\.weights\.0\.shape: Too big: expected array to have <=64 items/)
  })
})
