import { describe, it, expect } from 'vitest'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from '@noble/hashes/sha2.js'
import { blockFilter, decodeBlockFilter, optimalParams, BLOOM_ENCODING_VERSION, DEFAULT_MAX_DECODED_FPR, DEFAULT_MAX_FILTER_BYTES, MIN_BITS, type BlockFilter } from '../../../shared/p2p/bloom.ts'
import { rawCid } from '../../../shared/crypto/cid.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

/**
 * `count` real CIDv1(raw, sha2-256) strings of 32-byte blocks drawn from mulberry32(seed). Built
 * synchronously the way shared/crypto/cid.ts builds them (checked against rawCid below), since
 * 100,000 WebCrypto round trips would dominate the file's run time.
 */
function seededCids (seed: number, count: number): string[] {
  const next = mulberry32(seed)
  const out: string[] = []
  for (let i = 0; i < count; i++) {
    const block = new Uint8Array(32)
    for (let j = 0; j < block.length; j++) block[j] = Math.floor(next() * 256)
    out.push(CID.createV1(raw.code, createDigest(0x12, sha256(block))).toString())
  }
  return out
}

/**
 * Multiplicative Chernoff bounds for a sum X of independent Bernoulli trials with mean at most μ
 * (upper) or exactly μ (lower): P(X ≥ (1+δ)μ) ≤ exp(−δ²μ/(2+δ)) and P(X ≤ (1−δ)μ) ≤ exp(−δ²μ/2).
 * Each solves for the δ that makes the bound `tail`, so a correct filter fails the assertion
 * with probability below `tail` (1e-6 here) — and the data are seeded, so it never flickers.
 */
const TAIL = 1e-6
function chernoffUpper (mu: number, tail = TAIL): number {
  const l = Math.log(1 / tail)
  const delta = (l + Math.sqrt(l * l + 8 * l * mu)) / (2 * mu)
  return (1 + delta) * mu
}
function chernoffLower (mu: number, tail = TAIL): number {
  return (1 - Math.sqrt(2 * Math.log(1 / tail) / mu)) * mu
}

function popcount (bytes: Uint8Array): number {
  let n = 0
  for (const byte of bytes) for (let b = 0; b < 8; b++) n += (byte >> b) & 1
  return n
}

/** The version byte of the hand-built encodings below (this file tests version 2). */
const V = 2

/** A hand-built encoding: header bytes then the bit array. */
function encoding (header: number[], array: number[] | Uint8Array = []): Uint8Array {
  const out = new Uint8Array(header.length + array.length)
  out.set(header)
  out.set(array, header.length)
  return out
}

/** Unsigned LEB128, for hand-built headers. */
function leb128 (value: number): number[] {
  const out: number[] = []
  for (let rest = value; ; rest = Math.floor(rest / 128)) {
    if (rest < 128) return [...out, rest]
    out.push((rest % 128) | 0x80)
  }
}

function rejects (bytes: unknown, message: RegExp, limits?: Parameters<typeof decodeBlockFilter>[1]): void {
  let caught: unknown
  try {
    decodeBlockFilter(bytes as Uint8Array, limits)
  } catch (err) {
    caught = err
  }
  expect(caught).toBeInstanceOf(InvalidInputError)
  expect((caught as Error).message).toMatch(message)
}

/**
 * Slow reference of the version-2 bit positions (the same as version 1's), written from the module header's text with
 * BigInt and WebCrypto's SHA-256 (an implementation independent of the one under test).
 */
async function referencePositions (key: string, m: number, k: number): Promise<number[]> {
  const d = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', new TextEncoder().encode(key)))
  const u64 = (from: number): bigint => d.subarray(from, from + 8).reduce((acc, byte) => (acc << 8n) | BigInt(byte), 0n)
  const h1 = u64(0) % 2n ** 53n
  const h2 = u64(8) % 2n ** 53n
  const M = BigInt(m)
  const b = h2 % M === 0n ? 1n : h2 % M
  return Array.from({ length: k }, (_, i) => Number((h1 + BigInt(i) * b) % M))
}

