/**
 * applyUpdate: a block is new when its trainable tensors moved beyond the threshold, whatever
 * else shares the block (non-float tensors, quantized tensors of odd length before it).
 */
import { describe, it, expect } from 'vitest'
import * as tfl from '@tensorflow/tfjs-layers'
import { applyUpdate } from '../../coordinator/rounds/apply.ts'
import { modelFiles } from '../../node-runtime/examples/mnist-mlp.ts'
import { readModel } from '../../shared/formats/index.ts'
import { partition } from '../../shared/blocks/partition.ts'
import { readTrainable, trainableLayout } from '../../shared/rounds/trainable.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import type { NormalisedModel, TensorInfo } from '../../shared/model/types.ts'

const kernel: TensorInfo = { name: 'dense_2/kernel', dtype: 'float32', shape: [4, 4], byteLength: 64, layer: 'dense_2' }
const bias: TensorInfo = { name: 'dense_2/bias', dtype: 'float32', shape: [4], byteLength: 16, layer: 'dense_2' }

/** Float32 tensors hold 0.5; others the bytes `other` gives. */
function model (tensors: TensorInfo[], other: (t: TensorInfo) => Uint8Array = t => new Uint8Array(t.byteLength).fill(1)): NormalisedModel {
  const weights = new Uint8Array(tensors.reduce((n, t) => n + t.byteLength, 0))
  let at = 0
  for (const t of tensors) {
    weights.set(t.dtype === 'float32' && t.quantization === undefined ? new Uint8Array(new Float32Array(t.byteLength / 4).fill(0.5).buffer) : other(t), at)
    at += t.byteLength
  }
  return { format: 'tfjs-layers', topology: { kind: 'tfjs', modelJson: '{}', weightFiles: [] }, tensors, weights, metadata: { layers: [] } } as unknown as NormalisedModel
}

function step (base: NormalisedModel, by: number, threshold = 0.01): { changed: number[], kept: Float32Array, change: number[] } {
  const plans = partition(base.tensors, { targetBytes: 1 << 20, maxBytes: 2 << 20 })
  const layout = trainableLayout(base.tensors, ['dense_2'])
  const values = readTrainable(base.tensors, base.weights, layout).map(v => v + by)
  const applied = applyUpdate(base, plans, layout, values, threshold)
  return { changed: applied.changed, kept: readTrainable(base.tensors, applied.model.weights, layout), change: applied.relativeChange }
}

