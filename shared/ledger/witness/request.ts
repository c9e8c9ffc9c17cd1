/**
 * The add-checkpoint request body of c2sp.org/tlog-witness: `old <size>\n`, zero to 63 base64
 * consistency-proof hashes one per line, an empty line, then the signed checkpoint note.
 * Isomorphic (no `node:` imports), so the client can send what the witness parses.
 */
import { toBase64 } from '../../crypto/bytes.ts'
import { InvalidInputError } from '../../errors/errors.ts'
import { decodeBase64 } from '../../crypto/bytes.ts'
import { MAX_PROOF_LINES } from './constants.ts'

export interface AddCheckpointRequest {
  /** Size of the checkpoint the witness last cosigned for this log (0 for none). */
  old: number
  /** RFC 9162 consistency proof from `old` to the checkpoint's size. */
  proof: readonly Uint8Array[]
  /** The checkpoint as a signed note. */
  note: string
}

const OLD_LINE = /^old (0|[1-9][0-9]*)$/

/** The request body; refuses what the witness would refuse as malformed. */
export function formatAddCheckpoint (request: AddCheckpointRequest): string {
  checkOld(request.old)
  if (!Array.isArray(request.proof) || request.proof.length > MAX_PROOF_LINES) throw new InvalidInputError(`proof: at most ${MAX_PROOF_LINES} hashes`)
  request.proof.forEach((h, i) => {
    if (!(h instanceof Uint8Array) || h.length !== 32) throw new InvalidInputError(`proof[${i}]: expected a 32-byte hash`)
  })
  if (typeof request.note !== 'string' || !request.note.endsWith('\n')) throw new InvalidInputError('note: a signed note ending in a newline')
  return `old ${request.old}\n${request.proof.map(h => `${toBase64(h)}\n`).join('')}\n${request.note}`
}

/** Splits a request body into old size, proof hashes and note (the note is not checked here). */
export function parseAddCheckpoint (body: string): AddCheckpointRequest {
  // Proof lines are never empty, so the first empty line ends them; the note has its own.
  const end = body.indexOf('\n\n')
  if (end < 0) throw new InvalidInputError('request: expected "old <size>", proof lines, an empty line, then the checkpoint')
  const [oldLine, ...proofLines] = body.slice(0, end).split('\n') as [string, ...string[]]
  const old = OLD_LINE.exec(oldLine)
  if (old === null) throw new InvalidInputError(`request: the first line must be "old <size>" in decimal without leading zeros, got "${oldLine.slice(0, 40)}"`)
  const size = Number(old[1])
  checkOld(size)
  if (proofLines.length > MAX_PROOF_LINES) throw new InvalidInputError(`request: ${proofLines.length} proof lines, at most ${MAX_PROOF_LINES} allowed`)
  const proof = proofLines.map((line, i) => {
    const hash = decodeBase64(line, `request: proof line ${i + 1}`, { canonical: true })
    if (hash.length !== 32) throw new InvalidInputError(`request: proof line ${i + 1} is ${hash.length} bytes, expected a 32-byte hash`)
    return hash
  })
  return { old: size, proof, note: body.slice(end + 2) }
}

function checkOld (old: number): void {
  if (!Number.isSafeInteger(old) || old < 0) throw new InvalidInputError(`old: expected a tree size (non-negative integer ≤ 2^53 − 1), got ${String(old).slice(0, 40)}`)
}
