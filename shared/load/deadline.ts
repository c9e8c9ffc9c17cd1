/**
 * Every wait has a deadline: combines a caller's signal with a timeout, and turns the timeout's
 * abort into a typed TimeoutError naming what was being waited for.
 */
import { TimeoutError } from '../errors/errors.ts'

export function withDeadline (signal: AbortSignal | undefined, timeoutMs: number): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs)
  return signal === undefined ? timeout : AbortSignal.any([signal, timeout])
}

/**
 * Maps an AbortError/TimeoutError from fetch into our TimeoutError when the deadline fired.
 * Callers check their own signal first and rethrow its reason: a cancelled wait is not a silent
 * server, and must not send a caller down its "unreachable, work offline" path.
 */
export function deadlineError (err: unknown, what: string, timeoutMs: number): unknown {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
    return new TimeoutError(`${what}: no answer within ${timeoutMs} ms`, { cause: err })
  }
  return err
}

/**
 * A deadline cleared once its wait is over. AbortSignal.timeout's timer lives until it fires, so
 * a peer sending thousands of shard requests a second kept two 30 s timers alive per request
 * (review 42b 3: +72–84 MB of heap for 30 s from one connection). Fires with a TimeoutError
 * saying `what` was not done within `ms`.
 */
export function clearableDeadline (ms: number, what = 'no answer'): { signal: AbortSignal, clear: () => void } {
  const controller = new AbortController()
  const timer = setTimeout(() => { controller.abort(new TimeoutError(`${what} within ${ms} ms`)) }, ms)
  // As AbortSignal.timeout's: a wait does not keep a process alive (a Node timer; browsers have no unref).
  ;(timer as { unref?: () => void }).unref?.()
  return { signal: controller.signal, clear: () => { clearTimeout(timer) } }
}

/** Resolves after `ms`; rejects with the signal's reason as soon as it fires (no timer left behind). */
export async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    if (signal?.aborted === true) { reject(signal.reason); return }
    const onAbort = (): void => { clearTimeout(timer); reject(signal?.reason) }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * `work`'s outcome, or the signal's reason as soon as it fires — for work queued behind others
 * (a concurrency limit, a FIFO), which only sees the signal when its turn comes. `work`'s own
 * later rejection is then ignored.
 */
export async function untilAborted<T> (signal: AbortSignal, work: Promise<T>): Promise<T> {
  work.catch(() => {})
  if (signal.aborted) throw signal.reason
  let onAbort: (() => void) | undefined
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => { reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([work, aborted])
  } finally {
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
  }
}