describe('applyUpdate', () => {
  it.each([
    ['float32 tensors only', [kernel, bias], undefined],
    // A uint8-quantized tensor of 3 bytes first: the head starts at byte 3.
    ['a head that does not start at a multiple of 4', [{ name: 'embed_1/e', dtype: 'float32', shape: [3, 1], byteLength: 3, layer: 'embed_1', quantization: { dtype: 'uint8', scale: 0.1, min: 0 } }, kernel, bias], undefined],
    // int32 −1 reads as float32 NaN.
    ['an int32 tensor holding −1 in the block', [kernel, { name: 'dense_2/shape', dtype: 'int32', shape: [2], byteLength: 8, layer: 'dense_2' }], () => new Uint8Array(new Int32Array([-1, 4]).buffer)],
    // 0x7f7f7f7f reads as ≈ 3.4e38: its square is Infinity.
    ['a quantized tensor of 0x7f bytes in the block', [kernel, { name: 'dense_2/table', dtype: 'float32', shape: [8], byteLength: 8, layer: 'dense_2', quantization: { dtype: 'uint8', scale: 1, min: 0 } }], (t: TensorInfo) => new Uint8Array(t.byteLength).fill(0x7f)]
  ] as Array<[string, TensorInfo[], ((t: TensorInfo) => Uint8Array) | undefined]>)('keeps a trained block with %s', (_, tensors, other) => {
    const base = model(tensors, other)
    const { changed, kept, change } = step(base, 1)
    expect(changed).toEqual([0])
    // Every trainable value moved by +1 on 0.5: ‖Δ‖/‖w‖ = 1 / 0.5 = 2.
    expect(change[0]).toBeCloseTo(2, 6)
    expect([...kept].every(v => v === 1.5)).toBe(true)
  })

  it('gives a block below the threshold its base bytes back', () => {
    const base = model([kernel, bias])
    const { changed, kept } = step(base, 1e-4) // 2e-4 relative, threshold 0.01
    expect(changed).toEqual([])
    expect([...kept].every(v => v === 0.5)).toBe(true)
  })

  it('hands back what the threshold held back as the residual, which the next call adds: agreeing rounds below the threshold move the block once their sum passes it (review 48a)', () => {
    const base = model([kernel, bias])
    const plans = partition(base.tensors, { targetBytes: 1 << 20, maxBytes: 2 << 20 })
    const layout = trainableLayout(base.tensors, ['dense_2'])
    const by = (m: NormalisedModel, d: number): Float32Array => readTrainable(m.tensors, m.weights, layout).map(v => v + d)
    // 0.004 on 0.5 is 0.8 % relative, under 1 %: held back, whole.
    const first = applyUpdate(base, plans, layout, by(base, 0.004), 0.01)
    expect(first.changed).toEqual([])
    expect([...(first.residual ?? [])].every(v => Math.abs(v - 0.004) < 1e-7)).toBe(true)
    // The second: 1.6 % with the first's carried, published as both.
    const second = applyUpdate(first.model, plans, layout, by(first.model, 0.004), 0.01, first.residual)
    expect(second.changed).toEqual([0])
    expect(second.relativeChange[0]).toBeCloseTo(0.016, 5)
    expect([...readTrainable(base.tensors, second.model.weights, layout)].every(v => Math.abs(v - 0.508) < 1e-6)).toBe(true)
    expect(second.residual).toBeUndefined()
    expect(() => applyUpdate(base, plans, layout, by(base, 0), 0.01, new Float32Array(3))).toThrow(/a residual of 3 values for 20 trainable values/)
  })

  it('moves a large kernel as FedAvg says over many rounds whose every step is under the threshold (review 48a)', () => {
    // The review's case: a 512×512 Glorot kernel, clients agreeing every round on a step of 8·10⁻⁷
    // of ‖w‖, the default threshold 10⁻⁶. Without the residual, 500 rounds left it exactly as it was.
    const n = 512
    const big: TensorInfo = { name: 'dense_2/kernel', dtype: 'float32', shape: [n, n], byteLength: n * n * 4, layer: 'dense_2' }
    const random = mulberry32(3)
    const w0 = Float32Array.from({ length: n * n }, () => (random() * 2 - 1) * Math.sqrt(3 / n))
    let current: NormalisedModel = { ...model([big]), weights: new Uint8Array(w0.buffer.slice(0)) }
    const plans = partition(current.tensors)
    const layout = trainableLayout(current.tensors, ['dense_2'])
    const norm = Math.sqrt(w0.reduce((s, x) => s + x * x, 0))
    const direction = Float32Array.from({ length: n * n }, () => random() * 2 - 1)
    const dn = Math.sqrt(direction.reduce((s, x) => s + x * x, 0))
    const step = direction.map(x => x / dn * 8e-7 * norm)
    let residual: Float32Array | undefined
    let published = 0
    for (let r = 0; r < 100; r++) {
      const values = readTrainable(current.tensors, current.weights, layout).map((v, i) => v + (step[i] as number))
      const applied = applyUpdate(current, plans, layout, values, 1e-6, residual)
      published += applied.changed.length
      current = applied.model
      residual = applied.residual
    }
    // Published every second round (two steps pass 10⁻⁶), and the kernel moved by 100 steps, as
    // FedAvg's would: within float32's rounding of each addition (an element's two steps, ≈ 7·10⁻⁸
    // on ≈ 0.04, round to a few per cent), in the same direction.
    expect(published).toBe(50)
    const moved = readTrainable(current.tensors, current.weights, layout)
    let along = 0
    let sq = 0
    for (let i = 0; i < moved.length; i++) {
      const d = (moved[i] as number) - (w0[i] as number)
      along += d * (step[i] as number)
      sq += d * d
    }
    const stepNorm = 8e-7 * norm
    expect(Math.abs(Math.sqrt(sq) / (100 * stepNorm) - 1)).toBeLessThan(0.05)
    expect(along / (Math.sqrt(sq) * stepNorm)).toBeGreaterThan(0.99)
    expect(residual).toBeUndefined()
  })

  it('floors a BatchNorm moving variance the mean delta took below 0, and only that', async () => {
    // DP noise in the mean delta can exceed a variance; published negative, BN outputs NaN.
    // The moving mean, beside it in the same layer, may well be negative.
    const net = tfl.sequential()
    net.add(tfl.layers.dense({ inputShape: [3], units: 4, name: 'hidden' }))
    net.add(tfl.layers.batchNormalization({ name: 'norm' }))
    const base = await readModel(await modelFiles(net))
    net.dispose()
    const layout = trainableLayout(base.tensors, undefined)
    const values = new Float32Array(layout.parameters).fill(-0.5)
    const applied = applyUpdate(base, partition(base.tensors, { targetBytes: 1 << 20, maxBytes: 2 << 20 }), layout, values, 0)
    const published = readTrainable(base.tensors, applied.model.weights, layout)
    const variance = layout.names.indexOf('norm/moving_variance')
    layout.names.forEach((name, k) => {
      const start = layout.offsets[k] as number
      const end = layout.offsets[k + 1] ?? layout.parameters
      expect([...new Set(published.subarray(start, end))], name).toEqual([k === variance ? 0 : -0.5])
    })
    expect(values.every(v => v === -0.5)).toBe(true)
  })

  it.each([NaN, Infinity, -Infinity])('refuses new values moved by %s, instead of calling the block unchanged or publishing it', by => {
    expect(() => step(model([kernel, bias]), by)).toThrow(new RegExp(`new trainable values: coordinate 0 is ${String(by)}`))
  })
})
