/**
 * Paillier encryption, pools and aggregation. Keys here are 1024-bit (real Paillier, small for
 * speed); deployments use 2048 bits. References: CPython-computed vectors and the
 * paillier-bigint package's own encrypt/decrypt (an independent implementation).
 */
import { describe, it, expect, beforeAll } from 'vitest'
import * as paillier from 'paillier-bigint'
import { decrypt, generateKeyPair, publicKeyFromN, publicKeyId, secretKeyFromPrimes, type PaillierSecretKey } from '../../../aggregation/paillier/keys.ts'
import { ciphertextCount, pack, packingLayout } from '../../../aggregation/paillier/layout.ts'
import { precomputeRandomness } from '../../../aggregation/paillier/randomness.ts'
import { decryptSum, encryptUpdate, sumCiphertexts, sumEncodedUpdates } from '../../../aggregation/paillier/aggregate.ts'
import { ciphertextWidth, decodeCiphertexts, encodeCiphertexts, ringFromBytes, ringToBytes } from '../../../aggregation/paillier/wire.ts'
import { onlineEncrypt } from '../../../aggregation/paillier/_online.ts'
import { modPow, toFixedBytes } from '../../../aggregation/paillier/_bigint.ts'
import { RandomnessExhaustedError } from '../../../aggregation/paillier/errors.ts'
import { ringSum } from '../../../aggregation/ring.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'
import vectors from './paillier-vectors.json' with { type: 'json' }

const hex = (s: string): bigint => BigInt('0x' + s)
const vectorKey = secretKeyFromPrimes(hex(vectors.p), hex(vectors.q))
let fresh: PaillierSecretKey

beforeAll(async () => {
  fresh = await generateKeyPair(1024)
})

/** The package's keys for our primes: the reference decryptor (its non-CRT path: λ, μ only). */
function referenceKeys (sk: PaillierSecretKey): { pub: paillier.PublicKey, priv: paillier.PrivateKey } {
  const { n } = sk.publicKey
  const pub = new paillier.PublicKey(n, n + 1n)
  const lambda = (sk.p - 1n) * (sk.q - 1n)
  const mu = modPow(lambda, (sk.p - 1n) * (sk.q - 1n) - 1n, n) // λ^−1 mod n by Euler, since gcd(λ, n) = 1
  return { pub, priv: new paillier.PrivateKey(lambda, mu, pub) }
}

function seededInt32s (seed: number, length: number, bound: number): Uint32Array {
  const rand = mulberry32(seed)
  return Uint32Array.from({ length }, () => (Math.floor(rand() * 2 * bound) - bound) >>> 0)
}

describe('Paillier keys and decryption', () => {
  it('the reference package reproduces the textbook example (Wikipedia, p = 7, q = 11)', () => {
    const t = vectors.toy
    const n = BigInt(t.p * t.q)
    const pub = new paillier.PublicKey(n, BigInt(t.g))
    expect(pub.encrypt(BigInt(t.m), BigInt(t.r))).toBe(BigInt(t.c))
    expect(new paillier.PrivateKey(BigInt(t.lambda), BigInt(t.mu), pub).decrypt(BigInt(t.c))).toBe(BigInt(t.m))
  })

  it('decrypts the CPython vectors, and the package encrypts them identically', () => {
    expect(vectorKey.publicKey.n).toBe(hex(vectors.n))
    const { pub } = referenceKeys(vectorKey)
    for (const v of vectors.vectors) {
      expect(decrypt(vectorKey, hex(v.c))).toBe(hex(v.m))
      expect(pub.encrypt(hex(v.m), hex(v.r))).toBe(hex(v.c))
    }
  })

  it('the one-multiplication online step equals textbook encryption with the same r', () => {
    const { n, n2 } = vectorKey.publicKey
    for (const v of vectors.vectors) {
      const rn = modPow(hex(v.r), n, n2)
      expect(onlineEncrypt(hex(v.m), rn, rn % n, n, n2)).toBe(hex(v.c))
    }
  })

  it('CRT decryption equals the package\'s decryption on a freshly generated key', () => {
    const { pub, priv } = referenceKeys(fresh)
    const rand = mulberry32(5)
    for (let i = 0; i < 8; i++) {
      const m = BigInt(Math.floor(rand() * 2 ** 52)) << BigInt(i * 100)
      const c = pub.encrypt(m % fresh.publicKey.n)
      expect(decrypt(fresh, c)).toBe(priv.decrypt(c))
      expect(decrypt(fresh, c)).toBe(m % fresh.publicKey.n)
    }
  })

  it('generates keys of the asked size whose primes multiply to n', async () => {
    expect(fresh.publicKey.bits).toBe(1024)
    expect(fresh.p * fresh.q).toBe(fresh.publicKey.n)
    expect(fresh.p).not.toBe(fresh.q)
    expect(await publicKeyId(fresh.publicKey)).toMatch(/^[0-9a-f]{64}$/)
    await expect(generateKeyPair(512)).rejects.toThrow(/bits: expected an even integer ≥ 1024/)
  })

  it('refuses unusable moduli and ciphertexts, naming the argument', () => {
    expect(() => publicKeyFromN(77n)).toThrow(/paillier modulus n: 7 bits, at least 1024/)
    expect(() => publicKeyFromN(1n << 1100n)).toThrow(/must be odd/)
    const p = hex(vectors.p)
    expect(() => publicKeyFromN(p * p)).toThrow(/must not be a square/)
    expect(() => secretKeyFromPrimes(p, p)).toThrow(/distinct/)
    const { n, n2 } = vectorKey.publicKey
    expect(() => decrypt(vectorKey, 0n)).toThrow(/out of range/)
    expect(() => decrypt(vectorKey, n2)).toThrow(/out of range/)
    expect(() => decrypt(vectorKey, p * 12345n)).toThrow(/not coprime/)
    expect(() => decrypt(vectorKey, n)).toThrow(InvalidInputError)
  })
})

