/**
 * Bloom filter of the block CIDs a runtime holds (B. H. Bloom, "Space/time trade-offs in hash
 * coding with allowable errors", CACM 13(7), 1970). Each runtime gossips its filter so that a
 * loader asks likely holders first; a false positive only costs one wasted request, a false
 * negative never happens.
 *
 * Hashing: Kirsch–Mitzenmacher double hashing ("Less hashing, same performance: building a
 * better Bloom filter", ESA 2006) over SHA-256 of the key's UTF-8 bytes: with d = SHA-256(key),
 * h1 = big-endian u64 of d[0..8] mod 2^53, h2 = the same of d[8..16], the i-th bit (i < k) is
 * (h1 + i·b) mod m, where b = h2 mod m, or 1 when that is 0 (so the k bits never collapse into
 * one). Taking 53 bits keeps every step exact in a JS number and the modulo bias below m/2^53.
 * Bit j lives in byte ⌊j/8⌋ under mask 1 << (j mod 8).
 *
 * m is prime. Kirsch and Mitzenmacher take their modulus prime: k subtables of p bits, p prime,
 * the i-th probed at g_i(x) = h1(x) + i·h2(x) mod p, so that for any two keys g_i(x) = g_i(y)
 * holds for all i, exactly one i or none. A composite m breaks this, and a peer can exploit it:
 * a step b with gcd(b, m) = g > 1 keeps a key's k bits in one residue class mod g, so a version-1
 * filter of every even bit of an even m (fill 0.5, k = 4: estimate 0.0625) said yes to 24.8 % of
 * 100,000 fresh CIDs, and one of every bit not ≡ 0 mod 8 of m = 1024 (k = 18: estimate 0.090) to
 * 32.8 %. With m prime every step is coprime with m, a key's bits are an arithmetic progression
 * that no residue class holds, and the strongest filters found within the decoder's bounds (an
 * interval of bits plus a shorter one half the ring away, or simulated annealing over all bit
 * sets at m = 521 and 1031) said yes to 12–13 % of keys at an estimate of 0.1: above the estimate,
 * but not by the 2.5–3.3 × of residue classes (tests/shared/p2p/bloom.test.ts).
 *
 * Why not `@libp2p/utils`' `BloomFilter` (v7.4.1): its `fnv1a.hash(input)` ignores the seed it is
 * handed, so all k "hashes" pick the same bit and the filter behaves as k = 1. Measured here
 * with 10,000 CIDv1 strings at a 1 % target: 9.87 % false positives on 100,000 fresh CIDs, and a
 * fill ratio of 0.099 (= 1 − e^(−n/m), the k = 1 value, instead of ≈ 0.5).
 *
 * Sizing: m = −n·ln p / (ln 2)², k = round(m/n · ln 2), then m is raised to the least prime at
 * or above it. 10,000 blocks at 1 % → m = 95,857 bits, k = 7: 11,983 bytes of bits + 9 bytes of
 * header ≈ 12 KB; at 0.1 % ≈ 18 KB. The default decode limit (256 KiB) takes ≈ 218,000 blocks at
 * 1 %. m is never below MIN_BITS (512, so the least m is the prime 521): in a tiny filter the
 * real false-positive rate is far above (fill)^k (see MIN_BITS).
 *
 * Wire encoding, version 2 (varints are unsigned LEB128, minimal, at most 7 bytes so that every
 * value is exact in a JS number):
 *   u8 version = 2 | varint m (bits, a prime) | u8 k (hashes) | varint capacity | varint count |
 *   ⌈m/8⌉ bytes of bits, the unused high bits of the last byte zero.
 * Version 1 had the same layout with any m ≥ 512; it is refused, since a version-1 filter with a
 * composite m is the attack above. The hash function is fixed by the version, so no seeds travel.
 * A filter arrives from untrusted peers: `decodeBlockFilter` checks every field and the total size
 * before it allocates anything.
 */
import { encode as varint } from 'uint8-varint'
import { sha256 } from '@noble/hashes/sha2.js'
import { InvalidInputError } from '../errors/errors.ts'

/** Version byte of the wire encoding; a new hash, layout or rule on m gets a new version. */
export const BLOOM_ENCODING_VERSION = 2
/** Default bound on an encoded filter accepted from the network. */
export const DEFAULT_MAX_FILTER_BYTES = 256 * 1024
/** Default bound on k accepted from the network (k = 30 already means p ≈ 1e-9). */
export const DEFAULT_MAX_HASHES = 32
/** decodeBlockFilter's default bound on a received filter's estimated false-positive rate. */
export const DEFAULT_MAX_DECODED_FPR = 0.1

