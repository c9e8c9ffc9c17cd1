/**
 * A BlockSource that retries transient failures (UnavailableError, TimeoutError) up to
 * `retries` times with exponential backoff; a NotFoundError or an abort is final at once.
 * A BusyError (the server is up but has no room for the answer now) is waited out as it asks,
 * without using a retry, for at most `busyPatienceMs` in all: a wave of cold starts queues at a
 * busy origin instead of failing. Every wait honours the caller's signal, the source's own included.
 */
import { BusyError, isUnreachable } from '../errors/errors.ts'
import type { BlockSource } from './source.ts'
import { sleep, untilAborted } from './deadline.ts'

/** How long one object may wait on busy answers, in all. */
export const BUSY_PATIENCE_MS = 60_000

/**
 * The least wait after a busy answer. A server answering busy with a wait of 0 (the shard
 * protocol and Retry-After both allow it) would otherwise be asked again at once, for ever:
 * no patience is used up by waits of nothing.
 */
export const MIN_BUSY_WAIT_MS = 10

/**
 * Waits out the busy answers of one object: each wait as asked (at least MIN_BUSY_WAIT_MS),
 * jittered up to 1.5 × so that the requests a busy server turned away do not all come back at
 * once, within `patienceMs` in all. Resolves false, without waiting, when the next wait would
 * run past the patience.
 */
export function busyWaiter (patienceMs = BUSY_PATIENCE_MS): (retryMs: number, signal: AbortSignal) => Promise<boolean> {
  let waited = 0
  return async (retryMs, signal) => {
    const wait = Math.round(Math.max(MIN_BUSY_WAIT_MS, retryMs) * (1 + Math.random() / 2))
    if (waited + wait > patienceMs) return false
    waited += wait
    await sleep(wait, signal)
    return true
  }
}

export function retrying (source: BlockSource, retries: number, baseDelayMs = 50, busyPatienceMs = BUSY_PATIENCE_MS): BlockSource {
  return {
    name: source.name,
    async get (cid, options) {
      const waitBusy = busyWaiter(busyPatienceMs)
      for (let attempt = 0; ; attempt++) {
        try {
          // Raced: a source that ignores its signal must not outlast the caller's abort.
          return await untilAborted(options.signal, source.get(cid, options))
        } catch (err) {
          if (options.signal.aborted) throw options.signal.reason
          if (err instanceof BusyError && await waitBusy(err.retryAfterMs, options.signal)) {
            attempt--
            continue
          }
          if (!isUnreachable(err) || attempt >= retries) throw err
          await sleep(baseDelayMs * 2 ** attempt, options.signal)
        }
      }
    }
  }
}
