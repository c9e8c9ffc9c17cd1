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
 * are the disk tier's. A memory hit reaches the disk tier as a `touch` (an access without a read
 * or a hit): with only the reads memory missed, the disk tier saw the hottest block once and
 * ranked it idlest, evicted it, and memory then had to drop it too (found by review). Each get
 * counts once across the tiers: a hit in memory, else a memory miss and a hit or miss on disk
 * (metrics.ts relies on it); a memory copy the disk tier no longer holds is a memory miss.
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
      // Closed while the disk tier finished this put: the block is stored, memory is gone anyway.
      if (closed && err instanceof UnavailableError) return
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
      if (options?.peek === true) {
        // Peeks answer other peers: a memory copy counts only while the durable tier holds the
        // block (confirmed after reading it, so a delete meanwhile is not answered), and nothing
        // is promoted.
        const copy = await memory.get(key, options)
        if (copy !== undefined && await disk.has(key)) return copy
        return await disk.get(key, options)
      }
      // The durable tier evicts by its own score and does not tell memory: a copy it no longer
      // holds goes, so memory stays a subset of it. The touch also counts the read there.
      if (await memory.get(key, { peek: true }) !== undefined && !(await disk.touch(key))) await memory.delete(key)
      // Counted by memory only now, so a copy just dropped is a memory miss, not a memory hit
      // followed by a disk miss (one get, one hit or miss on the hit-ratio's terms).
      const fast = await memory.get(key)
      if (fast !== undefined) {
        counters.hits++
        return fast
      }
      const slow = await disk.get(key)
      if (slow === undefined) {
        counters.misses++
        return undefined
      }
      await putInMemory(key, slow)
      // A delete may have run while the disk read was in flight; `delete` clears memory only
      // after the disk tier, so either it removes this copy or this check sees the block gone.
      if (!closed && !(await disk.has(key))) await memory.delete(key)
      counters.hits++
      return slow
    },

    async put (key, bytes) {
      assertOpen()
      // A block the durable tier skips (larger than it) is not held: a memory copy would never
      // be served (memory is a subset of the disk tier) and would push out copies that are.
      // `=== false`: a tier written before put said whether it stored resolves undefined.
      if ((await disk.put(key, bytes)) === false) {
        await memory.delete(key)
        return false
      }
      await putInMemory(key, bytes)
      return true
    },

    async has (key) {
      assertOpen()
      return await disk.has(key)
    },

    async touch (key) {
      assertOpen()
      const held = await disk.touch(key)
      if (held) await memory.touch(key)
      return held
    },

    async delete (key) {
      assertOpen()
      // Disk first: a get promoting the block meanwhile re-checks the disk tier after promoting,
      // so a copy it put back in memory is removed either here or there (found by review).
      const onDisk = await disk.delete(key)
      const inMemory = await memory.delete(key)
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
