/**
 * Mean-augmented local training for label-skewed clients: FedMix's NaiveMix (Yoon et al., ICLR
 * 2021, "FedMix: Approximation of Mixup under Mean Augmented Federated Learning", §3.2). A client
 * holding two of ten classes never sees the other eight, so its steps pull every feature toward
 * its own classes (the drift that keeps FedAvg slow on such splits). NaiveMix trains on
 *
 *   x̃ = (1 − λ)·x + λ·x̄_j,  ỹ = (1 − λ)·onehot(y) + λ·onehot(j)
 *
 * with x̄_j the mean input of class j over *all* clients, j drawn uniformly from the classes some
 * client holds: every local batch carries a little evidence of every class.
 *
 * FedMix has clients exchange their own local means; here the means come out of the round's
 * secure sum instead (DESIGN.md, pipeline 5): a client appends its per-class input sums and
 * counts, divided by its sample count, to its update (`classStats`); the weighted mean the
 * coordinator unmasks is then Σ_k S_k,c / N and N_c / N, i.e. the pooled class means
 * (`classMeansFromStats`) and nothing about any single client.
 *
 * Pure functions over typed arrays; isomorphic.
 */
import { InvalidInputError } from '../errors/errors.ts'
import { rowSize, type TrainingData } from './data.ts'

/** The global class means clients mix with, as the round offer carries them. */
export interface ClassMeans {
  classes: number
  features: number
  /** `classes` × `features`, row c the mean input of class c (zeros for a class nobody holds). */
  means: Float32Array
  /** Fraction of all samples in each class; 0 for a class nobody holds. */
  shares: Float32Array
}

/** Length of the statistics a client appends to its update: per-class sums, then per-class counts. */
export function classStatsLength (classes: number, features: number): number {
  return classes * features + classes
}

/**
 * A client's contribution to the pooled class means: for each class c, Σ_{i: y_i = c} x_i / n,
 * then n_c / n for every class (n the client's row count). Weighted by n in the round's mean,
 * these become the pooled sums and shares. Throws if a label is not a class index.
 *
 * @example classStats({ xs: [1, 3, 5], ys: [0, 0, 1], count: 3, featureShape: [1] }, 2)
 *          // → [4/3, 5/3, 2/3, 1/3]
 */
export function classStats (data: TrainingData, classes: number): Float32Array {
  const features = rowSize(data.featureShape)
  if (data.ys.length !== data.count) throw new InvalidInputError(`class statistics need one class label per row, got ${data.ys.length} labels for ${data.count} rows`)
  const sums = new Float64Array(classes * features)
  const counts = new Float64Array(classes)
  for (let i = 0; i < data.count; i++) {
    const c = data.ys[i] as number
    if (!Number.isInteger(c) || c < 0 || c >= classes) throw new InvalidInputError(`row ${i}: label ${c} is not a class index in 0..${classes - 1}`)
    counts[c] = (counts[c] as number) + 1
    const row = data.xs.subarray(i * features, (i + 1) * features)
    for (let f = 0; f < features; f++) sums[c * features + f] = (sums[c * features + f] as number) + (row[f] as number)
  }
  const out = new Float32Array(classStatsLength(classes, features))
  for (let j = 0; j < sums.length; j++) out[j] = (sums[j] as number) / data.count
  for (let c = 0; c < classes; c++) out[classes * features + c] = (counts[c] as number) / data.count
  return out
}

/**
 * Class means from the weighted mean of the clients' `classStats`. A class whose share is below
 * `minShare` (absent, or fixed-point rounding noise around 0) gets share 0 and a zero mean.
 */
export function classMeansFromStats (stats: Float32Array | Float64Array, classes: number, features: number, minShare = 1e-6): ClassMeans {
  // A share below −minShare is no rounding noise: no data gives it, so it is refused by
  // checkClassMeans' sum (the class is dropped here, the others then cannot sum to 1).
  if (stats.length !== classStatsLength(classes, features)) throw new InvalidInputError(`class statistics: ${stats.length} values, expected ${classStatsLength(classes, features)} for ${classes} classes × ${features} features`)
  const means = new Float32Array(classes * features)
  const shares = new Float32Array(classes)
  for (let c = 0; c < classes; c++) {
    const share = stats[classes * features + c] as number
    if (!(share >= minShare)) continue
    shares[c] = share
    for (let f = 0; f < features; f++) means[c * features + f] = (stats[c * features + f] as number) / share
  }
  return { classes, features, means, shares }
}

