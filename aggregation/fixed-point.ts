/**
 * Fixed-point encoding of float updates into the ring Z/2^32, where secure aggregation sums them
 * (Bonawitz et al. 2017, §3; the clip-scale-stochastically-round recipe of Kairouz, Liu & Steinke
 * 2021, "The Distributed Discrete Gaussian Mechanism for Federated Learning with Secure
 * Aggregation", §4, without their random rotation).
 *
 * Overflow bound. Every encoded coordinate is an integer in [−⌈clip·scale⌉, ⌈clip·scale⌉], so a
 * sum of at most `clients` encodings stays in [−(2^31 − 1), 2^31 − 1] provided
 *
 *     clients · ⌈clip · scale⌉ ≤ 2^31 − 1        (the brief's clients·clip·scale < 2^31, with the
 *                                                 ceiling that stochastic rounding can reach)
 *
 * and reading the ring sum as a two's-complement int32 then recovers the exact integer sum.
 * `fixedPointParams` picks the largest power-of-two `scale` meeting it (a power of two so that
 * scaling a float is exact and decoding divides exactly).
 *
 * FedAvg. A client encodes `w·delta` and, as one extra coordinate, `w` itself
 * (`encodeUpdate`); the server decodes the sum of those vectors with `decodeMean`, which
 * divides Σ w_k·delta_k by the Σ w_k it carries. The weight coordinate has its own scale because
 * w ∈ (0, 1] need not fit under `clip`.
 */
import { InvalidInputError } from '../shared/errors/errors.ts'
import { clipL2 } from './dp/clip.ts'
import { gaussianSampler } from './dp/_gaussian.ts'

/** The largest value a sum may reach for its int32 reading to stay exact. */
const INT32_MAX = 2 ** 31 - 1

/** Parameters shared by every client of a round and the server; build with `fixedPointParams`. */
export interface FixedPointParams {
  /** Per-coordinate bound: values are clipped to [−clip, clip] before scaling. */
  readonly clip: number
  /** The most encodings that may be summed; the overflow bound holds up to this many. */
  readonly clients: number
  /** Ring units per 1.0 for values: a power of two, resolution 1/scale. */
  readonly scale: number
  /** Ring units per 1.0 for the FedAvg weight coordinate (weights lie in (0, 1]). */
  readonly weightScale: number
}

/** A cap that keeps the search finite when the bound is subnormal; no real clip comes near it. */
const MAX_SCALE_LOG2 = 1000

/** Largest power of two s ≤ 2^1000 with clients·⌈bound·s⌉ ≤ 2^31 − 1 (possibly below 1). */
function largestScale (bound: number, clients: number): number {
  let s = 2 ** Math.min(MAX_SCALE_LOG2, Math.floor(Math.log2(INT32_MAX / (clients * bound))))
  // log2 can be off by one ulp around exact powers, and the ceiling may tip the product over.
  while (s > 0 && clients * Math.ceil(bound * s) > INT32_MAX) s /= 2
  while (s < 2 ** MAX_SCALE_LOG2 && clients * Math.ceil(bound * s * 2) <= INT32_MAX) s *= 2
  return s
}

/**
 * Chooses `scale` for a round: the largest power of two such that `clients` encodings of values
 * in [−clip, clip] sum without overflowing int32 (see the header for the bound).
 *
 * @example fixedPointParams({ clip: 1, clients: 1000 }) // → { clip: 1, clients: 1000, scale: 2 ** 21, weightScale: 2 ** 21 }
 */
export function fixedPointParams ({ clip, clients }: { clip: number, clients: number }): FixedPointParams {
  if (!(Number.isFinite(clip) && clip > 0)) throw new RangeError(`fixedPointParams: clip must be a positive finite number, got ${String(clip)}`)
  if (!(Number.isSafeInteger(clients) && clients >= 1 && clients <= INT32_MAX)) {
    throw new RangeError(`fixedPointParams: clients must be an integer from 1 to 2^31 − 1, got ${String(clients)}`)
  }
  const scale = largestScale(clip, clients)
  if (scale < 1) {
    throw new RangeError(`fixedPointParams: clip ${clip} with clients ${clients} leaves no scale ≥ 1 under 2^31 (clients·clip = ${clients * clip}); lower clip or clients`)
  }
  return Object.freeze({ clip, clients, scale, weightScale: largestScale(1, clients) })
}

function checkParams (params: FixedPointParams, where: string): void {
  const { clip, clients, scale, weightScale } = params
  // A hand-built params object could break the overflow bound silently; re-check it (O(1)).
  if (!(clip > 0 && scale >= 1 && weightScale >= 1 && Number.isSafeInteger(clients) && clients >= 1 &&
      clients * Math.ceil(clip * scale) <= INT32_MAX && clients * weightScale <= INT32_MAX)) {
    throw new RangeError(`${where}: params break the overflow bound clients·⌈clip·scale⌉ ≤ 2^31 − 1; build them with fixedPointParams`)
  }
}

