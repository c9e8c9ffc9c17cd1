/**
 * A labelled dataset as plain typed arrays — the form a client's private data takes before it
 * meets tfjs — its checks, and row selection (a client's share of a partition).
 */
import { InvalidInputError } from '../errors/errors.ts'

export interface TrainingData {
  /** `count` rows of `featureShape`, row-major. */
  xs: Float32Array
  /**
   * Class labels (one per row) for classification, or targets (`count` × output size values)
   * for regression losses.
   */
  ys: Uint8Array | Int32Array | Float32Array
  count: number
  /** Shape of one row, e.g. `[784]` for a flattened MNIST digit. */
  featureShape: number[]
}

/** Number of values in one row. */
export function rowSize (featureShape: readonly number[]): number {
  return featureShape.reduce((n, d) => n * d, 1)
}

/** Checks that `data` is self-consistent; `what` names the argument in the error. */
export function checkData (data: TrainingData, what = 'data'): void {
  if (typeof data !== 'object' || data === null) throw new InvalidInputError(`${what} must be an object { xs, ys, count, featureShape }`)
  const { xs, ys, count, featureShape } = data
  if (!Number.isInteger(count) || count < 1) throw new InvalidInputError(`${what}.count must be a positive integer, got ${String(count)}`)
  if (!Array.isArray(featureShape) || featureShape.length === 0 || !featureShape.every(d => Number.isInteger(d) && d > 0)) {
    throw new InvalidInputError(`${what}.featureShape must be a non-empty list of positive integers, got ${JSON.stringify(featureShape)}`)
  }
  if (!(xs instanceof Float32Array)) throw new InvalidInputError(`${what}.xs must be a Float32Array`)
  if (xs.length !== count * rowSize(featureShape)) {
    throw new InvalidInputError(`${what}.xs has ${xs.length} values, expected count × ${rowSize(featureShape)} = ${count * rowSize(featureShape)}`)
  }
  if (!(ys instanceof Uint8Array || ys instanceof Int32Array || ys instanceof Float32Array)) {
    throw new InvalidInputError(`${what}.ys must be a Uint8Array, Int32Array or Float32Array`)
  }
  if (ys.length % count !== 0) throw new InvalidInputError(`${what}.ys has ${ys.length} values, not a multiple of count ${count}`)
}

/** The rows `indices` of `data`, copied, in that order. */
export function takeRows (data: TrainingData, indices: ArrayLike<number>): TrainingData {
  checkData(data)
  const size = rowSize(data.featureShape)
  const width = data.ys.length / data.count
  const xs = new Float32Array(indices.length * size)
  const ys = new (data.ys.constructor as new (n: number) => TrainingData['ys'])(indices.length * width)
  for (let r = 0; r < indices.length; r++) {
    const i = indices[r] as number
    if (!Number.isInteger(i) || i < 0 || i >= data.count) throw new InvalidInputError(`indices[${r}] = ${i} is not a row of data (0..${data.count - 1})`)
    xs.set(data.xs.subarray(i * size, (i + 1) * size), r * size)
    ys.set(data.ys.subarray(i * width, (i + 1) * width), r * width)
  }
  return { xs, ys, count: indices.length, featureShape: [...data.featureShape] }
}
