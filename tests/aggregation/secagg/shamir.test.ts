import { describe, it, expect } from 'vitest'
import { toHex } from '../../../shared/crypto/bytes.ts'
import {
  bigIntToBytes, bytesToBigInt, combine, FIELD_PRIME, interpolateAtZero, inverse, lagrangeBasis, mod, SHARE_BYTES, split, type Share
} from '../../../aggregation/secagg/shamir.ts'

const p = FIELD_PRIME
const random32 = (): Uint8Array => globalThis.crypto.getRandomValues(new Uint8Array(32))

/** All k-element subsets of xs. */
function subsets<T> (xs: readonly T[], k: number): T[][] {
  if (k === 0) return [[]]
  if (xs.length < k) return []
  const [head, ...rest] = xs as [T, ...T[]]
  return [...subsets(rest, k - 1).map(s => [head, ...s]), ...subsets(rest, k)]
}

describe('field GF(2^521 − 1)', () => {
  it('p is the Mersenne prime M521 (Lucas–Lehmer: s_519 ≡ 0 mod 2^521 − 1)', () => {
    expect(p).toBe(2n ** 521n - 1n)
    let s = 4n
    for (let i = 0; i < 521 - 2; i++) s = (s * s - 2n) % p
    expect(s).toBe(0n)
  })

  it('every 32-byte secret is a field element, and shares take 66 bytes', () => {
    expect(2n ** 256n < p).toBe(true)
    expect(SHARE_BYTES).toBe(Math.ceil(521 / 8))
  })

  it('inverse vectors derived by hand from p = 2^521 − 1', () => {
    // 2 · 2^520 = 2^521 ≡ 1.
    expect(inverse(2n)).toBe(2n ** 520n)
    // 2^521 ≡ 2 (mod 3), so p ≡ 1 (mod 3) and 3 · (2p + 1)/3 = 2p + 1 ≡ 1.
    expect(inverse(3n)).toBe((2n * p + 1n) / 3n)
    // (−1)(−1) = 1.
    expect(inverse(p - 1n)).toBe(p - 1n)
    expect(inverse(1n)).toBe(1n)
    expect(() => inverse(0n)).toThrow(/0 has no inverse/)
    expect(() => inverse(p)).toThrow(/0 has no inverse/)
  })

  it('a · a^−1 ≡ 1 and a^(p−1) ≡ 1 (Fermat) for random a', () => {
    const powMod = (b: bigint, e: bigint): bigint => {
      let r = 1n
      for (b = mod(b); e > 0n; e >>= 1n, b = (b * b) % p) if ((e & 1n) === 1n) r = (r * b) % p
      return r
    }
    for (let i = 0; i < 20; i++) {
      const a = mod(bytesToBigInt(globalThis.crypto.getRandomValues(new Uint8Array(66))))
      if (a === 0n) continue
      expect((a * inverse(a)) % p).toBe(1n)
      expect(powMod(a, p - 1n)).toBe(1n)
    }
    expect(mod(-5n)).toBe(p - 5n)
  })

  it('interpolates a known polynomial: f(x) = 5 + 3x + 2x² through (1, 10), (2, 19), (3, 32)', () => {
    expect(interpolateAtZero([{ x: 1, y: 10n }, { x: 2, y: 19n }, { x: 3, y: 32n }])).toBe(5n)
    // Order does not matter, and a degree-1 polynomial needs only two points.
    expect(interpolateAtZero([{ x: 7, y: 22n }, { x: 2, y: 7n }])).toBe(1n)
  })

  it('byte conversions are big-endian and refuse values that do not fit', () => {
    expect(toHex(bigIntToBytes(0x0102n, 3))).toBe('000102')
    expect(bytesToBigInt(Uint8Array.of(1, 0))).toBe(256n)
    expect(() => bigIntToBytes(256n, 1)).toThrow(/does not fit/)
  })
})

