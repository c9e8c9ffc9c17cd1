import { describe, it, expect } from 'vitest'
import {
  cryptoUniform, decode, decodeMean, encode, encodeUpdate, fixedPointParams, sampleWeight, type FixedPointParams
} from '../../aggregation/fixed-point.ts'
import { ringSum } from '../../aggregation/ring.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'

const INT32_MAX = 2 ** 31 - 1

function randomVector (length: number, lo: number, hi: number, random: () => number): Float32Array {
  return Float32Array.from({ length }, () => lo + (hi - lo) * random())
}

/** The clip as written in the brief, plainly: min(max(x, −clip), clip). */
const clipRef = (x: number, clip: number): number => Math.min(Math.max(x, -clip), clip)

describe('fixedPointParams', () => {
  it('picks the largest power-of-two scale that keeps clients·⌈clip·scale⌉ ≤ 2^31 − 1', () => {
    expect(fixedPointParams({ clip: 1, clients: 1000 })).toEqual({ clip: 1, clients: 1000, scale: 2 ** 21, weightScale: 2 ** 21 })
    for (const clip of [1e-6, 0.01, 0.3, 1, 1.5, 7, 100, 12345.678]) {
      for (const clients of [1, 2, 3, 7, 100, 1000, 65536, 100_000]) {
        if (clients * clip >= INT32_MAX) continue
        const { scale, weightScale } = fixedPointParams({ clip, clients })
        expect(Number.isInteger(Math.log2(scale)), `${clip}/${clients}`).toBe(true)
        expect(clients * Math.ceil(clip * scale)).toBeLessThanOrEqual(INT32_MAX)
        expect(clients * Math.ceil(clip * scale * 2)).toBeGreaterThan(INT32_MAX)
        expect(clients * weightScale).toBeLessThanOrEqual(INT32_MAX)
        expect(clients * weightScale * 2).toBeGreaterThan(INT32_MAX)
      }
    }
  })

  it('refuses parameters that leave no scale ≥ 1, and invalid arguments, naming them', () => {
    expect(() => fixedPointParams({ clip: 2 ** 31, clients: 1 })).toThrow(RangeError)
    expect(() => fixedPointParams({ clip: 3e6, clients: 1000 })).toThrow(/no scale ≥ 1/)
    expect(() => fixedPointParams({ clip: 0, clients: 10 })).toThrow(/clip must be a positive finite number/)
    expect(() => fixedPointParams({ clip: Number.NaN, clients: 10 })).toThrow(/clip/)
    expect(() => fixedPointParams({ clip: Infinity, clients: 10 })).toThrow(/clip/)
    expect(() => fixedPointParams({ clip: 1, clients: 0 })).toThrow(/clients must be an integer/)
    expect(() => fixedPointParams({ clip: 1, clients: 2.5 })).toThrow(/clients/)
    expect(() => fixedPointParams({ clip: 1, clients: 2 ** 31 })).toThrow(/clients/)
  })

  it('terminates with a finite scale for a subnormal clip', () => {
    const { scale } = fixedPointParams({ clip: 5e-324, clients: 1 })
    expect(scale).toBe(2 ** 1000)
  })

  it('refuses hand-built params that break the overflow bound', () => {
    const bad: FixedPointParams = { clip: 1, clients: 1000, scale: 2 ** 22, weightScale: 2 ** 21 }
    expect(() => encode(new Float32Array(1), bad, Math.random)).toThrow(/overflow bound/)
    expect(() => decode(new Uint32Array(1), bad)).toThrow(/overflow bound/)
  })
})

