/**
 * What a client does before it trusts a version (DESIGN.md, "Ledger entry"; issue 4):
 *
 * 1. `advanceCheckpoint`: take the log's latest checkpoint, check the log's signature and the
 *    required number of known witness cosignatures, and prove with an RFC 9162 consistency proof
 *    that it extends the checkpoint this client persisted. Only then persist it. A checkpoint
 *    that does not extend the persisted one — a rewritten or forked history — raises
 *    LedgerSecurityError carrying both notes and the failing proof, and nothing is persisted.
 * 2. `verifyAnchor`: fetch the version's entry, check that its exact bytes name this manifest
 *    (model, version, manifest CID, parent), and verify its inclusion proof under that
 *    checkpoint's root.
 *
 * The coordinator's word is never taken: only signatures, hashes and proofs.
 */
import { equalBytes, toBase64 } from '../crypto/bytes.ts'
import { BlockfedError, IntegrityError, isUnreachable, LedgerSecurityError } from '../errors/errors.ts'
import type { SignedManifest } from '../manifest/schema.ts'
import type { NoteVerifier } from './note.ts'
import { openCheckpoint, type Checkpoint } from './checkpoint.ts'
import { leafHash, verifyConsistency, verifyInclusion } from './merkle.ts'
import { parseEntry, type LedgerEntry } from './entry.ts'
import type { LedgerClient } from './client.ts'

export interface LedgerTrust {
  /** The log's key: checkpoints must carry its signature, and their origin its name. */
  log: NoteVerifier
  /** Known witnesses' cosignature keys. */
  witnesses: NoteVerifier[]
  /** How many of them must have cosigned a checkpoint before it is trusted. */
  minWitnesses: number
}

/** Where a client keeps the last checkpoint it trusted (a file in Node, IndexedDB in a browser). */
export interface CheckpointStore {
  load: () => Promise<string | undefined>
  save: (note: string) => Promise<void>
}

export interface VerifiedCheckpoint {
  checkpoint: Checkpoint
  /** The note as served, with only the signature lines this policy's keys verified. */
  note: string
  cosigners: string[]
  /**
   * Set by advanceCheckpoint: the size of the checkpoint this client kept before, which this one
   * was proved consistent with; null when none was kept (trust on first use).
   */
  keptSize?: number | null
}

export interface Anchor {
  index: number
  /** The exact entry bytes hashed into the leaf. */
  leaf: Uint8Array
  entry: LedgerEntry
  /** Inclusion proof under `checkpoint`. */
  proof: Uint8Array[]
  checkpoint: VerifiedCheckpoint
}

/**
 * A checkpoint signed by the log but cosigned by fewer known witnesses than the policy asks: a
 * witness is down, or someone on the path stripped the cosignatures. Not proof of an attack, so
 * a runtime keeps serving what it verified and kept rather than refusing to start.
 */
export class WitnessQuorumError extends IntegrityError {
  override readonly name = 'WitnessQuorumError'
}

/**
 * The log's checkpoint answer could not be opened under the trust policy: not a note, or a line
 * under a trusted key's name that does not verify. Anyone on the way can append such a line or
 * garble the text, as easily as withhold the answer: a runtime that kept a verified version
 * serves it, as in an outage (node-runtime/runtime.ts), and says why.
 */
export class CheckpointAnswerError extends IntegrityError {
  override readonly name = 'CheckpointAnswerError'
}

/**
 * A checkpoint that cannot be verified for now, short of its witnesses or garbled on the way: a
 * runtime meets it as an outage (it keeps what it verified), never as a fork.
 */
export function checkpointUnverified (err: unknown): err is WitnessQuorumError | CheckpointAnswerError {
  return err instanceof WitnessQuorumError || err instanceof CheckpointAnswerError
}

/**
 * Opens a checkpoint note under the trust policy: log signature, origin, enough witnesses. The
 * note returned keeps only the signature lines a key of the policy verified: a line nobody here
 * could check is not carried into what is saved (a coordinator could otherwise plant a bad line
 * under a witness's name that a later policy knowing that witness would refuse for ever).
 */