/**
 * Floor on m, in bits (64 bytes); m is then the least prime at or above it, so the least m made
 * and accepted is 521. Measured on 300,000 fresh CIDs (version 1, before m was prime): capacity 1
 * at 1 % (m = 10, k = 7) said yes to 20 % of them, and crafted filters of 8 to 12 bits with k = 16
 * or 32 passed the decoder's estimate bound (0.1) while saying yes to 20–22 %. A runtime's
 * filter has at least 617 bits anyway (its least capacity, 64 blocks at 1 %).
 */
export const MIN_BITS = 512

/** k travels as one byte. */
const MAX_HASHES = 255
/** m is capped at 2^32 bits (512 MiB): far above any gossip use, and it keeps allocation sane. */
const MAX_BITS = 2 ** 32
const LN2_SQUARED = Math.LN2 * Math.LN2
const TWO_POW_32 = 2 ** 32
const MAX_VARINT_BYTES = 7
const utf8 = new TextEncoder()

export interface BlockFilterOptions {
  /** Number of CIDs the filter is sized for; past it the false-positive rate climbs. */
  capacity: number
  /** Target false-positive rate at `capacity` items, in (0, 1). */
  falsePositiveRate: number
}

export interface DecodeLimits {
  /** Largest encoding accepted, in bytes (default 256 KiB). */
  maxBytes?: number
  /** Largest k accepted (default 32). */
  maxHashes?: number
  /**
   * Largest estimated false-positive rate, (set bits / m)^k, accepted (default 0.1). A filter
   * that says "yes" to most CIDs (all ones, say) tells nothing, and its sender would be asked
   * first for every block. An honest filter reaches 0.1 only past about 1.8 × its capacity.
   */
  maxFalsePositiveRate?: number
}

export interface BloomParams {
  /** m: filter size in bits. */
  bits: number
  /** k: bits set per item. */
  hashes: number
}

export interface BlockFilter {
  /** Records that this runtime holds `cid` (a canonical CID string). */
  add (cid: string): void
  /** False: `cid` was certainly never added. True: it probably was. */
  has (cid: string): boolean
  /** Items added (as claimed by the sender, for a decoded filter). */
  readonly count: number
  /** Items the filter was sized for. */
  readonly capacity: number
  /** m, the number of bits. */
  readonly bits: number
  /** k, the number of bits set per item. */
  readonly hashes: number
  /** (set bits / m)^k: the chance that a CID never added answers true, given the current fill. */
  estimatedFalsePositiveRate (): number
  /** The version-2 wire encoding (see the module header). */
  encode (): Uint8Array
}

/**
 * m = ⌈−n·ln p / (ln 2)²⌉ and k = max(1, round(m/n · ln 2)), the sizes that minimise m for
 * `capacity` = n items at false-positive rate p; then m is raised to MIN_BITS if below it and to
 * the least prime at or above that (k stays: a larger m only lowers the rate).
 *
 * @example optimalParams(10_000, 0.01) // { bits: 95857, hashes: 7 } (95,851 before rounding to a prime)
 * @example optimalParams(1, 0.01) // { bits: 521, hashes: 7 } (m = 10 before the floor)
 */
export function optimalParams (capacity: number, falsePositiveRate: number): BloomParams {
  if (typeof capacity !== 'number' || !Number.isSafeInteger(capacity) || capacity < 1) {
    throw new InvalidInputError(`bloom filter: capacity must be a positive integer, got ${String(capacity)}`)
  }
  if (typeof falsePositiveRate !== 'number' || !(falsePositiveRate > 0 && falsePositiveRate < 1)) {
    throw new InvalidInputError(`bloom filter: falsePositiveRate must be a number in (0, 1), got ${String(falsePositiveRate)}`)
  }
  const optimal = Math.ceil(-capacity * Math.log(falsePositiveRate) / LN2_SQUARED)
  const hashes = Math.max(1, Math.round(optimal / capacity * Math.LN2))
  if (optimal > MAX_BITS) {
    throw new InvalidInputError(`bloom filter: capacity ${capacity} at falsePositiveRate ${falsePositiveRate} needs ${optimal} bits, more than ${MAX_BITS}`)
  }
  if (hashes > MAX_HASHES) {
    throw new InvalidInputError(`bloom filter: falsePositiveRate ${falsePositiveRate} needs ${hashes} hashes, more than ${MAX_HASHES}`)
  }
  const bits = leastPrimeAtLeast(Math.max(MIN_BITS, optimal))
  if (bits > MAX_BITS) {
    throw new InvalidInputError(`bloom filter: capacity ${capacity} at falsePositiveRate ${falsePositiveRate} needs ${bits} bits (the least prime at or above ${optimal}), more than ${MAX_BITS}`)
  }
  return { bits, hashes }
}

/**
 * An empty filter sized by `optimalParams(capacity, falsePositiveRate)`.
 *
 * @example
 * const held = blockFilter({ capacity: 10_000, falsePositiveRate: 0.01 })
 * held.add(cid)
 * gossip.publish(topic, held.encode())
 */
