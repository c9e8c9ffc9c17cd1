/**
 * An upload cap: a token bucket (bytes per second, with a burst) that callers wait on before
 * sending. Waiters are served in arrival order so one large answer cannot starve the others,
 * and every wait honours the caller's signal. The clock and timer are injectable for tests.
 */
import { InvalidInputError } from '../errors/errors.ts'

export interface TokenBucketOptions {
  bytesPerSecond: number
  /** Bytes that may go at once after an idle spell; default one second's worth. */
  burstBytes?: number
  now?: () => number
}

export interface TokenBucket {
  /** Resolves when `bytes` may be sent; rejects with the signal's reason when it fires first. */
  take: (bytes: number, signal?: AbortSignal) => Promise<void>
}

export function tokenBucket (options: TokenBucketOptions): TokenBucket {
  const rate = options.bytesPerSecond
  if (!(Number.isFinite(rate) && rate > 0)) throw new InvalidInputError(`tokenBucket: bytesPerSecond must be a positive number, got ${String(rate)}`)
  const burst = options.burstBytes ?? rate
  if (!(Number.isFinite(burst) && burst > 0)) throw new InvalidInputError(`tokenBucket: burstBytes must be a positive number, got ${String(burst)}`)
  const now = options.now ?? (() => performance.now())
  let tokens = burst
  let stamp = now()
  // Arrival order: each taker waits for the previous one before drawing tokens.
  let tail: Promise<void> = Promise.resolve()

  const refill = (): void => {
    const t = now()
    tokens = Math.min(burst, tokens + (t - stamp) * rate / 1000)
    stamp = t
  }

  const sleep = async (ms: number, signal?: AbortSignal): Promise<void> => await new Promise((resolve, reject) => {
    if (signal?.aborted === true) { reject(signal.reason); return }
    const onAbort = (): void => { clearTimeout(timer); reject(signal?.reason) }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })

  return {
    async take (bytes, signal) {
      const turn = tail.then(async () => {
        if (signal?.aborted === true) throw signal.reason
        refill()
        // A frame larger than the burst is allowed to go once the bucket is full (tokens go negative).
        const need = Math.min(bytes, burst)
        while (tokens < need) {
          await sleep(Math.ceil((need - tokens) * 1000 / rate), signal)
          refill()
        }
        tokens -= bytes
      })
      tail = turn.catch(() => {})
      // Queued behind another taker, an aborted take still rejects at once (its turn then finds
      // the signal aborted and draws nothing).
      if (signal === undefined) { await turn; return }
      if (signal.aborted) throw signal.reason
      let onAbort: (() => void) | undefined
      try {
        await Promise.race([turn, new Promise<never>((_resolve, reject) => {
          onAbort = () => { reject(signal.reason) }
          signal.addEventListener('abort', onAbort, { once: true })
        })])
      } finally {
        if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
      }
    }
  }
}
