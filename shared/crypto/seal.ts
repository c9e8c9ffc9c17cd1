/**
 * Block sealing: AES-256-GCM (NIST SP 800-38D) through WebCrypto, one fresh random 256-bit data
 * key per block. Because a key seals exactly one plaintext, the random 96-bit IV can never repeat
 * under a key. Sealed layout: `version(1) ‖ iv(12) ‖ ciphertext ‖ tag(16)`.
 */
import { IntegrityError, InvalidInputError } from '../errors/errors.ts'
import { asBufferSource } from './bytes.ts'

export const SEALED_VERSION = 1
export const DATA_KEY_BYTES = 32
const IV_BYTES = 12
const TAG_BYTES = 16
export const SEAL_OVERHEAD = 1 + IV_BYTES + TAG_BYTES
/** Binds every sealed block to this format so a ciphertext cannot be replayed as another kind of object. */
const AAD = new TextEncoder().encode('blockfed/sealed-block/v1')

export function generateDataKey (): Uint8Array {
  return globalThis.crypto.getRandomValues(new Uint8Array(DATA_KEY_BYTES))
}

async function importKey (key: Uint8Array, usage: 'encrypt' | 'decrypt'): Promise<CryptoKey> {
  if (key.length !== DATA_KEY_BYTES) throw new InvalidInputError(`data key: expected ${DATA_KEY_BYTES} bytes, got ${key.length}`)
  return await globalThis.crypto.subtle.importKey('raw', asBufferSource(key), 'AES-GCM', false, [usage])
}

export async function seal (plaintext: Uint8Array, key: Uint8Array): Promise<Uint8Array> {
  const iv = globalThis.crypto.getRandomValues(new Uint8Array(IV_BYTES))
  const ct = new Uint8Array(await globalThis.crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: AAD }, await importKey(key, 'encrypt'), asBufferSource(plaintext)))
  const out = new Uint8Array(1 + IV_BYTES + ct.length)
  out[0] = SEALED_VERSION
  out.set(iv, 1)
  out.set(ct, 1 + IV_BYTES)
  return out
}

/** Decrypts and authenticates a sealed block; any tampering surfaces as IntegrityError. */
export async function open (sealed: Uint8Array, key: Uint8Array, what = 'block'): Promise<Uint8Array> {
  if (sealed.length < SEAL_OVERHEAD || sealed[0] !== SEALED_VERSION) {
    throw new IntegrityError(`${what}: not a sealed block (length ${sealed.length}, version ${sealed[0] ?? 'none'})`)
  }
  const iv = sealed.subarray(1, 1 + IV_BYTES)
  try {
    return new Uint8Array(await globalThis.crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: asBufferSource(iv), additionalData: AAD }, await importKey(key, 'decrypt'),
      asBufferSource(sealed.subarray(1 + IV_BYTES))))
  } catch (err) {
    throw new IntegrityError(`${what}: authentication failed (wrong key or tampered ciphertext)`, { cause: err })
  }
}
