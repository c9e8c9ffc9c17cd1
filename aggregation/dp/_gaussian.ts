/**
 * Standard normal samples by the Box–Muller transform (Box & Muller 1958): two uniforms give two
 * independent N(0, 1) values, z0 = √(−2 ln u1)·cos(2π u2) and z1 = √(−2 ln u1)·sin(2π u2).
 * Internal: callers pass the uniform source, so this file needs no randomness of its own.
 */

/**
 * A N(0, 1) sampler over a uniform [0, 1) source. With 53-bit uniforms the largest |z| is
 * √(2·53·ln 2) ≈ 8.6, so the tails beyond 8.6σ are cut (irrelevant at any DP budget in use).
 */
export function gaussianSampler (random: () => number): () => number {
  let spare = 0
  let hasSpare = false
  return () => {
    if (hasSpare) {
      hasSpare = false
      return spare
    }
    // 1 − u maps [0, 1) onto (0, 1], so the logarithm is always finite.
    const r = Math.sqrt(-2 * Math.log(1 - random()))
    const theta = 2 * Math.PI * random()
    spare = r * Math.sin(theta)
    hasSpare = true
    return r * Math.cos(theta)
  }
}
