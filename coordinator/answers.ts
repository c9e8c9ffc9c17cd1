/**
 * Admission of the coordinator's block and shard answers, one budget for its HTTP API and its
 * libp2p origin. Bytes of answers under way are bounded (each answer holds its body until it is
 * sent, so an unbounded wave of requests is unbounded memory), and under an upload cap also by
 * what the cap can send within half an answer's deadline (shared/p2p/token-bucket.ts
 * `uploadCap`). An answer not admitted is refused at once — HTTP 503 with Retry-After, libp2p
 * `busy` — and clients wait and ask again (shared/load/retry.ts, shared/p2p/swarm-source.ts).
 */
import { bytesUnderway, uploadCap, type Pace } from '../shared/p2p/token-bucket.ts'

export interface AnswerAdmission {
  /** Paces bodies through the upload cap; undefined without one. */
  pace?: Pace
  /** Admits an answer of `bytes` (returns its release, to call once when it ends) or refuses it. */
  /** `signal`: the one this answer's `pace` calls carry (token-bucket.ts UploadCap.admit). */
  admit: (bytes: number, signal?: AbortSignal) => (() => void) | undefined
  /** Bytes of admitted answers not yet released. */
  readonly underway: number
}

export function answerAdmission (options: { maxBytes: number, bytesPerSecond?: number, deadlineMs: number }): AnswerAdmission {
  const cap = uploadCap(options.bytesPerSecond, options.deadlineMs)
  const budget = bytesUnderway((underway, bytes) => underway + bytes <= options.maxBytes)
  return {
    pace: cap?.pace,
    get underway () { return budget.underway },
    admit (bytes, signal) {
      const own = budget.admit(bytes)
      if (own === undefined) return undefined
      const capped = cap?.admit(bytes, signal)
      if (cap !== undefined && capped === undefined) {
        own()
        return undefined
      }
      return () => {
        own()
        capped?.()
      }
    }
  }
}
