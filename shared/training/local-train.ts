/**
 * A client's local training in a federated round: minibatch training of only the tensors the
 * coordinator names, starting from the round's global weights, returning the update as
 * `new − base` (DESIGN.md, "Train and aggregate").
 *
 * - FedAvg's ClientUpdate (McMahan et al. 2017, Algorithm 1): E epochs of minibatch steps
 *   over the client's data, reshuffled every epoch.
 * - FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks", eq. 2): with
 *   `proxMu` = μ > 0 the client minimises h(w) = F(w) + μ/2 ‖w − wᵗ‖², wᵗ the global weights
 *   the round started from, which keeps a client on skewed data near the global model.
 * - FedRS / FedLC (label-skew.ts): with `labelSkew` the cross-entropy is replaced by a restricted
 *   or calibrated one computed from the client's own class counts.
 * - FedMix's NaiveMix (mean-mix.ts): with `meanMix` every row is mixed with a global class mean
 *   and trained against the matching soft target.
 *
 * A custom loop rather than `model.fit`: fit trains every trainable layer and cannot add a term
 * that depends on the starting weights. Here `optimizer.minimize` gets an explicit variable list,
 * so tensors not named are never written (bit-identical after training).
 *
 * Named tensors are of two kinds. Parameters (kernels, biases, BatchNorm's gamma and beta) get
 * the optimizer's steps and, under FedProx, the proximal term. Layer state (BatchNorm's moving
 * mean and variance, a layer's `nonTrainableWeights` in Keras terms) has no gradient: the layer
 * itself updates it in each training-mode forward pass. It stays out of the optimizer's list and
 * out of the proximal term (an Adam step on a variance could drive it below 0); its change still
 * travels in the update, so the server averages it like the rest.
 *
 * Isomorphic: tfjs-core/layers only. The data order comes from the seeded generator, so a run is
 * reproducible bit for bit on a deterministic backend (cpu, wasm). Layers that draw random numbers
 * while training (dropout) use tfjs's own unseeded generator and are not reproducible.
 */
import * as tf from '@tensorflow/tfjs-core'
import type { LayersModel, LayerVariable } from '@tensorflow/tfjs-layers'
import { InvalidInputError } from '../errors/errors.ts'
import { mulberry32 } from '../random/seeded.ts'
import { checkData, rowSize, type TrainingData } from './data.ts'
import { findWeights } from './weights.ts'
import { shuffleInPlace } from '../random/shuffle.ts'
import { checkLabelSkew, classCounts, labelSkewLoss, logitsOf, type LabelSkew } from './label-skew.ts'
import { checkClassMeans, mixClasses, naiveMixBatch, type ClassMeans } from './mean-mix.ts'
import { DEFAULT_MOMENTUM, PROBABILITY_EPSILON, YIELD_EVERY_MS } from './constants.ts'

export type OptimizerName = 'sgd' | 'adam' | 'momentum'

/**
 * 'sparseCategoricalCrossentropy': the model outputs class probabilities (a softmax head, as
 * Keras expects for this loss without `fromLogits`), `ys` holds one class index per row.
 * 'meanSquaredError': `ys` holds `count` × output size targets.
 */
export type LossName = 'sparseCategoricalCrossentropy' | 'meanSquaredError'

export interface TrainProgress {
  /** Current epoch, from 1. */
  epoch: number
  /** Batches done in this epoch, from 1 to `batches`. */
  batch: number
  batches: number
  /** The data loss of this batch (without the proximal term). */
  loss: number
}

