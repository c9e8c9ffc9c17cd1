/** Big integers for tests: `bits` random bits from a seeded generator (shared/random/seeded.ts). */
export function seededBig (rand: () => number, bits: number): bigint {
  let x = 0n
  for (let i = 0; i < bits; i += 16) x = (x << 16n) | BigInt(Math.floor(rand() * 65536))
  return x & ((1n << BigInt(bits)) - 1n)
}
