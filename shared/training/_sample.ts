/**
 * Seeded draws from the distributions data partitioning needs, on top of a uniform [0, 1)
 * generator (shared/random/seeded.ts). For reproducible experiments only — nothing secret.
 */

/** A standard normal draw (Box–Muller; the second value of the pair is dropped for simplicity). */
export function normal (random: () => number): number {
  const u = 1 - random() // (0, 1]: log(u) is finite
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random())
}

/**
 * log of a Gamma(shape, 1) draw, by Marsaglia & Tsang, "A Simple Method for Generating Gamma
 * Variables" (ACM TOMS 26(3), 2000). For shape < 1 it uses their boost
 * Gamma(a) = Gamma(a + 1) · U^(1/a) (§6). Returned as a log because for small shapes
 * U^(1/a) underflows to 0 in doubles (a = 0.01: U = 0.5 gives 2^-100, fine, U = 10^-4 gives
 * 10^-400, which is 0), and the Dirichlet draw only needs ratios.
 */
export function logGamma (shape: number, random: () => number): number {
  if (shape < 1) return logGamma(shape + 1, random) + Math.log(1 - random()) / shape
  const d = shape - 1 / 3
  const c = 1 / Math.sqrt(9 * d)
  for (;;) {
    let x: number
    let v: number
    do {
      x = normal(random)
      v = 1 + c * x
    } while (v <= 0)
    v = v * v * v
    const u = 1 - random()
    // The squeeze (cheap) first, then the exact log test (§3).
    if (u < 1 - 0.0331 * x ** 4) return Math.log(d * v)
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return Math.log(d * v)
  }
}

/** A Dirichlet(α, …, α) draw over `k` categories: independent Gamma(α) draws, normalised. */
export function symmetricDirichlet (alpha: number, k: number, random: () => number): Float64Array {
  const logs = Float64Array.from({ length: k }, () => logGamma(alpha, random))
  let max = -Infinity
  for (const l of logs) max = Math.max(max, l)
  let sum = 0
  const p = new Float64Array(k)
  for (let i = 0; i < k; i++) {
    p[i] = Math.exp((logs[i] as number) - max)
    sum += p[i] as number
  }
  for (let i = 0; i < k; i++) p[i] = (p[i] as number) / sum
  return p
}
