import { describe, expect, it } from 'vitest'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import { TooLargeError, InvalidInputError } from '../../../shared/errors/errors.ts'
import { cacheTierContract, testBytes, testKey } from './contract.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

cacheTierContract('memoryCache', async ({ capacityBytes }) => memoryCache({ capacityBytes }))

/**
 * The slow, obviously-correct LRU: an array ordered from least to most recently used, scanned
 * linearly. Same rules as the contract: pinned entries are skipped, a put that only evicting a
 * pinned entry would fit is refused, a value larger than the capacity is not stored.
 */
function referenceLru (capacity: number) {
  let list: Array<{ key: string, size: number, seed: number }> = []
  const pins = new Map<string, number>()
  const stats = { hits: 0, misses: 0, evictions: 0, puts: 0, rejected: 0 }
  const total = (): number => list.reduce((a, e) => a + e.size, 0)
  const pinned = (k: string): boolean => (pins.get(k) ?? 0) > 0
  return {
    stats,
    list: () => list,
    total,
    get (key: string) {
      const i = list.findIndex((e) => e.key === key)
      if (i < 0) { stats.misses++; return undefined }
      const [e] = list.splice(i, 1)
      list.push(e!)
      stats.hits++
      return e
    },
    put (key: string, size: number, seed: number): 'stored' | 'refused' | 'rejected' {
      if (size > capacity) {
        list = list.filter((e) => e.key !== key)
        stats.rejected++
        return 'rejected'
      }
      const pinnedOthers = list.filter((e) => e.key !== key && pinned(e.key)).reduce((a, e) => a + e.size, 0)
      if (pinnedOthers + size > capacity) return 'refused'
      list = list.filter((e) => e.key !== key)
      while (total() + size > capacity) {
        const i = list.findIndex((e) => !pinned(e.key))
        list.splice(i, 1)
        stats.evictions++
      }
      list.push({ key, size, seed })
      stats.puts++
      return 'stored'
    },
    delete (key: string) {
      const had = list.some((e) => e.key === key)
      list = list.filter((e) => e.key !== key)
      return had
    },
    pin (key: string) { pins.set(key, (pins.get(key) ?? 0) + 1) },
    unpin (key: string) {
      const n = pins.get(key) ?? 0
      if (n <= 1) pins.delete(key)
      else pins.set(key, n - 1)
    }
  }
}

describe('memoryCache: LRU order', () => {
  it('evicts the least recently used first (get refreshes, has does not)', async () => {
    const c = memoryCache({ capacityBytes: 300 })
    await c.put(testKey(1), testBytes(100, 1))
    await c.put(testKey(2), testBytes(100, 2))
    await c.put(testKey(3), testBytes(100, 3))
    await c.get(testKey(1))
    await c.has(testKey(2))
    expect(await c.get(testKey(2), { peek: true })).toEqual(testBytes(100, 2)) // another peer's request
    await c.put(testKey(4), testBytes(100, 4))
    expect(await c.has(testKey(2))).toBe(false)
    expect(await c.has(testKey(1))).toBe(true)
    expect(await c.has(testKey(3))).toBe(true)
  })

  it('touch refreshes recency as a get does, without counting a hit', async () => {
    const c = memoryCache({ capacityBytes: 300 })
    for (let i = 1; i <= 3; i++) await c.put(testKey(i), testBytes(100, i))
    expect(await c.touch(testKey(1))).toBe(true)
    await c.put(testKey(4), testBytes(100, 4))
    expect(await c.has(testKey(1))).toBe(true)
    expect(await c.has(testKey(2))).toBe(false)
    expect(c.stats()).toMatchObject({ hits: 0, misses: 0 })
  })

  for (const seed of [1, 2, 3, 42, 2024]) {
    it(`matches an array-based reference on a random sequence (seed ${seed})`, async () => {
      const rand = mulberry32(seed)
      const capacity = 2000
      const c = memoryCache({ capacityBytes: capacity })
      const ref = referenceLru(capacity)
      const keys = 24
      const outcomes = { stored: 0, refused: 0, rejected: 0 }
      for (let step = 0; step < 4000; step++) {
        const key = testKey(Math.floor(rand() * keys))
        const r = rand()
        if (r < 0.45) {
          const want = ref.get(key)
          const got = await c.get(key)
          if (want === undefined) expect(got).toBeUndefined()
          else expect(got).toEqual(testBytes(want.size, want.seed))
        } else if (r < 0.85) {
          // Mostly small values, sometimes one larger than the whole cache.
          const size = rand() < 0.02 ? capacity + 1 : Math.floor(rand() * 400)
          const outcome = ref.put(key, size, step)
          outcomes[outcome]++
          if (outcome === 'refused') {
            await expect(c.put(key, testBytes(size, step))).rejects.toBeInstanceOf(TooLargeError)
          } else {
            await c.put(key, testBytes(size, step))
          }
        } else if (r < 0.9) {
          expect(await c.delete(key)).toBe(ref.delete(key))
        } else if (r < 0.95) {
          ref.pin(key)
          c.pin(key)
        } else {
          ref.unpin(key)
          c.unpin(key)
        }
        const s = c.stats()
        expect(s).toEqual({ ...ref.stats, entries: ref.list().length, bytes: ref.total(), capacityBytes: capacity })
      }
      // The sequence exercised every path, not just the easy one.
      expect(outcomes.refused).toBeGreaterThan(0)
      expect(outcomes.rejected).toBeGreaterThan(0)
      expect(ref.stats.evictions).toBeGreaterThan(100)
      // Same contents at the end; recency order is checked through has() not disturbing it.
      for (let k = 0; k < keys; k++) {
        expect(await c.has(testKey(k))).toBe(ref.list().some((e) => e.key === testKey(k)))
      }
    })
  }
})

describe('memoryCache: options', () => {
  it('checks capacityBytes and names it', () => {
    expect(() => memoryCache({ capacityBytes: -1 })).toThrow(InvalidInputError)
    expect(() => memoryCache({ capacityBytes: 1.5 })).toThrow(/capacityBytes/)
  })

  it('with capacity 0 stores nothing and throws nothing', async () => {
    const c = memoryCache({ capacityBytes: 0 })
    await c.put(testKey(1), testBytes(1, 1))
    expect(c.stats()).toMatchObject({ entries: 0, rejected: 1 })
  })
})
