/**
 * Byte helpers shared by every module: hex, base64 (RFC 4648 §4, padded), UTF-8, and zeroed
 * buffers sized from outside input.
 * Thin re-exports over @noble/hashes and multiformats so no module writes its own codec.
 */
import { base64 } from 'multiformats/bases/base64'
import { InvalidInputError, TooLargeError, type BlockfedError } from '../errors/errors.ts'
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

/**
 * The one padded base64 text of 32 bytes (a hash, an X25519 or Ed25519 key): 43 characters, the
 * last of them with its 2 pad bits zero, then "=". For schemas, so what they let through decodes.
 */
export const BASE64_32_BYTES = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/

/** Decodes RFC 4648 base64, with or without padding; throws on any other character. */
export function fromBase64 (text: string): Uint8Array {
  return base64.baseDecode(text.replace(/=+$/, ''))
}

/**
 * `fromBase64` for outside input: an InvalidInputError naming `what` (`"<what>: not base64"`)
 * instead of the codec's bare SyntaxError. `canonical` accepts only the padded text `toBase64`
 * writes (RFC 4648 §3.5: pad bits zero), so a value has one encoding, as a signed text needs;
 * `bytes` checks the decoded length; `error` is the class thrown (e.g. IntegrityError where the
 * text comes from a server the caller trusts to answer well).
 */
export function decodeBase64 (text: string, what: string, options: { canonical?: boolean, bytes?: number, error?: new (message: string, options?: { cause?: unknown }) => BlockfedError } = {}): Uint8Array {
  const Failure = options.error ?? InvalidInputError
  let out: Uint8Array
  try {
    out = fromBase64(text)
  } catch (err) {
    throw new Failure(`${what}: not base64`, { cause: err })
  }
  if (options.canonical === true && text === '') throw new Failure(`${what}: empty`)
  if (options.canonical === true && toBase64(out) !== text) throw new Failure(`${what}: not canonical padded base64`)
  if (options.bytes !== undefined && out.length !== options.bytes) throw new Failure(`${what}: expected ${options.bytes} bytes, got ${out.length}`)
  return out
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
