/**
 * AES-256-CTR keystream through WebCrypto (NIST SP 800-38A §6.5), cut into chunks that can be
 * produced independently: chunk j starts at counter block `counter0 + j·blocksPerChunk`. WebCrypto
 * is asked to increment the low 64 bits of the counter (`length: 64`), so the chunks concatenate
 * to exactly the keystream one call over the whole length would give.
 */
import { asBufferSource } from '../../shared/crypto/bytes.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'

export const BLOCK_BYTES = 16
const COUNTER_BITS = 64
const LOW_MASK = (1n << 64n) - 1n

let zeros = new Uint8Array(0)

/** A read-only run of zero bytes to encrypt (CTR encryption of zeros is the keystream itself). */
function zeroBytes (length: number): Uint8Array<ArrayBuffer> {
  if (zeros.length < length) zeros = new Uint8Array(length)
  return asBufferSource(zeros.subarray(0, length))
}

/** `counter0 + blocks`, adding in the low 64 bits modulo 2^64 as WebCrypto's AES-CTR does with `length: 64`. */
export function counterAt (counter0: Uint8Array, blocks: number): Uint8Array<ArrayBuffer> {
  if (counter0.length !== BLOCK_BYTES) throw new InvalidInputError(`counter block: expected ${BLOCK_BYTES} bytes, got ${counter0.length}`)
  const out = new Uint8Array(BLOCK_BYTES)
  out.set(counter0)
  const view = new DataView(out.buffer)
  view.setBigUint64(8, (view.getBigUint64(8) + BigInt(blocks)) & LOW_MASK)
  return out
}

/** Imports a 32-byte key for AES-CTR keystream generation only. */
export async function importCtrKey (key: Uint8Array): Promise<CryptoKey> {
  if (key.length !== 32) throw new InvalidInputError(`AES-256 key: expected 32 bytes, got ${key.length}`)
  return await globalThis.crypto.subtle.importKey('raw', asBufferSource(key), 'AES-CTR', false, ['encrypt'])
}

/** `bytes` bytes of keystream starting at counter block `counter` (a fresh buffer, WebCrypto's own). */
export async function keystream (key: CryptoKey, counter: Uint8Array<ArrayBuffer>, bytes: number): Promise<ArrayBuffer> {
  return await globalThis.crypto.subtle.encrypt({ name: 'AES-CTR', counter, length: COUNTER_BITS }, key, zeroBytes(bytes))
}
