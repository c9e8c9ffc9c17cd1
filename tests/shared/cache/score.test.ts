import { describe, expect, it } from 'vitest'
import { DEFAULT_SCORE_WEIGHTS } from '../../../shared/cache/constants.ts'
import {
  checkScoreParams, compareForEviction, decayedCount, pickVictims, recordAccess, score,
  type ScoredEntry, type ScoreParams
} from '../../../shared/cache/score.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

const H = 1000
const defaults: ScoreParams = { halfLifeMs: H, weights: { ...DEFAULT_SCORE_WEIGHTS } }
const entry = (key: string, count: number, lastAccess: number, size: number): ScoredEntry => ({ key, count, lastAccess, size })

describe('decayed access count', () => {
  it('halves every half-life', () => {
    expect(decayedCount({ count: 8, lastAccess: 0 }, 0, H)).toBe(8)
    expect(decayedCount({ count: 8, lastAccess: 0 }, H, H)).toBe(4)
    expect(decayedCount({ count: 8, lastAccess: 0 }, 3 * H, H)).toBe(1)
    expect(decayedCount({ count: 8, lastAccess: 0 }, H / 2, H)).toBeCloseTo(8 / Math.SQRT2, 12)
  })

  it('count(t) = count(t0) · 2^(−(t−t0)/H) + 1 on access; a first access gives 1', () => {
    const a = recordAccess(undefined, 500, H)
    expect(a).toEqual({ count: 1, lastAccess: 500 })
    expect(recordAccess(a, 500, H)).toEqual({ count: 2, lastAccess: 500 })
    expect(recordAccess(a, 500 + H, H)).toEqual({ count: 1.5, lastAccess: 500 + H })
    expect(recordAccess({ count: 3, lastAccess: 0 }, 2 * H, H)).toEqual({ count: 1.75, lastAccess: 2 * H })
  })

  it('does not let a clock that steps back make an entry fresher or more frequent than now', () => {
    // Dated `now`, not at the later time: kept there, the entry would not decay until the clock
    // caught up (years, for a clock that was years ahead).
    const s = recordAccess({ count: 2, lastAccess: 10_000 }, 9_000, H)
    expect(s).toEqual({ count: 3, lastAccess: 9_000 })
    expect(decayedCount(s, 9_000 + H, H)).toBe(1.5)
    expect(decayedCount({ count: 2, lastAccess: 10_000 }, 9_000, H)).toBe(2)
  })
})

