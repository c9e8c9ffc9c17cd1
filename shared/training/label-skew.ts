/**
 * Client-side corrections for label-distribution skew: a client that holds only some classes
 * replaces the plain cross-entropy by a loss that stops its local steps from pushing down the
 * classes it never sees, the drift that makes FedAvg slow on label-skewed splits. Each client
 * uses only its own class counts; nothing about its labels leaves it.
 *
 * - FedRS, "restricted softmax" (Li & Zhan, KDD 2021, "FedRS: Federated Learning with
 *   Restricted Softmax for Label Distribution Non-IID Data"): the logit z_c of every class
 *   absent from the client's data is scaled by α ∈ [0, 1] before the softmax, so those classes
 *   get smaller updates. α = 1 is the plain softmax. (The paper's classifier has no bias; here
 *   the whole logit, bias included, is scaled.)
 * - FedLC, logit calibration (Zhang et al., ICML 2022, "Federated Learning with Label
 *   Distribution Skew via Logits Calibration"): the softmax runs on z_c − τ·n_c^(−1/4), n_c the
 *   client's count of class c. A class with n_c = 0 has an infinite offset, i.e. it leaves the
 *   softmax; a rare class must reach a larger logit locally, which counters the bias toward the
 *   client's frequent classes. The normaliser sums over every (present) class, the label's
 *   included, as common implementations do, so the loss is a proper cross-entropy.
 *
 * Both need logits, while blockfed's classifiers end in a softmax layer (Keras's convention for
 * sparse categorical cross-entropy): the logits are recomputed from the last layer's input and
 * its kernel and bias, which works for any model whose last layer is a dense softmax layer.
 */
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import { InvalidInputError } from '../errors/errors.ts'

/** A label-skew correction of the local loss; `none` is plain cross-entropy. */
export type LabelSkew =
  | { method: 'none' }
  | { method: 'fedrs', alpha: number }
  | { method: 'fedlc', tau: number }

/** Throws InvalidInputError naming `what` unless `skew` is a well-formed correction. */
export function checkLabelSkew (skew: LabelSkew, what = 'labelSkew'): void {
  if (typeof skew !== 'object' || skew === null) throw new InvalidInputError(`${what} must be an object { method, … }`)
  if (skew.method === 'none') return
  if (skew.method === 'fedrs') {
    if (!(Number.isFinite(skew.alpha) && skew.alpha >= 0 && skew.alpha <= 1)) throw new InvalidInputError(`${what}.alpha must be in [0, 1], got ${String(skew.alpha)}`)
    return
  }
  if (skew.method === 'fedlc') {
    if (!(Number.isFinite(skew.tau) && skew.tau >= 0)) throw new InvalidInputError(`${what}.tau must be a finite number ≥ 0, got ${String(skew.tau)}`)
    return
  }
  throw new InvalidInputError(`${what}.method must be none, fedrs or fedlc, got ${String((skew as { method?: unknown }).method)}`)
}

/** How many rows of each class `labels` holds (labels are checked to be in 0..classes − 1 by the caller). */
export function classCounts (labels: ArrayLike<number>, classes: number): Int32Array {
  const counts = new Int32Array(classes)
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i] as number
    counts[c] = (counts[c] as number) + 1
  }
  return counts
}

/**
 * The per-class factors FedRS applies to the logits: 1 for a class the client holds, α for one it
 * lacks.
 *
 * @example fedRsScale(Int32Array.of(5, 0, 2), 0.5) // → [1, 0.5, 1]
 */
export function fedRsScale (counts: Int32Array, alpha: number): Float32Array {
  return Float32Array.from(counts, n => n > 0 ? 1 : alpha)
}

/**
 * The offsets FedLC adds to the logits of the classes the client holds, −τ·n_c^(−1/4), with those
 * classes' indices (the others leave the softmax).
 *
 * @example fedLcOffsets(Int32Array.of(16, 0, 1), 1) // → { present: [0, 2], offsets: [−0.5, −1] }
 */
export function fedLcOffsets (counts: Int32Array, tau: number): { present: Int32Array, offsets: Float32Array } {
  const present = Int32Array.from([...counts.keys()].filter(c => (counts[c] as number) > 0))
  const offsets = Float32Array.from(present, c => -tau * (counts[c] as number) ** -0.25)
  return { present, offsets }
}

/**
 * A function from a batch of inputs to the logits of `model`'s last layer, which must be a dense
 * layer with softmax activation; tensors are created on the current tape, so gradients flow to
 * the model's variables.
 */
export function logitsOf (model: tfl.LayersModel): (x: tf.Tensor, training: boolean) => tf.Tensor2D {
  const head = model.layers.at(-1)
  const config = head?.getConfig()
  if (head === undefined || head.getClassName() !== 'Dense' || config?.activation !== 'softmax') {
    throw new InvalidInputError(`a label-skew correction needs a model whose last layer is a dense softmax layer, its last layer is ${head === undefined ? 'missing' : `${head.getClassName()} (${String(config?.activation)})`}`)
  }
  const kernel = head.weights.find(w => w.originalName.endsWith('/kernel'))
  const bias = head.weights.find(w => w.originalName.endsWith('/bias'))
  if (kernel === undefined) throw new InvalidInputError(`the last layer ${head.name} has no kernel`)
  const input = head.input
  if (Array.isArray(input)) throw new InvalidInputError(`the last layer ${head.name} has several inputs`)
  // The sub-model shares the layers (and so the variables) of `model`; it owns no tensor of its
  // own, so it is never disposed (disposing it would free the shared weights).
  const features = input === model.inputs[0] ? undefined : tfl.model({ inputs: model.inputs, outputs: input })
  return (x, training) => {
    const h = features === undefined ? x : features.apply(x, { training }) as tf.Tensor
    const z = tf.matMul(h as tf.Tensor2D, kernel.read() as tf.Tensor2D)
    return (bias === undefined ? z : tf.add(z, bias.read())) as tf.Tensor2D
  }
}

/**
 * The corrected mean cross-entropy of a batch, from its logits and class labels, for a client
 * whose class counts are `counts`. Call inside a tidy / the optimizer's tape.
 */
export function labelSkewLoss (skew: Exclude<LabelSkew, { method: 'none' }>, counts: Int32Array): (logits: tf.Tensor2D, labels: tf.Tensor1D) => tf.Scalar {
  const classes = counts.length
  if (skew.method === 'fedrs') {
    const scale = fedRsScale(counts, skew.alpha)
    return (logits, labels) => {
      const z = tf.mul(logits, tf.tensor1d(scale))
      return crossEntropy(z, tf.oneHot(labels, classes))
    }
  }
  const { present, offsets } = fedLcOffsets(counts, skew.tau)
  // A classes × present 0/1 matrix picks the present columns: z·P for the logits and onehot·P
  // for the labels (every label of this client is present). A product rather than a gather,
  // whose gradient the wasm backend lacks.
  const pick = new Float32Array(classes * present.length)
  present.forEach((c, i) => { pick[c * present.length + i] = 1 })
  return (logits, labels) => {
    const p = tf.tensor2d(pick, [classes, present.length])
    const z = tf.add(tf.matMul(logits, p), tf.tensor1d(offsets))
    return crossEntropy(z, tf.matMul(tf.oneHot(labels, classes), p))
  }
}

/** −mean Σ onehot·logSoftmax(z): cross-entropy from logits, stable for large ones. */
function crossEntropy (z: tf.Tensor, onehot: tf.Tensor): tf.Scalar {
  return tf.neg(tf.mean(tf.sum(tf.mul(onehot, tf.logSoftmax(z)), -1))) as tf.Scalar
}
