/**
 * Ed25519 signatures (RFC 8032) for manifests, via @noble/curves so that Node and every browser
 * verify the same way. Key IDs are the first 8 bytes of SHA-256 over the public key, hex.
 */
import { ed25519 } from '@noble/curves/ed25519.js'
import { InvalidInputError } from '../errors/errors.ts'
import { fromHex, toHex } from './bytes.ts'
import { sha256 } from './hash.ts'

export interface SigningKeyPair {
  secretKey: Uint8Array
  publicKey: Uint8Array
}

export function generateSigningKey (): SigningKeyPair {
  const { secretKey, publicKey } = ed25519.keygen()
  return { secretKey, publicKey }
}

export function signingKeyFromSecret (secretKey: Uint8Array): SigningKeyPair {
  if (secretKey.length !== 32) throw new InvalidInputError(`ed25519 secret key: expected 32 bytes, got ${secretKey.length}`)
  return { secretKey, publicKey: ed25519.getPublicKey(secretKey) }
}

export function sign (message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return ed25519.sign(message, secretKey)
}

/**
 * False (never a throw) for a malformed signature or key, so callers have one failure path.
 * RFC 8032's strict rules, not ZIP215's (noble's default): ZIP215 takes a small-order public key,
 * under which R = identity, S = 0 verifies every message, so anyone could sign as such a key.
 */
export function verify (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false })
  } catch {
    return false
  }
}

export async function keyId (publicKey: Uint8Array): Promise<string> {
  return toHex((await sha256(publicKey)).subarray(0, 8))
}

export function parsePublicKeyHex (hex: string, what = 'public key'): Uint8Array {
  if (!/^[0-9a-f]{64}$/i.test(hex)) throw new InvalidInputError(`${what}: expected 64 hex characters`)
  return fromHex(hex.toLowerCase())
}
