/**
 * The witness protocol's own failure modes (c2sp.org/tlog-witness, add-checkpoint), for the
 * statuses the shared error classes do not cover: 409 carries the size the witness holds, 422 is
 * a checkpoint that does not extend what the witness saw.
 */
import { BlockfedError } from '../../errors/errors.ts'

/** 409: `old` is not the size of the witness's latest cosigned checkpoint; `size` is that size. */
export class WitnessConflictError extends BlockfedError {
  override readonly name = 'WitnessConflictError'
  override readonly status = 409
  readonly size: number
  constructor (message: string, size: number, options?: { cause?: unknown }) {
    super(message, options)
    this.size = size
  }
}

/** 422: the consistency proof does not verify, or the checkpoint forks or rolls back the log. */
export class InconsistentCheckpointError extends BlockfedError {
  override readonly name = 'InconsistentCheckpointError'
  override readonly status = 422
}
