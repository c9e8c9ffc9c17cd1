/**
 * The online step of Paillier encryption with g = n + 1 and a precomputed r^n (Paillier 1999, §3):
 * (1 + m·n)·r^n mod n² = r^n + n·(m·(r^n mod n) mod n), because n·x mod n² = n·(x mod n).
 * Internal: only a RandomnessPool calls it, so that no r^n is ever used twice.
 */
export function onlineEncrypt (m: bigint, rn: bigint, rnModN: bigint, n: bigint, n2: bigint): bigint {
  const c = rn + n * (m * rnModN % n)
  return c >= n2 ? c - n2 : c
}
