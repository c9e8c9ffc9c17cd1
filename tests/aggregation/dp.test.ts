import { describe, it, expect } from 'vitest'
import { clipL2, l2Norm } from '../../aggregation/dp/clip.ts'
import { addGaussianNoise, clientNoiseSigma, noiseNormBound, sumNoiseSd } from '../../aggregation/dp/noise.ts'
import { dpAccountant, gaussianEpsilon } from '../../aggregation/dp/accountant.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'

/** Norm written plainly, as an independent reference. */
const normRef = (v: ArrayLike<number>): number => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0))

describe('clipL2', () => {
  it('never returns a vector over the bound: a bound in float32\'s subnormal range is refused', () => {
    for (const bound of [7.5e-45, 2e-45, 1e-45, 1e-300]) {
      let result: Float32Array | undefined
      try {
        result = clipL2(Float32Array.of(1, 1), bound).clipped
      } catch (err) {
        expect(err).toBeInstanceOf(RangeError)
        expect((err as Error).message).toMatch(/too small for float32/)
      }
      if (result !== undefined) expect(l2Norm(result)).toBeLessThanOrEqual(bound)
    }
    expect(() => clipL2(Float32Array.of(1, 1), 7.5e-45)).toThrow(/too small for float32/)
  })

  it('scales a long vector onto the ball and leaves a short one alone', () => {
    const { clipped, norm, scaled } = clipL2(Float32Array.of(3, 4), 1)
    expect(norm).toBe(5)
    expect(scaled).toBe(true)
    expect(clipped[0]).toBeCloseTo(0.6, 6)
    expect(clipped[1]).toBeCloseTo(0.8, 6)
    const short = Float32Array.of(0.3, 0.4)
    const kept = clipL2(short, 1)
    expect(kept).toEqual({ clipped: short, norm: normRef(short), scaled: false })
    expect(kept.clipped).not.toBe(short) // a copy: later in-place noise cannot reach the caller's array
  })

  it('never exceeds the bound (float32 rounding included), keeps the direction, and leaves v untouched', () => {
    const random = mulberry32(1)
    for (let trial = 0; trial < 300; trial++) {
      const n = 1 + Math.floor(random() * 3000)
      const v = Float32Array.from({ length: n }, () => (random() - 0.5) * 10 ** (random() * 6 - 3))
      const before = v.slice()
      const bound = normRef(v) * (0.01 + random() * 0.98)
      const { clipped, norm, scaled } = clipL2(v, bound)
      expect(scaled).toBe(true)
      expect(norm).toBeCloseTo(normRef(v), 9)
      expect(normRef(clipped)).toBeLessThanOrEqual(bound)
      expect(normRef(clipped)).toBeGreaterThan(bound * (1 - 1e-6))
      expect(v).toEqual(before)
      const i = Math.floor(random() * n)
      if (v[i] !== 0) expect((clipped[i] as number) / (v[i] as number)).toBeCloseTo(bound / norm, 6)
    }
  })

  it('refuses a non-finite vector and a bad bound', () => {
    expect(() => clipL2(Float32Array.of(1, Number.NaN), 1)).toThrow(InvalidInputError)
    expect(() => clipL2(Float32Array.of(Infinity), 1)).toThrow(/infinite/)
    expect(() => clipL2(Float32Array.of(1), 0)).toThrow(/bound must be a positive finite number/)
    expect(l2Norm([3, 4])).toBe(5)
  })
})