export function openTrusted (note: string, trust: LedgerTrust): VerifiedCheckpoint {
  const opened = openCheckpoint(note, trust.log, trust.witnesses)
  if (opened.checkpoint.origin !== trust.log.name) {
    throw new IntegrityError(`checkpoint of log "${opened.checkpoint.origin}", expected "${trust.log.name}"`)
  }
  if (opened.cosigners.length < trust.minWitnesses) {
    // With none at all the likeliest cause is the operator's, not an attack (review 40a L14).
    const hint = opened.cosigners.length === 0 ? '; a witness is down or unreachable from the coordinator, or the coordinator runs without its --witness options (then it asks no witness to cosign), or the cosignatures were stripped on the way' : ''
    throw new WitnessQuorumError(`checkpoint ${opened.checkpoint.size}: cosigned by ${opened.cosigners.length} known witness(es) (${opened.cosigners.join(', ') || 'none'}), ${trust.minWitnesses} required${hint}`)
  }
  return { checkpoint: opened.checkpoint, note: opened.verifiedNote, cosigners: opened.cosigners }
}

/**
 * Moves this client's trusted checkpoint forward to the log's latest (or keeps it when the log
 * offers an older one that it extends, e.g. from a stale cache). Returns the checkpoint to
 * verify versions against.
 */
export async function advanceCheckpoint (client: LedgerClient, trust: LedgerTrust, store: CheckpointStore, signal?: AbortSignal): Promise<VerifiedCheckpoint> {
  const answer = await client.checkpoint(signal)
  let offered: VerifiedCheckpoint
  try {
    offered = openTrusted(answer, trust)
  } catch (err) {
    if (err instanceof WitnessQuorumError) {
      // Signed by the log, short of its witnesses: never saved, but still held against the one
      // kept. A fork served without cosignatures is a fork all the same (review 51a: stripping
      // them turned a security alarm into a quiet "staying").
      const saved = await store.load()
      try {
        if (saved !== undefined) await checkConsistent(client, trust, openTrusted(answer, { ...trust, minWitnesses: 0 }), openTrusted(saved, { ...trust, minWitnesses: 0 }), signal)
      } catch (proof) {
        // No proof to be had (an outage): still only short of witnesses (review 51b).
        if (proof instanceof LedgerSecurityError || signal?.aborted === true) throw proof
      }
      throw err
    }
    if (!(err instanceof BlockfedError)) throw err
    throw new CheckpointAnswerError(`log ${trust.log.name}: its checkpoint answer cannot be trusted (${err.message})`, { cause: err })
  }
  const saved = await store.load()
  if (saved === undefined) {
    await store.save(offered.note)
    return { ...offered, keptSize: null }
  }
  // The persisted note was verified when it was saved; its signature is checked again because
  // the file is outside this process.
  const trusted = openTrusted(saved, { ...trust, minWitnesses: 0 })
  const newer = await checkConsistent(client, trust, offered, trusted, signal)
  if (newer === offered && offered.checkpoint.size > trusted.checkpoint.size) await store.save(offered.note)
  // The persisted checkpoint was accepted under whatever policy was in force then (another model's
  // config on the same log, or this one before witnesses were required): verify against it only
  // if it meets THIS policy. Otherwise the offered one, which does and which it extends.
  const keptSize = trusted.checkpoint.size
  if (newer === trusted && trusted.cosigners.length < trust.minWitnesses) return { ...offered, keptSize }
  return { ...newer, keptSize }
}

