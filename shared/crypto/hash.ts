/**
 * SHA-256 through WebCrypto (native in Node and browsers; hashes off the main thread in Node).
 */
import { asBufferSource, toHex } from './bytes.ts'

export async function sha256 (bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', asBufferSource(bytes)))
}

export async function sha256Hex (bytes: Uint8Array): Promise<string> {
  return toHex(await sha256(bytes))
}