async function referenceBits (keys: string[], m: number, k: number): Promise<Uint8Array> {
  const bits = new Uint8Array(Math.ceil(m / 8))
  for (const key of keys) {
    for (const j of await referencePositions(key, m, k)) bits[Math.floor(j / 8)]! |= 1 << (j % 8)
  }
  return bits
}

/** The bit array of an encoding: its last ⌈m/8⌉ bytes. */
function bitArray (filter: BlockFilter): Uint8Array {
  const bytes = filter.encode()
  return bytes.subarray(bytes.length - Math.ceil(filter.bits / 8))
}

describe('optimalParams', () => {
  // Hand computation, m = ⌈−n ln p / (ln 2)²⌉ with (ln 2)² = 0.480453…, k = round(m/n · ln 2),
  // then m raised to MIN_BITS and to the least prime at or above (factors checked by hand):
  it('matches hand-computed sizes', () => {
    // 10,000 · 4.605170 / 0.480453 = 95,850.58 → 95,851 = 13 · 73 · 101; 95,853 = 3 · 89 · 359;
    // 95,855 = 5 · 19,171; 95,857 prime. k: 9.5851 · 0.693147 = 6.644 → 7
    expect(optimalParams(10_000, 0.01)).toEqual({ bits: 95_857, hashes: 7 })
    // 1,000 · 6.907755 / 0.480453 = 14,377.59 → 14,378 → the prime 14,387; 14.378 · 0.693147 = 9.966 → 10
    expect(optimalParams(1_000, 0.001)).toEqual({ bits: 14_387, hashes: 10 })
    // 100 · 2.995732 / 0.480453 = 623.52 → 624 → 631 (625 = 5⁴, 627 = 3 · 11 · 19, 629 = 17 · 37); 6.24 · 0.693147 = 4.325 → 4
    expect(optimalParams(100, 0.05)).toEqual({ bits: 631, hashes: 4 })
    // 1 · 0.693147 / 0.480453 = 1.4427 → 2, raised to MIN_BITS = 512 → 521 (513 = 3³ · 19, 515 = 5 · 103,
    // 517 = 11 · 47, 519 = 3 · 173); 2 · 0.693147 = 1.386 → 1
    expect(optimalParams(1, 0.5)).toEqual({ bits: 521, hashes: 1 })
    // 1 · 4.605170 / 0.480453 = 9.585 → 10, raised to 521; 10 · 0.693147 = 6.93 → 7 (k from the optimal m)
    expect(optimalParams(1, 0.01)).toEqual({ bits: 521, hashes: 7 })
    // 54 · 9.585058 = 517.6 → 518 → 521; 55 → 527.2 → 528 → 541 (the next prime after 523)
    expect(optimalParams(54, 0.01).bits).toBe(521)
    expect(optimalParams(55, 0.01).bits).toBe(541)
  })
  it('always gives the least prime at or above max(MIN_BITS, optimal m) (slow reference)', () => {
    const prime = (n: number): boolean => { for (let d = 2; d * d <= n; d++) if (n % d === 0) return false; return n > 1 }
    for (const rate of [0.5, 0.05, 0.01, 0.001]) {
      for (let capacity = 1; capacity <= 3_000; capacity += 7) {
        const optimal = Math.max(MIN_BITS, Math.ceil(-capacity * Math.log(rate) / (Math.LN2 * Math.LN2)))
        const { bits } = optimalParams(capacity, rate)
        expect(prime(bits)).toBe(true)
        for (let n = optimal; n < bits; n++) expect(prime(n)).toBe(false)
      }
    }
  })
  it('checks its arguments and names them', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Infinity, '10' as unknown as number]) {
      expect(() => optimalParams(bad, 0.01)).toThrow(InvalidInputError)
      expect(() => optimalParams(bad, 0.01)).toThrow(/capacity must be a positive integer/)
    }
    for (const bad of [0, 1, -0.1, 1.5, Number.NaN, null as unknown as number]) {
      expect(() => optimalParams(100, bad)).toThrow(/falsePositiveRate must be a number in \(0, 1\)/)
    }
    // −ln(1e-100) / (ln 2)² = 479.25 bits per item; 479.25 · ln 2 = 332.2 → k = 332 > 255
    expect(() => optimalParams(100, 1e-100)).toThrow(/needs 332 hashes, more than 255/)
    expect(() => optimalParams(1e9, 0.01)).toThrow(/needs \d+ bits, more than 4294967296/)
    // m = ⌈448,089,842 · 9.585058⌉ = 4,294,967,294 fits, but the least prime at or above is past
    // 2^32 (4,294,967,291 is the last prime below it).
    expect(() => optimalParams(448_089_842, 0.01)).toThrow(/needs 4294967311 bits \(the least prime at or above 4294967294\), more than 4294967296/)
    expect(() => blockFilter({ capacity: 0, falsePositiveRate: 0.01 })).toThrow(/capacity must be a positive integer/)
    expect(() => blockFilter(undefined as unknown as { capacity: number, falsePositiveRate: number })).toThrow(/options must be an object/)
  })
})