export interface TrainLocalOptions {
  model: LayersModel
  /** Names of the tensors to train (`hidden_1/kernel`); the update holds them in this order. */
  trainable: string[]
  data: TrainingData
  epochs: number
  batchSize: number
  learningRate: number
  optimizer: OptimizerName
  loss: LossName
  /** Momentum of the 'momentum' optimizer; default 0.9. */
  momentum?: number
  /** FedProx μ; 0 (default) is plain FedAvg local training. */
  proxMu?: number
  /**
   * A label-skew correction of the cross-entropy (FedRS or FedLC, label-skew.ts); default none.
   * Needs 'sparseCategoricalCrossentropy' and a model ending in a dense softmax layer.
   */
  labelSkew?: LabelSkew
  /**
   * NaiveMix (mean-mix.ts): each row is mixed as (1 − λ)·x + λ·x̄_j with a global class mean,
   * j drawn from the classes `means` has, against the soft target. Needs
   * 'sparseCategoricalCrossentropy', no `labelSkew`, and means for the model's classes and rows.
   */
  meanMix?: { lambda: number, means: ClassMeans }
  /** Seeds the per-epoch shuffles (and NaiveMix's class draws). */
  seed: number
  /** Checked between batches; training stops by throwing its reason. */
  signal?: AbortSignal
  onProgress?: (progress: TrainProgress) => void
}

export interface TrainLocalResult {
  /** new − base for the tensors named in `trainable`, concatenated in that order. */
  deltas: Float32Array
  /** Rows trained on: the client's weight in FedAvg's average. */
  samples: number
  /** Mean data loss over the last epoch, weighted by batch size. */
  meanLoss: number
  /** Mean data loss of every epoch, in order. */
  epochLosses: number[]
}

const OPTIMIZERS: readonly OptimizerName[] = ['sgd', 'adam', 'momentum']
const LOSSES: readonly LossName[] = ['sparseCategoricalCrossentropy', 'meanSquaredError']

/**
 * Trains the tensors named in `trainable` on `data` and returns their change.
 *
 * @example
 * const { deltas, samples } = await trainLocal({
 *   model, trainable: ['head/kernel', 'head/bias'], data, epochs: 1, batchSize: 32,
 *   learningRate: 0.05, optimizer: 'sgd', loss: 'sparseCategoricalCrossentropy', seed: 1
 * })
 */
