/**
 * Transparency-log checkpoints (c2sp.org/tlog-checkpoint): the signed-note text
 * `<origin>\n<size>\n<base64 root>\n` plus optional extension lines, naming the RFC 9162 Merkle
 * tree head of blockfed's version ledger at one size. Parsing is strict, so one tree head has
 * exactly one text and a signature over it cannot be re-read as another.
 *
 * @example
 *   const note = signCheckpoint({ origin: 'blockfed.example/ledger', size: 3, root, extensions: [] }, logSigner)
 *   const { checkpoint, cosigners } = openCheckpoint(note, logVerifier, witnessVerifiers)
 */
import { decodeBase64, equalBytes, toBase64 } from '../crypto/bytes.ts'
import { IntegrityError, InvalidInputError } from '../errors/errors.ts'
import { inspectNote, signNote, type NoteSigner, type NoteVerifier } from './note.ts'

export interface Checkpoint {
  /** The log's identity, e.g. `example.com/log42`; non-empty. */
  origin: string
  /** Number of leaves. */
  size: number
  /** 32-byte RFC 9162 root hash at `size`. */
  root: Uint8Array
  /** Opaque non-empty extra lines; the spec advises against them (monitors cannot audit them). */
  extensions: string[]
}

export interface OpenedCheckpoint {
  checkpoint: Checkpoint
  /** The note as given. */
  note: string
  /** Names of the given witnesses whose cosignatures verified. */
  cosigners: string[]
  /** Every signature line of the note (the log's, witnesses', unknown ones), without newlines. */
  lines: string[]
  /** The note with only the lines the given keys verified (the log's and known witnesses'), each once. */
  verifiedNote: string
}

const DECIMAL = /^(0|[1-9][0-9]*)$/
const FORBIDDEN_CONTROL = /[\u0000-\u001f]/

/** The note text of a checkpoint, ending in a newline. Refuses values that would not parse back. */
export function formatCheckpoint (c: Checkpoint): string {
  checkLine(c.origin, 'checkpoint origin')
  if (!Number.isSafeInteger(c.size) || c.size < 0) throw new InvalidInputError(`checkpoint size: expected a non-negative safe integer, got ${c.size}`)
  if (!(c.root instanceof Uint8Array) || c.root.length !== 32) throw new InvalidInputError('checkpoint root: expected 32 bytes')
  if (!Array.isArray(c.extensions)) throw new InvalidInputError('checkpoint extensions: must be an array')
  c.extensions.forEach((line, i) => checkLine(line, `checkpoint extension ${i}`))
  return [c.origin, String(c.size), toBase64(c.root), ...c.extensions].map(l => `${l}\n`).join('')
}

/**
 * Parses a checkpoint's note text: origin non-empty, size decimal without leading zeros (and at
 * most 2^53 − 1), root canonical base64 of 32 bytes, extension lines non-empty.
 */
export function parseCheckpoint (text: string): Checkpoint {
  if (typeof text !== 'string') throw new InvalidInputError('checkpoint: must be a string')
  if (!text.endsWith('\n')) throw new InvalidInputError('checkpoint: the text must end in a newline')
  const lines = text.slice(0, -1).split('\n')
  if (lines.length < 3) throw new InvalidInputError(`checkpoint: expected at least 3 lines (origin, size, root), got ${lines.length}`)
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]]
  checkLine(origin, 'checkpoint origin')
  if (!DECIMAL.test(sizeText)) throw new InvalidInputError(`checkpoint size "${sizeText.slice(0, 40)}": expected a decimal number without leading zeros`)
  const size = Number(sizeText)
  if (!Number.isSafeInteger(size)) throw new InvalidInputError(`checkpoint size ${sizeText.slice(0, 40)}: larger than 2^53 − 1`)
  const root = decodeBase64(rootText, 'checkpoint root', { canonical: true, bytes: 32 })
  extensions.forEach((line, i) => checkLine(line, `checkpoint extension ${i}`))
  return { origin, size, root, extensions }
}

/** A checkpoint note signed by the log. */
export function signCheckpoint (c: Checkpoint, signer: NoteSigner): string {
  return signNote(formatCheckpoint(c), [signer])
}

/**
 * Opens a checkpoint note: the log's signature must be present and verify (IntegrityError
 * otherwise); witnesses' cosignatures are checked when present, and a bad one by a known
 * witness throws. Signatures by other keys are ignored. Malformed notes throw InvalidInputError.
 */
export function openCheckpoint (note: string, logVerifier: NoteVerifier, witnesses: NoteVerifier[] = []): OpenedCheckpoint {
  if (!Array.isArray(witnesses)) throw new InvalidInputError('witnesses: must be an array')
  const opened = inspectNote(note, [logVerifier, ...witnesses])
  const byLog = opened.verified.some(v => v.name === logVerifier.name && equalBytes(v.keyId, logVerifier.keyId))
  if (!byLog) throw new IntegrityError(`checkpoint: no signature by the log key ${logVerifier.name}`)
  // One witness counts once toward a quorum: a name listed under two keys (a rotation) once, and
  // a key listed under two names once too — a cosignature does not cover the name, so one line
  // can be relabelled as the other name's (review 42a L1).
  const names = new Set<string>()
  const keys = new Set<string>()
  const cosigners: string[] = []
  for (const w of witnesses) {
    if (!opened.verified.some(v => v.name === w.name && equalBytes(v.keyId, w.keyId))) continue
    const key = w.publicKey === undefined ? undefined : toBase64(w.publicKey)
    if (names.has(w.name) || (key !== undefined && keys.has(key))) continue
    names.add(w.name)
    if (key !== undefined) keys.add(key)
    cosigners.push(w.name)
  }
  const verifiedNote = `${opened.text}\n${opened.verifiedLines.map(line => `${line}\n`).join('')}`
  return { checkpoint: parseCheckpoint(opened.text), note, cosigners, lines: opened.lines, verifiedNote }
}

function checkLine (line: string, what: string): void {
  if (typeof line !== 'string' || line === '') throw new InvalidInputError(`${what}: must be a non-empty line`)
  if (FORBIDDEN_CONTROL.test(line)) throw new InvalidInputError(`${what}: must not contain a newline or control characters`)
}
