import { describe, expect, it } from 'vitest'
import { adaptiveWeights, blameFor, blamer, checkAdaptOptions, type AdaptiveWeights } from '../../../shared/cache/adapt.ts'
import { pickVictims, recordAccess, type ScoredEntry, type ScoreWeights } from '../../../shared/cache/score.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

const H = 1000
const NOW = 10_000
const entry = (key: string, count: number, age: number, size = 100): ScoredEntry => ({ key, count, lastAccess: NOW - age * H, size })

/**
 * Terms at NOW (F = log2 count − age, R = −age, S = −log2 size), all sizes 100 unless said:
 *   old   count 64, age 5    F =  1   R = −5     (frequent, long idle)
 *   x     count 1,  age 1    F = −1   R = −1
 *   rare  count 1,  age 2    F = −2   R = −2     (rare, fairly recent)
 *   hot   count 4,  age 0.5  F =  1.5 R = −0.5
 */
const old = entry('old', 64, 5)
const x = entry('x', 1, 1)
const rare = entry('rare', 1, 2)
const hot = entry('hot', 4, 0.5)
const four = [old, x, rare, hot]

describe('blame', () => {
  it('blames the term in which the victim ranks lowest among the others', () => {
    // old: 2 others below in F, 0 in R, 1.5 (three ties) in S → recency.
    expect(blameFor(old, four, NOW, H)).toBe('recency')
    // rare: 0 below in F, 1 in R (old), 1.5 in S → frequency.
    expect(blameFor(rare, four, NOW, H)).toBe('frequency')
    // A block 2^14 times larger than the rest, otherwise in the middle: size.
    const big = entry('big', 2, 1.5, 100 * 2 ** 14)
    expect(blameFor(big, [...four, big], NOW, H)).toBe('size')
  })

  it('blames nothing on a tie between the lowest, or with nothing to compare', () => {
    // x against rare and hot only: F below 1 (rare), R below 1 (rare), S 1 (ties) → three-way tie.
    expect(blameFor(x, [x, rare, hot], NOW, H)).toBeUndefined()
    expect(blameFor(old, [old], NOW, H)).toBeUndefined()
    expect(blameFor(old, [], NOW, H)).toBeUndefined()
  })

  it('the sorted blamer agrees with the linear reference (random sets with many ties)', () => {
    const rand = mulberry32(5)
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + Math.floor(rand() * 30)
      const cands = Array.from({ length: n }, (_, i) => ({
        key: `k${i}`,
        count: [1, 2, 3, 8][Math.floor(rand() * 4)]!,
        lastAccess: NOW - Math.floor(rand() * 4) * 500,
        size: [100, 200, 100_000][Math.floor(rand() * 3)]!
      }))
      const blame = blamer(cands, NOW, H)
      for (const v of cands) expect(blame(v), `trial ${trial} ${v.key}`).toBe(blameFor(v, cands, NOW, H))
      // A victim not among the candidates is compared with all of them.
      const outside = { key: 'out', count: 2, lastAccess: NOW - 500, size: 200 }
      expect(blame(outside)).toBe(blameFor(outside, cands, NOW, H))
    }
  })
})