export async function trainLocal (options: TrainLocalOptions): Promise<TrainLocalResult> {
  checkOptions(options)
  const { model, data, epochs, batchSize, loss, seed, signal, onProgress } = options
  const proxMu = options.proxMu ?? 0
  const weights = findWeights(model, options.trainable, 'trainable')
  const state = layerState(model)
  const shapes = modelShapes(model, data, loss)
  const skew = options.labelSkew ?? { method: 'none' }
  const skewed = skew.method === 'none' ? undefined : { logits: logitsOf(model), loss: labelSkewLoss(skew, classCounts(data.ys, shapes.classes)) }
  const mixing = options.meanMix === undefined ? undefined : { ...options.meanMix, classes: mixClasses(options.meanMix.means) }
  if (mixing !== undefined && (mixing.means.classes !== shapes.classes || mixing.means.features !== rowSize(data.featureShape))) {
    throw new InvalidInputError(`meanMix: means for ${mixing.means.classes} classes × ${mixing.means.features} features, the model has ${shapes.classes} classes and the data ${rowSize(data.featureShape)} features a row`)
  }
  signal?.throwIfAborted()

  const vars = weights.map(w => w.read() as tf.Variable)
  const params = weights.filter(w => !state.has(w)).map(w => w.read() as tf.Variable)
  const wasTrainable = params.map(v => v.trainable)
  const baseValues = await Promise.all(vars.map(async v => await v.data() as Float32Array))
  // FedProx's anchor wᵗ, on the device, only when the proximal term is on.
  const base = proxMu > 0 ? params.map(v => tf.clone(v)) : []
  let optimizer: tf.Optimizer | undefined
  try {
    // The coordinator decides what is trained, whatever the layers' own `trainable` flags say.
    for (const v of params) v.trainable = true
    optimizer = makeOptimizer(options.optimizer, options.learningRate, options.momentum ?? DEFAULT_MOMENTUM)

    const objective = (x: tf.Tensor, y: tf.Tensor, keepDataLoss: (l: tf.Scalar) => void): tf.Scalar => {
      const dataLoss = skewed !== undefined
        ? skewed.loss(skewed.logits(x, true), y as tf.Tensor1D)
        : mixing !== undefined
          ? softCrossEntropy(model.apply(x, { training: true }) as tf.Tensor, y)
          : lossValue(loss, model.apply(x, { training: true }) as tf.Tensor, y, shapes.classes)
      // FedProx's term μ/2·‖w − wᵗ‖² is over parameters: layer state alone takes no step, has no term.
      if (proxMu === 0 || params.length === 0) return dataLoss
      keepDataLoss(tf.keep(dataLoss))
      const distance = tf.addN(params.map((v, i) => tf.sum(tf.squaredDifference(v, base[i] as tf.Tensor))))
      return tf.add(dataLoss, tf.mul(proxMu / 2, distance))
    }

    const random = mulberry32(seed)
    const order = Int32Array.from({ length: data.count }, (_, i) => i)
    const batches = Math.ceil(data.count / batchSize)
    const epochLosses: number[] = []
    let lastYield = Date.now()
    for (let epoch = 1; epoch <= epochs; epoch++) {
      shuffleInPlace(order, random)
      let sum = 0
      for (let b = 0; b < batches; b++) {
        signal?.throwIfAborted()
        const start = b * batchSize
        const end = Math.min(start + batchSize, data.count)
        const [x, y] = batchTensors(data, order.subarray(start, end), shapes, mixing === undefined ? undefined : rows => naiveMixBatch(rows.xs, rows.labels, mixing.means, mixing.classes, mixing.lambda, random))
        let dataLoss: tf.Scalar | undefined
        let total: tf.Scalar | undefined
        let value: number
        try {
          // Only layer state named: forward passes in training mode, which update it, and no step.
          total = params.length > 0
            ? optimizer.minimize(() => objective(x, y, l => { dataLoss = l }), true, params) as tf.Scalar
            : tf.tidy(() => objective(x, y, l => { dataLoss = l }))
          value = (await (dataLoss ?? total).data())[0] as number
        } finally {
          tf.dispose([x, y, ...[total, dataLoss as tf.Scalar | undefined].filter(t => t !== undefined)])
        }
        sum += value * (end - start)
        onProgress?.({ epoch, batch: b + 1, batches, loss: value })
        if (Date.now() - lastYield >= YIELD_EVERY_MS) {
          await nextTask()
          lastYield = Date.now()
        }
      }
      epochLosses.push(sum / data.count)
    }

    const deltas = new Float32Array(baseValues.reduce((n, v) => n + v.length, 0))
    let offset = 0
    for (const [i, v] of vars.entries()) {
      const now = await v.data() as Float32Array
      const before = baseValues[i] as Float32Array
      for (let j = 0; j < now.length; j++) deltas[offset + j] = (now[j] as number) - (before[j] as number)
      offset += now.length
    }
    return { deltas, samples: data.count, meanLoss: epochLosses.at(-1) as number, epochLosses }
  } finally {
    disposeOptimizer(optimizer)
    tf.dispose(base)
    params.forEach((v, i) => { v.trainable = wasTrainable[i] as boolean })
  }
}

/**
 * The model's layer-state weights (Keras `nonTrainableWeights` of a layer that is itself
 * trainable: BatchNorm's moving statistics). A frozen layer reports all its weights as
 * non-trainable, so each leaf layer is unfrozen for the look and frozen again; nested models
 * are walked, as their own frozen flags would hide a layer's parameters the same way.
 */
function layerState (model: LayersModel): Set<LayerVariable> {
  const state = new Set<LayerVariable>()
  const visit = (layers: LayersModel['layers']): void => {
    for (const layer of layers) {
      const nested = (layer as { layers?: unknown }).layers
      if (Array.isArray(nested)) {
        visit(nested as LayersModel['layers'])
        continue
      }
      const frozen = !layer.trainable
      if (frozen) layer.trainable = true
      try {
        for (const w of layer.nonTrainableWeights) state.add(w)
      } finally {
        if (frozen) layer.trainable = false
      }
    }
  }
  visit(model.layers)
  return state
}

/**
 * One batch as fresh tensors, rows copied on the JS side: cheaper than `tf.gather` from a
 * device-resident copy of the whole dataset, which the gradient tape then tracks (measured on
 * wasm: +50% per step for a 784-200-200-10 MLP at batch 32).
 */
