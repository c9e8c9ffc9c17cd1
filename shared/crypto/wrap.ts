/**
 * Data-key wrapping for transport (envelope encryption): the coordinator wraps each data key a
 * client may use to that client's X25519 public key, so keys never cross the wire in clear even
 * without TLS. ECIES-style: ephemeral X25519 (RFC 7748) → HKDF-SHA256 (RFC 5869) → per-key
 * XChaCha20-Poly1305 with a random 192-bit nonce, the block CID as associated data so a wrapped
 * key cannot be moved to another block.
 */
import { x25519 } from '@noble/curves/ed25519.js'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { IntegrityError, InvalidInputError } from '../errors/errors.ts'
import { concatBytes, decodeBase64, toBase64, utf8ToBytes } from './bytes.ts'

const INFO = utf8ToBytes('blockfed/key-wrap/v1')

export interface WrapKeyPair {
  secretKey: Uint8Array
  publicKey: Uint8Array
}

export interface WrappedKey {
  keyId: string
  /** base64(nonce(24) ‖ ciphertext ‖ tag(16)) */
  wrapped: string
}

export function generateWrapKey (): WrapKeyPair {
  const secretKey = x25519.utils.randomSecretKey()
  return { secretKey, publicKey: x25519.getPublicKey(secretKey) }
}

function kek (shared: Uint8Array, ephemeralPublic: Uint8Array, recipientPublic: Uint8Array): Uint8Array {
  return hkdf(sha256, shared, concatBytes(ephemeralPublic, recipientPublic), INFO, 32)
}

/** Wraps `keys` (keyId → {key, aad}) to `recipientPublic`; returns the ephemeral public key and the wrapped keys. */
export function wrapKeys (recipientPublic: Uint8Array, keys: Array<{ keyId: string, key: Uint8Array, aad: string }>): { ephemeralPublicKey: string, keys: WrappedKey[] } {
  if (recipientPublic.length !== 32) throw new InvalidInputError(`recipient X25519 public key: expected 32 bytes, got ${recipientPublic.length}`)
  const eph = generateWrapKey()
  let shared: Uint8Array
  try {
    shared = x25519.getSharedSecret(eph.secretKey, recipientPublic)
  } catch (err) {
    // A low-order point (RFC 7748 §6.1: the all-zero shared secret) gives no secret to wrap with.
    eph.secretKey.fill(0)
    throw new InvalidInputError('recipient X25519 public key: a low-order point, not a usable key', { cause: err })
  }
  const k = kek(shared, eph.publicKey, recipientPublic)
  shared.fill(0)
  const out = keys.map(({ keyId, key, aad }) => {
    const nonce = globalThis.crypto.getRandomValues(new Uint8Array(24))
    const ct = xchacha20poly1305(k, nonce, utf8ToBytes(aad)).encrypt(key)
    return { keyId, wrapped: toBase64(concatBytes(nonce, ct)) }
  })
  k.fill(0)
  eph.secretKey.fill(0)
  return { ephemeralPublicKey: toBase64(eph.publicKey), keys: out }
}

/**
 * Unwraps keys wrapped together by `wrapKeys` (one ephemeral key): the X25519 agreement and the
 * HKDF run once for all of them, not once per key (a model of 31 blocks paid 31 scalar
 * multiplications, ≈ 0.35 s of a loaded runtime's CPU).
 */
export function unwrapKeys (recipient: WrapKeyPair, ephemeralPublicKey: string, wrapped: Array<{ wrapped: string, aad: string }>): Uint8Array[] {
  // Every field comes from the coordinator's answer: whatever is wrong with one is an IntegrityError.
  const decode = (text: string, what: string): Uint8Array => decodeBase64(text, what, { error: IntegrityError })
  const eph = decode(ephemeralPublicKey, 'wrapped keys: ephemeral public key')
  if (eph.length !== 32) throw new IntegrityError('wrapped key: malformed ephemeral public key')
  let shared: Uint8Array
  try {
    shared = x25519.getSharedSecret(recipient.secretKey, eph)
  } catch (err) {
    throw new IntegrityError('wrapped keys: the ephemeral public key is a low-order point (RFC 7748 §6.1)', { cause: err })
  }
  const k = kek(shared, eph, recipient.publicKey)
  shared.fill(0)
  try {
    return wrapped.map(({ wrapped: text, aad }) => {
      const blob = decode(text, `wrapped key for ${aad}`)
      if (blob.length < 24 + 16) throw new IntegrityError(`wrapped key for ${aad}: malformed`)
      try {
        return xchacha20poly1305(k, blob.subarray(0, 24), utf8ToBytes(aad)).decrypt(blob.subarray(24))
      } catch (err) {
        throw new IntegrityError(`wrapped key for ${aad}: authentication failed`, { cause: err })
      }
    })
  } finally {
    k.fill(0)
  }
}

export function unwrapKey (recipient: WrapKeyPair, ephemeralPublicKey: string, wrapped: string, aad: string): Uint8Array {
  return unwrapKeys(recipient, ephemeralPublicKey, [{ wrapped, aad }])[0] as Uint8Array
}
