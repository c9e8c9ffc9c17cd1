/**
 * The witness's decisions, apart from HTTP (c2sp.org/tlog-witness, add-checkpoint): check the
 * log's signature, that the client knows the size the witness holds, that the new checkpoint
 * extends the held one (RFC 9162 consistency proof), then store it and cosign it
 * (c2sp.org/tlog-cosignature, cosignature/v1). Each refusal is a typed error whose status is
 * the one the spec prescribes:
 *   400 malformed request, or old size above the checkpoint's  (InvalidInputError)
 *   403 no valid signature by the log's key                      (AccessDeniedError)
 *   404 unknown origin                                           (NotFoundError)
 *   409 old size is not the held size                            (WitnessConflictError, .size)
 *   422 proof does not verify, fork, or bad empty-tree root      (InconsistentCheckpointError)
 * Everything from reading the held checkpoint to storing the new one is synchronous, so requests
 * in one process cannot interleave; the store's compare-and-swap covers other processes.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { equalBytes, toHex, utf8ToBytes } from '../../shared/crypto/bytes.ts'
import { AccessDeniedError, IntegrityError, InvalidConfigError, InvalidInputError, NotFoundError } from '../../shared/errors/errors.ts'
import { parseCheckpoint } from '../../shared/ledger/checkpoint.ts'
import { emptyRoot, verifyConsistency } from '../../shared/ledger/merkle.ts'
import { inspectNote, parseVerifierKey, signLine, splitNote, type NoteSigner, type NoteVerifier } from '../../shared/ledger/note.ts'
import { InconsistentCheckpointError, WitnessConflictError } from '../../shared/ledger/witness/errors.ts'
import { parseAddCheckpoint } from '../../shared/ledger/witness/request.ts'
import type { WitnessStore } from './store.ts'

export interface WitnessLog {
  /** The log's checkpoint origin line. */
  origin: string
  /** The log's Ed25519 note verifier key; list an origin twice to trust two keys (rotation). */
  vkey: string
}

export interface WitnessCore {
  /** Handles an add-checkpoint body; returns the cosignature line(s), each ending in a newline. */
  addCheckpoint: (body: string) => string
  /** The held checkpoint of the log whose origin hashes (SHA-256, lowercase hex) to `originHash`. */
  checkpoint: (originHash: string) => string | undefined
}

export function witnessCore (options: { store: WitnessStore, cosigner: NoteSigner, logs: WitnessLog[] }): WitnessCore {
  const { store, cosigner } = options
  const logs = logKeys(options.logs)
  const byHash = new Map([...logs.keys()].map(origin => [toHex(sha256(utf8ToBytes(origin))), origin]))

  return {
    addCheckpoint (body) {
      const { old, proof, note } = parseAddCheckpoint(body)
      const { text, signatures } = splitNote(note)
      const checkpoint = parseCheckpoint(text)
      const verifiers = logs.get(checkpoint.origin)
      if (verifiers === undefined) throw new NotFoundError(`unknown log origin "${checkpoint.origin.slice(0, 100)}"`)
      let verified
      try {
        verified = inspectNote(note, verifiers).verified
      } catch (err) {
        if (err instanceof IntegrityError) throw new AccessDeniedError(`checkpoint: ${err.message}`, { cause: err })
        throw err
      }
      if (verified.length === 0) throw new AccessDeniedError(`checkpoint: no valid signature by a key of log ${checkpoint.origin}`)
      if (old > checkpoint.size) throw new InvalidInputError(`old size ${old} is larger than the checkpoint's size ${checkpoint.size}`)
      if (checkpoint.size === 0 && !equalBytes(checkpoint.root, emptyRoot())) {
        throw new InconsistentCheckpointError('a checkpoint of size 0 must carry the root of the empty tree')
      }

      const held = store.get(checkpoint.origin)
      const heldSize = held?.size ?? 0
      if (old !== heldSize) throw new WitnessConflictError(`old size ${old} is not the size ${heldSize} this witness holds`, heldSize)
      if (held !== undefined && checkpoint.size === held.size && !equalBytes(checkpoint.root, held.root)) {
        // c2sp.org/tlog-witness: old size equal to the checkpoint's, roots differing → 409 Conflict.
        throw new WitnessConflictError(`a checkpoint of size ${held.size} with another root than the one this witness holds (a fork)`, held.size)
      }
      if (held === undefined || old === 0) {
        // Any tree extends the empty one; nothing to prove.
        if (proof.length !== 0) throw new InconsistentCheckpointError(`old size 0 takes no consistency proof, got ${proof.length} hashes`)
      } else {
        try {
          verifyConsistency(old, checkpoint.size, held.root, checkpoint.root, proof)
        } catch (err) {
          if (err instanceof IntegrityError) throw new InconsistentCheckpointError(err.message, { cause: err })
          throw err
        }
      }

      const line = signLine(text, cosigner)
      // What the monitoring endpoint serves: the log's verified signatures and ours.
      const logLines = signatures
        .filter(s => verified.some(v => v.name === s.name && equalBytes(v.keyId, s.keyId)))
        .map(s => `${s.line}\n`)
      const next = { size: checkpoint.size, root: checkpoint.root, note: `${text}\n${[...new Set(logLines)].join('')}${line}` }
      // Persisted before answering; if another process moved the state meanwhile, say where to.
      if (!store.replace(checkpoint.origin, held, next)) {
        const now = store.get(checkpoint.origin)?.size ?? 0
        throw new WitnessConflictError(`the held checkpoint changed during the request; it is now size ${now}`, now)
      }
      return line
    },
    checkpoint (originHash) {
      const origin = byHash.get(originHash)
      return origin === undefined ? undefined : store.get(origin)?.note
    }
  }
}

/** origin → its log's verifiers; a configuration the witness cannot honour fails at start. */
function logKeys (logs: WitnessLog[]): Map<string, NoteVerifier[]> {
  if (!Array.isArray(logs) || logs.length === 0) throw new InvalidConfigError('logs: the witness needs at least one log (origin and vkey)')
  const keys = new Map<string, Map<string, NoteVerifier>>()
  logs.forEach((log, i) => {
    if (typeof log.origin !== 'string' || log.origin === '' || /[\u0000-\u001f]/.test(log.origin)) {
      throw new InvalidConfigError(`logs[${i}].origin: must be a non-empty line`)
    }
    let verifier
    try {
      verifier = parseVerifierKey(log.vkey)
    } catch (err) {
      throw new InvalidConfigError(`logs[${i}].vkey: ${(err as Error).message}`, { cause: err })
    }
    if (verifier.type !== 'ed25519') throw new InvalidConfigError(`logs[${i}].vkey: a log signs checkpoints with an Ed25519 (0x01) key, not a ${verifier.type} one`)
    const forOrigin = keys.get(log.origin) ?? new Map<string, NoteVerifier>()
    // The same vkey listed twice is one key, not an ambiguous pair.
    forOrigin.set(log.vkey, verifier)
    keys.set(log.origin, forOrigin)
  })
  return new Map([...keys].map(([origin, byVkey]) => [origin, [...byVkey.values()]]))
}
