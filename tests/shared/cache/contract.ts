/**
 * The CacheTier contract (shared/cache/types.ts), run against every tier: memoryCache,
 * diskCache, tieredCache. Only what every tier promises is asserted here — which entries an
 * eviction picks is each policy's own business and is tested against a reference per tier.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { InvalidInputError, TooLargeError, UnavailableError } from '../../../shared/errors/errors.ts'
import type { CacheStats, CacheTier } from '../../../shared/cache/types.ts'

export type TierFactory = (options: { capacityBytes: number }) => Promise<CacheTier>

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'

/** A CID-shaped key (base32-lower, as CIDv1 prints), distinct per `i`, valid for every tier. */
export function testKey (i: number): string {
  let s = ''
  let n = i
  do {
    s = BASE32[n % 32]! + s
    n = Math.floor(n / 32)
  } while (n > 0)
  return `bafkreig${s.padStart(8, 'a')}`
}

/** `size` bytes whose content depends on `seed`, so a wrong value is told from the right one. */
export function testBytes (size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size)
  for (let i = 0; i < size; i++) out[i] = (seed * 31 + i * 7) & 0xff
  return out
}

export interface ContractOptions {
  /**
   * Whether `stats().entries/bytes` count every key `has()` sees. True for a single tier; false
   * for tieredCache, whose stats are the disk tier's while the memory tier may still hold a
   * block the disk tier has evicted.
   */
  statsCoverEveryKey?: boolean
}

