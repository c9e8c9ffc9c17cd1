/**
 * Regret-driven adaptation of the disk tier's score weights (score.ts), after LeCaR (Vietri et
 * al., "Driving Cache Replacement with ML-based LeCaR", HotStorage 2018) and the ghost lists of
 * ARC (Megiddo & Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST 2003).
 *
 * LeCaR runs two experts (LRU, LFU), remembers which one evicted each key, and when a miss hits
 * a remembered key it shrinks that expert's weight: w ← w · e^(−λ·d^t), t the time the key spent
 * in the history. Here one combined score replaces the two experts, so each eviction is blamed
 * on the score term that made the victim lowest:
 *
 * - The score is wf·F − wr·R − ws·S with F = log2(decayed count), R = age in half-lives,
 *   S = log2(size) (score.ts). For the victim, each term's percentile among the candidates the
 *   eviction ranked (mid-rank for ties) says how low that term alone placed it. The lowest
 *   percentile is blamed; an exact tie between the lowest is blamed on nothing.
 * - The victim goes into a bounded ghost history (key → eviction sequence number, blame).
 * - A `get` that misses on a ghost is regret: the blamed weight is multiplied by
 *   e^(−rate·δ), δ = 0.005^(age/historySize) with age = evictions since the ghost's own, then
 *   frequency and recency are rescaled so their sum stays as configured, and each is kept within
 *   [minShare, 1 − minShare] of that sum. The ghost is consumed.
 *
 * Decisions:
 * - Only frequency and recency adapt; the size weight stays as configured. It sets what is
 *   optimised (hit rate versus byte hit rate) rather than predicting reuse, and regret counts
 *   misses, not bytes, so adapting it would drift every tier toward evicting large blocks.
 *   A regret blamed on size is counted but moves nothing.
 * - Age in the history counts evictions, not milliseconds: whether another order would still
 *   have held the key depends on the cache's turnover; an idle cache does not weaken evidence.
 * - Deterministic: no randomness, the clock is an argument, ties resolve by fixed rules.
 */
import { InvalidInputError } from '../errors/errors.ts'
import {
  ADAPT_DISCOUNT_AT_HISTORY_END, DEFAULT_ADAPT_HISTORY_SIZE, DEFAULT_ADAPT_MIN_SHARE, DEFAULT_ADAPT_RATE
} from './constants.ts'
import type { ScoredEntry, ScoreWeights } from './score.ts'

/** The knobs of the adaptation; missing ones take the defaults in constants.ts. */
export interface AdaptOptions {
  /** Learning rate λ: a fresh regret multiplies the blamed weight by e^−λ. Default 0.45. */
  rate?: number
  /** Evictions remembered as ghosts. Default 1024. */
  historySize?: number
  /** Least share of frequency and of recency in their sum, in (0, 0.5]. Default 0.05. */
  minShare?: number
}

export interface AdaptiveWeightsOptions extends AdaptOptions {
  /** The configured weights: their frequency + recency sum and their size weight are kept. */
  initial: ScoreWeights
  /** The score's half-life, needed to compute the terms for blame. */
  halfLifeMs: number
  /**
   * Weights reached by an earlier run, to continue from (rescaled to the initial sum and
   * clamped to the bounds; its size weight is ignored). Unusable ones (not finite, negative,
   * or summing to 0) are refused with InvalidInputError.
   */
  resume?: ScoreWeights
}

/** The score term an eviction is blamed on. */
export type Blame = 'frequency' | 'recency' | 'size'

export interface AdaptiveSnapshot {
  weights: ScoreWeights
  /** Evictions seen since this object was made. */
  evictions: number
  /** Regrets by the term blamed (the ghost hit by a miss). */
  regrets: Record<Blame, number>
  /** Ghosts held now. */
  history: number
}

export interface AdaptiveWeights {
  /** The weights to score with now (a fresh object). */
  weights: () => ScoreWeights
  /**
   * Records evictions: `victims` were chosen among `candidates` (every entry the eviction
   * ranked, victims included) at time `now`.
   */
  onEvict: (victims: readonly ScoredEntry[], candidates: readonly ScoredEntry[], now: number) => void
  /** Reports a `get` miss; true when it hit a ghost and so moved (or tried to move) the weights. */
  onMiss: (key: string) => boolean
  /** Drops a key's ghost: the key is cached again, so a later miss is not about that eviction. */
  forget: (key: string) => void
  snapshot: () => AdaptiveSnapshot
}

interface Ghost {
  seq: number
  blame: Blame | undefined
}

