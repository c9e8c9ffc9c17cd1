/**
 * The seeded samplers against the moments their distributions must have:
 * Gamma(a, 1) has mean a and variance a; Dirichlet(α·1_k) has E[p_i] = 1/k and
 * Var[p_i] = (k − 1) / (k² (kα + 1)). Tolerances are 5 standard errors of the estimate.
 */
import { describe, expect, it } from 'vitest'
import { mulberry32 } from '../../../shared/random/seeded.ts'
import { logGamma, normal, symmetricDirichlet } from '../../../shared/training/_sample.ts'
import { shuffleInPlace } from '../../../shared/random/shuffle.ts'

const N = 40_000

function moments (xs: Float64Array): { mean: number, variance: number } {
  let mean = 0
  for (const x of xs) mean += x
  mean /= xs.length
  let variance = 0
  for (const x of xs) variance += (x - mean) ** 2
  return { mean, variance: variance / (xs.length - 1) }
}

describe('seeded samplers', () => {
  it('normal: mean 0, variance 1', () => {
    const random = mulberry32(1)
    const { mean, variance } = moments(Float64Array.from({ length: N }, () => normal(random)))
    expect(Math.abs(mean)).toBeLessThan(5 / Math.sqrt(N))
    expect(Math.abs(variance - 1)).toBeLessThan(5 * Math.sqrt(2 / N))
  })

  it.each([0.05, 0.3, 1, 4.5, 30])('Gamma(%f) by Marsaglia–Tsang: mean a, variance a', a => {
    const random = mulberry32(Math.round(a * 1000))
    const xs = Float64Array.from({ length: N }, () => Math.exp(logGamma(a, random)))
    const { mean, variance } = moments(xs)
    expect(xs.every(x => x >= 0 && Number.isFinite(x))).toBe(true)
    expect(Math.abs(mean - a)).toBeLessThan(5 * Math.sqrt(a / N))
    // Var of the sample variance: (μ4 − σ⁴)/N, with μ4 = 3a² + 6a for Gamma(a, 1).
    expect(Math.abs(variance - a)).toBeLessThan(5 * Math.sqrt((3 * a * a + 6 * a - a * a) / N))
  })

  it('log Gamma stays finite for shapes whose draws underflow a double', () => {
    const random = mulberry32(2)
    const logs = Array.from({ length: 1000 }, () => logGamma(0.001, random))
    expect(logs.every(Number.isFinite)).toBe(true)
    expect(Math.min(...logs)).toBeLessThan(-745) // exp() of this is 0 in doubles
  })

  it.each([0.1, 1, 10])('Dirichlet(%f): sums to 1, E[p] = 1/k, Var[p] = (k−1)/(k²(kα+1))', alpha => {
    const k = 5
    const random = mulberry32(7)
    const first = new Float64Array(N / 4)
    for (let i = 0; i < first.length; i++) {
      const p = symmetricDirichlet(alpha, k, random)
      expect(Math.abs(p.reduce((s, x) => s + x, 0) - 1)).toBeLessThan(1e-12)
      first[i] = p[0] as number
    }
    const { mean, variance } = moments(first)
    const expected = (k - 1) / (k * k * (k * alpha + 1))
    expect(Math.abs(mean - 1 / k)).toBeLessThan(5 * Math.sqrt(expected / first.length))
    expect(Math.abs(variance - expected) / expected).toBeLessThan(0.08)
  })

  it('shuffle is a permutation and reproducible by seed', () => {
    const a = shuffleInPlace(Int32Array.from({ length: 100 }, (_, i) => i), mulberry32(3))
    expect(Array.from(a).sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i))
    expect(shuffleInPlace(Int32Array.from({ length: 100 }, (_, i) => i), mulberry32(3))).toEqual(a)
    expect(a).not.toEqual(Int32Array.from({ length: 100 }, (_, i) => i))
  })
})
