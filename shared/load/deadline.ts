/**
 * Every wait has a deadline: combines a caller's signal with a timeout, and turns the timeout's
 * abort into a typed TimeoutError naming what was being waited for.
 */
import { TimeoutError } from '../errors/errors.ts'

export function withDeadline (signal: AbortSignal | undefined, timeoutMs: number): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs)
  return signal === undefined ? timeout : AbortSignal.any([signal, timeout])
}

/** Maps an AbortError/TimeoutError from fetch into our TimeoutError when the deadline fired. */
export function deadlineError (err: unknown, what: string, timeoutMs: number): unknown {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
    return new TimeoutError(`${what}: no answer within ${timeoutMs} ms`, { cause: err })
  }
  return err
}
