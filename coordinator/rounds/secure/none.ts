/**
 * Secure mode `none`: clients upload their fixed-point vectors in the clear. The coordinator can
 * and does check each one: length, the client weight in (0, 1], every coordinate within the
 * fixed-point clip, and the decoded delta's L2 norm against the round's bound. For tests,
 * trusted silos and baselines; not private.
 */
import type { RoundConfig } from '../../../shared/rounds/config.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { ringSum } from '../../../aggregation/ring.ts'
import { clientNoiseSigma, noiseNormBound } from '../../../aggregation/dp/noise.ts'
import { minUploadsOf } from '../../../shared/rounds/config.ts'
import type { SecureRoundServer } from './types.ts'

export function asRingVector (payload: Uint8Array, length: number, what: string): Uint32Array {
  if (payload.length !== length * 4) throw new InvalidInputError(`${what}: ${payload.length} bytes, the round expects ${length} × 4`)
  return new Uint32Array(payload.slice().buffer)
}

export function plainServer (config: RoundConfig): SecureRoundServer {
  const { scale, weightScale, clip } = config.fixedPoint
  // An honest encoder clips every value to the round's clip, and its DP noise stays within the
  // 7σ headroom above it in all but 2.6·10⁻¹² of coordinates (coordinator/rounds/fixed-point.ts);
  // the overflow bound of the sum counts on ±clip (the headroom's included). So an honest DP
  // upload of d coordinates is refused here with probability ≈ d·2.6·10⁻¹² (2.6·10⁻⁶ at a million).
  // Before, clients clipped their noise to the clip, which nothing refused and the accountant did
  // not cover (review 48a).
  const maxCoordinate = Math.ceil(clip * scale)
  const dpSigma = config.dp === null ? 0 : clientNoiseSigma({ noiseMultiplier: config.dp.noiseMultiplier, clip: config.dp.clip, minClients: minUploadsOf(config) })
  return {
    mode: 'none',
    uploadBytes: config.vectorLength * 4,
    setup: async accepted => accepted,
    message () { throw new InvalidInputError('this round has no secure-aggregation messages (mode none)') },
    checkUpload (clientId, payload) {
      const v = new Int32Array(asRingVector(payload, config.vectorLength, 'upload').buffer)
      const weight = (v[v.length - 1] as number) / weightScale
      if (!(weight > 0 && weight <= 1 + 1 / weightScale)) throw new InvalidInputError(`upload: client weight ${weight} is outside (0, 1]`)
      let sq = 0
      for (let i = 0; i < v.length - 1; i++) {
        const x = v[i] as number
        if (x > maxCoordinate || x < -maxCoordinate) throw new InvalidInputError(`upload: coordinate ${i} is ${(x / scale).toPrecision(4)}, outside the round's clip ±${clip}`)
        sq += (x / scale) ** 2
      }
      // Each coordinate is w·Δ_i (+ DP noise N(0, σ²)) rounded to 1/scale: allow the rounding, and
      // with DP the noise's norm, up to a bound it passes with probability 1 − 10⁻⁹.
      const d = v.length - 1
      const bound = config.dp === null ? config.normBound : Math.min(config.normBound, config.dp.clip)
      const allowed = weight * bound + noiseNormBound(dpSigma, d) + Math.sqrt(d) / scale + 1e-9
      if (Math.sqrt(sq) > allowed) throw new InvalidInputError(`upload: update norm ${(Math.sqrt(sq) / weight).toPrecision(4)} exceeds the round's bound ${bound}`)
    },
    sum: async uploads => ringSum([...uploads.values()].map(u => asRingVector(u.payload, config.vectorLength, 'upload')), config.vectorLength),
    drop () {},
    snapshot: () => null,
    needsClients: () => false
  }
}
