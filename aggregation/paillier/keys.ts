/**
 * Paillier keys and decryption (P. Paillier, "Public-Key Cryptosystems Based on Composite
 * Degree Residuosity Classes", EUROCRYPT 1999) with the generator g = n + 1, so that
 * g^m = 1 + m·n mod n² (§4 notes any g of order a multiple of n works; n + 1 is the usual choice
 * and is what makes one-multiplication encryption possible, see randomness.ts).
 * Primes come from `paillier-bigint` (its "simple variant", which also uses g = n + 1);
 * decryption is our own Chinese-remainder version (§7), about 3× faster than the package's.
 */
import * as paillier from 'paillier-bigint'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { sha256Hex } from '../../shared/crypto/hash.ts'
import { bitLength, isqrt, modInverse, modPow, toFixedBytes, type ModPow } from './_bigint.ts'
import { DEFAULT_KEY_BITS, MIN_KEY_BITS } from './constants.ts'

export interface PaillierPublicKey {
  readonly n: bigint
  /** n², the ciphertext modulus. */
  readonly n2: bigint
  /** Bit length of n. */
  readonly bits: number
}

export interface PaillierSecretKey {
  readonly publicKey: PaillierPublicKey
  readonly p: bigint
  readonly q: bigint
  /** CRT constants (§7): p², q², h_p, h_q and q^−1 mod p. */
  readonly crt: { readonly p2: bigint, readonly q2: bigint, readonly hp: bigint, readonly hq: bigint, readonly qInv: bigint }
}

/**
 * A public key from its modulus; checks what a receiver can check: n odd, at least
 * `MIN_KEY_BITS` bits, not a perfect square.
 * @example publicKeyFromN(BigInt('0x' + hex))
 */
export function publicKeyFromN (n: bigint): PaillierPublicKey {
  const bits = bitLength(n)
  if (bits < MIN_KEY_BITS) throw new InvalidInputError(`paillier modulus n: ${bits} bits, at least ${MIN_KEY_BITS} required`)
  if ((n & 1n) === 0n) throw new InvalidInputError('paillier modulus n: must be odd')
  const root = isqrt(n)
  if (root * root === n) throw new InvalidInputError('paillier modulus n: must not be a square')
  return { n, n2: n * n, bits }
}

/** L_x(u) = (u − 1) / x (§3), on values u ≡ 1 mod x. */
function L (u: bigint, x: bigint): bigint {
  return (u - 1n) / x
}

/**
 * The secret key from the two primes, with the CRT constants of §7 precomputed.
 * p and q must be distinct primes of equal bit length (then gcd(pq, (p−1)(q−1)) = 1, as
 * g = n + 1 requires); primality is the caller's word — keys come from `generateKeyPair` or
 * from our own key file.
 */
export function secretKeyFromPrimes (p: bigint, q: bigint): PaillierSecretKey {
  if (p === q) throw new InvalidInputError('paillier primes p, q: must be distinct')
  if (Math.abs(bitLength(p) - bitLength(q)) > 1) throw new InvalidInputError('paillier primes p, q: must have (nearly) equal bit lengths')
  const publicKey = publicKeyFromN(p * q)
  const g = publicKey.n + 1n
  const p2 = p * p
  const q2 = q * q
  return {
    publicKey,
    p,
    q,
    crt: {
      p2,
      q2,
      hp: modInverse(L(modPow(g, p - 1n, p2), p), p),
      hq: modInverse(L(modPow(g, q - 1n, q2), q), q),
      qInv: modInverse(q, p)
    }
  }
}

/**
 * A fresh key pair with an n of exactly `bits` bits (default 2048). Slow: seconds at 2048 bits.
 * @example const sk = await generateKeyPair(2048); const pk = sk.publicKey
 */
export async function generateKeyPair (bits: number = DEFAULT_KEY_BITS): Promise<PaillierSecretKey> {
  if (!Number.isInteger(bits) || bits < MIN_KEY_BITS || bits % 2 !== 0) throw new InvalidInputError(`bits: expected an even integer ≥ ${MIN_KEY_BITS}, got ${bits}`)
  const { publicKey, privateKey } = await paillier.generateRandomKeys(bits, true)
  // The package keeps p and q private; in its simple variant λ = φ(n) = (p−1)(q−1), so
  // p + q = n − φ + 1 and |p − q| = √((p + q)² − 4n) give them back from public fields.
  const n = publicKey.n
  const sum = n - privateKey.lambda + 1n
  const diff = isqrt(sum * sum - 4n * n)
  const p = (sum + diff) / 2n
  const q = (sum - diff) / 2n
  if (p * q !== n) throw new Error('paillier key generation: could not recover p and q')
  return secretKeyFromPrimes(p, q)
}

/**
 * Decrypts c ∈ Z*_{n²} (§7): m_p = L_p(c^(p−1) mod p²)·h_p mod p, likewise m_q, then CRT.
 * Rejects c outside [1, n²) or sharing a factor with n. `pow` does the two exponentiations,
 * nearly all the cost: the decryptor passes OpenSSL's (coordinator/decryptor/native-mod-pow.ts).
 */
export function decrypt (secretKey: PaillierSecretKey, c: bigint, pow: ModPow = modPow): bigint {
  const { p, q, crt, publicKey } = secretKey
  if (c <= 0n || c >= publicKey.n2) throw new InvalidInputError('ciphertext: out of range [1, n²)')
  const cp = c % crt.p2
  const cq = c % crt.q2
  if (cp % p === 0n || cq % q === 0n) throw new InvalidInputError('ciphertext: not coprime with n')
  const mp = L(pow(cp, p - 1n, crt.p2), p) * crt.hp % p
  const mq = L(pow(cq, q - 1n, crt.q2), q) * crt.hq % q
  const h = ((mp - mq) % p + p) % p * crt.qInv % p
  return mq + q * h
}

/** A short fingerprint of a public key for pinning: SHA-256 over n's big-endian bytes, hex. */
export async function publicKeyId (publicKey: PaillierPublicKey): Promise<string> {
  return await sha256Hex(toFixedBytes(publicKey.n, Math.ceil(publicKey.bits / 8)))
}
