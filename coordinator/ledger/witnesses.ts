/**
 * Gathers witness cosignatures for the log's latest checkpoint (C2SP tlog-witness): each
 * witness gets an add-checkpoint request carrying the consistency proof from the size it last
 * cosigned; a 409 answer tells the size it really holds, and the request is retried once from
 * there. Returned lines are verified against the witness's configured key before they are
 * stored and served. A witness that is down or refuses costs only its cosignature: the
 * checkpoint stays published, runtimes that require more cosigners than it got wait, and the
 * coordinator asks it again on a timer (coordinator.ts `witnessRetryMs`).
 */
import { addCheckpoint, WitnessConflictError } from '../../shared/ledger/witness/client.ts'
import { MAX_NOTE_SIGNATURES, parseSignatureLine, parseVerifierKey, splitNote, type NoteVerifier } from '../../shared/ledger/note.ts'
import { equalBytes, toHex, utf8ToBytes } from '../../shared/crypto/bytes.ts'
import { IntegrityError, InvalidConfigError } from '../../shared/errors/errors.ts'
import type { VersionLog } from './log.ts'

export interface WitnessEndpoint {
  /** The witness's base URL; requests go to `<url>/add-checkpoint`. */
  url: string
  /** The witness's cosignature/v1 verifier key. */
  vkey: string
}

export interface CosignOutcome {
  size: number
  cosigned: string[]
  failed: Array<{ witness: string, reason: string }>
}

/** A witness's state as last seen: said when it changes, so an operator sees one that is down without a line per retry. */
export interface WitnessStatus {
  witness: string
  url: string
  ok: boolean
  /** The checkpoint size it cosigned, or was asked to. */
  size: number
  reason?: string
}

export interface WitnessCosigner {
  /** Asks every witness that has not cosigned the latest checkpoint yet; never throws. */
  cosign: () => Promise<CosignOutcome>
  /** Ends the run under way (its requests aborted, nothing stored or reported) and starts none; resolves once it has ended. */
  stop: () => Promise<void>
}

