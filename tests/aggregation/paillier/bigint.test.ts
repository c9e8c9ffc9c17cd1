import { describe, it, expect } from 'vitest'
import { bitLength, fromBytes, gcd, isqrt, modInverse, modPow, randomBelow, toFixedBytes } from '../../../aggregation/paillier/_bigint.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'
import { seededBig } from '../../helpers/bigint.ts'

/** Obviously correct reference: right-to-left square-and-multiply, one bit at a time. */
function slowModPow (b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n
  b %= m
  while (e > 0n) {
    if ((e & 1n) === 1n) r = r * b % m
    b = b * b % m
    e >>= 1n
  }
  return r % m
}

describe('paillier big-integer helpers', () => {
  it('modPow (fixed window) equals plain square-and-multiply, for short and long exponents', () => {
    const rand = mulberry32(7)
    for (const bits of [1, 3, 4, 5, 17, 64, 256, 513, 1024]) {
      const m = seededBig(rand, 600) | 1n
      const b = seededBig(rand, 700)
      const e = seededBig(rand, bits)
      expect(modPow(b, e, m)).toBe(slowModPow(b, e, m))
    }
    expect(modPow(5n, 0n, 7n)).toBe(1n)
    expect(modPow(0n, 5n, 7n)).toBe(0n)
    expect(modPow(-2n, 3n, 7n)).toBe(6n) // (−2)³ = −8 ≡ 6
    expect(() => modPow(2n, 3n, 1n)).toThrow(/modulus/)
    expect(() => modPow(2n, -1n, 7n)).toThrow(/exponent/)
  })

  it('modInverse, gcd and isqrt agree with their definitions', () => {
    const rand = mulberry32(11)
    for (let i = 0; i < 20; i++) {
      const m = seededBig(rand, 300) | 1n
      const a = seededBig(rand, 290)
      if (gcd(a, m) !== 1n) { expect(() => modInverse(a, m)).toThrow(/not invertible/); continue }
      expect(a * modInverse(a, m) % m).toBe(1n)
      const x = seededBig(rand, 2 * (i + 1) * 17)
      const s = isqrt(x)
      expect(s * s <= x && (s + 1n) * (s + 1n) > x).toBe(true)
    }
    expect(gcd(12n, 18n)).toBe(6n)
    expect(() => modInverse(6n, 9n)).toThrow(/not invertible/)
    expect([0n, 1n, 3n, 4n, 15n, 16n].map(isqrt)).toEqual([0n, 1n, 1n, 2n, 3n, 4n])
  })

  it('randomBelow stays in range and covers a small range', () => {
    const seen = new Set<bigint>()
    for (let i = 0; i < 400; i++) {
      const x = randomBelow(5n)
      expect(x >= 0n && x < 5n).toBe(true)
      seen.add(x)
    }
    expect(seen.size).toBe(5)
    expect(randomBelow(1n)).toBe(0n)
    const big = (1n << 1000n) + 12345n
    for (let i = 0; i < 50; i++) expect(randomBelow(big) < big).toBe(true)
    expect(() => randomBelow(0n)).toThrow(/bound/)
  })

  it('fixed-width big-endian bytes round-trip and refuse what does not fit', () => {
    expect(toFixedBytes(0x0102n, 4)).toEqual(new Uint8Array([0, 0, 1, 2]))
    expect(fromBytes(new Uint8Array([0, 0, 1, 2]))).toBe(0x0102n)
    const x = (1n << 4095n) + 77n
    expect(fromBytes(toFixedBytes(x, 512))).toBe(x)
    expect(bitLength(x)).toBe(4096)
    expect(() => toFixedBytes(1n << 32n, 4)).toThrow(/more than 4 bytes/)
    expect(() => toFixedBytes(-1n, 4)).toThrow(/negative/)
  })
})