describe('Gaussian noise', () => {
  it('noiseNormBound holds for honest noise at every dimension; 1.2·σ·√d did not at small d', () => {
    const random = mulberry32(11)
    for (const d of [1, 4, 10, 1000]) {
      let overOld = 0
      let overNew = 0
      for (let trial = 0; trial < 4000; trial++) {
        const norm = l2Norm(addGaussianNoise(new Float32Array(d), 0.3, random))
        if (norm > 1.2 * 0.3 * Math.sqrt(d)) overOld++
        if (norm > noiseNormBound(0.3, d)) overNew++
      }
      expect(overNew, `d = ${d}`).toBe(0)
      // The old allowance refused percents of honest updates at small d (the reason for the change).
      if (d === 4) expect(overOld).toBeGreaterThan(80)
    }
    expect(noiseNormBound(2, 100)).toBeCloseTo(2 * (10 + Math.sqrt(2 * Math.log(1e9))), 12)
  })

  it('has mean 0, variance sigma², a normal shape and independent pairs (seeded)', () => {
    const N = 200_000
    const sigma = 2
    const v = new Float32Array(N).fill(1)
    const y = addGaussianNoise(v, sigma, mulberry32(2))
    expect(v.every((x) => x === 1)).toBe(true)
    let sum = 0
    let sq = 0
    let within1 = 0
    let pair = 0
    for (let i = 0; i < N; i++) {
      const e = (y[i] as number) - 1
      sum += e
      sq += e * e
      if (Math.abs(e) < sigma) within1++
      if (i % 2 === 1) pair += e * ((y[i - 1] as number) - 1)
    }
    // Bounds at 5 standard errors: mean σ/√N; variance σ²·√(2/N); P(|Z| < 1) = 0.682689,
    // standard error √(p(1−p)/N); pair correlation 1/√(N/2). A seeded source makes these exact
    // repeats, and a wrong transform (e.g. uniform noise of the same variance, P = 0.577) fails.
    expect(Math.abs(sum / N)).toBeLessThan(5 * sigma / Math.sqrt(N))
    expect(Math.abs(sq / N - sigma ** 2)).toBeLessThan(5 * sigma ** 2 * Math.sqrt(2 / N))
    expect(Math.abs(within1 / N - 0.682689)).toBeLessThan(5 * Math.sqrt(0.682689 * 0.317311 / N))
    expect(Math.abs(pair / (N / 2) / sigma ** 2)).toBeLessThan(5 / Math.sqrt(N / 2))
  })

  it('draws from the CSPRNG by default: two calls differ, sigma 0 adds nothing', () => {
    const v = new Float32Array(1000)
    const a = addGaussianNoise(v, 1)
    const b = addGaussianNoise(v, 1)
    expect(a.some((x, i) => x !== b[i])).toBe(true)
    expect(addGaussianNoise(Float32Array.of(1, 2), 0)).toEqual(Float32Array.of(1, 2))
    expect(() => addGaussianNoise(v, -1)).toThrow(/sigma must be a non-negative finite number/)
  })

  it('clientNoiseSigma splits z·C over n clients so the sum carries sd z·C', () => {
    expect(clientNoiseSigma({ noiseMultiplier: 1, clip: 0.5, minClients: 100 })).toBeCloseTo(0.05, 15)
    const n = 16
    const N = 20_000
    const sigma = clientNoiseSigma({ noiseMultiplier: 1.1, clip: 2, minClients: n })
    const random = mulberry32(3)
    const sum = new Float64Array(N)
    for (let k = 0; k < n; k++) addGaussianNoise(new Float32Array(N), sigma, random).forEach((x, i) => { sum[i] = (sum[i] as number) + x })
    const sd = Math.sqrt(sum.reduce((s, x) => s + x * x, 0) / N)
    // Sample-sd standard error sd/√(2N) = 0.5%; allow 3%.
    expect(Math.abs(sd / (1.1 * 2) - 1)).toBeLessThan(0.03)
    expect(() => clientNoiseSigma({ noiseMultiplier: 1, clip: 1, minClients: 0 })).toThrow(/minClients/)
    expect(() => clientNoiseSigma({ noiseMultiplier: 1, clip: -1, minClients: 3 })).toThrow(/clip/)
  })

  it('sumNoiseSd: more contributors than minClients carry more noise than z·C, as measured', () => {
    expect(sumNoiseSd({ noiseMultiplier: 1, clip: 1, minClients: 5, contributions: 20 })).toBeCloseTo(2, 15)
    // 10 uploads each noised for minClients 5 (the coordinator's default for 10 clients).
    const [m, u, N, z, C] = [5, 10, 20_000, 1.1, 0.5]
    const sigma = clientNoiseSigma({ noiseMultiplier: z, clip: C, minClients: m })
    const random = mulberry32(9)
    const sum = new Float64Array(N)
    for (let k = 0; k < u; k++) addGaussianNoise(new Float32Array(N), sigma, random).forEach((x, i) => { sum[i] = (sum[i] as number) + x })
    const sd = Math.sqrt(sum.reduce((s, x) => s + x * x, 0) / N)
    expect(Math.abs(sd / sumNoiseSd({ noiseMultiplier: z, clip: C, minClients: m, contributions: u }) - 1)).toBeLessThan(0.03)
    // z·C alone (what the coordinator's norm check allowed) is √2 too small here.
    expect(sd / (z * C)).toBeGreaterThan(1.35)
    expect(() => sumNoiseSd({ noiseMultiplier: 1, clip: 1, minClients: 1, contributions: -1 })).toThrow(/contributions/)
  })
})