describe('eviction score', () => {
  it('is wf·log2(count) − (wf + wr)·age/H − ws·log2(size)', () => {
    const p: ScoreParams = { halfLifeMs: H, weights: { frequency: 2, recency: 3, size: 0.25 } }
    expect(score(entry('a', 8, 0, 1024), 2 * H, p)).toBeCloseTo(2 * 3 - 5 * 2 - 0.25 * 10, 12)
  })

  it('never underflows for very old entries', () => {
    const s = score(entry('a', 1, 0, 1), 1e7 * H, defaults)
    expect(Number.isFinite(s)).toBe(true)
    expect(score(entry('a', 2, 0, 1), 1e7 * H, defaults)).toBeGreaterThan(s)
  })

  it('defaults evict the large, the rarely used and the long-ago used first', () => {
    const now = 10 * H
    const base = entry('base', 4, now - H, 1 << 20)
    const larger = { ...base, key: 'larger', size: 4 << 20 }
    const rarer = { ...base, key: 'rarer', count: 1 }
    const older = { ...base, key: 'older', lastAccess: now - 5 * H }
    for (const worse of [larger, rarer, older]) {
      expect(compareForEviction(worse, base, now, defaults)).toBeLessThan(0)
    }
  })

  it('reduces to LRU, decayed LFU and largest-first when one weight is set', () => {
    const now = 10 * H
    const a = entry('a', 9, 1 * H, 10)
    const b = entry('b', 1, 2 * H, 1000)
    const lru: ScoreParams = { halfLifeMs: H, weights: { frequency: 0, recency: 1, size: 0 } }
    const lfu: ScoreParams = { halfLifeMs: H, weights: { frequency: 1, recency: 0, size: 0 } }
    const big: ScoreParams = { halfLifeMs: H, weights: { frequency: 0, recency: 0, size: 1 } }
    expect(compareForEviction(a, b, now, lru)).toBeLessThan(0) // a is older
    // Decayed: a = 9·2^−9 ≈ 0.018, b = 2^−8 ≈ 0.0039: a still more frequent.
    expect(compareForEviction(b, a, now, lfu)).toBeLessThan(0)
    expect(compareForEviction(b, a, now, big)).toBeLessThan(0)
  })

  it('breaks ties by older access, then larger size, then key', () => {
    const p: ScoreParams = { halfLifeMs: H, weights: { frequency: 0, recency: 0, size: 0 } }
    expect(compareForEviction(entry('z', 1, 1, 5), entry('a', 1, 2, 5), 10, p)).toBeLessThan(0)
    expect(compareForEviction(entry('z', 1, 1, 9), entry('a', 1, 1, 5), 10, p)).toBeLessThan(0)
    expect(compareForEviction(entry('a', 1, 1, 5), entry('b', 1, 1, 5), 10, p)).toBeLessThan(0)
    expect(compareForEviction(entry('a', 1, 1, 5), entry('a', 1, 1, 5), 10, p)).toBe(0)
  })

  it('orders entries the same way at any later time (only an access reorders)', () => {
    const rand = mulberry32(7)
    const entries = Array.from({ length: 200 }, (_, i) =>
      entry(`k${i}`, 1 + rand() * 20, Math.floor(rand() * 50 * H), 1 + Math.floor(rand() * 5_000_000)))
    const order = (now: number): string[] => [...entries].sort((x, y) => compareForEviction(x, y, now, defaults)).map((e) => e.key)
    const t0 = 50 * H
    expect(order(t0 + 37 * H)).toEqual(order(t0))
    expect(order(t0 + 1e6 * H)).toEqual(order(t0))
  })
})

describe('pickVictims', () => {
  const now = 100 * H
  const es = [entry('a', 1, 90 * H, 100), entry('b', 5, 99 * H, 100), entry('c', 1, 10 * H, 300), entry('d', 2, 50 * H, 50)]

  it('takes the lowest scores until enough bytes are freed', () => {
    const sorted = [...es].sort((x, y) => compareForEviction(x, y, now, defaults))
    expect(sorted.map((e) => e.key)).toEqual(['c', 'd', 'a', 'b'])
    expect(pickVictims(es, 1, now, defaults)?.map((e) => e.key)).toEqual(['c'])
    expect(pickVictims(es, 301, now, defaults)?.map((e) => e.key)).toEqual(['c', 'd'])
    expect(pickVictims(es, 550, now, defaults)?.map((e) => e.key)).toEqual(['c', 'd', 'a', 'b'])
  })

  it('skips pinned entries, and says when unpinned ones are not enough', () => {
    const pinned = (k: string): boolean => k === 'c'
    expect(pickVictims(es, 120, now, defaults, pinned)?.map((e) => e.key)).toEqual(['d', 'a'])
    expect(pickVictims(es, 251, now, defaults, pinned)).toBeUndefined()
  })

  it('needs nothing when nothing is needed', () => {
    expect(pickVictims(es, 0, now, defaults)).toEqual([])
    expect(pickVictims(es, -5, now, defaults)).toEqual([])
  })
})

describe('checkScoreParams', () => {
  it('names the bad option', () => {
    expect(() => { checkScoreParams('x', { halfLifeMs: 0, weights: defaults.weights }) }).toThrow(/halfLifeMs/)
    expect(() => { checkScoreParams('x', { halfLifeMs: H, weights: { ...defaults.weights, size: -1 } }) }).toThrow(InvalidInputError)
    expect(() => { checkScoreParams('x', { halfLifeMs: H, weights: { ...defaults.weights, recency: Number.NaN } }) }).toThrow(/weights\.recency/)
  })
})