describe('adaptiveWeights', () => {
  const initial: ScoreWeights = { frequency: 1, recency: 1, size: 0.5 }
  const make = (over: Partial<Parameters<typeof adaptiveWeights>[0]> = {}): AdaptiveWeights =>
    adaptiveWeights({ initial, halfLifeMs: H, rate: 0.5, historySize: 4, minShare: 0.1, ...over })

  it('matches a hand computation on a short sequence', () => {
    const a = make()
    expect(a.weights()).toEqual(initial)
    a.onEvict([old], four, NOW) // ghost #0, blamed on recency
    a.onEvict([rare], four, NOW) // ghost #1, blamed on frequency
    expect(a.snapshot()).toMatchObject({ evictions: 2, history: 2 })

    // "old" missed with one eviction after it: δ = 0.005^(1/4) = 0.26591479484724945,
    // recency · e^(−0.5·δ) = 0.8755023899717085; rescaled to a sum of 2:
    // frequency = 2 / 1.8755023899717085 = 1.0663809391520793, recency = 0.9336190608479207.
    expect(a.onMiss('old')).toBe(true)
    let w = a.weights()
    expect(w.frequency).toBeCloseTo(1.0663809391520793, 14)
    expect(w.recency).toBeCloseTo(0.9336190608479207, 14)
    expect(w.size).toBe(0.5)

    // "rare" missed right after its eviction (δ = 1): frequency · e^−0.5, rescaled:
    // 0.6467832... / (0.6467832... + 0.9336190...) · 2 = 0.8185116517365362.
    expect(a.onMiss('rare')).toBe(true)
    w = a.weights()
    expect(w.frequency).toBeCloseTo(0.8185116517365362, 14)
    expect(w.recency).toBeCloseTo(1.1814883482634637, 14)
    expect(w.frequency + w.recency).toBeCloseTo(2, 14)

    // A ghost is used once; an unknown key is no regret.
    expect(a.onMiss('old')).toBe(false)
    expect(a.onMiss('never')).toBe(false)
    expect(a.snapshot()).toEqual({ weights: w, evictions: 2, regrets: { frequency: 1, recency: 1, size: 0 }, history: 0 })
  })

  it('forgets a key stored again, and keys evicted more than historySize evictions ago', () => {
    const a = make()
    a.onEvict([old], four, NOW)
    a.forget('old')
    expect(a.onMiss('old')).toBe(false)

    a.onEvict([old], four, NOW)
    // Four more evictions (blamed or not) push it out of a history of 4.
    for (let i = 0; i < 4; i++) a.onEvict([entry(`f${i}`, 1, 0)], [], NOW)
    expect(a.onMiss('old')).toBe(false)
    expect(a.weights()).toEqual(initial)
  })

  it('counts a regret blamed on size but leaves the weights alone; an unblamed ghost is no regret', () => {
    const a = make()
    const big = entry('big', 2, 1.5, 100 * 2 ** 14)
    a.onEvict([big], [...four, big], NOW)
    expect(a.onMiss('big')).toBe(true)
    expect(a.weights()).toEqual(initial)
    expect(a.snapshot().regrets).toEqual({ frequency: 0, recency: 0, size: 1 })
    a.onEvict([x], [x, rare, hot], NOW) // three-way tie: no blame
    expect(a.onMiss('x')).toBe(false)
  })

  it('stops at the bounds: a share never leaves [minShare, 1 − minShare], the sum never moves', () => {
    const a = make()
    for (let i = 0; i < 50; i++) {
      const v = { ...old, key: `old${i}` }
      a.onEvict([v], [v, x, rare, hot], NOW)
      a.onMiss(v.key)
    }
    // Each regret at δ = 1 multiplies recency by e^−0.5; it reaches the floor of 10% of 2.
    expect(a.weights()).toEqual({ frequency: 2 * 0.9, recency: 2 - 2 * 0.9, size: 0.5 })
    expect(a.snapshot().regrets.recency).toBe(50)

    const rand = mulberry32(9)
    const b = make({ minShare: 0.2 })
    for (let step = 0; step < 2000; step++) {
      const v = rand() < 0.5 ? { ...old, key: `v${step}` } : { ...rare, key: `v${step}` }
      b.onEvict([v], [v, x, hot], NOW)
      if (rand() < 0.7) b.onMiss(`v${step - Math.floor(rand() * 3)}`)
      const { frequency, recency } = b.weights()
      expect(frequency + recency).toBeCloseTo(2, 12)
      expect(frequency / 2).toBeGreaterThanOrEqual(0.2 - 1e-12)
      expect(recency / 2).toBeGreaterThanOrEqual(0.2 - 1e-12)
    }
  })

  it('is deterministic: the same events give the same weights, bit for bit', () => {
    const run = (): unknown => {
      const rand = mulberry32(3)
      const a = make({ historySize: 16 })
      for (let step = 0; step < 500; step++) {
        const cands = Array.from({ length: 6 }, (_, i) => entry(`s${step}c${i}`, 1 + Math.floor(rand() * 5), rand() * 3))
        a.onEvict([cands[0]!], cands, NOW)
        a.onMiss(`s${step - Math.floor(rand() * 20)}c0`)
      }
      return a.snapshot()
    }
    expect(run()).toEqual(run())
  })

  it('starts inside the bounds, resumes rescaled and clamped, and never moves a size-only policy', () => {
    expect(make({ initial: { frequency: 1, recency: 0, size: 0 } }).weights()).toEqual({ frequency: 0.9, recency: 1 - 0.9, size: 0 })
    // Resumed weights keep their ratio, take the initial sum and size.
    const r = make({ resume: { frequency: 3, recency: 1, size: 7 } }).weights()
    expect(r).toEqual({ frequency: 1.5, recency: 0.5, size: 0.5 })
    expect(make({ resume: { frequency: 0, recency: 5, size: 0 } }).weights()).toEqual({ frequency: 2 * 0.1, recency: 2 - 2 * 0.1, size: 0.5 })
    expect(() => make({ resume: { frequency: 0, recency: 0, size: 0 } })).toThrow(InvalidInputError)
    expect(() => make({ resume: { frequency: Number.NaN, recency: 1, size: 0 } })).toThrow(/resume/)

    const sizeOnly = make({ initial: { frequency: 0, recency: 0, size: 1 } })
    sizeOnly.onEvict([old], four, NOW)
    sizeOnly.onMiss('old')
    expect(sizeOnly.weights()).toEqual({ frequency: 0, recency: 0, size: 1 })
  })

  it('checks its options, naming them', () => {
    expect(() => make({ rate: 0 })).toThrow(/rate must be a positive finite number/)
    expect(() => make({ rate: Number.POSITIVE_INFINITY })).toThrow(/rate/)
    expect(() => make({ historySize: 0 })).toThrow(/historySize/)
    expect(() => make({ historySize: 2.5 })).toThrow(/historySize/)
    expect(() => make({ minShare: 0 })).toThrow(/minShare/)
    expect(() => make({ minShare: 0.6 })).toThrow(/minShare/)
    expect(() => make({ halfLifeMs: -1 })).toThrow(/halfLifeMs/)
    expect(() => make({ initial: { frequency: -1, recency: 1, size: 0 } })).toThrow(/initial/)
    expect(() => { checkAdaptOptions('diskCache: adapt.', { rate: 1, speed: 2 }) }).toThrow(/diskCache: adapt\.speed is not an option/)
    expect(() => { checkAdaptOptions('diskCache: adapt.', 'fast') }).toThrow(/diskCache: adapt must be an object/)
    expect(() => { checkAdaptOptions('diskCache: adapt.', { historySize: '8' }) }).toThrow(InvalidInputError)
  })
})