export function blockFilter (options: BlockFilterOptions): BlockFilter {
  if (options == null || typeof options !== 'object') {
    throw new InvalidInputError('bloom filter: options must be an object with capacity and falsePositiveRate')
  }
  const { bits, hashes } = optimalParams(options.capacity, options.falsePositiveRate)
  return filterOver(bits, hashes, options.capacity, 0, new Uint8Array(Math.ceil(bits / 8)), 0)
}

/**
 * Parses a version-2 encoding received from a peer. Throws InvalidInputError naming the
 * field at fault: version (1 included), truncation, varint form, m (0, below MIN_BITS, above the
 * size bound or not prime), k (0 or above `maxHashes`), capacity, size above `maxBytes`,
 * bit-array length, padding bits, more set bits than count·k allows, or an estimated
 * false-positive rate above `maxFalsePositiveRate`.
 */
export function decodeBlockFilter (bytes: Uint8Array, limits: DecodeLimits = {}): BlockFilter {
  const maxBytes = limits.maxBytes ?? DEFAULT_MAX_FILTER_BYTES
  const maxHashes = limits.maxHashes ?? DEFAULT_MAX_HASHES
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
    throw new InvalidInputError(`bloom filter: limits.maxBytes must be a positive integer, got ${String(maxBytes)}`)
  }
  if (!Number.isSafeInteger(maxHashes) || maxHashes < 1 || maxHashes > MAX_HASHES) {
    throw new InvalidInputError(`bloom filter: limits.maxHashes must be an integer in [1, ${MAX_HASHES}], got ${String(maxHashes)}`)
  }
  if (!(bytes instanceof Uint8Array)) {
    throw new InvalidInputError(`bloom filter: encoding must be a Uint8Array, got ${bytes === null ? 'null' : typeof bytes}`)
  }
  if (bytes.length > maxBytes) {
    throw new InvalidInputError(`bloom filter: encoding is ${bytes.length} bytes, more than maxBytes ${maxBytes}`)
  }
  const reader = { bytes, offset: 0 }
  const version = readByte(reader, 'version')
  if (version !== BLOOM_ENCODING_VERSION) {
    throw new InvalidInputError(`bloom filter: unsupported encoding version ${version}, expected ${BLOOM_ENCODING_VERSION}`)
  }
  const bits = readVarint(reader, 'm (bits)')
  if (bits === 0) throw new InvalidInputError('bloom filter: m (bits) is 0')
  if (bits < MIN_BITS) throw new InvalidInputError(`bloom filter: m = ${bits} bits, fewer than the least ${MIN_BITS}`)
  const arrayBytes = Math.ceil(bits / 8)
  if (bits > MAX_BITS || arrayBytes > maxBytes) {
    throw new InvalidInputError(`bloom filter: m = ${bits} bits needs ${arrayBytes} bytes, more than maxBytes ${maxBytes}`)
  }
  // A composite m lets a crafted filter hold whole residue classes (see the module header).
  if (!isPrime(bits)) throw new InvalidInputError(`bloom filter: m = ${bits} bits is not prime`)
  const hashes = readByte(reader, 'k (hashes)')
  if (hashes === 0) throw new InvalidInputError('bloom filter: k (hashes) is 0')
  if (hashes > maxHashes) throw new InvalidInputError(`bloom filter: k (hashes) = ${hashes}, more than maxHashes ${maxHashes}`)
  const capacity = readVarint(reader, 'capacity')
  if (capacity === 0) throw new InvalidInputError('bloom filter: capacity is 0')
  const count = readVarint(reader, 'count')
  const remaining = bytes.length - reader.offset
  if (remaining < arrayBytes) {
    throw new InvalidInputError(`bloom filter: truncated: m = ${bits} bits needs a ${arrayBytes}-byte bit array, got ${remaining} bytes`)
  }
  if (remaining > arrayBytes) {
    throw new InvalidInputError(`bloom filter: ${remaining - arrayBytes} trailing bytes after the ${arrayBytes}-byte bit array of m = ${bits} bits`)
  }
  const array = bytes.slice(reader.offset)
  // Unused high bits of the last byte must be zero, so each filter has exactly one encoding.
  const usedInLast = bits % 8
  if (usedInLast !== 0 && ((array[arrayBytes - 1] as number) >> usedInLast) !== 0) {
    throw new InvalidInputError(`bloom filter: padding bits above m = ${bits} are set in the last byte`)
  }
  const setBits = popcount(array)
  // Each add sets at most k bits; more set bits means the sender lies about count (or sends noise).
  if (setBits > count * hashes) {
    throw new InvalidInputError(`bloom filter: ${setBits} bits set, more than count ${count} × k ${hashes} allows`)
  }
  const maxFpr = limits.maxFalsePositiveRate ?? DEFAULT_MAX_DECODED_FPR
  const fpr = (setBits / bits) ** hashes
  if (fpr > maxFpr) {
    throw new InvalidInputError(`bloom filter: ${setBits} of ${bits} bits set, an estimated false-positive rate of ${fpr.toFixed(3)}, above ${maxFpr}`)
  }
  return filterOver(bits, hashes, capacity, count, array, setBits)
}

