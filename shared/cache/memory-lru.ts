/**
 * Memory tier: least-recently-used eviction bounded by total bytes, O(1) per operation. A Map
 * keeps insertion order, so deleting and re-inserting a key on access makes the Map's first key
 * the least recently used one (the classic Map-as-linked-list LRU).
 */
import { TooLargeError, UnavailableError } from '../errors/errors.ts'
import { checkBytes, checkCapacity, checkKey } from './_checks.ts'
import { DEFAULT_MEMORY_CAPACITY_BYTES } from './constants.ts'
import { pinCounter } from './_pins.ts'
import type { CacheStats, CacheTier } from './types.ts'

export interface MemoryCacheOptions {
  /** Bound on the total bytes of the values held; 0 disables the tier (every put is rejected). */
  capacityBytes?: number
  /** Shown in errors and by `tieredCache`. Default "memory". */
  name?: string
}

/**
 * A byte-bounded LRU cache tier held in memory.
 *
 * @example
 * const cache = memoryCache({ capacityBytes: 64 * 1024 * 1024 })
 * await cache.put(cid, bytes)
 * const hit = await cache.get(cid) // Uint8Array | undefined
 */
export function memoryCache (options: MemoryCacheOptions = {}): CacheTier {
  const capacityBytes = options.capacityBytes ?? DEFAULT_MEMORY_CAPACITY_BYTES
  checkCapacity('memoryCache', capacityBytes)
  const name = options.name ?? 'memory'

  // Oldest first: the first key not pinned is the LRU victim.
  const entries = new Map<string, Uint8Array>()
  const pins = pinCounter()
  let bytes = 0
  // Bytes of held entries that are pinned, kept up to date so that "can this put fit without
  // touching a pinned entry?" is answered without a scan.
  let pinnedBytes = 0
  let closed = false
  const counters = { hits: 0, misses: 0, evictions: 0, puts: 0, rejected: 0 }

  function assertOpen (): void {
    if (closed) throw new UnavailableError(`cache tier "${name}" is closed`)
  }

  function remove (key: string, value: Uint8Array): void {
    entries.delete(key)
    bytes -= value.byteLength
    if (pins.isPinned(key)) pinnedBytes -= value.byteLength
  }

  return {
    name,

    async get (key, options) {
      assertOpen()
      checkKey(name, key)
      const value = entries.get(key)
      if (options?.peek === true) return value
      if (value === undefined) {
        counters.misses++
        return undefined
      }
      entries.delete(key)
      entries.set(key, value)
      counters.hits++
      return value
    },

    async put (key, value) {
      assertOpen()
      checkKey(name, key)
      checkBytes(name, value)
      const size = value.byteLength
      const old = entries.get(key)
      if (size > capacityBytes) {
        // Not storable at all; drop any older value so `get` never answers with bytes other
        // than those of the last put.
        if (old !== undefined) remove(key, old)
        counters.rejected++
        return false
      }
      const pinnedElsewhere = pinnedBytes - (old !== undefined && pins.isPinned(key) ? old.byteLength : 0)
      if (pinnedElsewhere + size > capacityBytes) {
        throw new TooLargeError(`cache tier "${name}": no room for ${key} (${size} bytes): ` +
          `${pinnedElsewhere} of ${capacityBytes} bytes are held by pinned entries`)
      }
      if (old !== undefined) remove(key, old)
      // One pass over the Map from the oldest end: pinned keys are stepped over, not revisited.
      if (bytes + size > capacityBytes) {
        for (const [victim, victimValue] of entries) {
          if (pins.isPinned(victim)) continue
          remove(victim, victimValue)
          counters.evictions++
          if (bytes + size <= capacityBytes) break
        }
      }
      // A copy: the caller's array may be a view into a larger buffer (which would then be held
      // and miscounted) or may be reused by the caller.
      entries.set(key, new Uint8Array(value))
      bytes += size
      if (pins.isPinned(key)) pinnedBytes += size
      counters.puts++
      return true
    },

    async has (key) {
      assertOpen()
      checkKey(name, key)
      return entries.has(key)
    },

    async touch (key) {
      assertOpen()
      checkKey(name, key)
      const value = entries.get(key)
      if (value === undefined) return false
      entries.delete(key)
      entries.set(key, value)
      return true
    },

    async delete (key) {
      assertOpen()
      checkKey(name, key)
      const value = entries.get(key)
      if (value === undefined) return false
      remove(key, value)
      return true
    },

    pin (key) {
      assertOpen()
      checkKey(name, key)
      const value = entries.get(key)
      if (pins.pin(key) && value !== undefined) pinnedBytes += value.byteLength
    },

    unpin (key) {
      assertOpen()
      checkKey(name, key)
      const value = entries.get(key)
      if (pins.unpin(key) && value !== undefined) pinnedBytes -= value.byteLength
    },

    stats (): CacheStats {
      return { ...counters, entries: entries.size, bytes, capacityBytes }
    },

    async close () {
      closed = true
      entries.clear()
      pins.clear()
      bytes = 0
      pinnedBytes = 0
    }
  }
}
