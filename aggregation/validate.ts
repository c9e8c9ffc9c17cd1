/**
 * Checks on an incoming update before it is accepted (DESIGN.md, "Update"): the right length,
 * only finite numbers, and an L2 norm within the round's bound. Each throws InvalidInputError
 * with a reason naming what is wrong; the client runs the same checks on its own delta before
 * encoding, so a bad update fails where it was made.
 */
import { InvalidInputError } from '../shared/errors/errors.ts'
import { l2Norm } from './dp/clip.ts'

/** Throws unless `vector` has exactly `expectedLength` coordinates (float delta or ring encoding). */
export function checkUpdateShape (vector: ArrayLike<number>, expectedLength: number, what = 'update'): void {
  if (!(Number.isSafeInteger(expectedLength) && expectedLength >= 0)) throw new RangeError(`checkUpdateShape: expectedLength must be a non-negative integer, got ${String(expectedLength)}`)
  if (vector.length !== expectedLength) throw new InvalidInputError(`${what}: has ${vector.length} coordinates, expected ${expectedLength}`)
}

/** Throws if any coordinate is NaN or ±Infinity, naming the first and counting them all. */
export function checkFinite (v: Float32Array | Float64Array, what = 'update'): void {
  let first = -1
  let count = 0
  for (let i = 0; i < v.length; i++) {
    // x − x is 0 for finite x and NaN for NaN and ±Infinity: one test covers both.
    const x = v[i] as number
    if (x - x !== 0) {
      if (first < 0) first = i
      count++
    }
  }
  if (count > 0) {
    throw new InvalidInputError(`${what}: coordinate ${first} is ${String(v[first])}${count > 1 ? ` (${count} non-finite coordinates in all)` : ''}`)
  }
}

/**
 * Throws if ‖v‖₂ (float64) exceeds `bound`, or is not finite. No tolerance: `clipL2` guarantees
 * a clipped update's norm is ≤ its bound exactly.
 */
export function checkNormBound (v: Float32Array | Float64Array, bound: number, what = 'update'): void {
  if (!(Number.isFinite(bound) && bound > 0)) throw new RangeError(`checkNormBound: bound must be a positive finite number, got ${String(bound)}`)
  const norm = l2Norm(v)
  if (Number.isNaN(norm)) throw new InvalidInputError(`${what}: L2 norm is NaN (a coordinate is not a number)`)
  if (!(norm <= bound)) throw new InvalidInputError(`${what}: L2 norm ${norm} exceeds the bound ${bound}`)
}
