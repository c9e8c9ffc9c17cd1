/**
 * The disk tier's eviction policy as pure functions: LFU with exponential time decay (each access
 * adds 1 to a count that halves every `halfLifeMs` — the "decayed LFU" / LRFU family, Lee et al.,
 * IEEE ToC 2001), combined with recency and size into one score; the lowest score is evicted
 * first. The clock is an argument, so tests are deterministic.
 *
 * Access:   count(t) = count(t0) · 2^(−(t − t0)/H) + 1, lastAccess = t   (a first put: count 1)
 * Score at time `now`, with age = max(0, now − lastAccess), size in bytes, H the half-life:
 *
 *   score = wf · log2(count · 2^(−age/H))  −  wr · age/H  −  ws · log2(max(size, 1))
 *         = wf · log2(count)  −  (wf + wr) · age/H  −  ws · log2(max(size, 1))
 *
 * Units are "doublings": twice the decayed count earns wf, each half-life idle costs wr on top
 * of what the decay already takes, twice the size costs ws. Special cases: wr = ws = 0 is pure
 * decayed LFU, wf = ws = 0 is LRU, wf = wr = 0 evicts the largest first. The log form also
 * never underflows (2^(−age/H) would reach 0 for very old entries).
 *
 * Because the score is `static(entry) − (wf + wr) · now/H`, the order of entries never depends on
 * `now` (except for entries dated in the future, whose age is clamped to 0): only an access
 * reorders. A tier keeping entries redates those dated in the future to `now` when it ranks them
 * (and an access dates them `now`), else they would keep age 0 until the clock caught up. Ties
 * are broken by older lastAccess, then larger size, then key, so the order is total and
 * reproducible.
 */

import { InvalidInputError } from '../errors/errors.ts'

export interface AccessState {
  /** The decayed access count as of `lastAccess` (≥ 1 once accessed). */
  count: number
  /** Milliseconds on the injected clock. */
  lastAccess: number
}

export interface ScoredEntry extends AccessState {
  key: string
  /** Bytes. */
  size: number
}

export interface ScoreWeights {
  /** Weight of log2 of the decayed access count. */
  frequency: number
  /** Weight of the idle time in half-lives, on top of the decay. */
  recency: number
  /** Weight of log2 of the size in bytes. */
  size: number
}

export interface ScoreParams {
  halfLifeMs: number
  weights: ScoreWeights
}

function ageInHalfLives (lastAccess: number, now: number, halfLifeMs: number): number {
  // A clock that steps back (NTP, a restored snapshot) must not make an entry look fresher.
  return Math.max(0, now - lastAccess) / halfLifeMs
}

/** The access count decayed to `now`: count · 2^(−age/H). */
export function decayedCount (state: AccessState, now: number, halfLifeMs: number): number {
  return state.count * 2 ** -ageInHalfLives(state.lastAccess, now, halfLifeMs)
}

/** The state after one access at `now`; `undefined` (never seen) gives count 1. */
export function recordAccess (state: AccessState | undefined, now: number, halfLifeMs: number): AccessState {
  if (state === undefined) return { count: 1, lastAccess: now }
  // `now`, even for a state dated later: a clock that ran ahead and was corrected would otherwise
  // keep the entry at age 0 until the clock caught up (found by review). Its count is not
  // decayed for the time it seemed to have, so it is not made more frequent either.
  return { count: decayedCount(state, now, halfLifeMs) + 1, lastAccess: now }
}

/** The eviction score (higher = keep): see the module header for the formula. */
export function score (entry: ScoredEntry, now: number, params: ScoreParams): number {
  const { frequency, recency, size } = params.weights
  const age = ageInHalfLives(entry.lastAccess, now, params.halfLifeMs)
  // count ≥ 1 by construction; the guard keeps a damaged index row from producing NaN (0 · −∞).
  const logCount = Math.log2(Math.max(entry.count, Number.MIN_VALUE))
  return frequency * logCount - (frequency + recency) * age - size * Math.log2(Math.max(entry.size, 1))
}

/** Orders entries for eviction: negative when `a` should go before `b`. */
export function compareForEviction (a: ScoredEntry, b: ScoredEntry, now: number, params: ScoreParams): number {
  const d = score(a, now, params) - score(b, now, params)
  if (d !== 0) return d
  if (a.lastAccess !== b.lastAccess) return a.lastAccess - b.lastAccess
  if (a.size !== b.size) return b.size - a.size
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0
}

/**
 * The victims to evict, in eviction order, so that at least `bytesNeeded` bytes are freed, taken
 * only from entries `isPinned` refuses; `undefined` when even all of those are not enough.
 */
export function pickVictims<E extends ScoredEntry> (
  entries: Iterable<E>,
  bytesNeeded: number,
  now: number,
  params: ScoreParams,
  isPinned: (key: string) => boolean = () => false
): E[] | undefined {
  if (bytesNeeded <= 0) return []
  // Score once per entry rather than once per comparison.
  const ranked: Array<{ entry: E, score: number }> = []
  let available = 0
  for (const entry of entries) {
    if (isPinned(entry.key)) continue
    ranked.push({ entry, score: score(entry, now, params) })
    available += entry.size
  }
  if (available < bytesNeeded) return undefined
  ranked.sort((x, y) => (x.score - y.score) || compareForEviction(x.entry, y.entry, now, params))
  const victims: E[] = []
  let freed = 0
  for (const { entry } of ranked) {
    if (freed >= bytesNeeded) break
    victims.push(entry)
    freed += entry.size
  }
  return victims
}

/** Checks weights and half-life at a factory boundary; the messages name the option. */
export function checkScoreParams (where: string, params: ScoreParams): void {
  if (!(Number.isFinite(params.halfLifeMs) && params.halfLifeMs > 0)) {
    throw new InvalidInputError(`${where}: halfLifeMs must be a positive finite number, got ${String(params.halfLifeMs)}`)
  }
  for (const k of ['frequency', 'recency', 'size'] as const) {
    const w = params.weights[k]
    if (!(Number.isFinite(w) && w >= 0)) {
      throw new InvalidInputError(`${where}: weights.${k} must be a non-negative finite number, got ${String(w)}`)
    }
  }
}
