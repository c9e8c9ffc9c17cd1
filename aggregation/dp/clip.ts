/**
 * L2 clipping of a client update (Abadi et al. 2016, "Deep Learning with Differential Privacy",
 * Alg. 1; per-client clipping as in McMahan et al. 2018, DP-FedAvg): scale v by min(1, C/‖v‖₂)
 * so that one client's contribution has L2 sensitivity at most C.
 */
import { InvalidInputError } from '../../shared/errors/errors.ts'

/**
 * ‖v‖₂, accumulated in float64 (float32 accumulation loses ~√n·2^-24 relative over a million
 * coordinates, enough to let a clipped update fail a server-side norm check). NaN if any
 * coordinate is NaN, Infinity if any is infinite.
 */
export function l2Norm (v: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < v.length; i++) {
    const x = v[i] as number
    s += x * x
  }
  return Math.sqrt(s)
}

/**
 * Float32 rounding of each scaled coordinate can raise the norm by a relative 2^-24; shrinking
 * the factor by 2^-22 keeps ‖clipped‖₂ ≤ bound for normal floats. Subnormal results round with
 * an absolute error instead, so the norm is checked after scaling (the DP sensitivity needs the
 * bound to hold exactly).
 */
const SHRINK = 1 - 2 ** -22

/**
 * Clips v to L2 norm `bound`: returns a new array (v is untouched), v's norm before clipping,
 * and whether it was scaled. Throws InvalidInputError if v has a NaN or infinite coordinate.
 *
 * @example clipL2(Float32Array.of(3, 4), 1) // → { clipped: ≈[0.6, 0.8], norm: 5, scaled: true }
 */
export function clipL2 (v: Float32Array, bound: number): { clipped: Float32Array, norm: number, scaled: boolean } {
  if (!(Number.isFinite(bound) && bound > 0)) throw new RangeError(`clipL2: bound must be a positive finite number, got ${String(bound)}`)
  const norm = l2Norm(v)
  if (!Number.isFinite(norm)) throw new InvalidInputError(`clipL2: v has a ${Number.isNaN(norm) ? 'NaN' : 'infinite'} coordinate`)
  if (norm <= bound) return { clipped: v.slice(), norm, scaled: false }
  const factor = (bound / norm) * SHRINK
  const clipped = new Float32Array(v.length)
  for (let i = 0; i < v.length; i++) clipped[i] = (v[i] as number) * factor
  const after = l2Norm(clipped)
  if (after > bound) throw new RangeError(`clipL2: bound ${bound} is too small for float32 (the clipped norm rounds to ${after})`)
  return { clipped, norm, scaled: true }
}
