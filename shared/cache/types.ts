/**
 * CacheTier: one level of the runtime's block cache (DESIGN.md, "Cache"): a byte-bounded map
 * from block CID to bytes. The memory tier (LRU), the Node disk tier (decayed LFU) and the
 * browser IndexedDB tier implement it, and `tieredCache` stacks two of them. All pass the one
 * contract suite in tests/shared/cache/contract.ts.
 *
 * Rules every tier keeps:
 * - `stats().bytes <= capacityBytes` always: a put that would only fit by evicting a pinned entry
 *   is refused with TooLargeError (nothing is stored, nothing is evicted). Refusing keeps the
 *   bound a real bound; the caller still holds the bytes and can use them uncached.
 * - A single entry larger than the capacity is not stored and not thrown: `put` says so (false)
 *   and `rejected` counts it.
 *   (A block bigger than the whole cache is a sizing fact, not an error.)
 * - `get` counts a hit or a miss and is an access for the eviction policy; `has`, and `get` with
 *   `{ peek: true }`, count nothing and change no recency or frequency. Peeks are how a runtime
 *   answers other peers: their requests must not keep blocks it no longer uses in its cache,
 *   push out the ones it does, or inflate its hit rate. `touch` is an access without a read and
 *   without a hit or miss: how a stacked cache tells its lower tier of the reads its upper tier
 *   answered, so that the lower tier does not rank its hottest entries idlest.
 * - Pins are reference counts on a key (present or not yet): the same block CID can be used by
 *   several loaded model versions, and one unpinning must not release the other's pin.
 *   `delete` removes an entry even when pinned (explicit beats policy); the pin stays on the key.
 * - Bytes handed to `put` are copied; bytes returned by `get` belong to the cache: read only.
 * - After `close()` every operation rejects (pin/unpin throw) with UnavailableError; `stats()`
 *   still answers, so counters can be reported after shutdown.
 */

import type { ScoreWeights } from './score.ts'

export interface CacheStats {
  /** `get` calls answered from this tier. */
  hits: number
  /** `get` calls this tier could not answer (including entries found corrupt and dropped). */
  misses: number
  /** Entries held now. */
  entries: number
  /** Bytes held now (values only; never more than `capacityBytes`). */
  bytes: number
  capacityBytes: number
  /** Entries removed by the eviction policy (not by `delete`, not by a corruption drop). */
  evictions: number
  /** `put` calls that stored their value. */
  puts: number
  /** `put` calls not stored because the value alone is larger than `capacityBytes`. */
  rejected: number
  /**
   * The eviction score weights in use now, for tiers that evict by score (score.ts); they move
   * when the tier adapts them (adapt.ts). Absent for the LRU memory tier.
   */
  weights?: ScoreWeights
}

export interface GetOptions {
  /** Read without counting a hit, a miss or an access (see the rules above). */
  peek?: boolean
}

export interface CacheTier {
  readonly name: string
  /** The bytes under `key`, or undefined (a miss). Counts a hit or a miss and an access, unless `peek`. */
  get: (key: string, options?: GetOptions) => Promise<Uint8Array | undefined>
  /**
   * Stores a copy of `bytes` under `key` (replacing any previous value), evicting unpinned
   * entries as the tier's policy chooses, and resolves true. Rejects with TooLargeError when only
   * evicting pinned entries would make room; skips (resolves false, counts in `rejected`, drops
   * any older value) a value larger than the whole capacity.
   */
  put: (key: string, bytes: Uint8Array) => Promise<boolean>
  /** Whether `key` is held. A peek: no counters, no recency or frequency change. */
  has: (key: string) => Promise<boolean>
  /**
   * Whether `key` is held, and if so an access for the eviction policy as a `get` would be —
   * without reading the value or counting a hit or a miss. Cheap: no value is read.
   */
  touch: (key: string) => Promise<boolean>
  /** Removes `key`; true if it was held. Works on pinned keys (the pin count stays). */
  delete: (key: string) => Promise<boolean>
  /** Adds one pin to `key` (held or not yet held): pinned entries are never evicted. */
  pin: (key: string) => void
  /** Removes one pin from `key`; a no-op when it has none. */
  unpin: (key: string) => void
  /** A snapshot of the counters (a fresh object each call). */
  stats: () => CacheStats
  /** Releases the tier's resources (queued writes finish first); later calls reject with UnavailableError. Idempotent. */
  close: () => Promise<void>
}