function batchTensors (data: TrainingData, rows: Int32Array, shapes: { output: number[], classes: number }, mix?: (batch: { xs: Float32Array, labels: ArrayLike<number> }) => Float32Array): [tf.Tensor, tf.Tensor] {
  const size = rowSize(data.featureShape)
  const width = shapes.classes > 0 ? 1 : rowSize(shapes.output)
  const xs = new Float32Array(rows.length * size)
  const ys = shapes.classes > 0 ? new Int32Array(rows.length) : new Float32Array(rows.length * width)
  for (let r = 0; r < rows.length; r++) {
    const i = rows[r] as number
    xs.set(data.xs.subarray(i * size, (i + 1) * size), r * size)
    ys.set(data.ys.subarray(i * width, (i + 1) * width), r * width)
  }
  if (mix !== undefined) {
    // Mixed rows carry soft targets, rows × classes.
    const targets = mix({ xs, labels: ys })
    return [tf.tensor(xs, [rows.length, ...data.featureShape], 'float32'), tf.tensor2d(targets, [rows.length, shapes.classes], 'float32')]
  }
  const x = tf.tensor(xs, [rows.length, ...data.featureShape], 'float32')
  const y = shapes.classes > 0 ? tf.tensor1d(ys, 'int32') : tf.tensor(ys, [rows.length, ...shapes.output], 'float32')
  return [x, y]
}

function makeOptimizer (name: OptimizerName, learningRate: number, momentum: number): tf.Optimizer {
  if (name === 'sgd') return tf.train.sgd(learningRate)
  if (name === 'momentum') return tf.train.momentum(learningRate, momentum)
  return tf.train.adam(learningRate)
}

/**
 * tfjs-core 4.22's MomentumOptimizer.dispose() frees its accumulators and momentum scalar but not
 * the learning-rate scalar `c` its SGD base class keeps, so that is freed here (a second dispose
 * of a tensor is a no-op, so this stays right once upstream fixes it).
 */
function disposeOptimizer (optimizer: tf.Optimizer | undefined): void {
  if (optimizer === undefined) return
  optimizer.dispose()
  const c = (optimizer as unknown as { c?: unknown }).c
  if (c instanceof tf.Tensor) c.dispose()
}

function lossValue (loss: LossName, out: tf.Tensor, y: tf.Tensor, classes: number): tf.Scalar {
  if (loss === 'meanSquaredError') return tf.mean(tf.squaredDifference(out, y))
  return softCrossEntropy(out, tf.oneHot(y as tf.Tensor1D, classes))
}

/** Cross-entropy against soft targets (rows × classes; one-hot for hard labels), probabilities clipped away from 0 and 1. */
function softCrossEntropy (out: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  const p = tf.clipByValue(out, PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON)
  return tf.neg(tf.mean(tf.sum(tf.mul(targets, tf.log(p)), -1))) as tf.Scalar
}

/** A macrotask turn, so timers and sockets (WebSocket pings) get served between batches. */
function nextTask (): Promise<void> {
  return new Promise(resolve => {
    if (typeof globalThis.setImmediate === 'function') globalThis.setImmediate(resolve)
    else setTimeout(resolve, 0)
  })
}

