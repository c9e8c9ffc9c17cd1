/**
 * Signed notes (c2sp.org/signed-note): a UTF-8 text, a blank line, then one signature line per
 * key, `— <name> base64(keyID ‖ signature)`. Key IDs are SHA-256(name ‖ 0x0A ‖ type ‖ key)[:4]
 * and verifier keys read `<name>+<hex key ID>+base64(type ‖ key)`. Ed25519 (type 0x01) lives
 * here; timestamped cosignatures (type 0x04) in cosignature.ts.
 *
 * @example
 *   const signer = ed25519Signer('example.com/log', secretKey)
 *   const note = signNote('hello\n', [signer])
 *   openNote(note, [ed25519Verifier('example.com/log', publicKey)]).text // 'hello\n'
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { ed25519 } from '@noble/curves/ed25519.js'
import { concatBytes, decodeBase64, equalBytes, toBase64, toHex, utf8ToBytes } from '../crypto/bytes.ts'
import { verify as verifyEd25519 } from '../crypto/sign.ts'
import { IntegrityError, InvalidInputError } from '../errors/errors.ts'
// cosignature.ts imports this module as well; neither touches the other while loading, so the
// cycle is safe, and it lets parseVerifierKey hand back the verifier for either key type.
import { cosignatureVerifier } from './cosignature.ts'

export interface NoteSigner {
  name: string
  /** 4 bytes, big-endian: the first bytes of every signature this signer writes. */
  keyId: Uint8Array
  sign: (message: Uint8Array) => Uint8Array
}

export interface NoteVerifier {
  name: string
  keyId: Uint8Array
  /** The signing key, when the verifier knows it: a quorum counts a key once, whatever names it is given under. */
  publicKey?: Uint8Array
  /** False, never a throw, for a signature that does not verify. */
  verify: (message: Uint8Array, signature: Uint8Array) => boolean
}

export interface SignatureLine {
  /** The whole line, without its newline. */
  line: string
  name: string
  keyId: Uint8Array
  /** The signature proper, after the key ID. */
  signature: Uint8Array
}

export interface OpenedNote {
  text: string
  /** One entry per known key whose signature verified, in note order. */
  verified: Array<{ name: string, keyId: Uint8Array }>
  /** Every distinct signature line, verified or not, in note order, without newlines. */
  lines: string[]
  /** The distinct lines a known key signed (each verified), in note order. */
  verifiedLines: string[]
}

/** Signature type bytes (signed-note §Signature types). */
export const SIGNATURE_TYPE_ED25519 = 0x01
export const SIGNATURE_TYPE_COSIGNATURE_V1 = 0x04

/** Go's sumdb/note stops at 100; the spec asks verifiers to accept at least 16. */
export const MAX_NOTE_SIGNATURES = 100

const SIG_PREFIX = '— '
// Go's unicode.IsSpace also counts U+0085, which JS's \s does not.
const SPACE_OR_PLUS = /[\s\u0085+]/u
const LONE_SURROGATE = /\p{Surrogate}/u
const FORBIDDEN_CONTROL = /[\u0000-\u0009\u000b-\u001f]/

/**
 * The spec sets no length; ours keeps a note of MAX_NOTE_SIGNATURES lines (≈ 100 bytes each
 * besides the name) well inside the 64 KiB clients read (shared/ledger/client.ts). Names in use
 * are a host and a path: `witness.example/w1`.
 */
export const MAX_KEY_NAME_BYTES = 256

/** Key names are non-empty, without Unicode spaces or `+` (signed-note §Format), at most MAX_KEY_NAME_BYTES. */
export function checkKeyName (name: string, what = 'key name'): void {
  if (typeof name !== 'string' || name === '') throw new InvalidInputError(`${what}: must be a non-empty string`)
  const bytes = utf8ToBytes(name).length
  if (bytes > MAX_KEY_NAME_BYTES) throw new InvalidInputError(`${what} "${name.slice(0, 80)}…": ${bytes} bytes, at most ${MAX_KEY_NAME_BYTES}`)
  if (SPACE_OR_PLUS.test(name)) throw new InvalidInputError(`${what} "${name.slice(0, 80)}": must not contain spaces or "+"`)
  checkNoteChars(name, what)
}

/** SHA-256(name ‖ 0x0A ‖ type ‖ publicKey)[:4], the recommended key ID. */
export function noteKeyId (name: string, type: number, publicKey: Uint8Array): Uint8Array {
  return sha256(concatBytes(utf8ToBytes(name), Uint8Array.of(0x0a, type), publicKey)).slice(0, 4)
}

/** A signer for Ed25519 note signatures (type 0x01) from a 32-byte RFC 8032 secret key. */
export function ed25519Signer (name: string, secretKey: Uint8Array): NoteSigner {
  checkKeyName(name)
  checkEd25519Key(secretKey, 'secretKey')
  const secret = secretKey.slice()
  return {
    name,
    keyId: noteKeyId(name, SIGNATURE_TYPE_ED25519, ed25519.getPublicKey(secret)),
    sign: message => ed25519.sign(message, secret)
  }
}