function filterOver (bits: number, hashes: number, capacity: number, initialCount: number, array: Uint8Array, initialSetBits: number): BlockFilter {
  let count = initialCount
  let setBits = initialSetBits
  // Reused by every add/has: the k bit positions of the current key.
  const positions = new Array<number>(hashes).fill(0)
  const locate = (cid: unknown, what: string): void => {
    if (typeof cid !== 'string') throw new InvalidInputError(`bloom filter ${what}: cid must be a string, got ${cid === null ? 'null' : typeof cid}`)
    bitPositions(cid, bits, positions)
  }
  return {
    add (cid: string): void {
      locate(cid, 'add')
      for (const bit of positions) {
        const mask = 1 << (bit & 7)
        const byte = array[bit >>> 3] as number
        if ((byte & mask) === 0) {
          array[bit >>> 3] = byte | mask
          setBits++
        }
      }
      count++
    },
    has (cid: string): boolean {
      locate(cid, 'has')
      for (const bit of positions) {
        if (((array[bit >>> 3] as number) & (1 << (bit & 7))) === 0) return false
      }
      return true
    },
    get count () { return count },
    capacity,
    bits,
    hashes,
    estimatedFalsePositiveRate (): number {
      return (setBits / bits) ** hashes
    },
    encode (): Uint8Array {
      const header = [BLOOM_ENCODING_VERSION, ...varint(bits), hashes, ...varint(capacity), ...varint(count)]
      const out = new Uint8Array(header.length + array.length)
      out.set(header, 0)
      out.set(array, header.length)
      return out
    }
  }
}

/** Fills `out` with the k = out.length bit positions of `key` (see the module header). */
function bitPositions (key: string, bits: number, out: number[]): void {
  const d = sha256(utf8.encode(key))
  const view = new DataView(d.buffer, d.byteOffset, d.byteLength)
  // Low 21 bits of the high word and the whole low word: u64 mod 2^53, exact as a number.
  const h1 = (view.getUint32(0) & 0x1fffff) * TWO_POW_32 + view.getUint32(4)
  const h2 = (view.getUint32(8) & 0x1fffff) * TWO_POW_32 + view.getUint32(12)
  const step = (h2 % bits) || 1
  let position = h1 % bits
  for (let i = 0; i < out.length; i++) {
    out[i] = position
    position += step
    if (position >= bits) position -= bits
  }
}

/**
 * Trial division by 2 and the odd numbers up to √n: exact for every n ≤ MAX_BITS (at most 32,768
 * divisions, all exact in a JS number). Only sizes of filters are tested, so it need not be fast.
 */
function isPrime (n: number): boolean {
  if (n < 2) return false
  if (n % 2 === 0) return n === 2
  for (let d = 3; d * d <= n; d += 2) {
    if (n % d === 0) return false
  }
  return true
}

/** The least prime ≥ n: below 2^32 primes are at most 336 apart (OEIS A005250), so few tries. */
function leastPrimeAtLeast (n: number): number {
  let candidate = n
  while (!isPrime(candidate)) candidate++
  return candidate
}

function popcount (array: Uint8Array): number {
  let total = 0
  for (let byte of array) {
    while (byte !== 0) {
      byte &= byte - 1
      total++
    }
  }
  return total
}

interface Reader { bytes: Uint8Array, offset: number }

function readByte (reader: Reader, field: string): number {
  const byte = reader.bytes[reader.offset]
  if (byte === undefined) throw new InvalidInputError(`bloom filter: truncated: ends before ${field} (at byte ${reader.offset})`)
  reader.offset++
  return byte
}

function readVarint (reader: Reader, field: string): number {
  let value = 0
  let scale = 1
  for (let i = 0; i < MAX_VARINT_BYTES; i++) {
    const byte = readByte(reader, field)
    value += (byte & 0x7f) * scale
    if ((byte & 0x80) === 0) {
      // A final zero byte after the first adds nothing: a second encoding of the same value.
      if (byte === 0 && i > 0) throw new InvalidInputError(`bloom filter: ${field} is a non-minimal varint`)
      return value
    }
    scale *= 0x80
  }
  throw new InvalidInputError(`bloom filter: ${field} varint is longer than ${MAX_VARINT_BYTES} bytes`)
}