export function witnessCosigner (options: { log: VersionLog, witnesses: WitnessEndpoint[], timeoutMs?: number, onStatus?: (status: WitnessStatus) => void }): WitnessCosigner {
  const { log } = options
  const timeoutMs = options.timeoutMs ?? 10_000
  const witnesses = options.witnesses.map(w => {
    const verifier = parseVerifierKey(w.vkey)
    if (verifier.type !== 'cosignature/v1') throw new InvalidConfigError(`witness ${w.url}: key ${w.vkey.slice(0, 40)}… is not a cosignature/v1 verifier key`)
    return { ...w, verifier }
  })
  // One stored line per name and checkpoint (the line a witness's new key signs replaces its old
  // key's), so two witnesses of one name would take turns overwriting each other.
  const names = new Set<string>()
  for (const w of witnesses) {
    if (names.has(w.verifier.name)) throw new InvalidConfigError(`two witnesses are named ${w.verifier.name}: give each its own name`)
    names.add(w.verifier.name)
  }
  // The served note holds the log's line and one per witness; clients refuse more than this.
  if (witnesses.length + 1 > MAX_NOTE_SIGNATURES) throw new InvalidConfigError(`${witnesses.length} witnesses: a checkpoint note holds at most ${MAX_NOTE_SIGNATURES - 1} cosignatures`)
  let tail: Promise<unknown> = Promise.resolve()
  let waiting: Promise<CosignOutcome> | undefined
  const stopping = new AbortController()
  const lastOk = new Map<string, boolean>()
  const report = (status: WitnessStatus): void => {
    if (lastOk.get(status.url) === status.ok) return
    lastOk.set(status.url, status.ok)
    try {
      options.onStatus?.(status)
    } catch {
      // A reporter's failure is not the witness's.
    }
  }

  async function ask (witness: typeof witnesses[number], size: number, note: string): Promise<string[]> {
    let old = log.witnessSize(witness.vkey)
    for (let attempt = 0; ; attempt++) {
      if (old > size) throw new Error(`the witness holds a checkpoint of size ${old}, beyond this log's ${size}`)
      const proof = old === 0 || old === size ? [] : log.consistencyProof(old, size)
      try {
        return await addCheckpoint(witness.url, { old, proof, note }, stopping.signal, timeoutMs)
      } catch (err) {
        if (!(err instanceof WitnessConflictError) || attempt > 0) throw err
        old = err.size
      }
    }
  }

  async function run (): Promise<CosignOutcome> {
    const latest = stopping.signal.aborted ? undefined : log.latest()
    if (latest === undefined) return { size: 0, cosigned: [], failed: [] }
    const size = latest.checkpoint.size
    const outcome: CosignOutcome = { size, cosigned: [], failed: [] }
    // Asked unless the served note holds a line by its configured key: by name alone, a witness
    // whose key changed (a lost data dir, a rotation) was never asked again, and clients that
    // trust its new key found no cosignature until the next publish (review).
    const signedBy = new Set(splitNote(latest.cosigned).signatures.map(s => keyName(s.name, s.keyId)))
    await Promise.all(witnesses.filter(w => !signedBy.has(keyName(w.verifier.name, w.verifier.keyId))).map(async w => {
      try {
        const lines = await ask(w, size, latest.note)
        if (stopping.signal.aborted) return
        log.addCosignature(size, w.verifier.name, cosignatureBy(w.verifier, latest.note, lines))
        log.setWitnessSize(w.vkey, size)
        outcome.cosigned.push(w.verifier.name)
        report({ witness: w.verifier.name, url: w.url, ok: true, size })
      } catch (err) {
        // Ended by stop: the witness did not fail (the log may be closed by now).
        if (stopping.signal.aborted) return
        const reason = err instanceof Error ? err.message : String(err)
        outcome.failed.push({ witness: w.verifier.name, reason })
        report({ witness: w.verifier.name, url: w.url, ok: false, size, reason })
      }
    }))
    return outcome
  }

  return {
    async cosign () {
      // Runs go one at a time. Calls while a run waits to start share it: it reads the latest
      // checkpoint when it starts, so one run answers them all (each publish and retry queued a
      // full run of its own behind a slow witness). Never throws, as promised.
      waiting ??= tail.then(async () => {
        waiting = undefined
        return await run()
      }).catch((err: unknown): CosignOutcome => ({ size: 0, cosigned: [], failed: [{ witness: '*', reason: err instanceof Error ? err.message : String(err) }] }))
      tail = waiting
      return await waiting
    },
    async stop () {
      stopping.abort(new Error('the coordinator is stopping'))
      await tail
    }
  }
}

/** A note key as signed-note names it: name and key ID. */
const keyName = (name: string, keyId: Uint8Array): string => `${name}+${toHex(keyId)}`

/**
 * The one line of `lines` that `verifier`'s key signed over `note`. Only that line is stored and
 * served: any other line, even under the witness's name, is unverified bytes that would grow
 * the note past what clients accept (MAX_NOTE_SIGNATURES, 64 KiB) and lock every runtime out.
 */
function cosignatureBy (verifier: NoteVerifier, note: string, lines: string[]): string {
  const message = utf8ToBytes(splitNote(note).text)
  const mine = new Set<string>()
  for (const line of lines) {
    const sig = parseSignatureLine(line)
    if (sig.name !== verifier.name || !equalBytes(sig.keyId, verifier.keyId)) continue
    if (!verifier.verify(message, sig.signature)) throw new IntegrityError(`its cosignature by ${verifier.name}+${toHex(verifier.keyId)} does not verify`)
    mine.add(sig.line)
  }
  if (mine.size !== 1) throw new IntegrityError(`its answer holds ${mine.size} cosignatures by its key, expected exactly one`)
  return [...mine][0] as string
}
