/**
 * Typed errors: one class per failure mode, each with a stable `name` so callers and HTTP
 * handlers can branch on it without string matching on messages.
 */
export class BlockfedError extends Error {
  override readonly name: string = 'BlockfedError'
  /** HTTP status the coordinator answers with when this error reaches a handler. */
  readonly status: number = 500
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** Input from outside (model file, config, request, stream) that does not parse or fails a check. */
export class InvalidInputError extends BlockfedError {
  override readonly name = 'InvalidInputError'
  override readonly status = 400
}

/** A model file that cannot be read as the format it claims to be. */
export class InvalidModelError extends BlockfedError {
  override readonly name = 'InvalidModelError'
  override readonly status = 422
}

/** An AoE config (or another config file) that fails its schema. */
export class InvalidConfigError extends BlockfedError {
  override readonly name = 'InvalidConfigError'
  override readonly status = 400
}

/** A hash, CID or signature does not match: data was corrupted or tampered with. */
export class IntegrityError extends BlockfedError {
  override readonly name: string = 'IntegrityError'
  override readonly status = 502
}

/**
 * A block whose bytes matched their CID did not open with its data key: the key is wrong (a
 * damaged kept key, or a bad grant), not the block.
 */
export class WrongKeyError extends IntegrityError {
  override readonly name: string = 'WrongKeyError'
  readonly keyId: string
  constructor (message: string, keyId: string, options?: { cause?: unknown }) {
    super(message, options)
    this.keyId = keyId
  }
}

/** Something asked for does not exist (unknown model, version or CID). */
export class NotFoundError extends BlockfedError {
  override readonly name = 'NotFoundError'
  override readonly status = 404
}

/** The request is well formed but conflicts with the current state (e.g. a base version that is no longer the latest). */
export class ConflictError extends BlockfedError {
  override readonly name = 'ConflictError'
  override readonly status = 409
}

/** The caller may not do this: its role does not grant the request, or a signature or pin refuses it. */
export class AccessDeniedError extends BlockfedError {
  override readonly name: string = 'AccessDeniedError'
  override readonly status: number = 403
}

/**
 * No valid credentials: no bearer token, or one that is unknown, revoked or expired. HTTP says it
 * apart from a refusal (RFC 9110 §15.5.2: 401 is "renew the credentials", 403 "these will never
 * do"), so that a client knows to get another token; still an AccessDeniedError to code that
 * does not care which.
 */
export class UnauthenticatedError extends AccessDeniedError {
  override readonly name = 'UnauthenticatedError'
  override readonly status = 401
}

/** A body or file larger than the configured bound. */
export class TooLargeError extends BlockfedError {
  override readonly name = 'TooLargeError'
  override readonly status = 413
}

/** Too few intact shards to rebuild a block, or a source that could not deliver in time. */
export class UnavailableError extends BlockfedError {
  override readonly name: string = 'UnavailableError'
  override readonly status = 503
}

/**
 * A service answered with a 5xx of its own (its body names the error): up, but failing this
 * request, where a bare 5xx (a proxy in front of it, 502 while it restarts) or no answer is down.
 * Callers that wait out an outage may give up sooner on this.
 */
export class ServiceFailedError extends UnavailableError {
  override readonly name: string = 'ServiceFailedError'
}

/** No connection to a peer could be made (refused, or a dial that got no answer): down, not slow. */
export class NoConnectionError extends UnavailableError {
  override readonly name: string = 'NoConnectionError'
}

/**
 * A server with no room for the answer now (its answers in flight fill its budget): ask again
 * after `retryAfterMs`. Unlike a plain UnavailableError the server is up, so waiting helps.
 */
export class BusyError extends UnavailableError {
  override readonly name = 'BusyError'
  readonly retryAfterMs: number
  constructor (message: string, retryAfterMs: number, options?: { cause?: unknown }) {
    super(message, options)
    this.retryAfterMs = retryAfterMs
  }
}

/** A wait ran past its deadline. */
export class TimeoutError extends BlockfedError {
  override readonly name = 'TimeoutError'
  override readonly status = 504
}

/**
 * True for a peer that could not be reached or did not answer in time: a runtime treats both as
 * "offline" and falls back to what it verified and kept, where any other error stops it.
 */
export const isUnreachable = (err: unknown): boolean => err instanceof UnavailableError || err instanceof TimeoutError

/**
 * The version ledger does not add up: a checkpoint inconsistent with the one this client
 * persisted (a rewritten or forked history), or a version whose entry is not in the log. Carries
 * both checkpoints and the failing proof, so the report is evidence that a third party can check.
 */
export class LedgerSecurityError extends BlockfedError {
  override readonly name = 'LedgerSecurityError'
  override readonly status = 502
  readonly evidence: LedgerEvidence
  constructor (message: string, evidence: LedgerEvidence, options?: { cause?: unknown }) {
    super(message, options)
    this.evidence = evidence
  }
}

export interface LedgerEvidence {
  /** The checkpoint note this client trusted (persisted). */
  trusted?: string
  /** The checkpoint note the log offered. */
  offered: string
  /** The proof that failed, base64 hashes in RFC 9162 order; absent when no proof was offered (no entry, or an entry that names another manifest). */
  proof?: { kind: 'consistency', from: number, to: number, hashes: string[] } | { kind: 'inclusion', index: number, size: number, hashes: string[] }
}
