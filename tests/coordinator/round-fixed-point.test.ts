/**
 * A round's fixed-point parameters (coordinator/rounds/fixed-point.ts): a secure sum of DP updates,
 * whose noise clients leave unclipped, is sized so that no coordinate wraps; the review's case
 * (100,000 coordinates, clip 0.5, 4 clients) wrapped 443 of them at z = 1 with the clip alone; here z = 2.
 */
import { expect, it } from 'vitest'
import { roundFixedPoint } from '../../coordinator/rounds/fixed-point.ts'
import { decode, encodeUpdate, fixedPointParams } from '../../aggregation/fixed-point.ts'
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
  const sum = decode(ringSum(ids.map(() => encodeUpdate(new Float32Array(D), { params, weight: 1, random, dp: { l2Clip: 1, sigma, secureSum: true } })), D + 1), params).subarray(0, D)
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

it('keeps the clip alone without DP, or in mode none, where clients clip their noise', () => {
  expect(roundFixedPoint({ ...request, dp: null }, ids)).toEqual(fixedPointParams({ clip: 0.5, clients: 4 }))
  expect(roundFixedPoint({ ...request, secure: { mode: 'none', graph: 'sparse' } }, ids)).toEqual(fixedPointParams({ clip: 0.5, clients: 4 }))
})
