/**
 * Failure modes of Paillier aggregation that the shared error classes do not name. Each has a
 * stable `name`; the decryptor client turns HTTP answers back into them.
 */
import { BlockfedError } from '../../shared/errors/errors.ts'

/** The decryptor already decided this round: it decrypts each round at most once. */
export class RoundDecidedError extends BlockfedError {
  override readonly name = 'RoundDecidedError'
  override readonly status = 409
}

/**
 * A contribution's client is already in a sum the decryptor decided, from the same base version
 * of the same model or a later one: two sums over client sets that differ by one give that
 * client's update (shared/rounds/one-update.ts), so it decrypts neither a second nor an older one.
 */
export class RepeatedClientError extends BlockfedError {
  override readonly name = 'RepeatedClientError'
  override readonly status = 409
}

/**
 * A decrypt request for a round offered under another Paillier key than the one the decryptor
 * holds (it was restarted on another data dir, or its key was replaced): refused before the round
 * is claimed, since its ciphertexts would decrypt to noise and the round's one decryption be spent.
 */
export class KeyMismatchError extends BlockfedError {
  override readonly name = 'KeyMismatchError'
  override readonly status = 409
}

/** A randomness pool has fewer unused r^n values than an encryption needs: precompute more. */
export class RandomnessExhaustedError extends BlockfedError {
  override readonly name = 'RandomnessExhaustedError'
  override readonly status = 500
}