describe('blockFilter', () => {
  it('makes CIDs the way shared/crypto/cid.ts does', async () => {
    const block = new Uint8Array(32)
    const next = mulberry32(7)
    for (let j = 0; j < block.length; j++) block[j] = Math.floor(next() * 256)
    expect(seededCids(7, 1)[0]).toBe(await rawCid(block))
  })

  it('has no false negatives, and counts what it holds', () => {
    const filter = blockFilter({ capacity: 10_000, falsePositiveRate: 0.01 })
    expect([filter.capacity, filter.bits, filter.hashes, filter.count]).toEqual([10_000, 95_857, 7, 0])
    expect(filter.estimatedFalsePositiveRate()).toBe(0)
    const held = seededCids(1, 10_000)
    for (const cid of held) filter.add(cid)
    expect(filter.count).toBe(10_000)
    expect(held.every((cid) => filter.has(cid))).toBe(true)
  })

  it('sets exactly the bits of the slow reference, including the padding rules', async () => {
    const keys = seededCids(3, 300)
    const sized = blockFilter({ capacity: 100, falsePositiveRate: 0.02 }) // m = 821 (815 rounded to a prime; not a multiple of 8), k = 6
    for (const key of keys) sized.add(key)
    expect([sized.bits, sized.hashes]).toEqual([821, 6])
    expect(bitArray(sized)).toEqual(await referenceBits(keys, 821, 6))
    // Shapes only a decoded filter can have: the least m, other primes around one and four
    // kilobits, k from 1 to 13.
    for (const [m, k] of [[521, 3], [523, 2], [541, 5], [997, 13], [4099, 1]] as const) {
      const empty = decodeBlockFilter(encoding([V, ...leb128(m), k, 1, 0], new Uint8Array(Math.ceil(m / 8))))
      for (const key of keys.slice(0, 40)) empty.add(key)
      expect(bitArray(empty)).toEqual(await referenceBits(keys.slice(0, 40), m, k))
    }
  })

  it('estimates its false-positive rate as (set bits / m)^k', () => {
    const filter = blockFilter({ capacity: 2_000, falsePositiveRate: 0.05 })
    const held = seededCids(4, 4_000)
    for (const cid of held.slice(0, 2_000)) filter.add(cid)
    const atCapacity = filter.estimatedFalsePositiveRate()
    expect(atCapacity).toBeCloseTo((popcount(bitArray(filter)) / filter.bits) ** filter.hashes, 12)
    for (const cid of held.slice(2_000)) filter.add(cid)
    // Twice the capacity: theory gives (1 − e^(−2kn/m))^k ≈ 0.24 for k = 4, m/n = 6.24.
    expect(filter.estimatedFalsePositiveRate()).toBeGreaterThan(0.2)
    expect(filter.estimatedFalsePositiveRate()).toBeGreaterThan(atCapacity)
  })

  it('refuses keys that are not strings', () => {
    const filter = blockFilter({ capacity: 10, falsePositiveRate: 0.01 })
    expect(() => filter.add(42 as unknown as string)).toThrow(/add: cid must be a string, got number/)
    expect(() => filter.has(null as unknown as string)).toThrow(/has: cid must be a string, got null/)
  })
})

