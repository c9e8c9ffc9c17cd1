import { describe, expect, it } from 'vitest'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import { tieredCache } from '../../../shared/cache/tiered.ts'
import type { CacheTier } from '../../../shared/cache/types.ts'
import { TooLargeError, UnavailableError } from '../../../shared/errors/errors.ts'
import { cacheTierContract, testBytes, testKey } from './contract.ts'

// Two memory tiers stand in for memory + disk here; tests/node-runtime/cache runs the contract
// on memory over the real disk tier.
cacheTierContract('tieredCache (memory over memory)', async ({ capacityBytes }) => tieredCache({
  memory: memoryCache({ capacityBytes, name: 'fast' }),
  disk: memoryCache({ capacityBytes, name: 'slow' })
}), { statsCoverEveryKey: false })

describe('tieredCache', () => {
  function make (fastBytes = 300, slowBytes = 1000) {
    const memory = memoryCache({ capacityBytes: fastBytes })
    const disk = memoryCache({ capacityBytes: slowBytes })
    return { memory, disk, cache: tieredCache({ memory, disk }) }
  }

  it('answers from memory, else from disk and promotes, else misses', async () => {
    const { memory, disk, cache } = make()
    await disk.put(testKey(1), testBytes(100, 1))
    expect(await memory.has(testKey(1))).toBe(false)
    expect(await cache.get(testKey(1))).toEqual(testBytes(100, 1)) // disk hit, promoted
    expect(await memory.has(testKey(1))).toBe(true)
    expect(await cache.get(testKey(1))).toEqual(testBytes(100, 1)) // memory hit
    expect(await cache.get(testKey(2))).toBeUndefined()
    expect(cache.stats()).toMatchObject({ hits: 2, misses: 1 })
    const t = cache.tierStats()
    expect(t.memory).toMatchObject({ hits: 1, misses: 2, puts: 1 })
    expect(t.disk).toMatchObject({ hits: 1, misses: 1, puts: 1 })
  })

  it('puts into both tiers; the disk tier holds what memory has evicted', async () => {
    const { memory, disk, cache } = make(250, 1000)
    for (let i = 0; i < 5; i++) await cache.put(testKey(i), testBytes(100, i))
    expect(memory.stats().entries).toBe(2)
    expect(disk.stats().entries).toBe(5)
    expect(cache.stats()).toMatchObject({ entries: 5, bytes: 500, puts: 5, capacityBytes: 1000 })
    expect(await cache.get(testKey(0))).toEqual(testBytes(100, 0))
  })

  it('stores on disk what is too large for memory', async () => {
    const { memory, cache } = make(100, 1000)
    await cache.put(testKey(1), testBytes(500, 1))
    expect(await cache.get(testKey(1))).toEqual(testBytes(500, 1))
    expect(memory.stats()).toMatchObject({ entries: 0, rejected: 2 })
  })

  it('pins the durable tier only: memory keeps the blocks in use, not a pinned rollback target', async () => {
    const { memory, disk, cache } = make(300, 1000)
    await cache.put(testKey(1), testBytes(250, 1))
    cache.pin(testKey(1)) // e.g. the rollback target after an upgrade
    await cache.put(testKey(2), testBytes(200, 2))
    expect(await memory.has(testKey(2))).toBe(true)
    expect(await memory.has(testKey(1))).toBe(false)
    expect(await disk.has(testKey(1))).toBe(true)
    // ...and the disk tier holds it against eviction.
    await expect(cache.put(testKey(3), testBytes(800, 3))).rejects.toBeInstanceOf(TooLargeError)
  })

  it('keeps memory a subset of the durable tier: a copy the disk tier evicted is not served', async () => {
    const { memory, cache } = make(1000, 500)
    await cache.put(testKey(1), testBytes(300, 1))
    await cache.put(testKey(2), testBytes(300, 2)) // the disk tier evicts key 1; memory still holds it
    expect(await memory.has(testKey(1))).toBe(true)
    expect(await cache.has(testKey(1))).toBe(false)
    // A peek (another peer's request) is not answered from that copy either.
    expect(await cache.get(testKey(1), { peek: true })).toBeUndefined()
    expect(await cache.get(testKey(1))).toBeUndefined()
    expect(await memory.has(testKey(1))).toBe(false)
    expect(cache.stats()).toMatchObject({ entries: 1, hits: 0, misses: 1 })
  })

  it('tells the durable tier of memory hits, so it does not evict the hottest block', async () => {
    // The "disk" here is an LRU: one that saw only memory's misses would evict the hot block
    // after four others, and memory would then have to drop it too.
    const { memory, disk, cache } = make(300, 500)
    await cache.put(testKey(99), testBytes(100, 99))
    const missed: number[] = []
    for (let i = 0; i < 20; i++) {
      if (await cache.get(testKey(99)) === undefined) missed.push(i)
      await cache.put(testKey(i), testBytes(100, i)) // blocks used once
      await cache.get(testKey(i))
    }
    expect(missed).toEqual([])
    expect(disk.stats()).toMatchObject({ hits: 0, misses: 0 }) // touches are accesses, not gets
    expect(memory.stats()).toMatchObject({ hits: 40, misses: 0 })
  })

  it('does not put back in memory a block deleted while its disk read was in flight', async () => {
    const memory = memoryCache({ capacityBytes: 1000 })
    const slow = memoryCache({ capacityBytes: 1000 })
    let release = (): void => {}
    const gate = new Promise<void>((resolve) => { release = resolve })
    let readDone = (): void => {}
    const read = new Promise<void>((resolve) => { readDone = resolve })
    // A durable tier whose reads finish when the test says (a disk read outlasting a delete).
    const disk: CacheTier = {
      ...slow,
      async get (key, options) {
        const value = await slow.get(key, options)
        if (options?.peek !== true) {
          readDone()
          await gate
        }
        return value
      }
    }
    const cache = tieredCache({ memory, disk })
    await slow.put(testKey(1), testBytes(100, 1)) // on disk only, as after a restart
    const reading = cache.get(testKey(1))
    await read
    expect(await cache.delete(testKey(1))).toBe(true)
    release()
    expect(await reading).toEqual(testBytes(100, 1)) // a read concurrent with the delete
    expect(await memory.has(testKey(1))).toBe(false)
    expect(await cache.get(testKey(1), { peek: true })).toBeUndefined()
    expect(await cache.get(testKey(1))).toBeUndefined()
  })

  it('does not fail a put when memory is full of pinned entries', async () => {
    const { memory, cache } = make(300, 1000)
    await cache.put(testKey(1), testBytes(250, 1))
    memory.pin(testKey(1))
    await cache.put(testKey(2), testBytes(200, 2))
    expect(await memory.has(testKey(2))).toBe(false)
    expect(await cache.get(testKey(2))).toEqual(testBytes(200, 2))
    expect(await memory.has(testKey(1))).toBe(true)
  })

  it('does not keep in memory a block the disk tier skips as larger than itself (review 46b)', async () => {
    // Memory larger than disk: the copy would fit there, but memory is a subset of the disk tier.
    const { memory, cache } = make(1000, 300)
    await cache.put(testKey(1), testBytes(200, 1))
    expect(await cache.put(testKey(2), testBytes(400, 2))).toBe(false)
    expect(await memory.has(testKey(2))).toBe(false)
    // ...and it did not push out the copy memory had of a block the disk tier holds.
    expect(memory.stats()).toMatchObject({ entries: 1, evictions: 0 })
    // An older value under the key goes from both tiers: get must not answer the old bytes.
    await cache.put(testKey(3), testBytes(100, 3))
    expect(await cache.put(testKey(3), testBytes(400, 4))).toBe(false)
    expect(await memory.has(testKey(3))).toBe(false)
    expect(await cache.get(testKey(3))).toBeUndefined()
  })

  it('takes a durable tier whose put resolves nothing (written before put said whether it stored) as storing', async () => {
    const disk = memoryCache({ capacityBytes: 1000 })
    const legacy: CacheTier = { ...disk, put: async (key, bytes) => { await disk.put(key, bytes); return undefined as unknown as boolean } }
    const memory = memoryCache({ capacityBytes: 1000 })
    const cache = tieredCache({ memory, disk: legacy })
    expect(await cache.put(testKey(1), testBytes(100, 1))).toBe(true)
    expect(await memory.has(testKey(1))).toBe(true)
  })

  it('propagates the disk tier refusing a put, and leaves memory untouched', async () => {
    const { memory, cache } = make(1000, 300)
    await cache.put(testKey(1), testBytes(250, 1))
    cache.pin(testKey(1))
    await expect(cache.put(testKey(2), testBytes(200, 2))).rejects.toBeInstanceOf(TooLargeError)
    expect(await memory.has(testKey(2))).toBe(false)
  })

  it('deletes from both tiers and closes both', async () => {
    const { memory, disk, cache } = make()
    await cache.put(testKey(1), testBytes(10, 1))
    expect(await cache.delete(testKey(1))).toBe(true)
    expect(await memory.has(testKey(1))).toBe(false)
    expect(await disk.has(testKey(1))).toBe(false)
    await cache.close()
    await expect(memory.get(testKey(1))).rejects.toBeInstanceOf(UnavailableError)
    await expect(disk.get(testKey(1))).rejects.toBeInstanceOf(UnavailableError)
  })
})