describe('t-of-n Shamir sharing of 32-byte secrets', () => {
  it('any t of n shares reconstruct the secret (every subset, n = 6, t = 3), at the holders\' indices', () => {
    const secret = random32()
    const xs = [1, 2, 5, 9, 10, 17]
    const shares = split(secret, 3, xs)
    expect(shares.map(s => s.x)).toEqual(xs)
    for (const subset of subsets(shares, 3)) expect(toHex(combine(subset, 3))).toBe(toHex(secret))
    expect(toHex(combine(shares, 3))).toBe(toHex(secret))
  })

  it('the all-ones and all-zeros secrets (extremes of the 256-bit range) round-trip', () => {
    for (const secret of [new Uint8Array(32).fill(0xff), new Uint8Array(32)]) {
      expect(combine(split(secret, 4, [3, 4, 5, 6, 7]).slice(1), 4)).toEqual(secret)
    }
  })

  it('t − 1 shares do not determine the secret: interpolating them gives another value', () => {
    const secret = random32()
    const shares = split(secret, 4, [1, 2, 3, 4, 5, 6])
    for (const subset of subsets(shares, 3)) {
      const guess = interpolateAtZero(subset.map(s => ({ x: s.x, y: bytesToBigInt(s.y) })))
      expect(guess).not.toBe(bytesToBigInt(secret))
    }
    expect(() => combine(shares.slice(0, 3), 4)).toThrow(/3 shares, the threshold is 4/)
  })

  it('draws fresh coefficients: the same secret splits to different shares each time (t ≥ 2)', () => {
    const secret = random32()
    const a = split(secret, 2, [1, 2])
    const b = split(secret, 2, [1, 2])
    expect(toHex((a[0] as Share).y)).not.toBe(toHex((b[0] as Share).y))
    // t = 1 is the degenerate constant polynomial: every share is the secret itself.
    expect(split(secret, 1, [1, 2]).every(s => bytesToBigInt(s.y) === bytesToBigInt(secret))).toBe(true)
  })

  it('a share replaced by garbage is caught: the result is not a 32-byte value', () => {
    const secret = random32()
    const shares = split(secret, 3, [1, 2, 3])
    const garbage = globalThis.crypto.getRandomValues(new Uint8Array(SHARE_BYTES))
    garbage[0] = 0
    expect(() => combine([shares[0] as Share, { x: 2, y: garbage }, shares[2] as Share], 3)).toThrow(/do not interpolate to a 32-byte secret/)
  })

  it('but a small deliberate offset is not caught (the documented limit: shares carry no MAC)', () => {
    const secret = new Uint8Array(32).fill(0x10)
    const shares = split(secret, 3, [1, 2, 3])
    const bad: Share[] = shares.map(s => ({ x: s.x, y: s.y.slice() }))
    // Adding 1 to f(2) moves f(0) by the Lagrange weight of x = 2, which is −3.
    bad[1] = { x: 2, y: bigIntToBytes(mod(bytesToBigInt((shares[1] as Share).y) + 1n), SHARE_BYTES) }
    expect(bytesToBigInt(combine(bad, 3))).toBe(bytesToBigInt(secret) - 3n)
  })

  it('checks further shares against the polynomial of the first t: the offset is caught by any right share checked (review 47a)', () => {
    const secret = new Uint8Array(32).fill(0x10)
    const shares = split(secret, 3, [1, 2, 3, 4, 5])
    const bad: Share[] = shares.map(s => ({ x: s.x, y: s.y.slice() }))
    bad[1] = { x: 2, y: bigIntToBytes(mod(bytesToBigInt((shares[1] as Share).y) + 1n), SHARE_BYTES) }
    expect(() => combine(bad, 3)).toThrow('shamir combine: the shares disagree (share at x = 4 is not on the polynomial of the first 3): a share is wrong')
    // A wrong share among the checked ones, the first t right: caught too.
    expect(() => combine([bad[0], bad[2], bad[3], bad[1]] as Share[], 3)).toThrow(/share at x = 2 is not on the polynomial/)
    // Unchecked (check: 0), the documented limit stands.
    expect(bytesToBigInt(combine(bad, 3, { check: 0 }))).toBe(bytesToBigInt(secret) - 3n)
    expect(combine(shares, 3)).toEqual(secret)
  })

  it('builds its Lagrange basis with one inversion, equal to the per-point formula, and evaluates at any x', () => {
    // The textbook form, one inversion per point: the reference.
    const reference = (xs: number[]): bigint[] => xs.map((xi, i) => {
      let num = 1n
      let den = 1n
      for (const [j, xj] of xs.entries()) {
        if (j === i) continue
        num = mod(num * BigInt(xj))
        den = mod(den * BigInt(xj - xi))
      }
      return mod(num * inverse(den))
    })
    for (const xs of [[1], [1, 2], [3, 9, 4, 17], Array.from({ length: 40 }, (_, i) => 3 * i + 7)]) {
      const basis = lagrangeBasis(xs)
      expect(basis.atZero).toEqual(reference(xs))
      // f(x) = 5 + 7x + x^(n−1): its values at the xs give it back at 11 and at each x_i.
      const f = (x: bigint): bigint => mod(5n + 7n * x + (xs.length > 2 ? x ** BigInt(xs.length - 1) : 0n))
      const ys = xs.map(x => f(BigInt(x)))
      const at = (x: number): bigint => mod(basis.at(x).reduce((acc, w, i) => acc + w * (ys[i] as bigint), 0n))
      if (xs.length > 1) {
        expect(at(11)).toBe(f(11n))
        expect(at(0)).toBe(f(0n))
      }
      expect(at(xs[0] as number)).toBe(ys[0])
    }
  })

  it('refuses bad arguments, naming them', () => {
    const secret = random32()
    expect(() => split(secret.subarray(0, 31), 2, [1, 2])).toThrow(/split secret: expected 32 bytes/)
    expect(() => split(secret, 3, [1, 2])).toThrow(/split threshold/)
    expect(() => split(secret, 0, [1, 2])).toThrow(/split threshold/)
    expect(() => split(secret, 2, [1, 1])).toThrow(/x-coordinate 1 appears twice/)
    expect(() => split(secret, 2, [0, 1])).toThrow(/x-coordinate 0 is not an integer/)
    expect(() => split(secret, 2, [1.5, 2])).toThrow(/x-coordinate 1.5/)
    const shares = split(secret, 2, [1, 2])
    expect(() => combine([shares[0] as Share, { x: 1, y: (shares[1] as Share).y }], 2)).toThrow(/appears twice/)
    expect(() => combine([shares[0] as Share, { x: 2, y: new Uint8Array(65) }], 2)).toThrow(/expected 66 bytes/)
    expect(() => combine([shares[0] as Share, { x: 2, y: new Uint8Array(66).fill(0xff) }], 2)).toThrow(/not below the field prime/)
    expect(() => combine(shares, 0)).toThrow(/combine threshold/)
  })
})
