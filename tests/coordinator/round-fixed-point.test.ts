/**
 * A round's fixed-point parameters (coordinator/rounds/fixed-point.ts): a secure sum of DP updates,
 * whose noise clients leave unclipped, is sized so that no coordinate wraps; the review's case
 * (100,000 coordinates, clip 0.5, 4 clients) wrapped 443 of them at z = 1 with the clip alone; here z = 2.
 */
import { expect, it } from 'vitest'
import { roundFixedPoint } from '../../coordinator/rounds/fixed-point.ts'
import { decode, decodeMean, encodeUpdate, fixedPointParams } from '../../aggregation/fixed-point.ts'
import { clientNoiseSigma } from '../../aggregation/dp/noise.ts'
import { ringSum } from '../../aggregation/ring.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'

const D = 100_000
const Z = 2
const ids = ['a', 'b', 'c', 'd']
const request = { clip: 0.5, dp: { noiseMultiplier: Z, clip: 1, delta: 1e-5 }, secure: { mode: 'masking' as const, graph: 'sparse' as const }, selection: { minClients: 4, maxClients: 4, fraction: 1, cooldownMs: 0 } }

/** The spread of the decoded sum of 4 noisy zero updates, over its Gaussian sd (1 when nothing wrapped). */
function spread (params: ReturnType<typeof fixedPointParams>): number {
  const sigma = clientNoiseSigma({ noiseMultiplier: Z, clip: 1, minClients: 2 })
  const random = mulberry32(33)
  const sum = decode(ringSum(ids.map(() => encodeUpdate(new Float32Array(D), { params, weight: 1, random, dp: { l2Clip: 1, sigma, valueClip: request.clip } })), D + 1), params).subarray(0, D)
  let sq = 0
  for (const v of sum) sq += v * v
  return Math.sqrt(sq / D) / (sigma * Math.sqrt(ids.length))
}

it('leaves a DP secure sum room for its noise: no coordinate wraps', () => {
  const params = roundFixedPoint(request, ids)
  expect(params.clip).toBeCloseTo(0.5 + 7 * clientNoiseSigma({ noiseMultiplier: Z, clip: 1, minClients: 2 }), 9)
  // The sum's noise keeps its Gaussian sd (standard error of the estimate ≈ 0.2 %).
  expect(Math.abs(spread(params) - 1)).toBeLessThan(0.02)
  // With the clip alone the sum reads only within ±4 (the scale's power of two), 1.4 of its sds: 16 % of coordinates wrap.
  expect(spread(fixedPointParams({ clip: 0.5, clients: ids.length }))).toBeLessThan(0.9)
})

it('leaves the headroom to the noise: honest values at the clip fill only the clip, and no sum wraps', () => {
  // The review's case: 64 clients at z = 0.5 (σ = 1/16 each), a clip putting clients·⌈params.clip·scale⌉
  // just under 2^31. Clipping values to params.clip filled the headroom: 96 of 200 sums flipped sign.
  const clients = Array.from({ length: 64 }, (_, i) => i.toString(16).padStart(64, '0'))
  const dp = { noiseMultiplier: 0.5, clip: 1, delta: 1e-5 }
  const tight = { ...request, clip: 1 - 2 ** -20 - 7 / 16, dp, selection: { minClients: 2, maxClients: 64, fraction: 1, cooldownMs: 0, minUploads: 64 } }
  const params = roundFixedPoint(tight, clients)
  const sigma = clientNoiseSigma({ noiseMultiplier: 0.5, clip: 1, minClients: 64 })
  expect(params.clip).toBeCloseTo(1 - 2 ** -20, 9)
  const random = mulberry32(7)
  let wrapped = 0
  let worst = 0
  for (let t = 0; t < 200; t++) {
    // Each client's delta (1, 0) is within dp.clip and weight 1: its first coordinate clips to the round's clip.
    const encoded = clients.map(() => encodeUpdate(Float32Array.of(1, 0), { params, weight: 1, random, dp: { l2Clip: 1, sigma, valueClip: tight.clip } }))
    const first = decodeMean(ringSum(encoded, 3), params).mean[0] as number
    if (first < 0) wrapped++
    worst = Math.max(worst, Math.abs(first - tight.clip))
  }
  expect(wrapped).toBe(0)
  // The mean's noise has sd √64·σ / 64 ≈ 0.0078; 200 draws stay within 5 sds.
  expect(worst).toBeLessThan(5 * sigma / 8)
})

it('keeps the clip alone without DP', () => {
  expect(roundFixedPoint({ ...request, dp: null }, ids)).toEqual(fixedPointParams({ clip: 0.5, clients: 4 }))
  expect(roundFixedPoint({ ...request, dp: null, secure: { mode: 'none', graph: 'sparse' } }, ids)).toEqual(fixedPointParams({ clip: 0.5, clients: 4 }))
})

it('leaves mode none with DP the same room: its mean is unbiased and its sum carries the noise the accountant charges for (review 48a)', () => {
  // The review's case: 10 clients (minUploads 5) send 0.003 in each of 100,000 coordinates, clip
  // 0.1, z = 1. Each noisy value clipped to the clip (mode none had no headroom) gave a mean of
  // 0.0004 and a sum whose noise sd was 0.21 of z·C·√(U/m).
  const clients = Array.from({ length: 10 }, (_, i) => i.toString(16).padStart(64, '0'))
  const none = { clip: 0.1, dp: { noiseMultiplier: 1, clip: 1, delta: 1e-5 }, secure: { mode: 'none' as const, graph: 'sparse' as const }, selection: { minClients: 2, maxClients: 10, fraction: 1, cooldownMs: 0, minUploads: 5 } }
  const params = roundFixedPoint(none, clients)
  const sigma = clientNoiseSigma({ noiseMultiplier: 1, clip: 1, minClients: 5 })
  expect(params.clip).toBeCloseTo(0.1 + 7 * sigma, 9)
  const random = mulberry32(48)
  const delta = new Float32Array(D).fill(0.003)
  const { mean } = decodeMean(ringSum(clients.map(() => encodeUpdate(delta, { params, weight: 1, random, dp: { l2Clip: 1, sigma, valueClip: none.clip } })), D + 1), params)
  let m = 0
  for (const x of mean) m += x
  m /= D
  let v = 0
  for (const x of mean) v += (x - m) ** 2
  // The mean's noise per coordinate has sd σ·√10/10 ≈ 0.141: their average is 0.003 within ±0.0014 (3 standard errors).
  expect(Math.abs(m - 0.003)).toBeLessThan(0.0014)
  // The sum's noise sd over z·C·√(U/m) = √2 (standard error of the estimate ≈ 0.2 %).
  expect(Math.abs(Math.sqrt(v / (D - 1)) * clients.length / Math.SQRT2 - 1)).toBeLessThan(0.02)
})
