/**
 * How a round ends badly: `RoundFailure` carries what the operator is told beyond what the round's
 * clients are, and `reasonOf` turns any error into the reason stored and reported.
 */
import { BlockfedError } from '../../shared/errors/errors.ts'

export class RoundFailure extends BlockfedError {
  override name = 'RoundFailure'
  /**
   * Said to the operator (stored, GET /v1/rounds/ID) after the message, never to the round's
   * clients: other clients' own words (why they declined) are theirs, not their peers'.
   */
  readonly detail: string
  constructor (message: string, detail = '') {
    super(message)
    this.detail = detail
  }
}

/** Ends a step of a round its controller aborted (a deadline, its caller, the coordinator's stop). */
export function throwIfAborted (controller: AbortController): void {
  if (controller.signal.aborted) throw new RoundFailure(`aborted: ${String(controller.signal.reason ?? 'stopped')}`)
}

/** Why a round failed, as stored and reported: typed errors say it themselves. */
export function reasonOf (err: unknown): string {
  return err instanceof RoundFailure ? err.message + err.detail : err instanceof BlockfedError ? err.message : `internal error: ${(err as Error).message}`
}

/**
 * Tags `err` with the round it is about, for the error frame the hub sends. `left`: the round
 * does not (or no longer) count on this client, which then stops its own work for it before
 * anything is uploaded (shared/rounds/messages.ts).
 */
export function withRound (err: unknown, roundId: string, options: { left?: true } = {}): unknown {
  if (err instanceof Error) Object.assign(err, { roundId, ...options })
  return err
}
