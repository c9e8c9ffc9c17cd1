/**
 * A round's fixed-point parameters (aggregation/fixed-point.ts). Clients clip each weighted
 * coordinate to ±clip; the scale is the largest whose sum over the selected clients cannot
 * overflow. A sum of DP updates, secure or not, also carries each client's noise unclipped
 * (modular clipping, encodeUpdate's `dp`), so its bound leaves NOISE_HEADROOM client noise sigmas
 * per coordinate on top of the clip (clients still clip their values to the request's clip,
 * encodeUpdate's `valueClip`, so the headroom stays the noise's): the sum of U ≤ clients noises
 * has sd √U·σ, and clients·7σ ≥ 7·√U·σ, so a coordinate wraps with probability below 3·10⁻¹²
 * (3·10⁻⁶ per round of a million coordinates). Without the headroom 443 of 100,000 coordinates
 * wrapped at clip 0.5, z = 1 (review).
 */
import { fixedPointParams, type FixedPointParams } from '../../aggregation/fixed-point.ts'
import { clientNoiseSigma } from '../../aggregation/dp/noise.ts'
import { minUploadsOf, type RoundRequest } from '../../shared/rounds/config.ts'

export const NOISE_HEADROOM = 7

/** The parameters of a round of `request` among the selected `clients`. */
export function roundFixedPoint (request: Pick<RoundRequest, 'clip' | 'dp' | 'secure' | 'selection'>, clients: string[]): FixedPointParams {
  // Mode none too (review 48a): its noise clipped per client shrank the mean and the sum's noise.
  const sigma = request.dp === null
    ? 0
    : clientNoiseSigma({ noiseMultiplier: request.dp.noiseMultiplier, clip: request.dp.clip, minClients: minUploadsOf({ selection: request.selection, clients }) })
  return fixedPointParams({ clip: request.clip + NOISE_HEADROOM * sigma, clients: clients.length })
}