/**
 * x·scale rounded to an integer stochastically — up with probability equal to the fractional
 * part, so E[result] = x·scale exactly — after clipping x to [−clip, clip] (no clipping for
 * clip = Infinity); stored mod 2^32.
 */
function encodeInto (out: Uint32Array, values: ArrayLike<number>, clip: number, scale: number, random: () => number, what: string): void {
  for (let i = 0; i < values.length; i++) {
    let x = values[i] as number
    if (x > clip) x = clip
    else if (x < -clip) x = -clip
    else if (x !== x) throw new InvalidInputError(`${what}[${i}] is NaN`)
    const y = x * scale
    const f = Math.floor(y)
    // Uint32Array stores reduce mod 2^32, so a negative integer lands as its two's complement.
    out[i] = random() < y - f ? f + 1 : f
  }
}

/**
 * Encodes `values` into Z/2^32: clip each coordinate to [−clip, clip], multiply by `scale`,
 * round stochastically (unbiased), reduce mod 2^32. `random` returns uniform numbers in [0, 1):
 * `cryptoUniform()` in production, a seeded generator in tests. ±Infinity clips to ±clip; NaN
 * throws InvalidInputError.
 *
 * For FedAvg updates use `encodeUpdate`, which also carries the weight.
 *
 * @example const enc = encode(Float32Array.of(0.25, -3), fixedPointParams({ clip: 1, clients: 8 }), cryptoUniform())
 */
export function encode (values: Float32Array, params: FixedPointParams, random: () => number): Uint32Array {
  checkParams(params, 'encode')
  const out = new Uint32Array(values.length)
  encodeInto(out, values, params.clip, params.scale, random, 'values')
  return out
}

/**
 * Decodes a ring sum of encodings (or one encoding): each coordinate read as a two's-complement
 * int32, divided by `scale`. Exact as long as at most `params.clients` encodings were summed.
 */
export function decode (sum: Uint32Array, params: FixedPointParams): Float64Array {
  checkParams(params, 'decode')
  const signed = new Int32Array(sum.buffer, sum.byteOffset, sum.length)
  const out = new Float64Array(sum.length)
  const inv = 1 / params.scale // exact: scale is a power of two
  for (let i = 0; i < out.length; i++) out[i] = (signed[i] as number) * inv
  return out
}

/**
 * FedAvg client weight w = min(samples, sampleCap) / sampleCap ∈ (0, 1] (McMahan et al. 2018,
 * "Learning Differentially Private Recurrent Language Models", §2: capped weights bound each
 * client's influence, which both the overflow bound and DP sensitivity rely on).
 */
export function sampleWeight ({ samples, sampleCap }: { samples: number, sampleCap: number }): number {
  if (!(Number.isSafeInteger(sampleCap) && sampleCap >= 1)) throw new RangeError(`sampleWeight: sampleCap must be a positive integer, got ${String(sampleCap)}`)
  if (!(Number.isSafeInteger(samples) && samples >= 1)) throw new RangeError(`sampleWeight: samples must be a positive integer, got ${String(samples)}`)
  return Math.min(samples, sampleCap) / sampleCap
}

/** How a client encodes its update for a FedAvg round. */
export interface UpdateEncoding {
  /** The round's fixed-point parameters. */
  params: FixedPointParams
  /** This client's FedAvg weight in (0, 1], from `sampleWeight`. */
  weight: number
  /** Uniform [0, 1) source for stochastic rounding and noise: `cryptoUniform()` in production. */
  random: () => number
  /**
   * Distributed DP (see dp/noise.ts): clip the delta to L2 norm `l2Clip`, weight it, clip each
   * weighted coordinate to ±`valueClip` (the round's clip), then add N(0, sigma²) to every
   * coordinate (sigma from `clientNoiseSigma`). Noise goes on after the weight so that the sum
   * carries the full planned noise whatever the weights are.
   *
   * The noisy value is not clipped again but reduced mod 2^32 as it is (the modular clipping of
   * Kairouz, Liu & Steinke 2021, §4): the ring sum is the true noisy sum mod 2^32, a
   * post-processing of the Gaussian sum the accountant charges for. Clipping each client's noisy
   * value made the sum one of per-client truncated noise, which that accounting does not cover:
   * in a secure sum first (review: 443 of 100,000 coordinates wrapped), then in mode `none`,
   * whose sums shrank toward 0 and carried 0.21–0.57 of the accounted noise (review 48a). The
   * sum reads exactly while |Σ values + Σ noise| stays within the overflow bound, so
   * `params.clip` must leave room for the noise above the values: a round's parameters leave 7
   * noise sigmas above its clip (coordinator/rounds/fixed-point.ts), and `valueClip` is that
   * round clip — values clipped to `params.clip` itself would fill the headroom, and the noise
   * wrap the sum (review: 96 of 200 sums at the bound flipped sign). A coordinate that wrapped
   * anyway would be a wrong sum (not a privacy loss), which a norm check does not reliably catch.
   */
  dp?: { l2Clip: number, sigma: number, valueClip: number }
}