/** The RDP → (ε, δ) bound minimised over a grid, written independently of the module. */
function rdpEpsilonRef (z: number, rounds: number, delta: number): number {
  const orders: number[] = []
  for (let x = 1; x < 100; x++) orders.push(1 + x / 10)
  for (let a = 12; a < 64; a++) orders.push(a)
  orders.push(64, 80, 96, 128, 192, 256, 384, 512, 768, 1024)
  let best = Infinity
  for (const a of orders) {
    const e = rounds * a / (2 * z * z) + Math.log(1 / delta) / (a - 1)
    if (e < best) best = e
  }
  return best
}

/** erfc with fractional error < 1.2e-7 (Numerical Recipes in C, 2nd ed., §6.2, erfcc). */
function erfc (x: number): number {
  const z = Math.abs(x)
  const t = 1 / (1 + 0.5 * z)
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
  return x >= 0 ? r : 2 - r
}
const Phi = (x: number): number => 0.5 * erfc(-x / Math.SQRT2)

/**
 * The exact privacy curve of R Gaussian rounds with noise multiplier z: μ-GDP with μ = √R/z
 * (Dong, Roth & Su 2022, "Gaussian Differential Privacy", Thm 2.7 and Cor. 3.3), whose δ(ε) is
 * Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2) (their Cor. 2.13; Balle & Wang 2018, Thm 8).
 */
const exactDelta = (z: number, rounds: number, eps: number): number => {
  const mu = Math.sqrt(rounds) / z
  return Phi(-eps / mu + mu / 2) - Math.exp(eps) * Phi(-eps / mu - mu / 2)
}
function exactEpsilon (z: number, rounds: number, delta: number): number {
  let lo = 0
  let hi = 100
  for (let i = 0; i < 100; i++) {
    const mid = (lo + hi) / 2
    if (exactDelta(z, rounds, mid) > delta) lo = mid
    else hi = mid
  }
  return hi
}

