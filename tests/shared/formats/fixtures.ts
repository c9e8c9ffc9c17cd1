/**
 * Models for the format tests. Real ones come from npm packages (DESIGN.md, "Data and models for
 * tests"): movenet-lightning (tfjs graph, float16-quantized) from @vladmandic/human, silero VAD
 * (ONNX) from @ricky0123/vad-web. `tinyOnnx` hand-writes a small ONNX model with the
 * protobuf Writer so that external data, packed float/double data, a Constant node and an
 * int64_data tensor (cut out as an opaque tensor) are all covered (field numbers from onnx/onnx.proto).
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import protobuf from 'protobufjs/minimal.js'
import { expect } from 'vitest'
import type { ModelFile } from '../../../shared/model/types.ts'
import { InvalidModelError } from '../../../shared/errors/errors.ts'
import { readModel } from '../../../shared/formats/index.ts'

const root = join(import.meta.dirname, '..', '..', '..', 'node_modules')
export const MOVENET_DIR = join(root, '@vladmandic', 'human', 'models')
export const VAD_DIR = join(root, '@ricky0123', 'vad-web', 'dist')

export function modelFile (dir: string, name: string, as = name): ModelFile {
  const b = readFileSync(join(dir, name))
  return { path: as, bytes: new Uint8Array(b.buffer, b.byteOffset, b.length) }
}

export function movenetFiles (): ModelFile[] {
  return [modelFile(MOVENET_DIR, 'movenet-lightning.json'), modelFile(MOVENET_DIR, 'movenet-lightning.bin')]
}

/** Deterministic bytes (xorshift32), for "random" input that is the same on every run. */
export function pseudoRandomBytes (n: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(n)
  let x = seed >>> 0
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

/** Values of the tiny model's tensors, so tests can compute its output by hand. */
export const TINY = {
  W: Float32Array.from({ length: 12 }, (_, i) => (i - 5) / 4), // [4, 3], external data
  B: Float32Array.from([0.5, -1, 2]), // [3], packed float_data
  S: Float32Array.from([2, 0.25, -1]), // [3], Constant node raw_data
  D: Float64Array.from([0.125, 3, -0.5]), // [3], packed double_data, Cast to float
  externalOffset: 64 // W sits after 64 zero bytes of alignment padding
}

type W = protobuf.Writer

/** Y = Reshape(((X·W + B) · S) + Cast(D), shape=[1, 3]), X: float32 [N, 4]. */
export function tinyOnnx (options: { rawLength?: number, sharedExternal?: boolean, location?: string, externalOffset?: number } = {}): { onnx: ModelFile, external: ModelFile } {
  const externalOffset = options.externalOffset ?? TINY.externalOffset
  const bytes = (v: ArrayBufferView): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
  const msg = (w: W, field: number, body: (w: W) => void): void => { body(w.uint32(field << 3 | 2).fork()); w.ldelim() }
  const str = (w: W, field: number, s: string): void => { w.uint32(field << 3 | 2).string(s) }
  const varint = (w: W, field: number, v: number): void => { w.uint32(field << 3).int64(v) }
  const packedDims = (w: W, dims: number[]): void => msg(w, 1, w => { for (const d of dims) w.int64(d) })
  const node = (w: W, op: string, inputs: string[], output: string, attrs: (w: W) => void = () => {}): void =>
    msg(w, 1, w => {
      for (const i of inputs) str(w, 1, i)
      str(w, 2, output)
      str(w, 3, `${op}_${output}`)
      str(w, 4, op)
      attrs(w)
    })
  const valueInfo = (w: W, field: number, name: string, dims: Array<number | string>): void =>
    msg(w, field, w => {
      str(w, 1, name)
      msg(w, 2, w => msg(w, 1, w => {
        varint(w, 1, 1)
        msg(w, 2, w => { for (const d of dims) msg(w, 1, w => typeof d === 'number' ? varint(w, 1, d) : str(w, 2, d)) })
      }))
    })

  const w = protobuf.Writer.create()
  varint(w, 1, 8) // ir_version
  str(w, 2, 'blockfed-test')
  str(w, 3, '1')
  msg(w, 7, g => {
    node(g, 'Constant', [], 'S', n => msg(n, 5, a => {
      str(a, 1, 'value')
      msg(a, 5, t => { packedDims(t, [3]); varint(t, 2, 1); str(t, 8, 'S_value'); t.uint32(9 << 3 | 2).bytes(bytes(TINY.S)) })
      varint(a, 20, 4) // AttributeType.TENSOR
    }))
    node(g, 'MatMul', ['X', 'W'], 'XW')
    node(g, 'Add', ['XW', 'B'], 'XWB')
    node(g, 'Mul', ['XWB', 'S'], 'M')
    node(g, 'Cast', ['D'], 'D32', n => msg(n, 5, a => { str(a, 1, 'to'); varint(a, 3, 1); varint(a, 20, 2) }))
    node(g, 'Add', ['M', 'D32'], 'Z')
    node(g, 'Reshape', ['Z', 'shape'], 'Y')
    str(g, 2, 'tiny')
    msg(g, 5, t => { // W: external data
      packedDims(t, [4, 3]); varint(t, 2, 1); str(t, 8, 'W')
      for (const [k, v] of [['location', options.location ?? 'tiny.bin'], ['offset', String(externalOffset)], ['length', '48']] as const) {
        msg(t, 13, e => { str(e, 1, k); str(e, 2, v) })
      }
      varint(t, 14, 1)
    })
    if (options.sharedExternal === true) {
      msg(g, 5, t => { // W2: the same external bytes as W, when asked
        packedDims(t, [4, 3]); varint(t, 2, 1); str(t, 8, 'W2')
        for (const [k, v] of [['location', 'tiny.bin'], ['offset', String(TINY.externalOffset)], ['length', '48']] as const) {
          msg(t, 13, e => { str(e, 1, k); str(e, 2, v) })
        }
        varint(t, 14, 1)
      })
    }
    msg(g, 5, t => { // B: packed float_data, or raw_data of the wrong length when asked
      packedDims(t, [3]); varint(t, 2, 1); str(t, 8, 'B')
      if (options.rawLength === undefined) t.uint32(4 << 3 | 2).bytes(bytes(TINY.B))
      else t.uint32(9 << 3 | 2).bytes(new Uint8Array(options.rawLength))
    })
    msg(g, 5, t => { packedDims(t, [3]); varint(t, 2, 11); str(t, 8, 'D'); t.uint32(10 << 3 | 2).bytes(bytes(TINY.D)) })
    msg(g, 5, t => { packedDims(t, [2]); varint(t, 2, 7); str(t, 8, 'shape'); msg(t, 7, p => { p.int64(-1); p.int64(3) }) })
    valueInfo(g, 11, 'X', ['N', 4])
    valueInfo(g, 12, 'Y', ['N', 3])
  })
  msg(w, 8, o => { str(o, 1, ''); varint(o, 2, 13) })

  const external = new Uint8Array(externalOffset + 48)
  external.set(bytes(TINY.W), externalOffset)
  return { onnx: { path: 'tiny.onnx', bytes: Uint8Array.from(w.finish()) }, external: { path: 'tiny.bin', bytes: external } }
}

/** What the tiny model computes, in float32 steps, with its tensors as `t` says. */
export function tinyExpected (x: Float32Array, t: Pick<typeof TINY, 'W' | 'B' | 'S' | 'D'> = TINY): Float32Array {
  const f = Math.fround
  const rows = x.length / 4
  const y = new Float32Array(rows * 3)
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < 3; j++) {
      let acc = 0
      for (let k = 0; k < 4; k++) acc = f(acc + f(x[r * 4 + k]! * t.W[k * 3 + j]!))
      y[r * 3 + j] = f(f(f(acc + t.B[j]!) * t.S[j]!) + f(t.D[j]!))
    }
  }
  return y
}

/** The InvalidModelError that reading `files` throws (fails the test if it throws nothing or else). */
export async function readError (files: ModelFile[]): Promise<InvalidModelError> {
  try {
    await readModel(files)
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidModelError)
    return e as InvalidModelError
  }
  throw new Error('readModel accepted a bad model')
}

/** The bytes of an ONNX model (ir_version 8, opset 13) whose graph `body` writes (field numbers from onnx/onnx.proto). */
export function onnxBytes (body: (graph: protobuf.Writer) => void): Uint8Array {
  const w = protobuf.Writer.create()
  w.uint32(1 << 3).int64(8)
  w.uint32(7 << 3 | 2).fork()
  w.uint32(2 << 3 | 2).string('g')
  body(w)
  w.ldelim()
  w.uint32(8 << 3 | 2).fork().uint32(2 << 3).int64(13).ldelim()
  return Uint8Array.from(w.finish())
}
