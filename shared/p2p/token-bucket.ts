/**
 * An upload cap: a token bucket (bytes per second, with a burst) that callers wait on before
 * sending. Waiters are served in arrival order so one large answer cannot starve the others,
 * and every wait honours the caller's signal. The clock and timer are injectable for tests.
 */
import { InvalidInputError } from '../errors/errors.ts'
import { sleep, untilAborted } from '../load/deadline.ts'

/** Largest burst an upload cap lets go at once: a few body frames. */
const UPLOAD_BURST_BYTES = 256 * 1024

export interface TokenBucketOptions {
  bytesPerSecond: number
  /** Bytes that may go at once after an idle spell; default one second's worth. */
  burstBytes?: number
  now?: () => number
}

export interface TokenBucket {
  /**
   * Resolves when `bytes` may be sent, with whether that meant waiting for tokens; rejects with
   * the signal's reason when it fires first.
   */
  take: (bytes: number, signal?: AbortSignal) => Promise<boolean>
}

/** Tokens refilled at `rate` a second up to `burst` (full at first), read and spent synchronously. */
export interface TokenCount {
  /** The tokens there are now, refilled for the time since the last look. */
  available: () => number
  /** Takes `n` tokens (the count may go negative: a frame larger than the burst). */
  spend: (n: number) => void
}

export function tokenCount (rate: number, burst: number, now: () => number = () => performance.now()): TokenCount {
  let tokens = burst
  let stamp = now()
  return {
    available () {
      const t = now()
      tokens = Math.min(burst, tokens + (t - stamp) * rate / 1000)
      stamp = t
      return tokens
    },
    spend (n) { tokens -= n }
  }
}

export function tokenBucket (options: TokenBucketOptions): TokenBucket {
  const rate = options.bytesPerSecond
  if (!(Number.isFinite(rate) && rate > 0)) throw new InvalidInputError(`tokenBucket: bytesPerSecond must be a positive number, got ${String(rate)}`)
  const burst = options.burstBytes ?? rate
  if (!(Number.isFinite(burst) && burst > 0)) throw new InvalidInputError(`tokenBucket: burstBytes must be a positive number, got ${String(burst)}`)
  const count = tokenCount(rate, burst, options.now)
  // Arrival order: each taker waits for the previous one before drawing tokens.
  let tail: Promise<unknown> = Promise.resolve()

  return {
    async take (bytes, signal) {
      const turn = tail.then(async () => {
        if (signal?.aborted === true) throw signal.reason
        let tokens = count.available()
        // A frame larger than the burst is allowed to go once the bucket is full (tokens go negative).
        const need = Math.min(bytes, burst)
        let waited = false
        while (tokens < need) {
          waited = true
          await sleep(Math.ceil((need - tokens) * 1000 / rate), signal)
          tokens = count.available()
        }
        count.spend(bytes)
        return waited
      })
      tail = turn.catch(() => {})
      // Queued behind another taker, an aborted take still rejects at once (its turn then finds
      // the signal aborted and draws nothing).
      return await (signal === undefined ? turn : untilAborted(signal, turn))
    }
  }
}

/** Waits until `bytes` may be sent (or the signal fires). */
export type Pace = (bytes: number, signal: AbortSignal) => Promise<void>

export interface UploadCap {
  pace: Pace
  /**
   * Admits an answer of `bytes` when the answers already admitted plus this one can go through
   * the cap within half of `deadlineMs` (one answer is always admitted when none is under way);
   * returns its release, to call when the answer ends, or undefined. Answers admitted past that
   * would share the cap and all miss their deadlines together: bytes nobody receives.
   */
  admit: (bytes: number, signal?: AbortSignal) => (() => void) | undefined
  /**
   * How long the rest of the answers under way takes to go through the cap, in ms: the wait a
   * `busy` answer asks for. Bytes already paced are not counted. An answer admitted with the
   * signal its `pace` calls carry takes back, when it ends, only the bytes it paced itself:
   * taking back its whole size forgot what the other answers had paced (review 37c: after one
   * broke off unsent, the hint was ten times the true wait).
   */
  drainMs: () => number
}

/**
 * Admission by the bytes of answers under way: `fits(underway, bytes)` decides, except that one
 * answer is always admitted when none is under way (it must go out, however large). Each
 * admitted answer gets its release, to call when it ends (calling it again does nothing);
 * `onRelease` hears of that answer's release once.
 */
export function bytesUnderway (fits: (underway: number, bytes: number) => boolean): { admit: (bytes: number, onRelease?: () => void) => (() => void) | undefined, readonly underway: number } {
  let underway = 0
  return {
    get underway () { return underway },
    admit (bytes, onRelease) {
      if (underway > 0 && !fits(underway, bytes)) return undefined
      underway += bytes
      let released = false
      return () => {
        if (released) return
        released = true
        underway -= bytes
        onRelease?.()
      }
    }
  }
}

/** An upload cap for answers with a deadline: pacing, and admission by the bytes under way. */
export function uploadCap (bytesPerSecond: number | undefined, deadlineMs: number): UploadCap | undefined {
  if (bytesPerSecond === undefined) return undefined
  const bucket = tokenBucket({ bytesPerSecond, burstBytes: Math.min(bytesPerSecond, UPLOAD_BURST_BYTES) })
  /** Bytes of the answers under way that have gone through the bucket, in all and by answer (its signal). */
  let paced = 0
  const pacedBy = new WeakMap<AbortSignal, number>()
  const admission = bytesUnderway((underway, bytes) => (underway + bytes) * 1000 / bytesPerSecond <= deadlineMs / 2)
  return {
    pace: async (bytes, signal) => {
      await bucket.take(bytes, signal)
      paced += bytes
      pacedBy.set(signal, (pacedBy.get(signal) ?? 0) + bytes)
    },
    admit: (bytes, signal) => admission.admit(bytes, () => {
      // Without its signal, an answer is taken as wholly sent.
      paced = Math.max(0, paced - (signal === undefined ? bytes : pacedBy.get(signal) ?? 0))
      if (signal !== undefined) pacedBy.delete(signal)
    }),
    drainMs: () => Math.max(0, admission.underway - paced) * 1000 / bytesPerSecond
  }
}
