import { describe, it, expect } from 'vitest'
import { checkFinite, checkNormBound, checkUpdateShape } from '../../aggregation/validate.ts'
import { clipL2 } from '../../aggregation/dp/clip.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'

describe('checkUpdateShape', () => {
  it('accepts the expected length, for float deltas and ring encodings alike', () => {
    checkUpdateShape(new Float32Array(10), 10)
    checkUpdateShape(new Uint32Array(11), 11)
    checkUpdateShape(new Float32Array(0), 0)
  })
  it('refuses any other length, saying both', () => {
    expect(() => checkUpdateShape(new Float32Array(9), 10)).toThrow(InvalidInputError)
    expect(() => checkUpdateShape(new Float32Array(9), 10)).toThrow('update: has 9 coordinates, expected 10')
    expect(() => checkUpdateShape(new Uint32Array(12), 11, 'client 3 update')).toThrow('client 3 update: has 12 coordinates, expected 11')
    expect(() => checkUpdateShape(new Float32Array(1), -1)).toThrow(/expectedLength/)
  })
})

describe('checkFinite', () => {
  it('accepts finite vectors, extremes included', () => {
    checkFinite(Float32Array.of(0, -0, 3.4028234663852886e38, -1e-45))
    checkFinite(Float64Array.of(Number.MAX_VALUE, Number.MIN_VALUE))
  })
  it('names the first NaN or infinite coordinate and counts them', () => {
    expect(() => checkFinite(Float32Array.of(1, Number.NaN, 2))).toThrow('update: coordinate 1 is NaN')
    expect(() => checkFinite(Float32Array.of(1, 2, -Infinity))).toThrow('update: coordinate 2 is -Infinity')
    expect(() => checkFinite(Float64Array.of(Infinity, 0, Number.NaN, Number.NaN))).toThrow('update: coordinate 0 is Infinity (3 non-finite coordinates in all)')
    expect(() => checkFinite(Float32Array.of(Number.NaN))).toThrow(InvalidInputError)
  })
})

describe('checkNormBound', () => {
  it('accepts norms up to the bound, and every clipL2 output at its own bound', () => {
    checkNormBound(Float32Array.of(3, 4), 5)
    checkNormBound(new Float32Array(100), 1e-9)
    const random = mulberry32(9)
    for (let t = 0; t < 100; t++) {
      const v = Float32Array.from({ length: 1000 }, () => random() - 0.5)
      const bound = 0.1 + random()
      checkNormBound(clipL2(v, bound).clipped, bound)
    }
  })
  it('refuses a norm above the bound or NaN, saying the norm', () => {
    expect(() => checkNormBound(Float32Array.of(3, 4), 4.999)).toThrow('update: L2 norm 5 exceeds the bound 4.999')
    expect(() => checkNormBound(Float32Array.of(Infinity), 1)).toThrow(/L2 norm Infinity exceeds/)
    expect(() => checkNormBound(Float32Array.of(1, Number.NaN), 10)).toThrow(/L2 norm is NaN/)
    expect(() => checkNormBound(Float32Array.of(1), 0)).toThrow(RangeError)
  })
})