/**
 * A byte-bounded cache evicting by the shared score, as the disk tier does (pickVictims over the
 * unpinned entries; a get miss is followed by a put, as the block loader does), with fixed or
 * adaptive weights (default knobs). One request per simulated second. All blocks are the same
 * size, so the size weight plays no part.
 */
function simulate (requests: Iterable<string>, capacityBytes: number, halfLifeMs: number, initial: ScoreWeights, adapt: boolean) {
  const a = adaptiveWeights({ initial, halfLifeMs })
  const entries = new Map<string, ScoredEntry>()
  let t = 0
  let hits = 0
  let gets = 0
  const size = 100
  for (const key of requests) {
    t += 1000
    gets++
    const e = entries.get(key)
    if (e !== undefined) {
      hits++
      Object.assign(e, recordAccess(e, t, halfLifeMs))
      continue
    }
    if (adapt) a.onMiss(key)
    const all = [...entries.values()]
    const victims = pickVictims(all, (all.length + 1) * size - capacityBytes, t, { halfLifeMs, weights: adapt ? a.weights() : initial }) ?? []
    if (adapt) a.onEvict(victims, all, t)
    for (const v of victims) entries.delete(v.key)
    a.forget(key)
    entries.set(key, { key, size, ...recordAccess(undefined, t, halfLifeMs) })
  }
  return { hits, gets, weights: a.weights() }
}