function checkNumber (prefix: string, name: string, value: unknown, ok: (v: number) => boolean, what: string): void {
  if (typeof value !== 'number' || !ok(value)) {
    throw new InvalidInputError(`${prefix}${name} must be ${what}, got ${String(value)}`)
  }
}

/**
 * Checks adaptation options at a factory boundary. `prefix` starts each message, so a caller
 * names the option its way (e.g. "diskCache: adapt.").
 */
export function checkAdaptOptions (prefix: string, options: unknown): asserts options is AdaptOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidInputError(`${prefix.replace(/\.$/, '')} must be an object { rate, historySize, minShare }, got ${options === null ? 'null' : typeof options}`)
  }
  const o = options as Record<string, unknown>
  for (const k of Object.keys(o)) {
    if (k !== 'rate' && k !== 'historySize' && k !== 'minShare') {
      throw new InvalidInputError(`${prefix}${k} is not an option (rate, historySize, minShare)`)
    }
  }
  if (o.rate !== undefined) checkNumber(prefix, 'rate', o.rate, (v) => Number.isFinite(v) && v > 0, 'a positive finite number')
  if (o.historySize !== undefined) {
    checkNumber(prefix, 'historySize', o.historySize, (v) => Number.isSafeInteger(v) && v >= 1 && v <= 1_000_000, 'an integer from 1 to 1000000')
  }
  if (o.minShare !== undefined) checkNumber(prefix, 'minShare', o.minShare, (v) => v > 0 && v <= 0.5, 'a number in (0, 0.5]')
}

/** The three score terms, oriented so that lower means "more evictable" for each. */
function terms (e: ScoredEntry, now: number, halfLifeMs: number): Record<Blame, number> {
  const age = Math.max(0, now - e.lastAccess) / halfLifeMs
  return {
    frequency: Math.log2(Math.max(e.count, Number.MIN_VALUE)) - age,
    recency: -age,
    size: -Math.log2(Math.max(e.size, 1))
  }
}

const BLAMES: readonly Blame[] = ['frequency', 'recency', 'size']

/** The lowest of the three "how many candidates rank below" counts, or undefined on a tie. */
function lowest (below: Record<Blame, number>): Blame | undefined {
  let best: Blame | undefined
  let tie = false
  for (const b of BLAMES) {
    if (best === undefined || below[b] < below[best]) {
      best = b
      tie = false
    } else if (below[b] === below[best]) {
      tie = true
    }
  }
  return tie ? undefined : best
}

/**
 * The term an eviction of `victim` is blamed on: the one in which it ranks lowest among the
 * other `candidates` (percentile, ties counted half), or undefined when two lowest tie or there
 * is nothing to compare with. A linear scan per victim: the reference for `blamer`.
 */
export function blameFor (victim: ScoredEntry, candidates: readonly ScoredEntry[], now: number, halfLifeMs: number): Blame | undefined {
  const v = terms(victim, now, halfLifeMs)
  const below: Record<Blame, number> = { frequency: 0, recency: 0, size: 0 }
  let others = 0
  for (const c of candidates) {
    if (c.key === victim.key) continue
    others++
    const t = terms(c, now, halfLifeMs)
    for (const b of BLAMES) {
      if (t[b] < v[b]) below[b] += 1
      else if (t[b] === v[b]) below[b] += 0.5
    }
  }
  // Counts rather than fractions: one denominator for all three, and exact.
  return others === 0 ? undefined : lowest(below)
}

/** First index in the ascending `xs` whose value is not below `x` (or, `strict`, above `x`). */
function bound (xs: Float64Array, x: number, strict: boolean): number {
  let lo = 0
  let hi = xs.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (xs[mid]! < x || (strict && xs[mid] === x)) lo = mid + 1
    else hi = mid
  }
  return lo
}

/**
 * `blameFor` for many victims of one eviction: each term is computed and sorted once, and each
 * victim placed by binary search — O((n + v) log n) instead of O(n · v) when a large block
 * evicts many small ones.
 */
export function blamer (candidates: readonly ScoredEntry[], now: number, halfLifeMs: number): (victim: ScoredEntry) => Blame | undefined {
  const keys = new Set<string>()
  const sorted = { frequency: new Float64Array(candidates.length), recency: new Float64Array(candidates.length), size: new Float64Array(candidates.length) }
  candidates.forEach((c, i) => {
    keys.add(c.key)
    const t = terms(c, now, halfLifeMs)
    for (const b of BLAMES) sorted[b][i] = t[b]
  })
  for (const b of BLAMES) sorted[b].sort()
  return (victim) => {
    // The victim is compared with the others, not with itself.
    const self = keys.has(victim.key) ? 1 : 0
    if (candidates.length - self === 0) return undefined
    const v = terms(victim, now, halfLifeMs)
    const below: Record<Blame, number> = { frequency: 0, recency: 0, size: 0 }
    for (const b of BLAMES) {
      const less = bound(sorted[b], v[b], false)
      const equal = bound(sorted[b], v[b], true) - less - self
      below[b] = less + 0.5 * equal
    }
    return lowest(below)
  }
}

