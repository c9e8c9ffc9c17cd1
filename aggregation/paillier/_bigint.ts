/**
 * Big-integer helpers for Paillier: fixed-window modular exponentiation, modular inverse, uniform
 * sampling from WebCrypto, and fixed-width big-endian byte codecs. Internal (`_`): callers use
 * keys.ts, randomness.ts and wire.ts.
 */
import { fromHex, toHex } from '../../shared/crypto/bytes.ts'

/** Number of bits of a non-negative bigint (0 for 0). */
export function bitLength (x: bigint): number {
  return x === 0n ? 0 : x.toString(2).length
}

/** base^exponent mod modulus: `modPow` below, or a native one a platform adapter passes in. */
export type ModPow = (base: bigint, exponent: bigint, modulus: bigint) => bigint

/**
 * base^exponent mod modulus (exponent ≥ 0, modulus > 1), fixed-window left-to-right
 * (HAC, Menezes et al. 1996, Alg. 14.82). A window of 5 bits saves about 20 % of the
 * multiplications of plain square-and-multiply at 2048-bit exponents. Not constant time: the
 * encryption exponents (n, α) are public or one-shot, and the decryptor's secret p−1, q−1 are
 * used once per round, which gives a remote observer a handful of timings, not the millions a
 * timing attack needs.
 */
export function modPow (base: bigint, exponent: bigint, modulus: bigint): bigint {
  if (modulus <= 1n) throw new RangeError(`modPow: modulus must be > 1, got ${modulus}`)
  if (exponent < 0n) throw new RangeError('modPow: exponent must be non-negative')
  const b = ((base % modulus) + modulus) % modulus
  const bits = exponent.toString(2)
  const w = bits.length > 512 ? 5 : 4
  const table: bigint[] = [1n, b]
  for (let i = 2; i < 1 << w; i++) table.push((table[i - 1] as bigint) * b % modulus)
  const padded = '0'.repeat((w - (bits.length % w)) % w) + bits
  let r = 1n
  for (let i = 0; i < padded.length; i += w) {
    if (i > 0) for (let k = 0; k < w; k++) r = r * r % modulus
    const digit = parseInt(padded.slice(i, i + w), 2)
    if (digit !== 0) r = r * (table[digit] as bigint) % modulus
  }
  return r
}

/** a^−1 mod m by the extended Euclidean algorithm; throws when gcd(a, m) ≠ 1. */
export function modInverse (a: bigint, m: bigint): bigint {
  let oldR = ((a % m) + m) % m
  let r = m
  let oldS = 1n
  let s = 0n
  while (r !== 0n) {
    const q = oldR / r
    const nextR = oldR - q * r
    oldR = r
    r = nextR
    const nextS = oldS - q * s
    oldS = s
    s = nextS
  }
  if (oldR !== 1n) throw new RangeError('modInverse: argument is not invertible')
  return ((oldS % m) + m) % m
}

export function gcd (a: bigint, b: bigint): bigint {
  while (b !== 0n) {
    const r = a % b
    a = b
    b = r
  }
  return a < 0n ? -a : a
}

/** ⌊√x⌋ by Newton's method (x ≥ 0). */
export function isqrt (x: bigint): bigint {
  if (x < 2n) return x
  let y = 1n << BigInt(Math.ceil(bitLength(x) / 2))
  for (;;) {
    const z = (y + x / y) >> 1n
    if (z >= y) return y
    y = z
  }
}

/** Uniform in [0, bound) from `crypto.getRandomValues`, by rejection (no modulo bias). */
export function randomBelow (bound: bigint): bigint {
  if (bound <= 0n) throw new RangeError('randomBelow: bound must be positive')
  const bits = bitLength(bound - 1n)
  if (bits === 0) return 0n
  const bytes = new Uint8Array(Math.ceil(bits / 8))
  const topMask = 0xff >> (bytes.length * 8 - bits)
  for (;;) {
    globalThis.crypto.getRandomValues(bytes)
    bytes[0] = (bytes[0] as number) & topMask
    const x = BigInt('0x' + toHex(bytes))
    bytes.fill(0)
    if (x < bound) return x
  }
}

/** x as exactly `width` big-endian bytes; throws when x does not fit. */
export function toFixedBytes (x: bigint, width: number): Uint8Array {
  if (x < 0n) throw new RangeError('toFixedBytes: negative value')
  const hex = x.toString(16)
  if (hex.length > width * 2) throw new RangeError(`toFixedBytes: value needs more than ${width} bytes`)
  return fromHex(hex.padStart(width * 2, '0'))
}

/** Big-endian bytes → bigint. */
export function fromBytes (bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt('0x' + toHex(bytes))
}