export function cacheTierContract (label: string, factory: TierFactory, options: ContractOptions = {}): void {
  const statsCoverEveryKey = options.statsCoverEveryKey ?? true
  describe(`CacheTier contract: ${label}`, () => {
    const open: CacheTier[] = []
    async function make (capacityBytes = 1000): Promise<CacheTier> {
      const tier = await factory({ capacityBytes })
      open.push(tier)
      return tier
    }
    afterEach(async () => {
      await Promise.all(open.splice(0).map(async (t) => await t.close()))
    })

    /** The counters every tier keeps (`weights` is optional: only tiers that evict by score have it). */
    function counters (s: CacheStats): Omit<CacheStats, 'capacityBytes' | 'weights'> {
      const { capacityBytes: _, weights: __, ...rest } = s
      return rest
    }

    it('starts empty and counts a miss', async () => {
      const c = await make()
      expect(await c.get(testKey(1))).toBeUndefined()
      const { weights, ...rest } = c.stats()
      expect(rest).toEqual({ hits: 0, misses: 1, entries: 0, bytes: 0, capacityBytes: 1000, evictions: 0, puts: 0, rejected: 0 })
      if (weights !== undefined) {
        expect(Object.keys(weights).sort()).toEqual(['frequency', 'recency', 'size'])
        for (const w of Object.values(weights)) expect(Number.isFinite(w) && w >= 0).toBe(true)
      }
    })

    it('returns what was put, with exact counters', async () => {
      const c = await make()
      await c.put(testKey(1), testBytes(100, 1))
      await c.put(testKey(2), testBytes(50, 2))
      expect(await c.get(testKey(1))).toEqual(testBytes(100, 1))
      expect(await c.get(testKey(2))).toEqual(testBytes(50, 2))
      expect(await c.get(testKey(1))).toEqual(testBytes(100, 1))
      expect(await c.get(testKey(3))).toBeUndefined()
      expect(counters(c.stats())).toEqual({ hits: 3, misses: 1, entries: 2, bytes: 150, evictions: 0, puts: 2, rejected: 0 })
    })

    it('copies on put: the caller may reuse its buffer, and a view counts only its own bytes', async () => {
      const c = await make()
      const buf = testBytes(64, 3)
      await c.put(testKey(1), buf)
      buf.fill(0)
      expect(await c.get(testKey(1))).toEqual(testBytes(64, 3))
      const big = testBytes(800, 4)
      await c.put(testKey(2), big.subarray(100, 110))
      expect(await c.get(testKey(2))).toEqual(big.slice(100, 110))
      expect(c.stats().bytes).toBe(74)
    })

    it('stores an empty value', async () => {
      const c = await make()
      await c.put(testKey(1), new Uint8Array(0))
      expect(await c.has(testKey(1))).toBe(true)
      expect(await c.get(testKey(1))).toEqual(new Uint8Array(0))
      expect(c.stats()).toMatchObject({ entries: 1, bytes: 0, hits: 1 })
    })

    it('has() is a peek: it changes no counter', async () => {
      const c = await make()
      await c.put(testKey(1), testBytes(10, 1))
      const before = c.stats()
      expect(await c.has(testKey(1))).toBe(true)
      expect(await c.has(testKey(2))).toBe(false)
      expect(c.stats()).toEqual(before)
    })

    it('get({ peek: true }) reads the bytes and changes no counter (answers to other peers)', async () => {
      const c = await make()
      await c.put(testKey(1), testBytes(10, 1))
      const before = c.stats()
      expect(await c.get(testKey(1), { peek: true })).toEqual(testBytes(10, 1))
      expect(await c.get(testKey(2), { peek: true })).toBeUndefined()
      expect(c.stats()).toEqual(before)
    })

    it('touch() tells whether the key is held, reads nothing and counts no hit or miss', async () => {
      const c = await make()
      await c.put(testKey(1), testBytes(10, 1))
      const before = c.stats()
      expect(await c.touch(testKey(1))).toBe(true)
      expect(await c.touch(testKey(2))).toBe(false)
      expect(c.stats()).toEqual(before)
      expect(await c.get(testKey(1))).toEqual(testBytes(10, 1))
    })

    it('replaces the value of a key', async () => {
      const c = await make()
      await c.put(testKey(1), testBytes(100, 1))
      await c.put(testKey(1), testBytes(30, 9))
      expect(await c.get(testKey(1))).toEqual(testBytes(30, 9))
      expect(c.stats()).toMatchObject({ entries: 1, bytes: 30, puts: 2, evictions: 0 })
    })

    it('deletes', async () => {
      const c = await make()
      await c.put(testKey(1), testBytes(100, 1))
      expect(await c.delete(testKey(1))).toBe(true)
      expect(await c.delete(testKey(1))).toBe(false)
      expect(await c.has(testKey(1))).toBe(false)
      expect(await c.get(testKey(1))).toBeUndefined()
      expect(c.stats()).toMatchObject({ entries: 0, bytes: 0, evictions: 0, misses: 1 })
    })

    it('never holds more than its capacity, and counts every eviction', async () => {
      const c = await make(1000)
      for (let i = 0; i < 40; i++) {
        await c.put(testKey(i), testBytes(90 + (i % 5) * 20, i))
        const s = c.stats()
        expect(s.bytes).toBeLessThanOrEqual(1000)
        expect(s.evictions).toBe(i + 1 - s.entries)
      }
      let held = 0
      let bytes = 0
      for (let i = 0; i < 40; i++) {
        if (await c.has(testKey(i))) {
          held++
          bytes += 90 + (i % 5) * 20
          expect(await c.get(testKey(i))).toEqual(testBytes(90 + (i % 5) * 20, i))
        }
      }
      expect(c.stats().puts).toBe(40)
      if (statsCoverEveryKey) expect(c.stats()).toMatchObject({ entries: held, bytes })
      else expect(held).toBeGreaterThanOrEqual(c.stats().entries)
      // The most recent put always survives: it is stored after its room is made.
      expect(await c.has(testKey(39))).toBe(true)
    })

    it('stores a value of exactly its capacity, evicting everything else', async () => {
      const c = await make(1000)
      await c.put(testKey(1), testBytes(400, 1))
      await c.put(testKey(2), testBytes(400, 2))
      await c.put(testKey(3), testBytes(1000, 3))
      expect(c.stats()).toMatchObject({ entries: 1, bytes: 1000, evictions: 2 })
      expect(await c.get(testKey(3))).toEqual(testBytes(1000, 3))
    })

    it('does not store (and does not throw on) a value larger than its capacity', async () => {
      const c = await make(1000)
      expect(await c.put(testKey(1), testBytes(10, 1))).toBe(true)
      // Said to the caller, who then knows the block is not held (the loader counts it uncached).
      expect(await c.put(testKey(2), testBytes(1001, 2))).toBe(false)
      expect(await c.has(testKey(2))).toBe(false)
      expect(c.stats()).toMatchObject({ entries: 1, bytes: 10, puts: 1, rejected: 1, evictions: 0 })
      // An oversized put over an existing key drops the old value rather than keep stale bytes.
      await c.put(testKey(1), testBytes(5000, 3))
      expect(await c.has(testKey(1))).toBe(false)
      expect(c.stats()).toMatchObject({ entries: 0, bytes: 0, rejected: 2 })
    })

    it('never evicts a pinned entry (pinned before or after it is stored)', async () => {
      const c = await make(1000)
      c.pin(testKey(0))
      await c.put(testKey(0), testBytes(300, 0))
      await c.put(testKey(1), testBytes(300, 1))
      c.pin(testKey(1))
      for (let i = 2; i < 30; i++) await c.put(testKey(i), testBytes(150, i))
      expect(await c.get(testKey(0))).toEqual(testBytes(300, 0))
      expect(await c.get(testKey(1))).toEqual(testBytes(300, 1))
      expect(c.stats().bytes).toBeLessThanOrEqual(1000)
    })

    it('refuses with TooLargeError a put that only evicting pinned entries would fit, changing nothing', async () => {
      const c = await make(1000)
      await c.put(testKey(0), testBytes(600, 0))
      c.pin(testKey(0))
      await c.put(testKey(1), testBytes(300, 1))
      const before = c.stats()
      await expect(c.put(testKey(2), testBytes(500, 2))).rejects.toBeInstanceOf(TooLargeError)
      await expect(c.put(testKey(2), testBytes(500, 2))).rejects.toThrow(/pinned/)
      expect(c.stats()).toEqual(before)
      expect(await c.has(testKey(1))).toBe(true)
      expect(await c.has(testKey(2))).toBe(false)
      // Room made by evicting the unpinned entry is still fine.
      await c.put(testKey(3), testBytes(400, 3))
      expect(await c.has(testKey(0))).toBe(true)
      expect(await c.has(testKey(1))).toBe(false)
      // Replacing a pinned entry counts its own old bytes as free.
      await c.put(testKey(0), testBytes(600, 7))
      expect(await c.get(testKey(0))).toEqual(testBytes(600, 7))
    })

    it('counts pins: each pin needs its own unpin', async () => {
      const c = await make(1000)
      await c.put(testKey(0), testBytes(500, 0))
      c.pin(testKey(0))
      c.pin(testKey(0))
      c.unpin(testKey(0))
      await expect(c.put(testKey(1), testBytes(600, 1))).rejects.toBeInstanceOf(TooLargeError)
      c.unpin(testKey(0))
      c.unpin(testKey(0)) // one too many: a no-op
      await c.put(testKey(1), testBytes(600, 1))
      expect(await c.has(testKey(0))).toBe(false)
      expect(c.stats()).toMatchObject({ entries: 1, evictions: 1 })
    })

    it('deletes a pinned entry when asked, and the pin stays on the key', async () => {
      const c = await make(1000)
      c.pin(testKey(0))
      await c.put(testKey(0), testBytes(500, 0))
      expect(await c.delete(testKey(0))).toBe(true)
      await c.put(testKey(0), testBytes(500, 1))
      await expect(c.put(testKey(1), testBytes(600, 2))).rejects.toBeInstanceOf(TooLargeError)
    })

    it('keeps its bound and its answers under concurrent puts and gets', async () => {
      const c = await make(2000)
      const ops: Array<Promise<unknown>> = []
      for (let i = 0; i < 60; i++) {
        ops.push(c.put(testKey(i % 20), testBytes(100 + (i % 7) * 30, i % 20)))
        ops.push(c.get(testKey((i * 7) % 20)).then((v) => {
          if (v !== undefined) expect(v).toEqual(testBytes(v.byteLength, (i * 7) % 20))
        }))
      }
      await Promise.all(ops)
      const s = c.stats()
      expect(s.bytes).toBeLessThanOrEqual(2000)
      expect(s.hits + s.misses).toBe(60)
      for (let i = 0; i < 20; i++) {
        const v = await c.get(testKey(i))
        if (v !== undefined) expect(v).toEqual(testBytes(v.byteLength, i))
      }
    })

    it('returns a fresh stats object', async () => {
      const c = await make()
      const s = c.stats()
      s.hits = 99
      expect(c.stats().hits).toBe(0)
      if (s.weights !== undefined) {
        s.weights.recency = 99
        expect(c.stats().weights?.recency).not.toBe(99)
      }
    })

    it('rejects a key that is not a non-empty string', async () => {
      const c = await make()
      await expect(c.get('')).rejects.toBeInstanceOf(InvalidInputError)
      await expect(c.touch('')).rejects.toBeInstanceOf(InvalidInputError)
      await expect(c.put(42 as unknown as string, new Uint8Array(1))).rejects.toBeInstanceOf(InvalidInputError)
      await expect(c.put(testKey(1), 'text' as unknown as Uint8Array)).rejects.toBeInstanceOf(InvalidInputError)
      expect(() => { c.pin('') }).toThrow(InvalidInputError)
    })

    it('refuses every operation after close, and close is idempotent', async () => {
      const c = await make()
      await c.put(testKey(1), testBytes(10, 1))
      await c.close()
      await c.close()
      await expect(c.get(testKey(1))).rejects.toBeInstanceOf(UnavailableError)
      await expect(c.put(testKey(1), testBytes(1, 1))).rejects.toBeInstanceOf(UnavailableError)
      await expect(c.has(testKey(1))).rejects.toBeInstanceOf(UnavailableError)
      await expect(c.touch(testKey(1))).rejects.toBeInstanceOf(UnavailableError)
      await expect(c.delete(testKey(1))).rejects.toBeInstanceOf(UnavailableError)
      expect(() => { c.pin(testKey(1)) }).toThrow(UnavailableError)
      expect(typeof c.stats().puts).toBe('number')
    })
  })
}
