/** Witness defaults (c2sp.org/tlog-witness); createWitness options override host and port. */

/** A request is an old-size line, ≤ 63 hashes and a checkpoint with a few signatures: a few KiB. */
export const WITNESS_BODY_LIMIT = 64 << 10
/** tlog-witness: "The client MUST NOT send more than 63 consistency proof lines." */
export const MAX_PROOF_LINES = 63
export const DEFAULT_WITNESS_HOST = '127.0.0.1'
/** 0 = any free port; the CLI passes a fixed one. */
export const DEFAULT_WITNESS_PORT = 0
/** Deadline on every inbound request and idle connection. */
export const WITNESS_REQUEST_TIMEOUT_MS = 10_000
/** Deadline of the client's add-checkpoint call when the caller's signal sets none. */
export const ADD_CHECKPOINT_TIMEOUT_MS = 10_000
/** Files under the witness's data dir. */
export const WITNESS_KEY_FILE = 'witness.ed25519'
export const WITNESS_DB_FILE = 'witness.sqlite'
