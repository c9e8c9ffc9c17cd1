/**
 * Client-side Gaussian noise for distributed differential privacy under secure aggregation
 * (the Gaussian mechanism, Dwork & Roth 2014 §3.5.3; distributed over clients as in Kairouz,
 * Liu & Steinke 2021, §1): if each of n clients adds N(0, (z·C)²/n) to its clipped update, the sum
 * the server sees carries N(0, (z·C)²) — the central mechanism with noise multiplier z for
 * L2 sensitivity C — while no single client's noise is large.
 *
 * Trust assumption: at least `minClients` participants are honest and really add their share.
 * If fewer honest clients contribute, or dishonest ones subtract theirs, the sum carries less
 * noise than accounted for. Rounds must therefore refuse to close with fewer than `minClients`.
 *
 * Also outside the accounting: the FedAvg total weight Σ w_k travels un-noised in the sum
 * (fixed-point.ts, `encodeUpdate`), so the participants' capped sample counts are public in
 * aggregate; give every client weight 1 where that matters. The accounting is for zero-out
 * neighbours (one update replaced by zero; coordinator/rounds/rounds.ts, `privacySpent`).
 *
 * Noise is continuous (float64) and then rounded into the ring by fixed-point encoding. Strictly,
 * each client's stochastic rounding moves its vector by up to √d/scale in L2 (d coordinates),
 * which the accountant does not charge for; and floating-point noise has the caveats of
 * Mironov 2012. The distributed discrete Gaussian (Kairouz, Liu & Steinke 2021) addresses both
 * and is not implemented here.
 */
import { cryptoUniform } from '../fixed-point.ts'
import { gaussianSampler } from './_gaussian.ts'

/**
 * A copy of v with independent N(0, sigma²) noise added to each coordinate. The uniform source
 * defaults to `cryptoUniform()` (a CSPRNG): noise an attacker can predict protects nothing. Pass
 * a seeded `random` only in tests.
 */
export function addGaussianNoise (v: Float32Array, sigma: number, random: () => number = cryptoUniform()): Float32Array {
  if (!(Number.isFinite(sigma) && sigma >= 0)) throw new RangeError(`addGaussianNoise: sigma must be a non-negative finite number, got ${String(sigma)}`)
  const gauss = gaussianSampler(random)
  const out = new Float32Array(v.length)
  for (let i = 0; i < v.length; i++) out[i] = (v[i] as number) + sigma * gauss()
  return out
}

/**
 * Each client's noise standard deviation, z·C/√n, so that the sum over n clients has standard
 * deviation z·C (variances add). Assumes at least `minClients` honest participants.
 *
 * @example clientNoiseSigma({ noiseMultiplier: 1, clip: 0.5, minClients: 100 }) // → 0.05
 */
export function clientNoiseSigma ({ noiseMultiplier, clip, minClients }: { noiseMultiplier: number, clip: number, minClients: number }): number {
  if (!(Number.isFinite(noiseMultiplier) && noiseMultiplier >= 0)) throw new RangeError(`clientNoiseSigma: noiseMultiplier must be a non-negative finite number, got ${String(noiseMultiplier)}`)
  if (!(Number.isFinite(clip) && clip > 0)) throw new RangeError(`clientNoiseSigma: clip must be a positive finite number, got ${String(clip)}`)
  if (!(Number.isSafeInteger(minClients) && minClients >= 1)) throw new RangeError(`clientNoiseSigma: minClients must be a positive integer, got ${String(minClients)}`)
  return (noiseMultiplier * clip) / Math.sqrt(minClients)
}

/** √(2 ln 10⁹): a noise vector's norm exceeds sd·(√d + this) with probability below 10⁻⁹. */
const NORM_TAIL = Math.sqrt(2 * Math.log(1e9))

/**
 * A high-probability bound on the L2 norm of d coordinates of N(0, sd²) noise: sd·(√d + t),
 * t = √(2 ln 10⁹). ‖·‖ is 1-Lipschitz and E‖X‖ ≤ sd·√d, so by Gaussian concentration
 * (Boucheron, Lugosi & Massart 2013, Thm. 5.6) P(‖X‖ > sd·(√d + t)) ≤ e^(−t²/2) = 10⁻⁹, at
 * every d (a multiple of sd·√d alone, as before, refused 4% of honest 4-coordinate updates).
 */
export function noiseNormBound (sd: number, d: number): number {
  return sd * (Math.sqrt(d) + NORM_TAIL)
}

/**
 * The standard deviation per coordinate of the noise in a sum of `contributions` client
 * updates, each noised with clientNoiseSigma: z·C·√(contributions / minClients). It is z·C
 * only when exactly `minClients` contribute; every extra client adds its share (what a server's
 * sanity bound on the noisy sum must allow for).
 *
 * @example sumNoiseSd({ noiseMultiplier: 1, clip: 1, minClients: 5, contributions: 20 }) // → 2
 */
export function sumNoiseSd ({ noiseMultiplier, clip, minClients, contributions }: { noiseMultiplier: number, clip: number, minClients: number, contributions: number }): number {
  if (!(Number.isSafeInteger(contributions) && contributions >= 0)) throw new RangeError(`sumNoiseSd: contributions must be a non-negative integer, got ${String(contributions)}`)
  return clientNoiseSigma({ noiseMultiplier, clip, minClients }) * Math.sqrt(contributions)
}