describe('encode / decode', () => {
  const params = fixedPointParams({ clip: 2, clients: 100 })

  it('round-trips any value in [−clip, clip] to within 1/scale', () => {
    const random = mulberry32(1)
    const x = randomVector(10_000, -2, 2, random)
    const back = decode(encode(x, params, random), params)
    let worst = 0
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs((back[i] as number) - (x[i] as number)))
    expect(worst).toBeLessThan(1 / params.scale)
    expect(worst).toBeGreaterThan(0) // values are not all on the grid: the comparison means something
  })

  it('rounds stochastically without bias', () => {
    // One value between grid points, encoded 100k times. Each encoding is ⌊y⌋ or ⌊y⌋+1, a
    // Bernoulli(frac) trial, so the mean's standard error is √(p(1−p)/N) ≈ 0.00145 units for
    // p = 0.3; 5 standard errors = 0.0073 units. Round-to-nearest would be off by 0.3 units.
    const N = 100_000
    for (const units of [0.3, -2.7, 1234.9]) {
      const x = new Float32Array(N).fill(units / params.scale)
      const y = decode(encode(x, params, mulberry32(7)), params)
      const trueUnits = (x[0] as number) * params.scale // the float32 value actually encoded
      let sum = 0
      for (const v of y) sum += v * params.scale
      const frac = trueUnits - Math.floor(trueUnits)
      const se = Math.sqrt(frac * (1 - frac) / N)
      expect(Math.abs(sum / N - trueUnits), `units ${units}`).toBeLessThan(5 * se)
      for (const v of y.subarray(0, 1000)) expect([Math.floor(trueUnits), Math.floor(trueUnits) + 1]).toContain(v * params.scale)
    }
  })

  it('clips each coordinate to [−clip, clip] (±Infinity included) and refuses NaN', () => {
    const x = Float32Array.of(5, -5, 2, -2, Infinity, -Infinity, 1e30)
    expect(Array.from(decode(encode(x, params, mulberry32(2)), params))).toEqual([2, -2, 2, -2, 2, -2, 2])
    expect(() => encode(Float32Array.of(0, Number.NaN), params, mulberry32(2))).toThrow(InvalidInputError)
    expect(() => encode(Float32Array.of(0, Number.NaN), params, mulberry32(2))).toThrow(/values\[1\] is NaN/)
  })

  it('decodes the ring sum of n encodings to the sum of the clipped values within n/scale', () => {
    const n = 50
    const random = mulberry32(3)
    const xs = Array.from({ length: n }, () => randomVector(2000, -4, 4, random)) // half of them beyond the clip
    const sum = decode(ringSum(xs.map((x) => encode(x, params, random)), 2000), params)
    for (let i = 0; i < 2000; i++) {
      let ref = 0
      for (const x of xs) ref += clipRef(x[i] as number, params.clip)
      expect(Math.abs((sum[i] as number) - ref)).toBeLessThan(n / params.scale)
    }
  })

  it('decodes `clients` encodings at ±clip exactly, and the bound is tight: more would wrap', () => {
    const p = fixedPointParams({ clip: 1, clients: 1000 })
    const at = (value: number, count: number): Float64Array =>
      decode(ringSum(Array.from({ length: count }, () => encode(Float32Array.of(value), p, mulberry32(4))), 1), p)
    expect(at(1, 1000)[0]).toBe(1000)
    expect(at(-1, 1000)[0]).toBe(-1000)
    expect(at(1, 1025)[0]).toBeLessThan(0) // 1025·2^21 > 2^31 − 1: the int32 reading wraps
  })

  it('stays exact at the bound when clip·scale is not an integer (rounding up to the ceiling)', () => {
    const p = fixedPointParams({ clip: 0.3, clients: 7 })
    expect(Number.isInteger(p.clip * p.scale)).toBe(false)
    const random = mulberry32(5)
    for (const sign of [1, -1]) {
      const encs = Array.from({ length: 7 }, () => encode(new Float32Array(64).fill(sign * 0.3), p, random))
      const units = decode(ringSum(encs, 64), p).map((v) => v * p.scale)
      for (let i = 0; i < 64; i++) {
        let ref = 0 // the same integers summed without the ring
        for (const e of encs) ref += (e[i] as number) | 0
        expect(units[i]).toBe(ref)
      }
    }
  })
})

