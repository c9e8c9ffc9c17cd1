/**
 * Modular exponentiation by OpenSSL, for the decryptor's two exponentiations per ciphertext
 * (aggregation/paillier/keys.ts `decrypt`). Node exposes no bignum API, but a Diffie–Hellman
 * object computes otherKey^privateKey mod prime with OpenSSL's Montgomery code, which takes any
 * odd modulus: with prime = p², privateKey = p − 1 it is c^(p−1) mod p². About 6 × the BigInt
 * `modPow` at 2048 bits here, and constant time in the secret exponent (BN_FLG_CONSTTIME).
 * OpenSSL refuses "public keys" ≤ 1 or ≥ modulus − 1 and moduli past 10,000 bits: those go to
 * the BigInt `modPow`, which gives the same answer.
 */
import { createDiffieHellman, type DiffieHellman } from 'node:crypto'
import { modPow, type ModPow } from '../../aggregation/paillier/_bigint.ts'

/** Distinct (modulus, exponent) pairs kept ready: a decryption uses two, a key's lifetime two. */
const MAX_CACHED = 8

const bytes = (x: bigint): Buffer => {
  const hex = x.toString(16)
  return Buffer.from(hex.length % 2 === 0 ? hex : `0${hex}`, 'hex')
}

/** The exponentiation, and how often it ran by OpenSSL or fell back (for tests and reports). */
export type NativeModPow = ModPow & { stats: () => { native: number, fallbacks: number, cached: number } }

export function nativeModPow (): NativeModPow {
  const cache = new Map<string, DiffieHellman | null>()
  let native = 0
  let fallbacks = 0
  const engine = (exponent: bigint, modulus: bigint): DiffieHellman | null => {
    const key = `${modulus.toString(36)}:${exponent.toString(36)}`
    let dh = cache.get(key)
    if (dh === undefined) {
      if (cache.size >= MAX_CACHED) cache.clear()
      try {
        dh = createDiffieHellman(bytes(modulus))
        dh.setPrivateKey(bytes(exponent))
      } catch {
        dh = null
      }
      cache.set(key, dh)
    }
    return dh
  }
  const pow: ModPow = (base, exponent, modulus) => {
    const b = ((base % modulus) + modulus) % modulus
    const dh = exponent > 0n && modulus % 2n === 1n && b > 1n && b < modulus - 1n ? engine(exponent, modulus) : null
    if (dh !== null) {
      try {
        const result = BigInt(`0x${dh.computeSecret(bytes(b)).toString('hex')}`)
        native++
        return result
      } catch {}
    }
    fallbacks++
    return modPow(b, exponent, modulus)
  }
  return Object.assign(pow, { stats: () => ({ native, fallbacks, cached: cache.size }) })
}
