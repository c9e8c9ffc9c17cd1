/**
 * Two cache tiers stacked (DESIGN.md, "Cache"): a small fast tier (memory LRU) in front of a
 * large durable one (Node disk files or browser IndexedDB, decayed-LFU). Reads fall through and
 * promote; writes go to both, the durable tier first, so a value the durable tier refuses is
 * not left only in memory. The durable tier is the authority for what the cache holds: the
 * memory tier is a copy of its hot part (a copy the durable tier has evicted is dropped when
 * next read), and pins, which keep the way back across restarts, go to the durable tier only.
 */
import { TooLargeError, UnavailableError } from '../errors/errors.ts'
import type { CacheStats, CacheTier } from './types.ts'

export interface TieredCacheOptions {
  memory: CacheTier
  disk: CacheTier
  /** Default "tiered". */
  name?: string
}

export interface TieredCache extends CacheTier {
  readonly memory: CacheTier
  readonly disk: CacheTier
  /** Each tier's own counters (the memory tier's hits are the fast path's hits). */
  tierStats: () => { memory: CacheStats, disk: CacheStats }
}

/**
 * Stacks `memory` over `disk`. The tiered cache owns both: `close()` closes them.
 *
 * `stats()`: hits and misses are this cache's own (a hit in either tier is a hit); `puts` and
 * `rejected` count puts the disk tier stored or rejected; entries, bytes, capacity and evictions
 * are the disk tier's. A memory hit is not seen by the disk tier, so its frequency counts only
 * the accesses that reached it (as an L2 cache sees only L1 misses).
 *
 * @example
 * const cache = tieredCache({ memory: memoryCache({ capacityBytes: 64 << 20 }), disk: await diskCache({ dir, capacityBytes: 1 << 30 }) })
 */
export function tieredCache (options: TieredCacheOptions): TieredCache {
  const { memory, disk } = options
  const name = options.name ?? 'tiered'
  let closed = false
  const counters = { hits: 0, misses: 0 }

  function assertOpen (): void {
    if (closed) throw new UnavailableError(`cache tier "${name}" is closed`)
  }

  /** Memory is best effort: a memory tier full of pinned entries must not fail the operation. */
  async function putInMemory (key: string, bytes: Uint8Array): Promise<void> {
    try {
      await memory.put(key, bytes)
    } catch (err) {
      if (!(err instanceof TooLargeError)) throw err
      // Refused: make sure an older value under the key is not served instead.
      await memory.delete(key)
    }
  }

  return {
    name,
    memory,
    disk,

    async get (key, options) {
      assertOpen()
      // A peek answers from memory, else from the durable tier, and promotes nothing.
      if (options?.peek === true) return await memory.get(key, options) ?? await disk.get(key, options)
      const fast = await memory.get(key)
      if (fast !== undefined) {
        // The durable tier evicts by its own score and does not tell memory: a copy it no longer
        // holds goes, so that memory stays a subset of it (one index lookup per memory hit).
        if (await disk.has(key)) {
          counters.hits++
          return fast
        }
        await memory.delete(key)
      }
      const slow = await disk.get(key)
      if (slow === undefined) {
        counters.misses++
        return undefined
      }
      await putInMemory(key, slow)
      counters.hits++
      return slow
    },

    async put (key, bytes) {
      assertOpen()
      await disk.put(key, bytes)
      await putInMemory(key, bytes)
    },

    async has (key) {
      assertOpen()
      return await disk.has(key)
    },

    async delete (key) {
      assertOpen()
      const [inMemory, onDisk] = await Promise.all([memory.delete(key), disk.delete(key)])
      return inMemory || onDisk
    },

    // Pins go to the durable tier only: they keep the way back across restarts, which memory
    // cannot. Pinned in memory too, a rollback target would hold memory the serving version's
    // blocks need, and memory would then refuse them (found by review).
    pin (key) {
      assertOpen()
      disk.pin(key)
    },

    unpin (key) {
      assertOpen()
      disk.unpin(key)
    },

    stats () {
      const d = disk.stats()
      return {
        hits: counters.hits,
        misses: counters.misses,
        entries: d.entries,
        bytes: d.bytes,
        capacityBytes: d.capacityBytes,
        evictions: d.evictions,
        puts: d.puts,
        rejected: d.rejected
      }
    },

    tierStats: () => ({ memory: memory.stats(), disk: disk.stats() }),

    async close () {
      if (closed) return
      closed = true
      await Promise.all([memory.close(), disk.close()])
    }
  }
}