/** How far honest shares may stray from summing to 1: fixed-point rounding is ~1e-7 per client. */
const SHARE_SUM_TOLERANCE = 1e-3

/**
 * Throws InvalidInputError naming `what` unless `m` is usable for mixing rows of `features`
 * values: finite, shares in [0, 1] summing to 1, and, with `bound`, every mean within ±bound
 * (the pooled mean of inputs within ±bound). A client can still shift the means inside these
 * limits (any statistics within the clip are possible data); beyond them, they are refused.
 */
export function checkClassMeans (m: ClassMeans, what = 'classMeans', bound = Infinity): void {
  if (!Number.isInteger(m.classes) || m.classes < 2) throw new InvalidInputError(`${what}.classes must be an integer ≥ 2, got ${String(m.classes)}`)
  if (!Number.isInteger(m.features) || m.features < 1) throw new InvalidInputError(`${what}.features must be a positive integer, got ${String(m.features)}`)
  if (!(m.means instanceof Float32Array) || m.means.length !== m.classes * m.features) throw new InvalidInputError(`${what}.means must be a Float32Array of ${m.classes} × ${m.features} values`)
  if (!(m.shares instanceof Float32Array) || m.shares.length !== m.classes) throw new InvalidInputError(`${what}.shares must be a Float32Array of ${m.classes} values`)
  if (!m.means.every(Number.isFinite)) throw new InvalidInputError(`${what}.means holds a value that is not finite`)
  if (!m.shares.every(s => Number.isFinite(s) && s >= 0 && s <= 1)) throw new InvalidInputError(`${what}.shares must lie in [0, 1]`)
  if (!m.shares.some(s => s > 0)) throw new InvalidInputError(`${what}: no class has a share above 0`)
  const total = m.shares.reduce((a, s) => a + s, 0)
  if (Math.abs(total - 1) > SHARE_SUM_TOLERANCE) throw new InvalidInputError(`${what}: the class shares sum to ${total.toPrecision(6)}, not 1`)
  const limit = bound * (1 + SHARE_SUM_TOLERANCE) + 1e-6
  const outside = m.means.findIndex(v => Math.abs(v) > limit)
  if (outside >= 0) throw new InvalidInputError(`${what}: class ${Math.floor(outside / m.features)}'s mean holds ${m.means[outside]}, beyond ±${bound}`)
}

/** The classes a client may mix with: those some client holds. */
export function mixClasses (m: ClassMeans): Int32Array {
  return Int32Array.from([...m.shares.keys()].filter(c => (m.shares[c] as number) > 0))
}

/**
 * NaiveMix applied to one batch in place: row r of `xs` becomes (1 − λ)·x_r + λ·x̄_j and its soft
 * target (1 − λ) at its label plus λ at j, j drawn from `classes` with `random`.
 *
 * @returns the soft targets, rows × `means.classes`.
 */
export function naiveMixBatch (xs: Float32Array, labels: ArrayLike<number>, means: ClassMeans, classes: Int32Array, lambda: number, random: () => number): Float32Array {
  const { features } = means
  const rows = labels.length
  const targets = new Float32Array(rows * means.classes)
  for (let r = 0; r < rows; r++) {
    const j = classes[Math.floor(random() * classes.length)] as number
    const x = xs.subarray(r * features, (r + 1) * features)
    const mean = means.means.subarray(j * features, (j + 1) * features)
    for (let f = 0; f < features; f++) x[f] = (1 - lambda) * (x[f] as number) + lambda * (mean[f] as number)
    const y = labels[r] as number
    targets[r * means.classes + y] = (targets[r * means.classes + y] as number) + 1 - lambda
    targets[r * means.classes + j] = (targets[r * means.classes + j] as number) + lambda
  }
  return targets
}