/** A DP update's clip on weighted values: at most `params.clip`, whose excess is the noise's room. */
function dpValueClip (valueClip: number | undefined, params: FixedPointParams): number {
  if (!(valueClip !== undefined && valueClip > 0 && valueClip <= params.clip)) {
    throw new RangeError(`encodeUpdate: dp.valueClip must be in (0, params.clip = ${params.clip}] (the round's clip, below the noise headroom), got ${String(valueClip)}`)
  }
  return valueClip
}

/**
 * Encodes a client's FedAvg update: the vector [w·delta (+ noise), w] of length delta.length + 1,
 * the values under `params.scale` and clip, the weight under `params.weightScale`. Sum these
 * vectors (mod 2^32) and `decodeMean` the sum.
 *
 * @example
 * const params = fixedPointParams({ clip: 0.5, clients: 100 })
 * const enc = encodeUpdate(delta, { params, weight: sampleWeight({ samples: 300, sampleCap: 1000 }), random: cryptoUniform() })
 */
export function encodeUpdate (delta: Float32Array, { params, weight, random, dp }: UpdateEncoding): Uint32Array {
  checkParams(params, 'encodeUpdate')
  if (!(weight > 0 && weight <= 1)) throw new RangeError(`encodeUpdate: weight must be in (0, 1] (see sampleWeight), got ${String(weight)}`)
  const values = new Float64Array(delta.length)
  if (dp === undefined) {
    for (let i = 0; i < values.length; i++) values[i] = weight * (delta[i] as number)
  } else {
    const { l2Clip, sigma } = dp
    if (!(Number.isFinite(l2Clip) && l2Clip > 0)) throw new RangeError(`encodeUpdate: dp.l2Clip must be a positive finite number, got ${String(l2Clip)}`)
    if (!(Number.isFinite(sigma) && sigma >= 0)) throw new RangeError(`encodeUpdate: dp.sigma must be a non-negative finite number, got ${String(sigma)}`)
    const { clipped } = clipL2(delta, l2Clip)
    const gauss = gaussianSampler(random)
    const bound = dpValueClip(dp.valueClip, params)
    for (let i = 0; i < values.length; i++) values[i] = Math.min(bound, Math.max(-bound, weight * (clipped[i] as number))) + sigma * gauss()
  }
  const out = new Uint32Array(delta.length + 1)
  // Noisy values are not clipped again (see `dp` above); |value·scale| stays far below 2^53.
  encodeInto(out, values, dp === undefined ? params.clip : Infinity, params.scale, random, 'delta')
  const w = weight * params.weightScale
  const f = Math.floor(w)
  out[delta.length] = random() < w - f ? f + 1 : f
  return out
}

/**
 * Decodes the ring sum of `encodeUpdate` vectors into the FedAvg mean Σ w_k·delta_k / Σ w_k and
 * the total weight Σ w_k. Throws InvalidInputError when the total weight is not in (0, clients]:
 * an empty sum, more contributors than `params.clients` (the sum wrapped), or a corrupted sum.
 * The mean's error is at most contributors / (scale · Σ w_k) per coordinate.
 */
export function decodeMean (sum: Uint32Array, params: FixedPointParams): { mean: Float32Array, totalWeight: number } {
  checkParams(params, 'decodeMean')
  if (sum.length < 1) throw new InvalidInputError('decodeMean: sum is empty; it must end with the weight coordinate')
  const n = sum.length - 1
  const totalWeight = ((sum[n] as number) | 0) / params.weightScale
  if (!(totalWeight > 0 && totalWeight <= params.clients)) {
    throw new InvalidInputError(`decodeMean: total weight ${totalWeight} is outside (0, ${params.clients}]: no contributions, more than params.clients of them, or a corrupted sum`)
  }
  const signed = new Int32Array(sum.buffer, sum.byteOffset, n)
  const mean = new Float32Array(n)
  const k = 1 / (params.scale * totalWeight)
  for (let i = 0; i < n; i++) mean[i] = (signed[i] as number) * k
  return { mean, totalWeight }
}

/** getRandomValues fills at most 65,536 bytes per call. */
const BATCH_WORDS = 16384

/**
 * A uniform [0, 1) source backed by `crypto.getRandomValues`, drawn in 64 KiB batches so that
 * encoding a million coordinates costs ~120 calls rather than a million. Each number takes 53
 * random bits (two words); consumed words are zeroed so that old noise does not linger in memory.
 */
export function cryptoUniform (): () => number {
  const words = new Uint32Array(BATCH_WORDS)
  let i = BATCH_WORDS
  return () => {
    if (i === BATCH_WORDS) {
      globalThis.crypto.getRandomValues(words)
      i = 0
    }
    const hi = (words[i] as number) >>> 5 // 27 bits
    const lo = (words[i + 1] as number) >>> 6 // 26 bits
    words[i] = 0
    words[i + 1] = 0
    i += 2
    return (hi * 67108864 + lo) / 9007199254740992 // (hi·2^26 + lo) / 2^53
  }
}