/** 100,000 CIDs added to no filter below: the keys every false-positive measurement probes. */
const fresh = seededCids(2, 100_000)

describe('false-positive rate at capacity, on 100,000 fresh CIDs', () => {
  // Regression (fixed): capacities 1, 2 and 4 had m = 10, 20 and 39 bits, in which the double
  // hashing step shares factors with m and the k positions repeat: 20 %, 4 % and 1.7 % measured
  // at a 1 % target. They now get MIN_BITS.
  const pairs = [[1_000, 0.01], [10_000, 0.01], [5_000, 0.001], [2_000, 0.05], [1, 0.01], [2, 0.01], [4, 0.01]] as const
  for (const [capacity, rate] of pairs) {
    it(`capacity ${capacity}, rate ${rate}`, () => {
      const held = seededCids(1_000 + capacity, capacity)
      const heldSet = new Set(held)
      expect(fresh.some((cid) => heldSet.has(cid))).toBe(false)
      const filter = blockFilter({ capacity, falsePositiveRate: rate })
      for (const cid of held) filter.add(cid)
      let positives = 0
      for (const cid of fresh) if (filter.has(cid)) positives++
      // Not above the configured bound: under "true rate ≤ p", X ≤ Chernoff threshold except with
      // probability < 1e-6 (for p = 1 %: 1,000 expected, threshold 1,173).
      expect(positives).toBeLessThanOrEqual(chernoffUpper(fresh.length * rate))
      // And the hashing behaves as ideal hashing would: given this fill, the chance per fresh CID
      // is (fill)^k, so X sits within both Chernoff bounds around N·(fill)^k. A filter whose k
      // positions collapsed to one bit would report ≈ fill^k ≪ its real rate and fail here.
      const mu = fresh.length * filter.estimatedFalsePositiveRate()
      expect(positives).toBeLessThanOrEqual(chernoffUpper(mu))
      expect(positives).toBeGreaterThanOrEqual(chernoffLower(mu))
    })
  }
})

/**
 * A peer picks its filter's bits. The decoder bounds the estimate (set bits / m)^k, which is the
 * real rate only when a key's k bits land like random ones; the tests below measure crafted bit
 * patterns against the CIDs a loader would ask about.
 */
