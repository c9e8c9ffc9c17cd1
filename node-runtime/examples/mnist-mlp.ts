/**
 * An MNIST classifier for demos and tests: a dense 784-128-64-10 MLP (hidden sizes adjustable,
 * e.g. the 784-200-200-10 "2NN" of McMahan et al. 2017) in tfjs-layers, trained
 * on the `mnist` package's digits, and its five-stage model code (pixels in, digits out).
 */
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import type { ModelCode } from '../../shared/runtime/lifecycle.ts'
import type { ModelFile } from '../../shared/model/types.ts'
import { tfjsFilesFromArtifacts } from '../../shared/formats/tfjs_save.ts'
import { tfjsBackend } from '../engines/tfjs.ts'
import { IMAGE_SIZE, type Digits } from '../data/mnist.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'

/**
 * A compiled (Adam 1e-3) MLP: ReLU layers `hidden_1`, `hidden_2`, … of the given sizes, then a
 * softmax `head` over the 10 digits. `mnistMlp({ hidden: [200, 200] })` is McMahan's 2NN.
 * Kernels start Glorot-normal (tfjs's dense default), biases at zero. With `seed` the kernels
 * are drawn from seeded generators (one per layer, derived from `seed`), so a run that starts
 * from this model is reproducible from its seed; without one, tfjs's unseeded generator is used.
 *
 * @example const model = mnistMlp({ hidden: [200, 200], seed: 1 })
 */
export function mnistMlp (options: { hidden?: number[], seed?: number } = {}): tfl.Sequential {
  const hidden = options.hidden ?? [128, 64]
  if (!hidden.every(n => Number.isInteger(n) && n > 0)) throw new InvalidInputError(`mnistMlp: hidden must be positive integers, got [${hidden.join(', ')}]`)
  const { seed } = options
  if (seed !== undefined && !Number.isInteger(seed)) throw new InvalidInputError(`mnistMlp: seed must be an integer, got ${String(seed)}`)
  const layerSeed = seed === undefined ? undefined : mulberry32(seed)
  // Distinct seeds per layer: equal seeds would draw the same leading values in every kernel.
  const init = (): { kernelInitializer?: ReturnType<typeof tfl.initializers.glorotNormal> } =>
    layerSeed === undefined ? {} : { kernelInitializer: tfl.initializers.glorotNormal({ seed: Math.floor(layerSeed() * 2 ** 32) }) }
  const model = tfl.sequential({ name: 'mnist_mlp' })
  hidden.forEach((units, i) => {
    model.add(tfl.layers.dense({ ...(i === 0 ? { inputShape: [IMAGE_SIZE] } : {}), units, activation: 'relu', name: `hidden_${i + 1}`, ...init() }))
  })
  model.add(tfl.layers.dense({ ...(hidden.length === 0 ? { inputShape: [IMAGE_SIZE] } : {}), units: 10, activation: 'softmax', name: 'head', ...init() }))
  model.compile({ optimizer: tf.train.adam(1e-3), loss: 'sparseCategoricalCrossentropy', metrics: ['accuracy'] })
  return model
}

/** Trains a fresh MLP on `train`; `signal` stops it after the batch under way (tfjs `stopTraining`). */
export async function trainMnistMlp (train: Digits, options: { epochs?: number, batchSize?: number, signal?: AbortSignal } = {}): Promise<tfl.Sequential> {
  const { signal } = options
  await tfjsBackend()
  signal?.throwIfAborted()
  const model = mnistMlp()
  const xs = tf.tensor2d(train.images, [train.count, IMAGE_SIZE])
  const ys = tf.tensor1d(Float32Array.from(train.labels))
  try {
    await model.fit(xs, ys, {
      epochs: options.epochs ?? 3,
      batchSize: options.batchSize ?? 64,
      shuffle: false,
      verbose: 0,
      callbacks: { onBatchEnd: async () => { if (signal?.aborted === true) model.stopTraining = true } }
    })
    signal?.throwIfAborted()
  } catch (err) {
    model.dispose()
    throw err
  } finally {
    tf.dispose([xs, ys])
  }
  return model
}

export async function modelFiles (model: tfl.LayersModel): Promise<ModelFile[]> {
  let files: ModelFile[] = []
  await model.save(tf.io.withSaveHandler(async artifacts => {
    files = tfjsFilesFromArtifacts(artifacts)
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
  }))
  return files
}

/** Model code: images (N × 784 floats) → predicted digits. */
export function mnistDigitsCode (): ModelCode<Float32Array, tf.Tensor2D, tf.Tensor, Int32Array> {
  let model: tfl.LayersModel | undefined
  return {
    init ({ engine }) {
      if (engine.kind !== 'tfjs-layers') throw new Error(`mnist digits code needs a tfjs layers model, got ${engine.kind}`)
      model = engine.model
    },
    preProcess: images => tf.tensor2d(images, [images.length / IMAGE_SIZE, IMAGE_SIZE]),
    async run (x) {
      if (model === undefined) throw new Error('mnist digits code: run before init')
      const out = tf.tidy(() => (model as tfl.LayersModel).predict(x) as tf.Tensor2D)
      x.dispose()
      return out
    },
    async postProcess (probs) {
      const digits = tf.argMax(probs, 1)
      const out = await digits.data() as Int32Array
      tf.dispose([probs, digits])
      return out
    },
    release () { model = undefined }
  }
}

export function accuracy (predicted: Int32Array, labels: Uint8Array): number {
  let right = 0
  for (let i = 0; i < labels.length; i++) if (predicted[i] === labels[i]) right++
  return right / labels.length
}

/** The share of `digits` a model classifies right. */
export async function mnistAccuracy (model: tfl.LayersModel, digits: Digits): Promise<number> {
  await tfjsBackend()
  const predicted = tf.tidy(() => tf.argMax(model.predict(tf.tensor2d(digits.images, [digits.count, IMAGE_SIZE])) as tf.Tensor2D, 1))
  try {
    return accuracy(await predicted.data() as Int32Array, digits.labels)
  } finally {
    predicted.dispose()
  }
}