describe('FedAvg updates (encodeUpdate / decodeMean)', () => {
  it('decodes the sample-weighted mean and the total weight', () => {
    const params = fixedPointParams({ clip: 1, clients: 8 })
    const random = mulberry32(11)
    const samples = [10, 300, 1000, 5000, 50]
    const weights = samples.map((s) => sampleWeight({ samples: s, sampleCap: 1000 }))
    expect(weights).toEqual([0.01, 0.3, 1, 1, 0.05])
    const deltas = samples.map(() => randomVector(500, -1.5, 1.5, random))
    const sum = ringSum(deltas.map((delta, k) => encodeUpdate(delta, { params, weight: weights[k] as number, random })), 501)
    const { mean, totalWeight } = decodeMean(sum, params)
    const W = weights.reduce((a, b) => a + b, 0)
    expect(Math.abs(totalWeight - W)).toBeLessThanOrEqual(5 / params.weightScale)
    expect(mean.length).toBe(500)
    for (let i = 0; i < 500; i++) {
      let ref = 0
      for (let k = 0; k < deltas.length; k++) ref += clipRef((weights[k] as number) * (deltas[k]![i] as number), 1)
      ref /= W
      expect(Math.abs((mean[i] as number) - ref)).toBeLessThan(5 / (params.scale * W) + 1e-6)
    }
  })

  it('puts DP noise on after the weight, so the sum carries n·sigma² whatever the weights', () => {
    const params = fixedPointParams({ clip: 1, clients: 4 })
    const random = mulberry32(12)
    const sigma = 0.01
    const N = 50_000
    const sum = ringSum([1, 0.5, 0.25, 0.1].map((weight) =>
      encodeUpdate(new Float32Array(N), { params, weight, random, dp: { l2Clip: 1, sigma, valueClip: params.clip } })), N + 1)
    const noise = decode(sum, params).subarray(0, N)
    let sq = 0
    for (const v of noise) sq += v * v
    // Expected sd σ·√4 = 0.02 (noise before weighting would give ≈ 0.0115). Sample-sd standard
    // error is sd/√(2N) ≈ 0.3%; allow 2%.
    expect(Math.abs(Math.sqrt(sq / N) / (2 * sigma) - 1)).toBeLessThan(0.02)
  })

  it('does not clip the noise of a DP update: its noisy coordinates keep their full Gaussian spread, so the sum is the Gaussian sum (secure or not: review 48a)', () => {
    // Per-coordinate clip 0.1 = sigma: clipping each noisy value at ±clip (as before) cut the
    // spread to ≈ 0.66 sigma, and 32% of coordinates sat at the clip.
    // 8 clients: one client's values read exactly up to ±1 (10 sigma), so nothing wraps here.
    const params = fixedPointParams({ clip: 0.1, clients: 8 })
    const sigma = 0.1
    const N = 50_000
    const one = decode(encodeUpdate(new Float32Array(N), { params, weight: 1, random: mulberry32(21), dp: { l2Clip: 1, sigma, valueClip: params.clip } }), params).subarray(0, N)
    let sq = 0
    let beyond = 0
    for (const v of one) { sq += v * v; if (Math.abs(v) > params.clip) beyond++ }
    expect(Math.abs(Math.sqrt(sq / N) / sigma - 1)).toBeLessThan(0.02)
    // P(|N(0, σ)| > σ) ≈ 31.7%.
    expect(Math.abs(beyond / N - 0.317)).toBeLessThan(0.01)
    // The weighted delta itself is still clipped per coordinate before the noise.
    const { mean } = decodeMean(encodeUpdate(Float32Array.of(0.6, 0.8), { params, weight: 1, random: mulberry32(22), dp: { l2Clip: 1, sigma: 0, valueClip: params.clip } }), params)
    expect(Array.from(mean, v => Math.round(v * 1e6) / 1e6)).toEqual([0.1, 0.1])
  })

  it('clips the values of a DP update to valueClip, leaving params.clip\'s excess to the noise', () => {
    // A round's params.clip is its clip plus the noise headroom (coordinator/rounds/fixed-point.ts).
    const params = fixedPointParams({ clip: 1, clients: 4 })
    const encoding = { params, weight: 1, random: mulberry32(24) }
    const { mean } = decodeMean(encodeUpdate(Float32Array.of(0.6, -0.8), { ...encoding, dp: { l2Clip: 1, sigma: 0, valueClip: 0.25 } }), params)
    expect(Array.from(mean)).toEqual([0.25, -0.25])
    expect(() => encodeUpdate(Float32Array.of(0.6), { ...encoding, dp: { l2Clip: 1, sigma: 0 } as never })).toThrow(/dp.valueClip/)
    expect(() => encodeUpdate(Float32Array.of(0.6), { ...encoding, dp: { l2Clip: 1, sigma: 0, valueClip: 1.5 } })).toThrow(/dp.valueClip must be in \(0, params.clip = 1\]/)
  })

  it('clips the delta to l2Clip before weighting when dp is set', () => {
    const params = fixedPointParams({ clip: 10, clients: 2 })
    const delta = Float32Array.of(3, 4) // norm 5
    const { mean } = decodeMean(encodeUpdate(delta, { params, weight: 0.5, random: mulberry32(13), dp: { l2Clip: 1, sigma: 0, valueClip: params.clip } }), params)
    expect(mean[0]).toBeCloseTo(0.6, 6)
    expect(mean[1]).toBeCloseTo(0.8, 6)
  })

  it('refuses a weight outside (0, 1], an empty or wrapped sum, and a NaN delta', () => {
    const params = fixedPointParams({ clip: 1, clients: 3 })
    const d = new Float32Array(4)
    expect(() => encodeUpdate(d, { params, weight: 300, random: Math.random })).toThrow(/weight must be in \(0, 1\]/)
    expect(() => encodeUpdate(d, { params, weight: 0, random: Math.random })).toThrow(RangeError)
    expect(() => encodeUpdate(d, { params, weight: 1, random: Math.random, dp: { l2Clip: 0, sigma: 1, valueClip: 1 } })).toThrow(/dp.l2Clip/)
    expect(() => encodeUpdate(d, { params, weight: 1, random: Math.random, dp: { l2Clip: 1, sigma: -1, valueClip: 1 } })).toThrow(/dp.sigma/)
    expect(() => encodeUpdate(Float32Array.of(Number.NaN), { params, weight: 1, random: Math.random })).toThrow(/delta\[0\] is NaN/)
    expect(() => decodeMean(new Uint32Array(5), params)).toThrow(InvalidInputError)
    expect(() => decodeMean(new Uint32Array(0), params)).toThrow(/empty/)
    const four = Array.from({ length: 4 }, () => encodeUpdate(d, { params, weight: 1, random: mulberry32(1) }))
    expect(() => decodeMean(ringSum(four, 5), params)).toThrow(/more than params.clients/)
  })

  it('sampleWeight caps at sampleCap and checks its arguments', () => {
    expect(sampleWeight({ samples: 250, sampleCap: 1000 })).toBe(0.25)
    expect(sampleWeight({ samples: 5000, sampleCap: 1000 })).toBe(1)
    expect(() => sampleWeight({ samples: 0, sampleCap: 1000 })).toThrow(/samples/)
    expect(() => sampleWeight({ samples: 1, sampleCap: 0 })).toThrow(/sampleCap/)
  })
})

describe('cryptoUniform', () => {
  it('draws 53-bit uniforms in [0, 1) from the CSPRNG', () => {
    const u = cryptoUniform()
    const N = 100_000 // crosses several 64 KiB batches
    let sum = 0
    let offGrid = 0
    let outside = 0
    for (let i = 0; i < N; i++) {
      const x = u()
      if (!(x >= 0 && x < 1)) outside++
      sum += x
      if (!Number.isInteger(x * 2 ** 32)) offGrid++
    }
    // Mean of N uniforms: sd √(1/12N) ≈ 0.00091; 6 sd leaves a ~1e-9 chance of a false failure.
    expect(Math.abs(sum / N - 0.5)).toBeLessThan(6 * Math.sqrt(1 / (12 * N)))
    expect(outside).toBe(0)
    expect(offGrid).toBeGreaterThan(N * 0.99) // more than 32 bits of resolution
  })
})
