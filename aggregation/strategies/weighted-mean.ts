/**
 * The plaintext FedAvg mean Σ w_k·Δ_k / Σ w_k (McMahan et al. 2017, Alg. 1, weights n_k): the
 * reference path for rounds without secure aggregation and for benchmarks. Accumulates in
 * float64 so that the order and number of clients do not change the result beyond float32
 * rounding of the output.
 */
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { checkFinite } from '../validate.ts'

/**
 * Weighted mean of equally long, finite deltas; `weights` are any positive finite numbers (sample
 * counts, or capped weights from `sampleWeight`), normalised here. Throws InvalidInputError
 * naming the first bad argument.
 *
 * @example weightedMean([Float32Array.of(1, 0), Float32Array.of(0, 1)], [300, 100]) // → [0.75, 0.25]
 */
export function weightedMean (deltas: Float32Array[], weights: number[]): Float32Array {
  if (deltas.length === 0) throw new InvalidInputError('weightedMean: deltas is empty')
  if (weights.length !== deltas.length) throw new InvalidInputError(`weightedMean: ${weights.length} weights for ${deltas.length} deltas`)
  const length = (deltas[0] as Float32Array).length
  const acc = new Float64Array(length)
  // Scaled by the largest, weights lie in (0, 1]: finite ones near 1e308 no longer sum to Infinity.
  const largest = weights.reduce((max, w, k) => Math.max(max, checkWeight(w, k)), 0)
  let total = 0
  for (let k = 0; k < deltas.length; k++) {
    const d = deltas[k] as Float32Array
    const w = (weights[k] as number) / largest
    if (d.length !== length) throw new InvalidInputError(`weightedMean: deltas[${k}] has ${d.length} coordinates, deltas[0] has ${length}`)
    checkFinite(d, `weightedMean: deltas[${k}]`)
    for (let i = 0; i < length; i++) acc[i] = (acc[i] as number) + w * (d[i] as number)
    total += w
  }
  const out = new Float32Array(length)
  for (let i = 0; i < length; i++) out[i] = (acc[i] as number) / total
  return out
}

function checkWeight (w: number, k: number): number {
  if (!(Number.isFinite(w) && w > 0)) throw new InvalidInputError(`weightedMean: weights[${k}] must be a positive finite number, got ${String(w)}`)
  return w
}