describe('randomness pools', () => {
  for (const method of ['plain', 'short-exponent'] as const) {
    it(`${method}: every r^n is an n-th residue (decrypts to 0) and ciphertexts decrypt to their plaintexts`, async () => {
      const pool = await precomputeRandomness(fresh.publicKey, 40, { method })
      expect(pool.method).toBe(method)
      // E(0) = r^n itself: the pool's values are exactly the ciphertexts of 0.
      const zeros = pool.encrypt(new Array<bigint>(20).fill(0n))
      for (const z of zeros) expect(decrypt(fresh, z)).toBe(0n)
      expect(new Set(zeros).size).toBe(20)
      const ms = Array.from({ length: 20 }, (_, i) => (fresh.publicKey.n - 1n) >> BigInt(i * 50))
      const cs = pool.encrypt(ms)
      expect(cs.map(c => decrypt(fresh, c))).toEqual(ms)
      expect(pool.remaining()).toBe(0)
    })
  }

  it('uses each value once: equal plaintexts get different ciphertexts, then the pool refuses', async () => {
    const pool = await precomputeRandomness(fresh.publicKey, 3, { method: 'short-exponent' })
    const [a, b] = pool.encrypt([7n, 7n])
    expect(a).not.toBe(b)
    expect(pool.remaining()).toBe(1)
    expect(() => pool.encrypt([1n, 2n])).toThrow(RandomnessExhaustedError)
    expect(pool.remaining()).toBe(1) // a refused batch consumes nothing
    const [c] = pool.encrypt([7n])
    expect(c).not.toBe(a)
    expect(() => pool.encrypt([7n])).toThrow(/1 encryptions asked, 0 values left/)
    const other = await precomputeRandomness(fresh.publicKey, 2)
    other.destroy()
    expect(other.remaining()).toBe(0)
    expect(() => other.encrypt([1n])).toThrow(RandomnessExhaustedError)
  })

  it('checks plaintexts and options, and honours an abort signal', async () => {
    const pool = await precomputeRandomness(fresh.publicKey, 2, { method: 'short-exponent' })
    expect(() => pool.encrypt([fresh.publicKey.n])).toThrow(/plaintexts\[0\]: out of range/)
    expect(() => pool.encrypt([-1n])).toThrow(InvalidInputError)
    expect(pool.remaining()).toBe(2)
    await expect(precomputeRandomness(fresh.publicKey, 0)).rejects.toThrow(/count: expected a positive integer/)
    await expect(precomputeRandomness(fresh.publicKey, 1, { method: 'fast' as 'plain' })).rejects.toThrow(/options.method/)
    const controller = new AbortController()
    const progress: number[] = []
    const run = precomputeRandomness(fresh.publicKey, 1000, { method: 'short-exponent', signal: controller.signal, onProgress: d => { progress.push(d); if (d >= 32) controller.abort() } })
    await expect(run).rejects.toThrow(/abort/i)
    expect(progress).toContain(32)
  })
})