describe('crafted filters: what a peer can make a filter say yes to', () => {
  /** Yes-answers of bit set `set` (over Z_m) to `keys`, from the slow reference positions. */
  async function referenceYes (keys: string[], set: (bit: number) => boolean, m: number, k: number): Promise<number> {
    let yes = 0
    for (const key of keys) if ((await referencePositions(key, m, k)).every(set)) yes++
    return yes
  }

  // Regression (fixed, version 2): with m even, a step b that is even keeps all k bits of a key at
  // positions of h1's parity, so a filter of every even bit says yes to every key with h1 and b
  // even: P = 1/2 · 511/1024 = 0.2495 (b = h2 mod 1024 is even and not 0). Every bit not ≡ 0 mod 8
  // with k = 18 catches keys whose residues r + i·b mod 8 avoid 0: b ≡ 0 (r ≠ 0), b ≡ 4
  // (r ∉ {0, 4}) or b ≡ 2, 6 (r odd), P = (127·7 + 128·6 + 256·4) / 8192 = 0.3273. Both pass the
  // estimate (0.0625, 0.090) and the count × k bound. Version 1 accepted them; measured on 100,000
  // fresh CIDs they said yes to 24.8 % and 32.8 %.
  it('refuses the residue-class filters a composite m allowed', async () => {
    const keys = fresh.slice(0, 20_000)
    for (const { k, byte, p, set } of [
      { k: 4, byte: 0x55, p: 0.5 * 511 / 1024, set: (bit: number) => bit % 2 === 0 },
      { k: 18, byte: 0xfe, p: 2_681 / 8_192, set: (bit: number) => bit % 8 !== 0 }
    ]) {
      const m = 1024
      const array = new Uint8Array(m / 8).fill(byte)
      const setBits = popcount(array)
      const count = Math.ceil(setBits / k)
      expect((setBits / m) ** k).toBeLessThanOrEqual(DEFAULT_MAX_DECODED_FPR)
      expect(setBits).toBeLessThanOrEqual(count * k)
      const yes = await referenceYes(keys, set, m, k)
      expect(yes).toBeGreaterThanOrEqual(chernoffLower(keys.length * p))
      expect(yes).toBeLessThanOrEqual(chernoffUpper(keys.length * p))
      // The current version byte: the version-1 decoder took this very encoding.
      rejects(encoding([BLOOM_ENCODING_VERSION, ...leb128(m), k, ...leb128(1_000), ...leb128(count)], array), /^bloom filter: m = 1024 bits is not prime$/)
    }
  })

  /**
   * Exact yes-rate of bit set `bits` over Z_m (m prime) for h1 uniform and b = (h2 mod m) || 1 with
   * h2 uniform: counts, for every step, the starts whose k bits are all set. O(m²k), for small m.
   */
  function exactYesRate (bits: Uint8Array, m: number, k: number): number {
    let hits = 0
    for (let h2 = 0; h2 < m; h2++) {
      const b = h2 === 0 ? 1 : h2
      for (let h1 = 0; h1 < m; h1++) {
        let i = 0
        while (i < k && bits[(h1 + i * b) % m] === 1) i++
        if (i === k) hits++
      }
    }
    return hits / (m * m)
  }

  // With m prime every step is coprime with m and a key's bits are an arithmetic progression in
  // Z_m. The patterns that catch most progressions are intervals: one of length f·m catches
  // steps |b| < f·m/(k − 1), ≈ f²/(k − 1) of keys plus progressions that wrap. A second, shorter
  // interval half the ring away adds steps near m/2 (two clusters); a search over the lengths of
  // the pair gave the second pattern, and simulated annealing over all bit sets at the bound
  // found nothing above 0.126 at m = 1031 (k = 4, 8) or 0.131 at m = 521 (k = 3 to 32). So at
  // the decoder's bound 0.1 a crafted filter says yes to ≈ 1.3 × that at most, where a composite
  // m allowed 3.3 ×. (A heuristic search, not a proof: the assertion below is on these shapes.)
  it('keeps the strongest crafted filter found for a prime m near the estimate bound', () => {
    const m = 1031
    const shapes = [
      // One interval, f = 579/1031: estimate 0.0995, exact 0.110 (f²/3 = 0.105 without wraps).
      { k: 4, intervals: [[0, 579]] },
      // 490 bits around 0 and 160 around m/2, f = 650/1031: estimate 0.0996, exact 0.1235.
      { k: 5, intervals: [[-245, 490], [436, 160]] }
    ]
    for (const { k, intervals } of shapes) {
      const bits = new Uint8Array(m)
      for (const [start, length] of intervals as Array<[number, number]>) {
        for (let i = 0; i < length; i++) bits[(((start + i) % m) + m) % m] = 1
      }
      const array = new Uint8Array(Math.ceil(m / 8))
      bits.forEach((bit, j) => { if (bit === 1) array[j >>> 3]! |= 1 << (j & 7) })
      const setBits = popcount(array)
      const filter = decodeBlockFilter(encoding([V, ...leb128(m), k, ...leb128(1_000), ...leb128(Math.ceil(setBits / k))], array))
      expect(filter.estimatedFalsePositiveRate()).toBeLessThanOrEqual(DEFAULT_MAX_DECODED_FPR)
      expect(filter.estimatedFalsePositiveRate()).toBeGreaterThan(0.099)
      const exact = exactYesRate(bits, m, k)
      let yes = 0
      for (const cid of fresh) if (filter.has(cid)) yes++
      // Real CIDs behave as the uniform (h1, b) the exact count assumes…
      expect(yes).toBeLessThanOrEqual(chernoffUpper(fresh.length * exact))
      expect(yes).toBeGreaterThanOrEqual(chernoffLower(fresh.length * exact))
      // …and stay under 0.13: above the estimate, far below the 0.25–0.33 of a composite m.
      expect(exact).toBeLessThanOrEqual(0.13)
      expect(yes / fresh.length).toBeLessThanOrEqual(0.13)
    }
  })
})

