/**
 * Fisher–Yates shuffle in place (Knuth, TAOCP vol. 2, Algorithm P) with the given uniform [0, 1)
 * generator: a seeded one (seeded.ts) for reproducible data order, or a cryptographic one
 * (aggregation/fixed-point.ts `cryptoUniform`) where the order must not be guessed.
 */
export function shuffleInPlace<T extends { length: number, [i: number]: unknown }> (a: T, random: () => number): T {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const t = a[i]
    a[i] = a[j]
    a[j] = t
  }
  return a
}