function checkOptions (o: TrainLocalOptions): void {
  if (typeof o !== 'object' || o === null) throw new InvalidInputError('trainLocal needs an options object')
  if (typeof o.model !== 'object' || o.model === null || !Array.isArray(o.model.weights)) throw new InvalidInputError('model must be a tfjs LayersModel')
  checkData(o.data, 'data')
  const positiveInteger = (name: 'epochs' | 'batchSize'): void => {
    if (!Number.isInteger(o[name]) || o[name] < 1) throw new InvalidInputError(`${name} must be a positive integer, got ${String(o[name])}`)
  }
  positiveInteger('epochs')
  positiveInteger('batchSize')
  if (!(Number.isFinite(o.learningRate) && o.learningRate > 0)) throw new InvalidInputError(`learningRate must be a positive number, got ${String(o.learningRate)}`)
  if (!OPTIMIZERS.includes(o.optimizer)) throw new InvalidInputError(`optimizer must be one of ${OPTIMIZERS.join(', ')}, got ${String(o.optimizer)}`)
  if (!LOSSES.includes(o.loss)) throw new InvalidInputError(`loss must be one of ${LOSSES.join(', ')}, got ${String(o.loss)}`)
  if (o.momentum !== undefined && !(Number.isFinite(o.momentum) && o.momentum >= 0 && o.momentum < 1)) {
    throw new InvalidInputError(`momentum must be in [0, 1), got ${String(o.momentum)}`)
  }
  if (o.proxMu !== undefined && !(Number.isFinite(o.proxMu) && o.proxMu >= 0)) throw new InvalidInputError(`proxMu must be a number ≥ 0, got ${String(o.proxMu)}`)
  if (o.labelSkew !== undefined) {
    checkLabelSkew(o.labelSkew, 'labelSkew')
    if (o.labelSkew.method !== 'none' && o.loss !== 'sparseCategoricalCrossentropy') throw new InvalidInputError(`labelSkew ${o.labelSkew.method} corrects a classification loss; it needs loss sparseCategoricalCrossentropy, got ${o.loss}`)
  }
  if (o.meanMix !== undefined) {
    if (typeof o.meanMix !== 'object' || o.meanMix === null) throw new InvalidInputError('meanMix must be an object { lambda, means }')
    if (!(Number.isFinite(o.meanMix.lambda) && o.meanMix.lambda > 0 && o.meanMix.lambda < 1)) throw new InvalidInputError(`meanMix.lambda must be in (0, 1), got ${String(o.meanMix.lambda)}`)
    checkClassMeans(o.meanMix.means, 'meanMix.means')
    if (o.loss !== 'sparseCategoricalCrossentropy') throw new InvalidInputError(`meanMix mixes class labels; it needs loss sparseCategoricalCrossentropy, got ${o.loss}`)
    if (o.labelSkew !== undefined && o.labelSkew.method !== 'none') throw new InvalidInputError(`meanMix and labelSkew ${o.labelSkew.method} cannot be combined`)
  }
  if (!Number.isInteger(o.seed)) throw new InvalidInputError(`seed must be an integer, got ${String(o.seed)}`)
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new InvalidInputError('signal must be an AbortSignal')
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new InvalidInputError('onProgress must be a function')
}

/** Checks the data against the model's input and output; returns the output row shape and class count. */
function modelShapes (model: LayersModel, data: TrainingData, loss: LossName): { output: number[], classes: number } {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) throw new InvalidInputError(`model must have one input and one output, it has ${model.inputs.length} and ${model.outputs.length}`)
  const input = (model.inputs[0] as (typeof model.inputs)[number]).shape.slice(1)
  const fits = input.length === data.featureShape.length && input.every((d, i) => d === null || d === data.featureShape[i])
  if (!fits) throw new InvalidInputError(`data.featureShape [${data.featureShape.join(', ')}] does not fit the model's input [${input.map(d => d ?? '?').join(', ')}]`)
  const output = (model.outputs[0] as (typeof model.outputs)[number]).shape.slice(1)
  if (output.some(d => d === null)) throw new InvalidInputError(`the model's output shape [${output.map(d => d ?? '?').join(', ')}] is not fixed`)
  const outputShape = output as number[]
  if (loss === 'meanSquaredError') {
    if (data.ys.length !== data.count * rowSize(outputShape)) {
      throw new InvalidInputError(`data.ys has ${data.ys.length} values; meanSquaredError needs count × ${rowSize(outputShape)} targets`)
    }
    return { output: outputShape, classes: 0 }
  }
  if (outputShape.length !== 1) throw new InvalidInputError(`sparseCategoricalCrossentropy needs a model output of one axis of class probabilities, got [${outputShape.join(', ')}]`)
  const classes = outputShape[0] as number
  if (data.ys.length !== data.count) throw new InvalidInputError(`data.ys has ${data.ys.length} values; sparseCategoricalCrossentropy needs one class label per row (${data.count})`)
  for (let i = 0; i < data.ys.length; i++) {
    const y = data.ys[i] as number
    if (!(Number.isInteger(y) && y >= 0 && y < classes)) throw new InvalidInputError(`data.ys[${i}] = ${y} is not a class index in 0..${classes - 1}`)
  }
  return { output: outputShape, classes }
}