describe('wire encoding', () => {
  it('has the hand-computed header', () => {
    const bytes = blockFilter({ capacity: 10_000, falsePositiveRate: 0.01 }).encode()
    // version 2 | m = 95,857 = 0x71 + 0x6c·2^7 + 5·2^14 → f1 ec 05 | k 07 | capacity 10,000 = 0x10 + 0x4e·2^7 → 90 4e | count 00
    expect(Array.from(bytes.subarray(0, 8))).toEqual([0x02, 0xf1, 0xec, 0x05, 0x07, 0x90, 0x4e, 0x00])
    expect(bytes.length).toBe(8 + 11_983) // ⌈95,857 / 8⌉ bytes of bits: the "≈ 12 KB" of the header note
    expect(bytes.subarray(8).every((byte) => byte === 0)).toBe(true)
  })

  it('round-trips: the decoded filter answers identically and re-encodes to the same bytes', () => {
    const filter = blockFilter({ capacity: 5_000, falsePositiveRate: 0.001 })
    const held = seededCids(5, 5_000)
    for (const cid of held) filter.add(cid)
    const bytes = filter.encode()
    const decoded = decodeBlockFilter(bytes)
    expect([decoded.capacity, decoded.bits, decoded.hashes, decoded.count]).toEqual([5_000, filter.bits, filter.hashes, 5_000])
    expect(decoded.estimatedFalsePositiveRate()).toBe(filter.estimatedFalsePositiveRate())
    expect(decoded.encode()).toEqual(bytes)
    expect(held.every((cid) => decoded.has(cid))).toBe(true)
    const probes = seededCids(6, 20_000)
    const answers = probes.map((cid) => filter.has(cid))
    expect(probes.map((cid) => decoded.has(cid))).toEqual(answers)
    expect(answers.filter(Boolean).length).toBeGreaterThan(0) // the probes do include false positives
    // The decoded filter is a copy: adding to it leaves the original (and its bytes) alone.
    decoded.add(probes[answers.indexOf(false)]!)
    expect(decoded.count).toBe(5_001)
    expect(filter.encode()).toEqual(bytes)
  })

  it('accepts an encoding of exactly maxBytes, and not one byte more', () => {
    // m = 743 (prime) = 0x67 + 5·2^7 → e7 05; header 6 bytes + 93 bytes of bits = 99 bytes
    const bytes = encoding([V, 0xe7, 0x05, 2, 1, 0], new Uint8Array(93))
    expect(bytes.length).toBe(99)
    expect(decodeBlockFilter(bytes, { maxBytes: 99 }).bits).toBe(743)
    rejects(bytes, /encoding is 99 bytes, more than maxBytes 98/, { maxBytes: 98 })
  })

  describe('rejects every malformed encoding, naming what is wrong', () => {
    // A valid base: m = 599 (prime, a two-byte varint), k = 3, capacity 20, count 5, 75 bytes of bits with 4 bits set.
    const M = leb128(599)
    const validArray = new Uint8Array(75)
    validArray[0] = 0b1010_0000
    validArray[74] = 0b0000_0011
    const valid = encoding([V, ...M, 3, 20, 5], validArray)

    it('accepts the base', () => {
      const filter = decodeBlockFilter(valid)
      expect([filter.bits, filter.hashes, filter.capacity, filter.count]).toEqual([599, 3, 20, 5])
      expect(filter.estimatedFalsePositiveRate()).toBeCloseTo((4 / 599) ** 3, 15)
    })
    it('not bytes', () => {
      rejects('01600314' as unknown, /encoding must be a Uint8Array, got string/)
      rejects(null, /encoding must be a Uint8Array, got null/)
    })
    it('wrong version, version 1 (any m) included', () => {
      expect(BLOOM_ENCODING_VERSION).toBe(V)
      rejects(encoding([0, ...M, 3, 20, 5], validArray), /unsupported encoding version 0, expected 2/)
      rejects(encoding([1, ...M, 3, 20, 5], validArray), /unsupported encoding version 1, expected 2/)
      rejects(encoding([3, ...M, 3, 20, 5], validArray), /unsupported encoding version 3/)
    })
    it('truncated anywhere', () => {
      rejects(new Uint8Array(0), /truncated: ends before version/)
      // Cut after byte `cut` of the header: m is two bytes long.
      const fields = ['version', 'm \\(bits\\)', 'm \\(bits\\)', 'k \\(hashes\\)', 'capacity', 'count']
      for (let cut = 1; cut < 6; cut++) rejects(valid.subarray(0, cut), new RegExp(`truncated: ends before ${fields[cut]!}`))
      for (let cut = 6; cut < valid.length; cut++) {
        rejects(valid.subarray(0, cut), new RegExp(`truncated: m = 599 bits needs a 75-byte bit array, got ${cut - 6} bytes`))
      }
      rejects(encoding([V, 0x80]), /truncated: ends before m \(bits\)/) // a varint cut after a continuation byte
    })
    it('trailing bytes', () => {
      rejects(encoding([V, ...M, 3, 20, 5], [...validArray, 0]), /1 trailing bytes after the 75-byte bit array of m = 599 bits/)
      // m says 587 bits (74 bytes) but 75 follow: the array does not match m.
      rejects(encoding([V, ...leb128(587), 3, 20, 5], validArray), /1 trailing bytes after the 74-byte bit array of m = 587 bits/)
    })
    it('m = 0, m below MIN_BITS, m beyond the size limit, malformed varints', () => {
      rejects(encoding([V, 0, 3, 20, 0]), /m \(bits\) is 0/)
      rejects(encoding([V, ...leb128(MIN_BITS - 1), 3, 20, 0], new Uint8Array(MIN_BITS / 8)), /m = 511 bits, fewer than the least 512/)
      rejects(encoding([V, ...leb128(509), 3, 20, 0], new Uint8Array(64)), /m = 509 bits, fewer than the least 512/) // prime, still too small
      expect(decodeBlockFilter(encoding([V, ...leb128(521), 3, 20, 0], new Uint8Array(66))).bits).toBe(521)
      rejects(encoding([V, 0x80, 0x80, 0x80, 0x80, 0x10, 3, 20, 0]), /m = 4294967296 bits needs 536870912 bytes, more than maxBytes 262144/)
      rejects(encoding([V, 0x81, 0x10, 3, 20, 0]), /m = 2049 bits needs 257 bytes, more than maxBytes 200/, { maxBytes: 200 })
      rejects(encoding([V, 0xe0, 0x00, 3, 20, 5], validArray), /m \(bits\) is a non-minimal varint/)
      rejects(encoding([V, ...M, 3, 20, 0x85, 0x00], validArray), /count is a non-minimal varint/)
      rejects(encoding([V, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), /m \(bits\) varint is longer than 7 bytes/)
    })
    it('m not prime', () => {
      // Even, odd composites (527 = 17 · 31, 529 = 23², 2^21 − 1 = 7² · 127 · 337), and version 1's
      // least m and its m for 10,000 blocks at 1 %. Checked before the bit array is read, so the
      // header alone gets this error, and so does a header with its full array.
      for (const m of [MIN_BITS, 1024, 527, 529, 2 ** 21 - 1, 95_851]) {
        rejects(encoding([V, ...leb128(m), 3, 20, 0]), new RegExp(`^bloom filter: m = ${m} bits is not prime$`))
        rejects(encoding([V, ...leb128(m), 3, 20, 0], new Uint8Array(Math.ceil(m / 8))), /is not prime/, { maxBytes: 2 ** 20 })
      }
    })
    it('k = 0 or above maxHashes', () => {
      rejects(encoding([V, ...M, 0, 20, 5], validArray), /k \(hashes\) is 0/)
      rejects(encoding([V, ...M, 33, 20, 5], validArray), /k \(hashes\) = 33, more than maxHashes 32/)
      rejects(encoding([V, ...M, 255, 20, 5], validArray), /k \(hashes\) = 255, more than maxHashes 32/)
      rejects(valid, /k \(hashes\) = 3, more than maxHashes 2/, { maxHashes: 2 })
      expect(decodeBlockFilter(encoding([V, ...M, 33, 20, 5], validArray), { maxHashes: 33 }).hashes).toBe(33)
    })
    it('capacity = 0', () => {
      rejects(encoding([V, ...M, 3, 0, 5], validArray), /capacity is 0/)
    })
    it('total above maxBytes', () => {
      const big = new Uint8Array(DEFAULT_MAX_FILTER_BYTES + 1)
      big[0] = V
      rejects(big, /encoding is 262145 bytes, more than maxBytes 262144/)
      rejects(valid, /encoding is 81 bytes, more than maxBytes 80/, { maxBytes: 80 })
    })
    it('padding bits above m set', () => {
      // m = 523: the last of 66 bytes uses its three low bits.
      const array = (last: number): Uint8Array => { const a = new Uint8Array(66); a[65] = last; return a }
      rejects(encoding([V, ...leb128(523), 1, 20, 5], array(0x08)), /padding bits above m = 523 are set/)
      expect(decodeBlockFilter(encoding([V, ...leb128(523), 1, 20, 5], array(0x04))).bits).toBe(523)
    })
    it('more set bits than count × k allows', () => {
      rejects(encoding([V, ...M, 3, 20, 0], validArray), /4 bits set, more than count 0 × k 3 allows/)
      rejects(encoding([V, ...M, 3, 20, 1], validArray), /4 bits set, more than count 1 × k 3 allows/)
      expect(decodeBlockFilter(encoding([V, ...M, 2, 20, 2], validArray)).count).toBe(2)
    })
    it('a filter that says yes to too many CIDs (estimated false-positive rate above the bound)', () => {
      // All 599 bits set (the last byte's padding bit clear), count claimed high enough to pass
      // the count × k check: (599/599)^3 = 1.
      const ones = new Uint8Array(75).fill(0xff)
      ones[74] = 0x7f
      rejects(encoding([V, ...M, 3, 20, ...leb128(200)], ones), /599 of 599 bits set, an estimated false-positive rate of 1.000, above 0.1/)
      // The base's (4/599)^3 ≈ 3e-7 passes the default and fails a stricter bound.
      rejects(valid, /above 1e-7/, { maxFalsePositiveRate: 1e-7 })
    })
    it('bad limits', () => {
      rejects(valid, /limits.maxBytes must be a positive integer, got 0/, { maxBytes: 0 })
      rejects(valid, /limits.maxHashes must be an integer in \[1, 255\], got 256/, { maxHashes: 256 })
      rejects(valid, /limits.maxHashes must be an integer in \[1, 255\], got 1.5/, { maxHashes: 1.5 })
    })
  })
})
