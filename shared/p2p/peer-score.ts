/**
 * How far a loader trusts each peer, from what the peer did: a score that successes raise and
 * failures lower, a cool-down after repeated failures (or repeated "not found" from a peer that
 * claims to hold blocks, or busy answers asking for a wait the loader will not take), and a ban
 * for serving bytes that do not hash to their CID (the one failure that cannot be bad luck).
 * Pure bookkeeping with an injected clock; the swarm source asks `usable` and `rank` before
 * every request. Records are bounded in number (the least recently touched usable ones go
 * first; of avoided ones, the one usable soonest, so cool-downs before bans), so peers met once
 * cannot grow it without end.
 */

/**
 * `busy`: asked to come back after a wait the loader will take; `refused`: asked for a wait longer
 * than it ever takes, so for this loader as good as "not found" (a peer that answers so to every
 * request would otherwise be asked for every object and never rested). `overdue`: the right
 * bytes, but in the last quarter of the request's deadline: served, yet counted like a miss, so a
 * peer that answers every request just inside its deadline loses score and is rested after
 * `missesBeforeCoolDown` in a row instead of ending with the best score (review 42b 6). Not a
 * failure (three rest a peer): honest peers under an upload cap on a slow machine answer late
 * too, and resting them sends their objects to the origin.
 */
export type PeerOutcome = 'ok' | 'overdue' | 'not-found' | 'busy' | 'refused' | 'timeout' | 'error' | 'corrupt'

export interface PeerScoreOptions {
  /** How long a peer that served corrupt data is avoided. Default 10 minutes. */
  banMs?: number
  /** Consecutive timeouts/errors after which a peer is rested. Default 3. */
  failuresBeforeCoolDown?: number
  /**
   * How long a rested peer is skipped; doubled for each rest after the first with no success in
   * between, up to 2^maxDoublings times (30 s to 8 min by default): a peer that never answers
   * was asked again by every next load once 30 s were over (review 49c). Default 30 s.
   */
  coolDownMs?: number
  /** Doublings of the cool-down at most. Default 4. */
  maxDoublings?: number
  /** Consecutive "not found", `refused` or `overdue` answers after which a peer is rested (its hints lead nowhere, or only just in time). Default 8. */
  missesBeforeCoolDown?: number
  /** Peers remembered at most. Default 4096. */
  maxPeers?: number
  now?: () => number
}

export interface PeerRecord {
  score: number
  consecutiveFailures: number
  consecutiveMisses: number
  /** Skip this peer until then (ms on the injected clock); 0 when usable. */
  avoidUntil: number
  served: number
  corrupt: number
  /** Rests since its last success (the next lasts coolDownMs × 2^rests, capped). */
  rests: number
}

/** Score changes per outcome: bounded to [MIN, MAX] so a long good past cannot hide a ban. */
const DELTA: Record<PeerOutcome, number> = { ok: 1, overdue: -1, 'not-found': -0.5, busy: -0.25, refused: -0.5, timeout: -2, error: -2, corrupt: -100 }
const MIN = -100
const MAX = 20

export interface PeerScores {
  record: (peer: string, outcome: PeerOutcome) => void
  usable: (peer: string) => boolean
  score: (peer: string) => number
  /** `peers` without unusable ones, best first (ties keep the given order). */
  rank: (peers: Iterable<string>) => string[]
  snapshot: () => Record<string, PeerRecord>
}

export function peerScores (options: PeerScoreOptions = {}): PeerScores {
  const banMs = options.banMs ?? 10 * 60_000
  const limit = options.failuresBeforeCoolDown ?? 3
  const coolDownMs = options.coolDownMs ?? 30_000
  const maxDoublings = options.maxDoublings ?? 4
  const missLimit = options.missesBeforeCoolDown ?? 8
  const maxPeers = options.maxPeers ?? 4096
  const now = options.now ?? Date.now
  // Insertion order is recency order: a touched record moves to the end.
  const peers = new Map<string, PeerRecord>()
  // The least recently touched usable record goes first. When every record is avoided, the one
  // usable soonest goes (cool-downs before bans): the oldest would be a ban, since a banned peer
  // is never asked, so never touched, and a flood of rested ids would flush it.
  const forgetOne = (): void => {
    const at = now()
    let soonest: string | undefined
    let soonestUntil = Infinity
    for (const [peer, r] of peers) {
      if (r.avoidUntil <= at) { peers.delete(peer); return }
      if (r.avoidUntil < soonestUntil) { soonest = peer; soonestUntil = r.avoidUntil }
    }
    if (soonest !== undefined) peers.delete(soonest)
  }
  const get = (peer: string): PeerRecord => {
    let r = peers.get(peer)
    if (r === undefined) {
      r = { score: 0, consecutiveFailures: 0, consecutiveMisses: 0, avoidUntil: 0, served: 0, corrupt: 0, rests: 0 }
      if (peers.size >= maxPeers) forgetOne()
    } else {
      peers.delete(peer)
    }
    peers.set(peer, r)
    return r
  }
  const rest = (r: PeerRecord): void => {
    // One incident, one rest: the failures of requests already in flight when it began do not
    // lengthen it (review 49g: a burst of 8 timeouts rested a peer 60 s, the next streak 120 s).
    if (r.avoidUntil > now()) return
    r.avoidUntil = now() + coolDownMs * 2 ** Math.min(r.rests, maxDoublings)
    r.rests++
  }
  const usable = (peer: string): boolean => (peers.get(peer)?.avoidUntil ?? 0) <= now()
  return {
    record (peer, outcome) {
      const r = get(peer)
      r.score = Math.min(MAX, Math.max(MIN, r.score + DELTA[outcome]))
      if (outcome === 'ok') {
        r.served++
        r.consecutiveFailures = 0
        r.consecutiveMisses = 0
        r.rests = 0
      } else if (outcome === 'corrupt') {
        r.corrupt++
        r.avoidUntil = now() + banMs
      } else if (outcome === 'timeout' || outcome === 'error') {
        if (++r.consecutiveFailures >= limit) {
          rest(r)
          r.consecutiveFailures = 0
        }
      } else if (outcome === 'not-found' || outcome === 'refused' || outcome === 'overdue') {
        if (outcome === 'overdue') r.served++
        if (++r.consecutiveMisses >= missLimit) {
          rest(r)
          r.consecutiveMisses = 0
        }
      }
    },
    usable,
    score: peer => peers.get(peer)?.score ?? 0,
    rank (candidates) {
      const list = [...new Set(candidates)].filter(usable)
      const order = new Map(list.map((p, i) => [p, i]))
      return list.sort((a, b) => ((peers.get(b)?.score ?? 0) - (peers.get(a)?.score ?? 0)) || ((order.get(a) ?? 0) - (order.get(b) ?? 0)))
    },
    snapshot: () => Object.fromEntries([...peers].map(([k, v]) => [k, { ...v }]))
  }
}
