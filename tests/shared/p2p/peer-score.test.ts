/**
 * Peer scores (shared/p2p/peer-score.ts) on an injected clock: the documented change per outcome,
 * the bounds, the ban for corrupt data, the cool-down after consecutive failures (and after
 * consecutive misses or refusals), and `rank`.
 * A seeded run of random outcomes is checked step by step against a slow reference that replays
 * each peer's whole history from the rules as documented.
 */
import { describe, it, expect } from 'vitest'
import { peerScores, type PeerOutcome } from '../../../shared/p2p/peer-score.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

const BAN = 1_000
const COOL = 100

function clocked (): { now: () => number, advance: (ms: number) => void } {
  let t = 0
  return { now: () => t, advance: ms => { t += ms } }
}

describe('peer scores', () => {
  it('an unknown peer scores 0 and is usable', () => {
    const s = peerScores()
    expect(s.score('p')).toBe(0)
    expect(s.usable('p')).toBe(true)
    expect(s.snapshot()).toEqual({})
  })

  it('moves the score by the documented amount per outcome', () => {
    const expected: Record<PeerOutcome, number> = { ok: 1, overdue: -1, 'not-found': -0.5, busy: -0.25, refused: -0.5, timeout: -2, error: -2, corrupt: -100 }
    for (const [outcome, delta] of Object.entries(expected) as Array<[PeerOutcome, number]>) {
      const s = peerScores()
      s.record('p', outcome)
      expect(s.score('p'), outcome).toBe(delta)
    }
  })

  it('overdue answers (the right bytes, just inside the deadline) rest a peer like misses, though they count as served', () => {
    const { now } = clocked()
    const s = peerScores({ now })
    s.record('p', 'overdue')
    s.record('p', 'ok')
    for (let i = 0; i < 7; i++) s.record('p', 'overdue')
    expect(s.usable('p')).toBe(true)
    s.record('p', 'overdue')
    expect(s.usable('p')).toBe(false)
    expect(s.snapshot().p).toMatchObject({ score: -8, served: 10, consecutiveFailures: 0 })
  })

  it('keeps the score within [-100, 20], so a long good past cannot outweigh one corrupt answer', () => {
    const { now, advance } = clocked()
    const s = peerScores({ now, banMs: BAN })
    for (let i = 0; i < 50; i++) s.record('p', 'ok')
    expect(s.score('p')).toBe(20)
    expect(s.snapshot().p?.served).toBe(50)
    s.record('p', 'corrupt')
    expect(s.score('p')).toBe(-80)
    s.record('p', 'corrupt')
    expect(s.score('p')).toBe(-100)
    advance(BAN)
    // Usable again after the ban, but ranked below a peer it has never met.
    expect(s.rank(['p', 'q'])).toEqual(['q', 'p'])
  })

  it('bans a peer that served corrupt data for banMs, exactly', () => {
    const { now, advance } = clocked()
    const s = peerScores({ now, banMs: BAN })
    s.record('evil', 'corrupt')
    expect(s.usable('evil')).toBe(false)
    expect(s.snapshot().evil).toMatchObject({ corrupt: 1, avoidUntil: BAN })
    advance(BAN - 1)
    expect(s.usable('evil')).toBe(false)
    expect(s.rank(['evil', 'good'])).toEqual(['good'])
    advance(1)
    expect(s.usable('evil')).toBe(true)
  })

  it('rests a peer that keeps failing longer each time, up to 16 cool-downs; a success starts again (review 49c)', () => {
    const { now, advance } = clocked()
    const s = peerScores({ now, coolDownMs: COOL, failuresBeforeCoolDown: 3 })
    const rests: number[] = []
    for (let i = 0; i < 7; i++) {
      const start = now()
      for (let j = 0; j < 3; j++) s.record('silent', 'timeout')
      const until = s.snapshot().silent?.avoidUntil as number
      rests.push(until - start)
      expect(s.usable('silent')).toBe(false)
      advance(until - start)
      expect(s.usable('silent')).toBe(true)
    }
    expect(rests).toEqual([1, 2, 4, 8, 16, 16, 16].map(k => k * COOL))
    // Failures of requests already in flight while it rests are that same incident (review 49g).
    s.record('burst', 'timeout'); s.record('burst', 'timeout'); s.record('burst', 'timeout')
    const first = s.snapshot().burst?.avoidUntil as number
    for (let j = 0; j < 6; j++) s.record('burst', 'timeout')
    expect(s.snapshot().burst).toMatchObject({ avoidUntil: first, rests: 1 })
    // One success, and the next rest is the first again.
    s.record('silent', 'ok')
    const start = now()
    for (let j = 0; j < 3; j++) s.record('silent', 'timeout')
    expect((s.snapshot().silent?.avoidUntil as number) - start).toBe(COOL)
  })

  it('rests a peer after consecutive timeouts or errors; a success resets the count', () => {
    const { now, advance } = clocked()
    const s = peerScores({ now, coolDownMs: COOL, failuresBeforeCoolDown: 3 })
    s.record('p', 'timeout')
    s.record('p', 'error')
    s.record('p', 'ok')
    s.record('p', 'timeout')
    s.record('p', 'error')
    expect(s.usable('p')).toBe(true)
    // Not-found and busy are answers, not failures: they neither count nor reset.
    s.record('p', 'not-found')
    s.record('p', 'busy')
    expect(s.usable('p')).toBe(true)
    s.record('p', 'timeout')
    expect(s.usable('p')).toBe(false)
    advance(COOL - 1)
    expect(s.usable('p')).toBe(false)
    advance(1)
    expect(s.usable('p')).toBe(true)
    // The count started again after the rest: two more failures are not enough.
    s.record('p', 'error')
    s.record('p', 'error')
    expect(s.usable('p')).toBe(true)
    s.record('p', 'error')
    expect(s.usable('p')).toBe(false)
  })

  // Regression (fixed): a cool-down sets `avoidUntil = now + coolDownMs` unconditionally, so
  // three failures recorded while a peer is banned (requests already queued at it when its
  // first corrupt answer arrived) cut a 10-minute ban to the 30 s cool-down.
  it('a cool-down never shortens a ban', () => {
    const { now, advance } = clocked()
    const s = peerScores({ now, banMs: BAN, coolDownMs: COOL, failuresBeforeCoolDown: 3 })
    s.record('evil', 'corrupt')
    s.record('evil', 'timeout')
    s.record('evil', 'timeout')
    s.record('evil', 'timeout')
    advance(COOL)
    expect(s.usable('evil')).toBe(false)
  })

  it('rank drops unusable and duplicate peers, best first, ties in the given order', () => {
    const { now } = clocked()
    const s = peerScores({ now })
    s.record('a', 'not-found')
    s.record('b', 'ok')
    s.record('c', 'corrupt')
    s.record('d', 'ok')
    expect(s.rank(['a', 'b', 'c', 'd', 'e', 'b', 'f'])).toEqual(['b', 'd', 'e', 'f', 'a'])
    expect(s.rank([])).toEqual([])
    expect(s.rank(new Set(['f', 'e']))).toEqual(['f', 'e'])
  })

  it('snapshot is a copy', () => {
    const s = peerScores()
    s.record('p', 'ok')
    const snap = s.snapshot()
    ;(snap.p as { score: number }).score = 99
    expect(s.score('p')).toBe(1)
  })

  it('matches a history-replaying reference over a seeded run of 3,000 events', () => {
    const options = { banMs: 5_000, coolDownMs: 700, failuresBeforeCoolDown: 3, missesBeforeCoolDown: 4 }
    const { now, advance } = clocked()
    const s = peerScores({ ...options, now })
    const peers = ['a', 'b', 'c', 'd', 'e', 'f']
    const outcomes: PeerOutcome[] = ['ok', 'ok', 'ok', 'overdue', 'not-found', 'busy', 'refused', 'timeout', 'error', 'corrupt']
    const history = new Map<string, Array<{ at: number, outcome: PeerOutcome }>>(peers.map(p => [p, []]))
    const delta: Record<PeerOutcome, number> = { ok: 1, overdue: -1, 'not-found': -0.5, busy: -0.25, refused: -0.5, timeout: -2, error: -2, corrupt: -100 }

    /** The rules of the module header, applied from scratch to one peer's history. */
    const reference = (peer: string): { score: number, usable: boolean } => {
      let score = 0
      let failures = 0
      let misses = 0
      let avoidUntil = 0
      let rests = 0
      const rest = (at: number): void => { avoidUntil = Math.max(avoidUntil, at + options.coolDownMs * 2 ** Math.min(rests++, 4)) }
      for (const { at, outcome } of history.get(peer) ?? []) {
        score = Math.min(20, Math.max(-100, score + delta[outcome]))
        if (outcome === 'ok') { failures = 0; misses = 0; rests = 0 }
        if ((outcome === 'not-found' || outcome === 'refused' || outcome === 'overdue') && ++misses === options.missesBeforeCoolDown) {
          rest(at)
          misses = 0
        }
        if (outcome === 'corrupt') avoidUntil = at + options.banMs
        if (outcome === 'timeout' || outcome === 'error') {
          failures++
          if (failures === options.failuresBeforeCoolDown) {
            rest(at)
            failures = 0
          }
        }
      }
      return { score, usable: avoidUntil <= now() }
    }

    const next = mulberry32(2024)
    const pick = <T>(list: T[]): T => list[Math.floor(next() * list.length)] as T
    let bans = 0
    let rests = 0
    for (let step = 0; step < 3_000; step++) {
      if (next() < 0.3) {
        advance(Math.floor(next() * 400))
      } else {
        // A loader asks only usable peers (rank filters the others), so outcomes are drawn
        // for usable peers; the ban/cool-down interplay is the separate test above.
        const usable = peers.filter(p => s.usable(p))
        if (usable.length === 0) continue
        const peer = pick(usable)
        const outcome = pick(outcomes)
        history.get(peer)?.push({ at: now(), outcome })
        s.record(peer, outcome)
        if (outcome === 'corrupt') bans++
        else if (!s.usable(peer)) rests++
      }
      for (const p of peers) {
        const want = reference(p)
        expect(s.score(p), `step ${step} peer ${p}`).toBeCloseTo(want.score, 9)
        expect(s.usable(p), `step ${step} peer ${p}`).toBe(want.usable)
      }
      const asked = Array.from({ length: 8 }, () => pick(peers))
      const expected = [...new Set(asked)].filter(p => reference(p).usable)
        .map((p, i) => ({ p, i, score: reference(p).score }))
        .sort((x, y) => (y.score - x.score) || (x.i - y.i))
        .map(x => x.p)
      expect(s.rank(asked), `step ${step}`).toEqual(expected)
    }
    // The run went through both kinds of exclusion, many times.
    expect(bans).toBeGreaterThan(20)
    expect(rests).toBeGreaterThan(20)
  })

  it('rests a peer whose hints keep missing: missesBeforeCoolDown "not found" in a row; a success resets the count', () => {
    const { now, advance } = clocked()
    const s = peerScores({ missesBeforeCoolDown: 3, coolDownMs: 1_000, now })
    s.record('liar', 'not-found')
    s.record('liar', 'not-found')
    s.record('liar', 'ok')
    s.record('liar', 'not-found')
    s.record('liar', 'not-found')
    expect(s.usable('liar')).toBe(true)
    s.record('liar', 'not-found')
    expect(s.usable('liar')).toBe(false)
    advance(1_000)
    expect(s.usable('liar')).toBe(true)
  })

  // Regression (review 37c): a busy answer never counted towards a rest, so ids answering every
  // request busy with a wait no loader takes (60 s against a 5 s patience) were asked for every
  // object, for ever (score -6 and never rested in the review's run).
  it('rests a peer that keeps refusing (busy with a wait the loader will not take) as one that keeps missing; busy alone never rests', () => {
    const { now, advance } = clocked()
    const s = peerScores({ missesBeforeCoolDown: 3, coolDownMs: 1_000, now })
    for (let i = 0; i < 50; i++) s.record('honest', 'busy')
    expect(s.usable('honest')).toBe(true)
    s.record('sybil', 'refused')
    s.record('sybil', 'refused')
    expect(s.usable('sybil')).toBe(true)
    s.record('sybil', 'refused')
    expect(s.usable('sybil')).toBe(false)
    expect(s.snapshot().sybil).toMatchObject({ score: -1.5, avoidUntil: 1_000 })
    advance(1_000)
    expect(s.usable('sybil')).toBe(true)
    // Refusals and misses count together; a success resets the count, a plain busy does not.
    s.record('p', 'refused')
    s.record('p', 'ok')
    s.record('p', 'not-found')
    s.record('p', 'busy')
    s.record('p', 'refused')
    expect(s.usable('p')).toBe(true)
    s.record('p', 'not-found')
    expect(s.usable('p')).toBe(false)
  })

  it('remembers at most maxPeers, forgetting the least recently touched first and banned peers last', () => {
    const { now } = clocked()
    const s = peerScores({ maxPeers: 3, now })
    s.record('banned', 'corrupt')
    s.record('a', 'ok')
    s.record('b', 'ok')
    s.record('a', 'ok') // touched: b is now the least recent unbanned
    s.record('c', 'ok')
    expect(Object.keys(s.snapshot()).sort()).toEqual(['a', 'banned', 'c'])
    for (let i = 0; i < 100; i++) s.record(`sybil-${i}`, 'not-found')
    expect(Object.keys(s.snapshot())).toHaveLength(3)
    expect(s.usable('banned')).toBe(false)
  })

  // Regression: when every record was avoided, the oldest went, and that is a ban (a banned peer
  // is never asked, so never touched): ids rested for 30 s flushed a 10-minute ban.
  it('a map full of cool-downs forgets them before a ban', () => {
    const { now } = clocked()
    const s = peerScores({ maxPeers: 3, banMs: BAN, coolDownMs: COOL, failuresBeforeCoolDown: 1, now })
    s.record('banned', 'corrupt')
    for (let i = 0; i < 10; i++) s.record(`sybil-${i}`, 'error')
    expect(Object.keys(s.snapshot())).toHaveLength(3)
    expect(s.usable('banned')).toBe(false)
    expect(s.snapshot().banned?.corrupt).toBe(1)
  })
})