/** Checks that an entry names exactly this signed manifest. */
export function checkEntry (entry: LedgerEntry, signed: SignedManifest): void {
  const m = signed.manifest
  const mismatch = entry.model !== m.model ? 'model' : entry.version !== m.version ? 'version' : entry.manifestCid !== signed.cid ? 'manifestCid' : entry.parent !== m.parent ? 'parent' : undefined
  if (mismatch !== undefined) {
    throw new IntegrityError(`${m.model}@${m.version}: the ledger entry's ${mismatch} (${JSON.stringify(entry[mismatch])}) does not match the manifest (${signed.cid})`)
  }
}

/** Proves that `signed` is anchored: its entry at `index` is included under `checkpoint`. */
export async function verifyAnchor (client: LedgerClient, checkpoint: VerifiedCheckpoint, signed: SignedManifest, index: number, signal?: AbortSignal): Promise<Anchor> {
  const { size } = checkpoint.checkpoint
  const label = `${signed.manifest.model}@${signed.manifest.version}`
  if (index >= size) throw new IntegrityError(`${label}: ledger entry ${index} is not covered by checkpoint ${size}`)
  const { leaf } = await client.entry(index, signal)
  const entry = parseEntry(leaf, `${label}: ledger entry ${index}`)
  checkEntry(entry, signed)
  const proof = await client.inclusion(index, size, signal)
  const anchor = { index, leaf, entry, proof, checkpoint }
  checkInclusion(anchor, label)
  return anchor
}

/** Re-verifies a stored anchor offline: entry bytes → leaf → inclusion under the checkpoint's root. */
export function checkInclusion (anchor: Pick<Anchor, 'index' | 'leaf' | 'proof' | 'checkpoint'>, label: string): void {
  const { size, root } = anchor.checkpoint.checkpoint
  try {
    verifyInclusion(anchor.index, size, leafHash(anchor.leaf), anchor.proof, root)
  } catch (err) {
    if (!(err instanceof IntegrityError)) throw err
    throw new LedgerSecurityError(`${label}: entry ${anchor.index} is not included in checkpoint ${size} (${err.message})`,
      { offered: anchor.checkpoint.note, proof: { kind: 'inclusion', index: anchor.index, size, hashes: anchor.proof.map(toBase64) } }, { cause: err })
  }
}

/**
 * Throws LedgerSecurityError unless the log proves `offered` and `trusted` (both signed by it)
 * one history: equal roots at one size, else a consistency proof. Returns the newer of the two.
 */
async function checkConsistent (client: LedgerClient, trust: LedgerTrust, offered: VerifiedCheckpoint, trusted: VerifiedCheckpoint, signal?: AbortSignal): Promise<VerifiedCheckpoint> {
  const [older, newer] = offered.checkpoint.size < trusted.checkpoint.size ? [offered, trusted] : [trusted, offered]
  const a = older.checkpoint
  const b = newer.checkpoint
  let hashes: Uint8Array[] = []
  try {
    if (a.size === b.size) {
      if (!equalBytes(a.root, b.root)) throw new IntegrityError(`two checkpoints of size ${a.size} with different roots`)
    } else {
      hashes = await client.consistency(a.size, b.size, signal)
      verifyConsistency(a.size, b.size, a.root, b.root, hashes)
    }
  } catch (err) {
    // Only an outage (or the caller's own abort) may pass as itself. A log that answers but will
    // not prove a size it signed — 400 "beyond the log's size" after a restore from backup —
    // has rolled back its history, as much a security failure as a proof that does not verify.
    if (isUnreachable(err) || signal?.aborted === true) throw err
    const why = err instanceof IntegrityError ? 'history was rewritten or forked' : 'the log cannot prove a size it signed (rolled back or truncated)'
    throw new LedgerSecurityError(
      `log ${trust.log.name}: checkpoint ${offered.checkpoint.size} is not consistent with the persisted checkpoint ${trusted.checkpoint.size} — ${why}; refusing to move (${err instanceof Error ? err.message : String(err)})`,
      { trusted: trusted.note, offered: offered.note, proof: { kind: 'consistency', from: a.size, to: b.size, hashes: hashes.map(toBase64) } },
      { cause: err })
  }
  return newer
}
