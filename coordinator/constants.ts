/** Coordinator defaults. Every one can be overridden through `createCoordinator`'s options. */
export const DEFAULT_PORT = 7070
export const DEFAULT_HOST = '127.0.0.1'
/** Largest accepted upload (all files of one model together). */
export const DEFAULT_MAX_UPLOAD_BYTES = 512 << 20
export const MAX_UPLOAD_FILES = 256
export const DEFAULT_ERASURE = { k: 4, m: 2 }
export const DEFAULT_ACCESS_LEVEL = 'default'
/** The coordinator's database file in its data dir. */
export const COORDINATOR_DATABASE = 'coordinator.sqlite'
/**
 * Longest path parameter the router passes on (find-my-way's default is 100). Above every
 * parameter's own schema bound (CIDs 200), so an overlong one gets a 400 naming it; only far
 * longer ones get the router's bare 414.
 */
export const MAX_PATH_PARAM_CHARS = 1024

/**
 * Roles and what they grant (DESIGN.md, "Keys and access"): `access` lists the block access
 * levels whose data keys the role receives (`*` = all); `rounds` may start training rounds,
 * `train` may take part in them.
 */
export const ROLES: Record<string, { ingest: boolean, tokens: boolean, rounds: boolean, train: boolean, access: string[] }> = {
  admin: { ingest: true, tokens: true, rounds: true, train: false, access: ['*'] },
  publisher: { ingest: true, tokens: false, rounds: true, train: false, access: ['*'] },
  edge: { ingest: false, tokens: false, rounds: false, train: true, access: [DEFAULT_ACCESS_LEVEL] }
}

/** Round protocol: largest WebSocket frame, ping interval (silent clients are cut after two), hello deadline. */
export const ROUND_MAX_FRAME_BYTES = 256 << 20
export const ROUND_PING_MS = 10_000
export const ROUND_HANDSHAKE_MS = 10_000

/**
 * Bytes of block and shard answers under way at once, HTTP and libp2p together: each holds its
 * body in memory until sent, so a wave of requests beyond this is answered "busy, retry".
 */
export const DEFAULT_MAX_SERVING_BYTES = 256 << 20
/** Deadline of one libp2p answer, pacing included; an upload cap admits what it can send in half of it. */
export const SERVE_TIMEOUT_MS = 120_000
/** Retry hint of a "busy" answer: libp2p `retryMs`, HTTP `Retry-After` (rounded up to seconds). */
export const BUSY_RETRY_MS = 500
/** Witnesses that have not cosigned the latest checkpoint are asked again this often. */
export const WITNESS_RETRY_MS = 30_000
/** How often API tokens' last uses are written (coordinator/store/repository.ts, noteTokenUse). */
export const TOKEN_USE_FLUSH_MS = 60_000
/** How long a publish waits for the witnesses' cosignatures before it returns (they go on in the background). */
export const WITNESS_GRACE_MS = 2_000
/** Longest a stopping coordinator waits for the versions already being stored before it closes its database. */
export const INGEST_DRAIN_MS = 60_000
