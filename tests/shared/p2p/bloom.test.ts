import { describe, it, expect } from 'vitest'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from '@noble/hashes/sha2.js'
import { blockFilter, decodeBlockFilter, optimalParams, DEFAULT_MAX_FILTER_BYTES, MIN_BITS, type BlockFilter } from '../../../shared/p2p/bloom.ts'
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
 * Slow reference of the version-1 bit positions, written from the module header's text with
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
  // Hand computation, m = ⌈−n ln p / (ln 2)²⌉ with (ln 2)² = 0.480453…, k = round(m/n · ln 2):
  it('matches hand-computed sizes', () => {
    // 10,000 · 4.605170 / 0.480453 = 95,850.58 → 95,851; 9.5851 · 0.693147 = 6.644 → 7
    expect(optimalParams(10_000, 0.01)).toEqual({ bits: 95_851, hashes: 7 })
    // 1,000 · 6.907755 / 0.480453 = 14,377.59 → 14,378; 14.378 · 0.693147 = 9.966 → 10
    expect(optimalParams(1_000, 0.001)).toEqual({ bits: 14_378, hashes: 10 })
    // 100 · 2.995732 / 0.480453 = 623.52 → 624; 6.24 · 0.693147 = 4.325 → 4
    expect(optimalParams(100, 0.05)).toEqual({ bits: 624, hashes: 4 })
    // 1 · 0.693147 / 0.480453 = 1.4427 → 2, raised to MIN_BITS; 2 · 0.693147 = 1.386 → 1
    expect(optimalParams(1, 0.5)).toEqual({ bits: MIN_BITS, hashes: 1 })
    // 1 · 4.605170 / 0.480453 = 9.585 → 10, raised to MIN_BITS; 10 · 0.693147 = 6.93 → 7 (k from the optimal m)
    expect(optimalParams(1, 0.01)).toEqual({ bits: MIN_BITS, hashes: 7 })
    // 53 · 4.605170 / 0.480453 = 508.0 → 509, raised; 54 → 517.6 → 518, kept
    expect(optimalParams(53, 0.01).bits).toBe(MIN_BITS)
    expect(optimalParams(54, 0.01).bits).toBe(518)
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
    expect([filter.capacity, filter.bits, filter.hashes, filter.count]).toEqual([10_000, 95_851, 7, 0])
    expect(filter.estimatedFalsePositiveRate()).toBe(0)
    const held = seededCids(1, 10_000)
    for (const cid of held) filter.add(cid)
    expect(filter.count).toBe(10_000)
    expect(held.every((cid) => filter.has(cid))).toBe(true)
  })

  it('sets exactly the bits of the slow reference, including the padding rules', async () => {
    const keys = seededCids(3, 300)
    const sized = blockFilter({ capacity: 100, falsePositiveRate: 0.02 }) // m = 815 (not a multiple of 8), k = 6
    for (const key of keys) sized.add(key)
    expect([sized.bits, sized.hashes]).toEqual([815, 6])
    expect(bitArray(sized)).toEqual(await referenceBits(keys, 815, 6))
    // Shapes only a decoded filter can have: the least m (a power of two, where many steps share
    // its factor 2), odd and prime m, k from 1 to 13.
    for (const [m, k] of [[MIN_BITS, 3], [513, 2], [521, 5], [1000, 13], [4096, 1]] as const) {
      const empty = decodeBlockFilter(encoding([1, ...leb128(m), k, 1, 0], new Uint8Array(Math.ceil(m / 8))))
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

describe('false-positive rate at capacity, on 100,000 fresh CIDs', () => {
  const fresh = seededCids(2, 100_000)
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

describe('wire encoding', () => {
  it('has the hand-computed header', () => {
    const bytes = blockFilter({ capacity: 10_000, falsePositiveRate: 0.01 }).encode()
    // version 1 | m = 95,851 = 0x6b + 0x6c·2^7 + 5·2^14 → eb ec 05 | k 07 | capacity 10,000 = 0x10 + 0x4e·2^7 → 90 4e | count 00
    expect(Array.from(bytes.subarray(0, 8))).toEqual([0x01, 0xeb, 0xec, 0x05, 0x07, 0x90, 0x4e, 0x00])
    expect(bytes.length).toBe(8 + 11_982) // ⌈95,851 / 8⌉ bytes of bits: the "≈ 12 KB" of the header note
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
    // m = 744 = 0x68 + 5·2^7 → e8 05; header 6 bytes + 93 bytes of bits = 99 bytes
    const bytes = encoding([1, 0xe8, 0x05, 2, 1, 0], new Uint8Array(93))
    expect(bytes.length).toBe(99)
    expect(decodeBlockFilter(bytes, { maxBytes: 99 }).bits).toBe(744)
    rejects(bytes, /encoding is 99 bytes, more than maxBytes 98/, { maxBytes: 98 })
  })

  describe('rejects every malformed encoding, naming what is wrong', () => {
    // A valid base: m = 600 (a two-byte varint), k = 3, capacity 20, count 5, 75 bytes of bits with 4 bits set.
    const M = leb128(600)
    const validArray = new Uint8Array(75)
    validArray[0] = 0b1010_0000
    validArray[74] = 0b0000_0011
    const valid = encoding([1, ...M, 3, 20, 5], validArray)

    it('accepts the base', () => {
      const filter = decodeBlockFilter(valid)
      expect([filter.bits, filter.hashes, filter.capacity, filter.count]).toEqual([600, 3, 20, 5])
      expect(filter.estimatedFalsePositiveRate()).toBeCloseTo((4 / 600) ** 3, 15)
    })
    it('not bytes', () => {
      rejects('01600314' as unknown, /encoding must be a Uint8Array, got string/)
      rejects(null, /encoding must be a Uint8Array, got null/)
    })
    it('wrong version', () => {
      rejects(encoding([0, ...M, 3, 20, 5], validArray), /unsupported encoding version 0, expected 1/)
      rejects(encoding([2, ...M, 3, 20, 5], validArray), /unsupported encoding version 2/)
    })
    it('truncated anywhere', () => {
      rejects(new Uint8Array(0), /truncated: ends before version/)
      // Cut after byte `cut` of the header: m is two bytes long.
      const fields = ['version', 'm \\(bits\\)', 'm \\(bits\\)', 'k \\(hashes\\)', 'capacity', 'count']
      for (let cut = 1; cut < 6; cut++) rejects(valid.subarray(0, cut), new RegExp(`truncated: ends before ${fields[cut]!}`))
      for (let cut = 6; cut < valid.length; cut++) {
        rejects(valid.subarray(0, cut), new RegExp(`truncated: m = 600 bits needs a 75-byte bit array, got ${cut - 6} bytes`))
      }
      rejects(encoding([1, 0x80]), /truncated: ends before m \(bits\)/) // a varint cut after a continuation byte
    })
    it('trailing bytes', () => {
      rejects(encoding([1, ...M, 3, 20, 5], [...validArray, 0]), /1 trailing bytes after the 75-byte bit array of m = 600 bits/)
      // m says 592 bits (74 bytes) but 75 follow: the array does not match m.
      rejects(encoding([1, ...leb128(592), 3, 20, 5], validArray), /1 trailing bytes after the 74-byte bit array of m = 592 bits/)
    })
    it('m = 0, m below MIN_BITS, m beyond the size limit, malformed varints', () => {
      rejects(encoding([1, 0, 3, 20, 0]), /m \(bits\) is 0/)
      rejects(encoding([1, ...leb128(MIN_BITS - 1), 3, 20, 0], new Uint8Array(MIN_BITS / 8)), /m = 511 bits, fewer than the least 512/)
      expect(decodeBlockFilter(encoding([1, ...leb128(MIN_BITS), 3, 20, 0], new Uint8Array(MIN_BITS / 8))).bits).toBe(MIN_BITS)
      rejects(encoding([1, 0x80, 0x80, 0x80, 0x80, 0x10, 3, 20, 0]), /m = 4294967296 bits needs 536870912 bytes, more than maxBytes 262144/)
      rejects(encoding([1, 0x81, 0x10, 3, 20, 0]), /m = 2049 bits needs 257 bytes, more than maxBytes 200/, { maxBytes: 200 })
      rejects(encoding([1, 0xe0, 0x00, 3, 20, 5], validArray), /m \(bits\) is a non-minimal varint/)
      rejects(encoding([1, ...M, 3, 20, 0x85, 0x00], validArray), /count is a non-minimal varint/)
      rejects(encoding([1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), /m \(bits\) varint is longer than 7 bytes/)
    })
    it('k = 0 or above maxHashes', () => {
      rejects(encoding([1, ...M, 0, 20, 5], validArray), /k \(hashes\) is 0/)
      rejects(encoding([1, ...M, 33, 20, 5], validArray), /k \(hashes\) = 33, more than maxHashes 32/)
      rejects(encoding([1, ...M, 255, 20, 5], validArray), /k \(hashes\) = 255, more than maxHashes 32/)
      rejects(valid, /k \(hashes\) = 3, more than maxHashes 2/, { maxHashes: 2 })
      expect(decodeBlockFilter(encoding([1, ...M, 33, 20, 5], validArray), { maxHashes: 33 }).hashes).toBe(33)
    })
    it('capacity = 0', () => {
      rejects(encoding([1, ...M, 3, 0, 5], validArray), /capacity is 0/)
    })
    it('total above maxBytes', () => {
      const big = new Uint8Array(DEFAULT_MAX_FILTER_BYTES + 1)
      big[0] = 1
      rejects(big, /encoding is 262145 bytes, more than maxBytes 262144/)
      rejects(valid, /encoding is 81 bytes, more than maxBytes 80/, { maxBytes: 80 })
    })
    it('padding bits above m set', () => {
      // m = 514: the last of 65 bytes uses its two low bits.
      const array = (last: number): Uint8Array => { const a = new Uint8Array(65); a[64] = last; return a }
      rejects(encoding([1, ...leb128(514), 1, 20, 5], array(0x04)), /padding bits above m = 514 are set/)
      expect(decodeBlockFilter(encoding([1, ...leb128(514), 1, 20, 5], array(0x02))).bits).toBe(514)
    })
    it('more set bits than count × k allows', () => {
      rejects(encoding([1, ...M, 3, 20, 0], validArray), /4 bits set, more than count 0 × k 3 allows/)
      rejects(encoding([1, ...M, 3, 20, 1], validArray), /4 bits set, more than count 1 × k 3 allows/)
      expect(decodeBlockFilter(encoding([1, ...M, 2, 20, 2], validArray)).count).toBe(2)
    })
    it('a filter that says yes to too many CIDs (estimated false-positive rate above the bound)', () => {
      // All 600 bits set, count claimed high enough to pass the count × k check: (600/600)^3 = 1.
      rejects(encoding([1, ...M, 3, 20, ...leb128(200)], new Uint8Array(75).fill(0xff)), /600 of 600 bits set, an estimated false-positive rate of 1.000, above 0.1/)
      // The base's (4/600)^3 ≈ 3e-7 passes the default and fails a stricter bound.
      rejects(valid, /above 1e-7/, { maxFalsePositiveRate: 1e-7 })
    })
    it('bad limits', () => {
      rejects(valid, /limits.maxBytes must be a positive integer, got 0/, { maxBytes: 0 })
      rejects(valid, /limits.maxHashes must be an integer in \[1, 255\], got 256/, { maxHashes: 256 })
      rejects(valid, /limits.maxHashes must be an integer in \[1, 255\], got 1.5/, { maxHashes: 1.5 })
    })
  })
})
