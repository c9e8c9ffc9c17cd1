/** Defaults and bounds of the AoE model config (shared/config/aoe.ts). */
import { DEFAULT_DISK_CAPACITY_BYTES, DEFAULT_HALF_LIFE_MS, DEFAULT_MEMORY_CAPACITY_BYTES } from '../cache/constants.ts'

/** `cache` when a config leaves it (or a key of it) out: the cache tiers' own defaults. */
export const DEFAULT_CACHE_CONFIG = Object.freeze({
  memoryBytes: DEFAULT_MEMORY_CAPACITY_BYTES,
  diskBytes: DEFAULT_DISK_CAPACITY_BYTES,
  halfLifeHours: DEFAULT_HALF_LIFE_MS / 3_600_000,
  /** The disk tier adapts its frequency/recency weights (shared/cache/adapt.ts). */
  adapt: true
})

/** `fetch` when a config leaves it (or a key of it) out. */
export const DEFAULT_FETCH_CONFIG = Object.freeze({
  /** Blocks/shards fetched at once. */
  concurrency: 8,
  /** Per-request deadline. */
  timeoutMs: 30_000,
  /** Further attempts after a failed fetch (each from another provider when there is one). */
  retries: 2
})

export const FETCH_CONCURRENCY_MAX = 64
export const FETCH_RETRIES_MAX = 5
/** Ten minutes: a per-request deadline beyond that is a typo, and nothing may wait forever. */
export const FETCH_TIMEOUT_MAX_MS = 600_000

/** A config file larger than this is not a config file (someone pointed at a model). */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024

/** Longest `cache.halfLifeHours` (about 114 years): beyond it, in milliseconds, the decay maths overflows to Infinity. */
export const HALF_LIFE_HOURS_MAX = 1_000_000

/**
 * What the Node runtime keeps directly in its data dir (keys/ for the client identity, trust/
 * for pinned coordinator keys, ledger/ for trusted checkpoints, p2p/ for the swarm node, the
 * access history): no model's `modelDir` may start with one of them.
 */
export const RUNTIME_STATE_NAMES = Object.freeze(['keys', 'trust', 'ledger', 'p2p', 'access-history.json'] as const)