function finiteNonNegative (w: ScoreWeights): boolean {
  return [w.frequency, w.recency, w.size].every((x) => Number.isFinite(x) && x >= 0)
}

/**
 * Weights that adapt to the misses their evictions cause.
 *
 * @example
 * const adapt = adaptiveWeights({ initial: DEFAULT_SCORE_WEIGHTS, halfLifeMs })
 * const params = { halfLifeMs, weights: adapt.weights() }
 * const victims = pickVictims(entries, need, now, params, isPinned)
 * adapt.onEvict(victims, unpinnedEntries, now)
 * // later, on a get that finds nothing:
 * if (adapt.onMiss(key)) persist(adapt.weights())
 */
export function adaptiveWeights (options: AdaptiveWeightsOptions): AdaptiveWeights {
  const { initial, halfLifeMs } = options
  if (typeof initial !== 'object' || initial === null || !finiteNonNegative(initial)) {
    throw new InvalidInputError('adaptiveWeights: initial must be weights { frequency, recency, size }, each a non-negative finite number')
  }
  if (!(Number.isFinite(halfLifeMs) && halfLifeMs > 0)) {
    throw new InvalidInputError(`adaptiveWeights: halfLifeMs must be a positive finite number, got ${String(halfLifeMs)}`)
  }
  checkAdaptOptions('adaptiveWeights: ', { rate: options.rate, historySize: options.historySize, minShare: options.minShare })
  const rate = options.rate ?? DEFAULT_ADAPT_RATE
  const historySize = options.historySize ?? DEFAULT_ADAPT_HISTORY_SIZE
  const minShare = options.minShare ?? DEFAULT_ADAPT_MIN_SHARE

  // frequency + recency: what the adaptation redistributes and never changes. With a sum of 0
  // (a size-only policy) there is nothing to redistribute and the weights stay put.
  const sum = initial.frequency + initial.recency
  let frequency = initial.frequency
  let recency = initial.recency

  /** Rescales (f, r) to the sum and clamps each share into [minShare, 1 − minShare]. */
  function settle (f: number, r: number): void {
    if (sum === 0 || f + r === 0) return
    const share = Math.min(1 - minShare, Math.max(minShare, f / (f + r)))
    frequency = sum * share
    recency = sum - frequency
  }

  settle(frequency, recency)
  if (options.resume !== undefined) {
    const r = options.resume
    if (typeof r !== 'object' || r === null || !finiteNonNegative(r) || r.frequency + r.recency === 0) {
      throw new InvalidInputError('adaptiveWeights: resume must be weights with non-negative finite values and frequency + recency > 0')
    }
    settle(r.frequency, r.recency)
  }

  // Insertion order is eviction order, so the first ghost is the oldest.
  const ghosts = new Map<string, Ghost>()
  let evictions = 0
  const regrets: Record<Blame, number> = { frequency: 0, recency: 0, size: 0 }

  return {
    weights: () => ({ frequency, recency, size: initial.size }),

    onEvict (victims, candidates, now) {
      if (victims.length === 0) return
      const blame = blamer(candidates, now, halfLifeMs)
      for (const victim of victims) {
        ghosts.delete(victim.key)
        ghosts.set(victim.key, { seq: evictions++, blame: blame(victim) })
        if (ghosts.size > historySize) {
          const oldest = ghosts.keys().next()
          if (oldest.done !== true) ghosts.delete(oldest.value)
        }
      }
    },

    onMiss (key) {
      const ghost = ghosts.get(key)
      if (ghost === undefined) return false
      ghosts.delete(key)
      // Evictions after this one; a ghost kept past the history (room freed by `forget`) is stale.
      const age = evictions - 1 - ghost.seq
      if (age >= historySize || ghost.blame === undefined) return false
      regrets[ghost.blame]++
      if (ghost.blame === 'size') return true
      const factor = Math.exp(-rate * ADAPT_DISCOUNT_AT_HISTORY_END ** (age / historySize))
      if (ghost.blame === 'frequency') settle(frequency * factor, recency)
      else settle(frequency, recency * factor)
      return true
    },

    forget (key) {
      ghosts.delete(key)
    },

    snapshot: () => ({
      weights: { frequency, recency, size: initial.size },
      evictions,
      regrets: { ...regrets },
      history: ghosts.size
    })
  }
}