describe('encrypted aggregation end to end (1024-bit key)', () => {
  it('the decrypted homomorphic sum of several clients equals the ring sum', async () => {
    const sk = fresh
    const layout = packingLayout(sk.publicKey, 8)
    const length = 3 * layout.slotsPerCiphertext + 11
    const clients = 6
    // Each value within ±2^31/8, so every coordinate's sum fits int32 (ring.ts's contract);
    // plus one column of extremes that cancel out.
    const xs = Array.from({ length: clients }, (_, c) => seededInt32s(100 + c, length, 2 ** 28))
    for (const [c, x] of xs.entries()) x[0] = [0x7fffffff, 0x80000001, 0xffffffff, 1, 0, 0][c] as number
    const updates: Uint8Array[] = []
    for (const [c, x] of xs.entries()) {
      const pool = await precomputeRandomness(sk.publicKey, ciphertextCount(layout, length), { method: c % 2 === 0 ? 'plain' : 'short-exponent' })
      const bytes = encryptUpdate(x, layout, pool)
      expect(bytes.length).toBe(ciphertextCount(layout, length) * ciphertextWidth(sk.publicKey))
      expect(pool.remaining()).toBe(0)
      updates.push(bytes)
    }
    const sum = await decryptSum(sk, sumEncodedUpdates(updates, layout, sk.publicKey, length), layout, length, clients)
    expect(sum).toEqual(ringSum(xs, length))
    expect(sum[0]).toBe(0) // int32 max + (−int32 max) + (−1) + 1
    // The reference decryptor agrees on the packed sums.
    const { priv } = referenceKeys(sk)
    const summed = sumEncodedUpdates(updates, layout, sk.publicKey, length)
    const expected = xs.map(x => pack(x, layout)).reduce((acc, p) => acc.map((a, i) => a + (p[i] as bigint)))
    expect(summed.map(c => priv.decrypt(c))).toEqual(expected)
  })

  it('refuses mismatched layouts and vectors', async () => {
    const layout = packingLayout({ bits: 2048 }, 8)
    const pool = await precomputeRandomness(fresh.publicKey, 1, { method: 'short-exponent' })
    expect(() => encryptUpdate(new Uint32Array(3), layout, pool)).toThrow(/layout is for a 2048-bit key, the key has 1024 bits/)
    expect(() => sumCiphertexts([], fresh.publicKey)).toThrow(/at least one/)
    expect(() => sumCiphertexts([[1n, 2n], [1n]], fresh.publicKey)).toThrow(/vectors\[1\]: 1 ciphertexts, expected 2/)
    const small = packingLayout(fresh.publicKey, 8)
    await expect(decryptSum(fresh, [1n], small, 500, 2)).rejects.toThrow(/sums: expected/)
  })
})

describe('wire format', () => {
  const pk = vectorKey.publicKey
  const width = ciphertextWidth(pk)

  it('is fixed-width big-endian, 2·bits(n)/8 bytes per ciphertext', () => {
    expect(width).toBe(256)
    expect(ciphertextWidth({ n: 0n, n2: 0n, bits: 2048 })).toBe(512)
    const cs = vectors.vectors.map(v => hex(v.c))
    const bytes = encodeCiphertexts(cs, pk)
    expect(bytes.length).toBe(cs.length * width)
    expect(bytes.subarray(width, 2 * width)).toEqual(toFixedBytes(cs[1] as bigint, width))
    expect(decodeCiphertexts(bytes, pk, cs.length)).toEqual(cs)
  })

  it('rejects wrong lengths and values outside [1, n²), naming the input', () => {
    const good = encodeCiphertexts([5n, 6n], pk)
    expect(() => decodeCiphertexts(good.subarray(1), pk, 2, 'client a')).toThrow(/client a: expected 2 ciphertexts of 256 bytes \(512 bytes\), got 511 bytes/)
    expect(() => decodeCiphertexts(good, pk, 3)).toThrow(InvalidInputError)
    const zero = good.slice()
    zero.fill(0, width)
    expect(() => decodeCiphertexts(zero, pk, 2, 'client b')).toThrow(/client b: ciphertext 1 is out of range/)
    const high = good.slice()
    high.set(toFixedBytes(pk.n2, width), 0)
    expect(() => decodeCiphertexts(high, pk, 2)).toThrow(/ciphertext 0 is out of range/)
    expect(() => encodeCiphertexts([pk.n2], pk)).toThrow(/ciphertexts\[0\]: out of range/)
    // In range but sharing a factor with n: no honest ciphertext does, and the sum could not be decrypted.
    expect(() => decodeCiphertexts(encodeCiphertexts([5n, pk.n], pk), pk, 2, 'client c')).toThrow(/client c: ciphertext 1 is not coprime with n/)
    // Checked on the product (one gcd per vector): a multiple of one prime factor, among units, is still found and named.
    const cs = [5n, 7n, hex(vectors.p) * 12345n, 11n]
    expect(() => decodeCiphertexts(encodeCiphertexts(cs, pk), pk, 4, 'client d')).toThrow(/client d: ciphertext 2 is not coprime with n/)
  })

  it('ring sums travel as little-endian uint32', () => {
    const v = Uint32Array.from([1, 0xdeadbeef, 0xffffffff])
    const bytes = ringToBytes(v)
    expect([...bytes.subarray(4, 8)]).toEqual([0xef, 0xbe, 0xad, 0xde])
    expect(ringFromBytes(bytes, 3)).toEqual(v)
    expect(() => ringFromBytes(bytes, 4, 'sum')).toThrow(/sum: expected 16 bytes for 4 values, got 12/)
  })
})