/** A verifier for Ed25519 note signatures (type 0x01) from a 32-byte public key. */
export function ed25519Verifier (name: string, publicKey: Uint8Array): NoteVerifier {
  checkKeyName(name)
  checkEd25519Key(publicKey, 'publicKey')
  const key = publicKey.slice()
  return {
    name,
    keyId: noteKeyId(name, SIGNATURE_TYPE_ED25519, key),
    publicKey: key.slice(),
    verify: (message, signature) => signature.length === 64 && verifyEd25519(signature, message, key)
  }
}

/** The vkey of an Ed25519 note key: `name+hex(keyID)+base64(0x01 ‖ publicKey)`. */
export function verifierKey (name: string, publicKey: Uint8Array): string {
  return encodeVerifierKey(name, SIGNATURE_TYPE_ED25519, publicKey)
}

/** Encodes a vkey of any type; verifierKey and witnessVerifierKey fix the type. */
export function encodeVerifierKey (name: string, type: number, publicKey: Uint8Array): string {
  checkKeyName(name)
  checkEd25519Key(publicKey, 'publicKey')
  return `${name}+${toHex(noteKeyId(name, type, publicKey))}+${toBase64(concatBytes(Uint8Array.of(type), publicKey))}`
}

/**
 * Parses a vkey of type 0x01 (Ed25519) or 0x04 (cosignature/v1) into its verifier. Every part is
 * checked, and the key ID must be the one the name and key hash to.
 */
export function parseVerifierKey (vkey: string): NoteVerifier & { publicKey: Uint8Array, type: 'ed25519' | 'cosignature/v1' } {
  if (typeof vkey !== 'string') throw new InvalidInputError('vkey: must be a string')
  const shown = vkey.slice(0, 120)
  const first = vkey.indexOf('+')
  const second = first < 0 ? -1 : vkey.indexOf('+', first + 1)
  if (second < 0) throw new InvalidInputError(`vkey "${shown}": expected <name>+<hex key ID>+<base64 key>`)
  const name = vkey.slice(0, first)
  const idHex = vkey.slice(first + 1, second)
  checkKeyName(name, `vkey "${shown}": name`)
  if (!/^[0-9a-f]{8}$/.test(idHex)) throw new InvalidInputError(`vkey "${shown}": key ID must be 8 lowercase hex digits`)
  const material = decodeBase64(vkey.slice(second + 1), `vkey "${shown}": key`, { canonical: true })
  const type = material[0]
  const publicKey = material.slice(1)
  if (type !== SIGNATURE_TYPE_ED25519 && type !== SIGNATURE_TYPE_COSIGNATURE_V1) {
    throw new InvalidInputError(`vkey "${shown}": unsupported signature type ${type === undefined ? '(none)' : `0x${type.toString(16).padStart(2, '0')}`}`)
  }
  if (publicKey.length !== 32) throw new InvalidInputError(`vkey "${shown}": an Ed25519 key is 32 bytes, got ${publicKey.length}`)
  if (toHex(noteKeyId(name, type, publicKey)) !== idHex) throw new InvalidInputError(`vkey "${shown}": key ID does not match the name and key`)
  const verifier = type === SIGNATURE_TYPE_ED25519 ? ed25519Verifier(name, publicKey) : cosignatureVerifier(name, publicKey)
  return { ...verifier, publicKey, type: type === SIGNATURE_TYPE_ED25519 ? 'ed25519' : 'cosignature/v1' }
}

/** One signature line, `— name base64(keyID ‖ sig)` and a newline, over `text`. */
export function signLine (text: string, signer: NoteSigner): string {
  checkText(text, 'text')
  return makeLine(utf8ToBytes(text), signer)
}

/** Signs `text` (which must end in a newline) with every signer: text, blank line, signature lines. */
export function signNote (text: string, signers: NoteSigner[]): string {
  checkText(text, 'text')
  if (!Array.isArray(signers) || signers.length === 0) throw new InvalidInputError('signers: a note needs at least one signer')
  const message = utf8ToBytes(text)
  return `${text}\n${signers.map(s => makeLine(message, s)).join('')}`
}

/** Parses one signature line (with or without its newline); does not verify it. */
export function parseSignatureLine (line: string): SignatureLine {
  if (typeof line !== 'string') throw new InvalidInputError('signature line: must be a string')
  const bare = line.endsWith('\n') ? line.slice(0, -1) : line
  const shown = bare.slice(0, 120)
  if (!bare.startsWith(SIG_PREFIX)) throw new InvalidInputError(`signature line "${shown}": must start with "— "`)
  const space = bare.indexOf(' ', SIG_PREFIX.length)
  if (space < 0) throw new InvalidInputError(`signature line "${shown}": expected "— <name> <base64>"`)
  const name = bare.slice(SIG_PREFIX.length, space)
  checkKeyName(name, `signature line "${shown}": name`)
  const raw = decodeBase64(bare.slice(space + 1), `signature line "${shown}": signature`, { canonical: true })
  if (raw.length < 5) throw new InvalidInputError(`signature line "${shown}": a signature is a 4-byte key ID and at least one byte`)
  return { line: bare, name, keyId: raw.slice(0, 4), signature: raw.slice(4) }
}