/** Each cycle: a hot set of 8 keys read twice, then 12 keys read once and never again. */
function* hotAndScan (cycles: number): Generator<string> {
  let scan = 0
  for (let c = 0; c < cycles; c++) {
    for (let pass = 0; pass < 2; pass++) for (let h = 0; h < 8; h++) yield `hot${h}`
    for (let s = 0; s < 12; s++) yield `scan${scan++}`
  }
}

/** Five phases, each reading its own 12 keys 30 times over: yesterday's hot set is dead today. */
function* shiftingHotSet (): Generator<string> {
  for (let phase = 0; phase < 5; phase++) for (let pass = 0; pass < 30; pass++) for (let h = 0; h < 12; h++) yield `p${phase}k${h}`
}

describe('adaptation pays off (16-block cache, fake clock)', () => {
  const recencyHeavy = { frequency: 0.2, recency: 2, size: 0.5 }
  const frequencyHeavy = { frequency: 2, recency: 0.2, size: 0.5 }

  it('scan-heavy workload with a hot set: recency-heavy start learns to keep the hot set', () => {
    // The hot set's reuse distance (8 + 12 = 20 distinct keys) exceeds 16 blocks: LRU-like
    // eviction loses it in most cycles, and then only its second pass hits (8 of 28 gets).
    // Keeping it hits 16 of 28 gets once it is in, as the frequency-heavy weights do.
    const fixed = simulate(hotAndScan(60), 1600, 60_000, recencyHeavy, false)
    const adaptive = simulate(hotAndScan(60), 1600, 60_000, recencyHeavy, true)
    const best = simulate(hotAndScan(60), 1600, 60_000, frequencyHeavy, false)
    expect(fixed).toMatchObject({ hits: 598, gets: 1680 })
    expect(best.hits).toBe(952)
    expect(adaptive.hits).toBe(949)
    // It got there by moving weight from recency to frequency: three regrets took frequency from
    // 0.2 to 0.60 of 2.2, enough for a second access (one doubling) to outweigh the scan's youth.
    expect(adaptive.weights.frequency).toBeCloseTo(0.6032567145357827, 12)
    expect(adaptive.weights.frequency + adaptive.weights.recency).toBeCloseTo(2.2, 12)
  })

  it('shifting hot set: frequency-heavy start learns to let yesterday\'s hot set go', () => {
    // 12 hot keys in 16 blocks: frequency-heavy weights keep the previous phase's keys (high
    // counts) and churn the new ones through the 4 free blocks.
    const fixed = simulate(shiftingHotSet(), 1600, 100_000, frequencyHeavy, false)
    const adaptive = simulate(shiftingHotSet(), 1600, 100_000, frequencyHeavy, true)
    const other = simulate(shiftingHotSet(), 1600, 100_000, recencyHeavy, false)
    expect(fixed).toMatchObject({ hits: 766, gets: 1800 })
    // Better even than fixed recency-heavy weights: it ends at the 5% floor of frequency (0.11),
    // below their 0.2.
    expect(other.hits).toBe(1631)
    expect(adaptive.hits).toBe(1683)
    expect(adaptive.weights).toEqual({ frequency: 2.2 * 0.05, recency: 2.2 - 2.2 * 0.05, size: 0.5 })
  })
})