describe('RDP accountant (Mironov 2017)', () => {
  it('z = 1, one round, δ = 1e-5: ε ≈ 5.2985 = 1/2 + √(2 ln 1e5), the closed-form optimum', () => {
    // min over α > 1 of α/2 + ln(1e5)/(α − 1) is at α = 1 + √(2 ln 1e5) ≈ 5.7985, value
    // 1/2 + √(2 ln 1e5) ≈ 5.29852; the grid has α = 5.8, within 1e-5 of it.
    const eps = gaussianEpsilon({ noiseMultiplier: 1, rounds: 1, delta: 1e-5 })
    const closed = 0.5 + Math.sqrt(2 * Math.log(1e5))
    expect(eps).toBeGreaterThanOrEqual(closed)
    expect(eps - closed).toBeLessThan(1e-5)
    expect(eps).toBeCloseTo(5.2985, 4)
  })

  it('equals the grid minimum computed plainly, for many z, rounds and δ', () => {
    for (const z of [0.5, 0.8, 1, 1.3, 2, 5, 20, 100]) {
      for (const rounds of [1, 2, 10, 100, 1000]) {
        for (const delta of [1e-3, 1e-5, 1e-9]) {
          expect(gaussianEpsilon({ noiseMultiplier: z, rounds, delta })).toBeCloseTo(rdpEpsilonRef(z, rounds, delta), 10)
        }
      }
    }
  })

  it('is sound and not loose: above the exact Gaussian ε, by at most 60%', () => {
    for (const [z, rounds] of [[0.8, 1], [1, 1], [1, 10], [1, 100], [2, 1], [2, 100], [5, 10], [20, 1], [20, 1000]] as const) {
      const eps = gaussianEpsilon({ noiseMultiplier: z, rounds, delta: 1e-5 })
      const exact = exactEpsilon(z, rounds, 1e-5)
      expect(exactDelta(z, rounds, eps), `z ${z}, R ${rounds}`).toBeLessThanOrEqual(1e-5)
      expect(eps).toBeGreaterThan(exact)
      expect(eps).toBeLessThan(1.6 * exact)
    }
    // For the record: z = 1, one round, δ = 1e-5 is exactly ε ≈ 4.377; RDP reports 5.298.
    expect(exactEpsilon(1, 1, 1e-5)).toBeCloseTo(4.377, 2)
  })

  it('grows with rounds and shrinks with noise', () => {
    let prev = 0
    for (let rounds = 1; rounds <= 200; rounds++) {
      const eps = gaussianEpsilon({ noiseMultiplier: 1.2, rounds, delta: 1e-6 })
      expect(eps).toBeGreaterThan(prev)
      prev = eps
    }
    prev = Infinity
    for (let z = 0.3; z < 50; z *= 1.2) {
      const eps = gaussianEpsilon({ noiseMultiplier: z, rounds: 50, delta: 1e-6 })
      expect(eps).toBeLessThan(prev)
      prev = eps
    }
    expect(gaussianEpsilon({ noiseMultiplier: 1, rounds: 0, delta: 1e-5 })).toBe(0)
  })

  it('dpAccountant spends cumulatively and resumes from a persisted round count', () => {
    const acc = dpAccountant({ noiseMultiplier: 1.5, delta: 1e-5 })
    expect(acc.spent()).toEqual({ round: 0, epsilon: 0, delta: 1e-5 })
    for (let r = 1; r <= 10; r++) {
      expect(acc.spend()).toEqual({ round: r, epsilon: gaussianEpsilon({ noiseMultiplier: 1.5, rounds: r, delta: 1e-5 }), delta: 1e-5 })
    }
    expect(acc.spent().round).toBe(10)
    const resumed = dpAccountant({ noiseMultiplier: 1.5, delta: 1e-5, rounds: acc.spent().round })
    expect(resumed.spend()).toEqual(acc.spend())
  })

  it('refuses bad arguments, naming them', () => {
    expect(() => gaussianEpsilon({ noiseMultiplier: 0, rounds: 1, delta: 1e-5 })).toThrow(/noiseMultiplier/)
    expect(() => gaussianEpsilon({ noiseMultiplier: 1, rounds: -1, delta: 1e-5 })).toThrow(/rounds/)
    expect(() => gaussianEpsilon({ noiseMultiplier: 1, rounds: 1.5, delta: 1e-5 })).toThrow(/rounds/)
    expect(() => dpAccountant({ noiseMultiplier: 1, delta: 1 })).toThrow(/delta must be in \(0, 1\)/)
    expect(() => dpAccountant({ noiseMultiplier: 1, delta: 0 })).toThrow(RangeError)
  })
})
