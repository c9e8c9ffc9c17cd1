/**
 * Byte helpers shared by every module: hex, base64 (RFC 4648 §4, padded), UTF-8, and zeroed
 * buffers sized from outside input.
 * Thin re-exports over @noble/hashes and multiformats so no module writes its own codec.
 */
import { base64 } from 'multiformats/bases/base64'
import { TooLargeError } from '../errors/errors.ts'
export { bytesToHex as toHex, hexToBytes as fromHex, concatBytes, utf8ToBytes } from '@noble/hashes/utils.js'

/** Bytes per `btoa` piece: a multiple of 3, so only the last piece is padded; few enough to pass as arguments. */
const BASE64_CHUNK = 3 * 4096

/**
 * RFC 4648 base64 with padding, as one flat string, through the platform's `btoa` (Node and
 * browsers). multiformats' encoder builds its output a character at a time, a rope of tens of
 * bytes per character (a 64 MiB ONNX skeleton took 2.8 GB of heap and 24 s).
 */
export function toBase64 (bytes: Uint8Array): string {
  const pieces: string[] = []
  for (let at = 0; at < bytes.length; at += BASE64_CHUNK) {
    pieces.push(btoa(String.fromCharCode(...bytes.subarray(at, at + BASE64_CHUNK))))
  }
  return pieces.join('')
}

/** Decodes RFC 4648 base64, with or without padding; throws on any other character. */
export function fromBase64 (text: string): Uint8Array {
  return base64.baseDecode(text.replace(/=+$/, ''))
}

export function utf8 (bytes: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
}

/** Constant-time equality for secrets and MACs (length leaks, contents do not). */
export function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number)
  return diff === 0
}

/** A Uint8Array view that WebCrypto accepts under TS's ArrayBuffer-vs-SharedArrayBuffer typing. */
export function asBufferSource (bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes as Uint8Array<ArrayBuffer>
}

/**
 * Float32 values as bytes and back, little-endian (every platform blockfed runs on is). The bytes
 * are a view, not a copy; the values are copied, so bytes at any offset can be read.
 */
export function float32Bytes (values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength)
}
export function bytesFloat32 (bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.slice().buffer)
}

/**
 * A zeroed buffer of `size` bytes, or TooLargeError (`what(size)`, then why) where no buffer that
 * large can be made here: said as what it is, not as a bare "Array buffer allocation failed".
 */
export function allocateBytes (size: number, what: (size: number) => string): Uint8Array {
  try {
    return new Uint8Array(size)
  } catch (err) {
    if (!(err instanceof RangeError)) throw err
    throw new TooLargeError(`${what(size)}, more than this runtime can hold in one buffer`, { cause: err })
  }
}
