/**
 * Timestamped Ed25519 checkpoint cosignatures, cosignature/v1 (c2sp.org/tlog-cosignature):
 * a witness signs `cosignature/v1\ntime <T>\n` followed by the checkpoint's note text, and the
 * note signature is the big-endian u64 T followed by the 64-byte Ed25519 signature. Key IDs use
 * signature type 0x04, so a cosigner key can never be mistaken for a log's 0x01 key.
 *
 * @example
 *   const witness = cosignatureSigner('witness.example/w1', secretKey)
 *   const line = signLine(checkpointText, witness)        // what add-checkpoint answers
 *   cosignatureTime(line)                                  // POSIX seconds of the cosignature
 */
import { ed25519 } from '@noble/curves/ed25519.js'
import { concatBytes, utf8ToBytes } from '../crypto/bytes.ts'
import { verify as verifyEd25519 } from '../crypto/sign.ts'
import { InvalidInputError } from '../errors/errors.ts'
import {
  checkEd25519Key, checkKeyName, encodeVerifierKey, noteKeyId, parseSignatureLine, SIGNATURE_TYPE_COSIGNATURE_V1,
  type NoteSigner, type NoteVerifier
} from './note.ts'

/** 8-byte timestamp + 64-byte Ed25519 signature (timestamped_signature). */
const SIGNATURE_BYTES = 72
/** Later than this is a clock in milliseconds, not seconds (it is the year 5138). */
const MAX_PLAUSIBLE_SECONDS = 100_000_000_000

/** The message a cosignature/v1 signature covers (tlog-cosignature, "Ed25519 signed message"). */
export function cosignatureMessage (text: Uint8Array, timestamp: bigint): Uint8Array {
  return concatBytes(utf8ToBytes(`cosignature/v1\ntime ${timestamp.toString()}\n`), text)
}

/**
 * A cosigner for checkpoints. `now` gives POSIX seconds (default: the system clock); the witness
 * protocol forbids a zero timestamp, so a non-positive or millisecond-looking value throws.
 */
export function cosignatureSigner (name: string, secretKey: Uint8Array, now: () => number = () => Math.floor(Date.now() / 1000)): NoteSigner {
  checkKeyName(name)
  checkEd25519Key(secretKey, 'secretKey')
  const secret = secretKey.slice()
  return {
    name,
    keyId: noteKeyId(name, SIGNATURE_TYPE_COSIGNATURE_V1, ed25519.getPublicKey(secret)),
    sign (message) {
      const seconds = now()
      if (!Number.isSafeInteger(seconds) || seconds <= 0 || seconds > MAX_PLAUSIBLE_SECONDS) {
        throw new InvalidInputError(`now: expected positive whole POSIX seconds, got ${seconds}`)
      }
      const timestamp = BigInt(seconds)
      const stamp = new Uint8Array(8)
      new DataView(stamp.buffer).setBigUint64(0, timestamp)
      return concatBytes(stamp, ed25519.sign(cosignatureMessage(message, timestamp), secret))
    }
  }
}

/** A verifier for cosignature/v1 lines by the cosigner with this 32-byte public key. */
export function cosignatureVerifier (name: string, publicKey: Uint8Array): NoteVerifier {
  checkKeyName(name)
  checkEd25519Key(publicKey, 'publicKey')
  const key = publicKey.slice()
  return {
    name,
    keyId: noteKeyId(name, SIGNATURE_TYPE_COSIGNATURE_V1, key),
    publicKey: key.slice(),
    verify (message, signature) {
      if (signature.length !== SIGNATURE_BYTES) return false
      const timestamp = new DataView(signature.buffer, signature.byteOffset, 8).getBigUint64(0)
      // The timestamp "MUST NOT exceed 2^63 - 1".
      if (timestamp >= 1n << 63n) return false
      return verifyEd25519(signature.subarray(8), cosignatureMessage(message, timestamp), key)
    }
  }
}

/** The vkey of a cosigner: `name+hex(keyID)+base64(0x04 ‖ publicKey)`. */
export function witnessVerifierKey (name: string, publicKey: Uint8Array): string {
  return encodeVerifierKey(name, SIGNATURE_TYPE_COSIGNATURE_V1, publicKey)
}

/** The POSIX-seconds timestamp of a cosignature/v1 line (not verified: open the note for that). */
export function cosignatureTime (line: string): number {
  const { signature, name } = parseSignatureLine(line)
  if (signature.length !== SIGNATURE_BYTES) throw new InvalidInputError(`cosignature by ${name}: expected ${SIGNATURE_BYTES} bytes after the key ID, got ${signature.length}`)
  const timestamp = new DataView(signature.buffer, signature.byteOffset, 8).getBigUint64(0)
  if (timestamp > BigInt(Number.MAX_SAFE_INTEGER)) throw new InvalidInputError(`cosignature by ${name}: timestamp ${timestamp} is out of range`)
  return Number(timestamp)
}