/**
 * Splits a note into its text and its signature lines without verifying anything. Use openNote
 * to trust the text.
 */
export function splitNote (note: string): { text: string, signatures: SignatureLine[] } {
  if (typeof note !== 'string') throw new InvalidInputError('note: must be a string')
  checkNoteChars(note, 'note')
  // The text ends at the last blank line (signed-note §Format); it may hold blank lines itself.
  const split = note.lastIndexOf('\n\n')
  if (split < 0) throw new InvalidInputError('note: no blank line before the signatures')
  const text = note.slice(0, split + 1)
  const block = note.slice(split + 2)
  if (block === '' || !block.endsWith('\n')) throw new InvalidInputError('note: the signature lines must end in a newline')
  const lines = block.slice(0, -1).split('\n')
  if (lines.length > MAX_NOTE_SIGNATURES) throw new InvalidInputError(`note: more than ${MAX_NOTE_SIGNATURES} signatures`)
  return { text, signatures: lines.map(parseSignatureLine) }
}

/**
 * Splits and checks a note: text, then every signature line; returns the text and which known
 * verifiers verified. Lines by unknown keys are kept (unverified), a line by a KNOWN key with a
 * bad signature throws IntegrityError, and so does a note that no known key signed (the spec's
 * "MUST reject"). Malformed notes throw InvalidInputError.
 */
export function openNote (note: string, verifiers: NoteVerifier[]): OpenedNote {
  const opened = inspectNote(note, verifiers)
  if (opened.verified.length === 0) throw new IntegrityError('note: no signature by a known key')
  return opened
}

/**
 * openNote for callers that demand a particular key themselves: the same checks, but a note
 * that no known key signed comes back with `verified` empty instead of being refused.
 */
export function inspectNote (note: string, verifiers: NoteVerifier[]): OpenedNote {
  if (!Array.isArray(verifiers)) throw new InvalidInputError('verifiers: must be an array')
  const { text, signatures } = splitNote(note)
  const message = utf8ToBytes(text)
  const verified: OpenedNote['verified'] = []
  const lines = new Set<string>()
  const verifiedLines: string[] = []
  for (const sig of signatures) {
    // A line repeated byte for byte verifies as its first copy did: checked once (a note of one
    // valid line sent 100 times cost a witness 100 verifications).
    if (lines.has(sig.line)) continue
    lines.add(sig.line)
    // A key is its (name, key ID) pair; either alone matching is someone else's key.
    const matches = [...new Set(verifiers.filter(v => v.name === sig.name && equalBytes(v.keyId, sig.keyId)))]
    if (matches.length === 0) continue
    if (matches.length > 1) throw new InvalidInputError(`verifiers: two keys named ${sig.name} with key ID ${toHex(sig.keyId)}`)
    // Every distinct line by a known key is checked (signed-note: "MUST verify").
    if (!(matches[0] as NoteVerifier).verify(message, sig.signature)) {
      throw new IntegrityError(`note: the signature by ${sig.name}+${toHex(sig.keyId)} does not verify`)
    }
    verifiedLines.push(sig.line)
    if (!verified.some(v => v.name === sig.name && equalBytes(v.keyId, sig.keyId))) verified.push({ name: sig.name, keyId: sig.keyId })
  }
  return { text, verified, lines: [...lines], verifiedLines }
}

function makeLine (message: Uint8Array, signer: NoteSigner): string {
  checkKeyName(signer.name, 'signer name')
  if (!(signer.keyId instanceof Uint8Array) || signer.keyId.length !== 4) throw new InvalidInputError(`signer ${signer.name}: keyId must be 4 bytes`)
  return `${SIG_PREFIX}${signer.name} ${toBase64(concatBytes(signer.keyId, signer.sign(message)))}\n`
}

function checkText (text: string, what: string): void {
  if (typeof text !== 'string' || !text.endsWith('\n')) throw new InvalidInputError(`${what}: a note text must end in a newline`)
  checkNoteChars(text, what)
}

/** Notes are UTF-8 without ASCII control characters other than newline. */
function checkNoteChars (s: string, what: string): void {
  if (FORBIDDEN_CONTROL.test(s)) throw new InvalidInputError(`${what}: control characters other than newline are not allowed`)
  if (LONE_SURROGATE.test(s)) throw new InvalidInputError(`${what}: not valid Unicode (lone surrogate)`)
}

/** Ed25519 keys, secret or public, are 32 bytes. */
export function checkEd25519Key (key: Uint8Array, what: string): void {
  if (!(key instanceof Uint8Array) || key.length !== 32) throw new InvalidInputError(`${what}: expected 32 bytes`)
}

