/**
 * A BlockSource over the swarm (DESIGN.md, pipeline 3): for each object it asks peers before
 * the origin, in this order:
 *
 *   1. likely holders: peers whose gossiped Bloom filter contains the block (no lookup needed);
 *   2. the origin (the coordinator's node) without `force`: it super-seeds, so it serves the
 *      bytes only when it knows no peer that got them, and otherwise refers to those peers,
 *      which are asked next — one round trip, where a DHT lookup that finds nothing (the usual
 *      case in a cold wave) costs a whole query deadline (measured: BENCHMARKS.md, "swarm");
 *   3. providers of the block found in the Kademlia DHT (one lookup per block, memoised
 *      briefly): the path when the origin is down or its referrals failed;
 *   4. the origin again with `force`, which makes it serve;
 *   5. a fallback source (the coordinator's HTTP API), when the origin cannot be reached.
 *
 * A peer that has sent no reply header past the hedge delay (HEDGE_AFTER_MS, or more as the
 * header times seen say) is joined by the list's next candidate, and the first to serve wins.
 * Every answer is verified against its CID before it is returned; a peer whose bytes do not
 * match is banned (peer-score.ts) and the next one is asked. A peer that answers busy is asked
 * again, after the wait it asks for, when the origin refers to it (within a patience; a wait
 * beyond it is taken as "no"). Requests
 * per peer are limited, every request has a deadline that counts its time queued behind that
 * limit (a request whose turn comes after its peer was rested is not sent). Peers in good standing are asked in this
 * node's own order for the block (`preferenceOrder`), so loaders spread over its holders, and
 * the shards of one block start at different peers of that order (rotated by shard index).
 * Which peer was asked and what it did is in `stats()`.
 *
 * Isomorphic: the network is an interface (node-runtime/p2p/ implements it over libp2p).
 */
import pLimit, { type LimitFunction } from 'p-limit'
import { verifyCid } from '../crypto/cid.ts'
import { BusyError, IntegrityError, NoConnectionError, UnavailableError } from '../errors/errors.ts'
import type { BlockSource, BlockSourceGetOptions } from '../load/source.ts'
import { clearableDeadline, untilAborted } from '../load/deadline.ts'
import { BUSY_PATIENCE_MS, busyWaiter } from '../load/retry.ts'
import { latencyEstimate } from './latency-estimate.ts'
import { peerScores, type PeerScores } from './peer-score.ts'
import { DEFAULT_MAX_OBJECT_BYTES, type Referral, type ShardAnswer } from './shard-protocol.ts'

export interface SwarmNetwork {
  /** This node's peer id (never asked). */
  readonly self: string
  /** Peers whose latest Bloom filter says they may hold `blockCid`. Cheap and local. */
  likelyHolders: (blockCid: string) => string[]
  /**
   * Connected peers that run one of this node's models (subscribed to its topic) but whose Bloom
   * filter has not reached this node: holders for all it knows. Asked only when the origin cannot
   * be (a restart with the coordinator down); in a cold wave their filters are absent because they
   * hold nothing yet. Absent: no such stage.
   */
  unhinted?: () => string[]
  /**
   * Providers of `blockCid` from the DHT, at most `limit`: those found by the time the signal
   * fires, or by the time `enoughConnected` of them are connected peers that are `usable` (a
   * walk may otherwise wait on one silent or stopped peer until its deadline; a connected peer
   * this source has banned or rested would not be asked, so it does not count).
   */
  findProviders: (blockCid: string, options: { signal: AbortSignal, limit: number, enoughConnected?: number, usable?: (peer: string) => boolean }) => Promise<string[]>
  /**
   * Whether a connection to `peer` is open now. Provider records outlive their providers (a
   * DHT keeps them for hours), a connection does not: connected peers are asked first. Absent:
   * no peer is preferred.
   */
  connected?: (peer: string) => boolean
  /** One shard-protocol request to one peer; `onHeader` as the protocol's (RequestShardOptions). */
  request: (peer: string, cid: string, options: { signal: AbortSignal, force?: boolean, maxBytes: number, size?: number, onHeader?: (status: ShardAnswer['status']) => void }) => Promise<ShardAnswer>
  /** Remembers the addresses a referral names, so the referred peers can be dialled. */
  learn: (referral: Referral) => Promise<void>
}

export interface SwarmSourceOptions {
  network: SwarmNetwork
  /** The coordinator's peer id: asked only when peers cannot serve. */
  origin?: string
  /** Asked last, when neither peers nor the origin over p2p could serve. */
  fallback?: BlockSource
  scores?: PeerScores
  /** Requests in flight to one peer. Default 8. */
  perPeerConcurrency?: number
  /** Requests in flight to the origin (most are referral questions, answered without bytes). Default 32. */
  originConcurrency?: number
  /** Deadline of one request. Default 10 s. */
  requestTimeoutMs?: number
  /**
   * The least time a peer (not the origin) is given to send its reply's header before it is given
   * up; more when the headers seen take longer (HEADER_DEADLINE_K). Default: the request deadline
   * (no deadline of its own; see HEADER_DEADLINE_K for why).
   */
  headerTimeoutMs?: number
  /**
   * The least time a peer may stay silent before the next is asked beside it; more when the
   * headers seen take longer (HEDGE_K). Default HEDGE_AFTER_MS (2 s); Infinity: never.
   */
  hedgeAfterMs?: number
  /** Deadline of one DHT provider lookup. Default 1 s. */
  lookupTimeoutMs?: number
  /** How long objects skip an origin no connection could be made to. Default ORIGIN_DOWN_RETRY_MS (5 s). */
  originRetryMs?: number
  /** Peers tried per object before the origin. Default 6. */
  maxPeersPerObject?: number
  maxBytes?: number
  /** Called with every verified object and who served it (e.g. to serve it on in turn). */
  onReceived?: (cid: string, bytes: Uint8Array, from: string) => void
  /**
   * Called when a fetch starts, with its outcome: a peer the origin referred to this node while
   * the object is still on its way can be answered when it lands instead of "not found".
   */
  onFetching?: (cid: string, result: Promise<Uint8Array>) => void
}

export interface SwarmStats {
  bytesFromPeers: number
  bytesFromOrigin: number
  bytesFromFallback: number
  requests: number
  /** Answers rejected because they did not hash to their CID. */
  corrupt: number
  /** Referrals the origin gave instead of bytes. */
  referrals: number
  /** Requests sent beside one to a peer still silent past `hedgeAfterMs` (hedged requests). */
  hedges: number
  /** `busy` answers from the origin, each waited out. */
  originBusy: number
  /** Verified bytes per serving peer. */
  perPeer: Record<string, number>
  /** Failed requests by cause (error name, or the peer's answer), e.g. `{ TimeoutError: 2, 'not-found': 5 }`. */
  failures: Record<string, number>
  /** DHT provider lookups made, and the milliseconds they took in total. */
  lookups: number
  lookupMs: number
  /**
   * Objects for which a forced request went to the origin, by why its unforced question did
   * not lead to the bytes (e.g. `{ 'origin busy': 3, 'referred peers failed': 2 }`).
   */
  forcedBecause: Record<string, number>
}

export interface SwarmSource extends BlockSource {
  stats: () => SwarmStats
  readonly scores: PeerScores
}

const LOOKUP_TTL_MS = 2_000
/** Providers looked up per block, as a multiple of the per-object peer budget. */
const PROVIDER_SURPLUS = 4
const ORIGIN_ATTEMPTS = 4
/** Bytes later than this fraction of the request deadline count against their peer (peer-score's `overdue`). */
const OVERDUE_FRACTION = 0.75
/**
 * How long one object waits, in all, on peers that answered busy before the origin is made to
 * serve it. 15 s cut the coordinator's bytes as far (1.00 × in a capped wave) but stretched the
 * wave's tail by 12 s; 5 s: 1.12 ×, tail unchanged (BENCHMARKS.md, "swarm", stop 26).
 */
const PEER_BUSY_PATIENCE_MS = 5_000
/** How much longer than its own deadline a provider lookup is waited for. */
const LOOKUP_GRACE_MS = 500
/**
 * After the origin failed without an answer (no connection: down, or a firewall dropping its p2p
 * port), how long objects skip it before one asks it again. Asked per object, a port that swallows
 * dials cost every shard two dial deadlines before the HTTP fallback (review 49c: 13 s for a load
 * HTTP did in 0.3 s).
 */
const ORIGIN_DOWN_RETRY_MS = 5_000
/** Outcomes kept per object for its error message. */
const OUTCOMES_SAID = 6
/**
 * A header deadline shorter than the request's, when a caller sets one (`headerTimeoutMs`): the
 * header times seen, as TCP's retransmission timeout is the round trips seen, SRTT + 4·RTTVAR
 * (RFC 6298), within [`headerTimeoutMs`, the request's deadline]. Off by default: hedging (below)
 * already keeps a silent peer from holding a load up, and a deadline risks cutting honest peers
 * of a CPU-starved swarm, where a reply's header takes seconds. (The stop-50 bench runs of a 4 s
 * deadline measured a 4 s deadline on the whole answer, the runtime then dropping `onHeader`:
 * they cut and rested honest peers, the coordinator serving 3.1–3.3 × the model under a cap.)
 */
const HEADER_DEADLINE_K = 4
/**
 * The least time a request to a peer may go without a reply's header before the object's next
 * candidate is asked beside it: a hedged request (Dean & Barroso, "The Tail at Scale", CACM
 * 2013). Past SRTT + 4·RTTVAR of the peers' header times seen (RFC 6298's RTO, before its floor),
 * at least 2 s: what a starved CPU makes of a header is slow, not silent. In the swarm bench
 * (BENCHMARKS.md, "Stop 50", runs H and H2) 7.6–15 % of requests were hedged and peers uploaded
 * 1.04–1.08 × what the wave needed.
 */
export const HEDGE_AFTER_MS = 2_000
const HEDGE_K = 4
/** The longest header time the estimate takes in: a holder waiting for an object on its way is not a slow network. */
const HEADER_SAMPLE_MAX_MS = 5_000
/** Requests of one object's list running at once, hedges included. */
const HEDGE_WIDTH = 3

/**
 * A busy answer asking for more than the whole patience is never waited for: for this object it
 * is a "no" that cost one round trip, so it holds no slot of the peer budget and is scored
 * `refused` (rested when repeated, as "not found" is). Six ids answering busy with 60 s took the
 * whole budget of every object, so the origin's referrals and DHT providers were never asked.
 */
const beyondPatience = (retryMs: number): boolean => retryMs > PEER_BUSY_PATIENCE_MS

/** One object's fetch so far. */
interface Attempt {
  /** Peers not to ask again (self and the origin among them). */
  tried: Set<string>
  /** Peers asked (self and the origin not counted, nor those that refused), bounded by maxPeersPerObject. */
  asked: number
  /** Peers that answered busy, with the wait they asked for: asked again when they come up again. */
  busy: Map<string, number>
  /** Waits out those busy answers, within PEER_BUSY_PATIENCE_MS in all. */
  waitBusy: (retryMs: number, signal: AbortSignal) => Promise<boolean>
  /**
   * Waits out the origin's busy answers, within BUSY_PATIENCE_MS for the object in all: its
   * unforced and forced asks share it (forcing does not get past a full answer budget), so one
   * object waits on a busy coordinator a patience, not one per stage (review 53a).
   */
  waitOriginBusy: (retryMs: number, signal: AbortSignal) => Promise<boolean>
  /** Set once the origin's patience ran out on busy answers: the coordinator stayed busy. */
  originBusySpent: boolean
  /** The object's size from the signed manifest, when the caller knows it (BlockSourceGetOptions). */
  size?: number
  /** What each peer asked did, for the error when none serves (review 49c: the causes were only in stats). */
  outcomes: string[]
}

function rotate<T> (list: T[], by: number): T[] {
  if (list.length === 0) return list
  const k = by % list.length
  return [...list.slice(k), ...list.slice(0, k)]
}

/**
 * `peers` in this node's order of preference for `key` (rendezvous hashing: Thaler &
 * Ravishankar, "Using name-based mappings to increase hit rates", IEEE/ACM ToN 1998). Every node
 * orders a block's holders differently, so a wave of loaders spreads over all of them; in one
 * shared order (score, or the order filters were announced in) every loader went first to the
 * same few early holders. On the 2-core bench machine this made no measurable difference
 * (BENCHMARKS.md, "swarm", stop 25), where CPU, not any one uplink, is the limit.
 */
export function preferenceOrder (self: string): (key: string, peers: string[]) => string[] {
  const mine = fnv1a(self, FNV_OFFSET)
  return (key, peers) => {
    const base = fnv1a(key, mine)
    return peers.map(peer => ({ peer, weight: avalanche(fnv1a(peer, base)) })).sort((a, b) => a.weight - b.weight).map(x => x.peer)
  }
}

const FNV_OFFSET = 0x811c9dc5
/**
 * 32-bit FNV-1a of a string's UTF-16 code units, continuing from `hash`. Written here because
 * @sindresorhus/fnv1a computes in BigInt: 12.9 µs for a self, block and peer id string against
 * 0.6 µs here (measured on the bench machine), for every holder of every shard a load asks for.
 * Not for adversaries: peer ids are keys, so a peer can grind its own, which at worst makes it
 * first for some loaders, as any order would.
 */
function fnv1a (text: string, hash: number): number {
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193)
  return hash >>> 0
}

/** MurmurHash3's 32-bit finaliser: peer ids differ in their last characters, which FNV-1a leaves in its low bits. */
function avalanche (h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

export function swarmSource (options: SwarmSourceOptions): SwarmSource {
  const { network, origin, fallback } = options
  const scores = options.scores ?? peerScores()
  const perPeer = options.perPeerConcurrency ?? 8
  const originLimit = options.originConcurrency ?? 32
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000
  const headerFloorMs = options.headerTimeoutMs ?? requestTimeoutMs
  const hedgeFloorMs = options.hedgeAfterMs ?? HEDGE_AFTER_MS
  /**
   * Peers' header times (the origin's not: it is never cut, and answers most requests with a
   * referral). A peer that answers just inside the deadline stretches it, up to the request's
   * own: what a silent peer cost before this estimate, no more.
   */
  const headerTimes = latencyEstimate()
  const headerTimeoutMs = (): number => Math.min(requestTimeoutMs, Math.max(headerFloorMs, headerTimes.upper(HEADER_DEADLINE_K) ?? 0))
  const hedgeAfterMs = (): number => hedgeFloorMs === Infinity ? Infinity : Math.min(headerTimeoutMs(), Math.max(hedgeFloorMs, headerTimes.upper(HEDGE_K) ?? 0))
  const lookupTimeoutMs = options.lookupTimeoutMs ?? 1_000
  const originRetryMs = options.originRetryMs ?? ORIGIN_DOWN_RETRY_MS
  const maxPeers = options.maxPeersPerObject ?? 6
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_OBJECT_BYTES
  const spread = preferenceOrder(network.self)
  const limiters = new Map<string, LimitFunction>()
  const lookups = new Map<string, { at: number, providers: Promise<string[]> }>()
  /** Whether the origin's last request failed without an answer or a timeout (no connection). */
  let originDown = false
  /** Until when (performance.now()) objects skip an origin no connection could be made to. */
  let originRetryAt = 0
  /** No connection to the origin lately: objects skip it until ORIGIN_DOWN_RETRY_MS passed. */
  const originResting = (): boolean => performance.now() < originRetryAt
  const stats: SwarmStats = { bytesFromPeers: 0, bytesFromOrigin: 0, bytesFromFallback: 0, requests: 0, corrupt: 0, referrals: 0, hedges: 0, originBusy: 0, perPeer: {}, failures: {}, lookups: 0, lookupMs: 0, forcedBecause: {} }

  const limiter = (peer: string): LimitFunction => {
    let l = limiters.get(peer)
    if (l === undefined) {
      l = pLimit(peer === origin ? originLimit : perPeer)
      limiters.set(peer, l)
    }
    return l
  }

  /** `peers` split into those connected now and the rest, each in the given order. */
  const byConnection = (peers: string[]): [string[], string[]] => {
    const { connected } = network
    if (connected === undefined) return [peers, []]
    const up: string[] = []
    const down: string[] = []
    for (const peer of peers) (connected(peer) ? up : down).push(peer)
    return [up, down]
  }

  /** Unsaturated peers first, keeping the rank order within each group. */
  const byLoad = (peers: string[]): string[] => {
    const busy = (p: string): number => (limiters.get(p)?.activeCount ?? 0) >= perPeer ? 1 : 0
    return peers.map((p, i) => ({ p, i })).sort((a, b) => (busy(a.p) - busy(b.p)) || (a.i - b.i)).map(x => x.p)
  }

  const providersOf = async (block: string, signal: AbortSignal): Promise<string[]> => {
    const now = Date.now()
    const memo = lookups.get(block)
    if (memo !== undefined && now - memo.at < LOOKUP_TTL_MS) return await memo.providers
    stats.lookups++
    // The lookup is shared by every caller within the TTL, so it runs under its own deadline,
    // not the first caller's signal: one caller giving up must not leave "no providers" to the rest.
    // More providers than one object's budget: those of stopped peers would otherwise fill it.
    // A full budget of connected providers is all the object can use: the walk ends there.
    // Raced against its deadline here too: a lookup that ignored its signal would hold every
    // caller of the block within the TTL (review 53a).
    const deadline = clearableDeadline(lookupTimeoutMs + LOOKUP_GRACE_MS, 'no providers')
    const lookup = network.findProviders(block, { signal: AbortSignal.timeout(lookupTimeoutMs), limit: maxPeers * PROVIDER_SURPLUS, enoughConnected: maxPeers, usable: peer => scores.usable(peer) })
    const providers = untilAborted(deadline.signal, lookup)
      .catch(() => [] as string[])
      .finally(() => { deadline.clear(); stats.lookupMs += Date.now() - now })
    lookups.set(block, { at: now, providers })
    if (lookups.size > 4096) lookups.delete(lookups.keys().next().value as string)
    return await untilAborted(signal, providers)
  }

  type Outcome = { bytes: Uint8Array } | { referral: Referral[] } | { busy: number } | undefined
  /** Told when a request leaves this node's queue for its peer, and when the peer's reply header comes. */
  interface Watch { sent: () => void, header: (status: ShardAnswer['status']) => void, unwanted: () => boolean }

  /** One request to one peer within its concurrency limit; the peer's score records what happened. */
  const ask = async (peer: string, cid: string, signal: AbortSignal, force: boolean, attempt: Attempt, watch?: Watch): Promise<Outcome> => {
    const limit = limiter(peer)
    const said = (what: string): void => {
      if (attempt.outcomes.length < OUTCOMES_SAID) attempt.outcomes.push(`${peer === origin ? 'origin' : `peer …${peer.slice(-8)}`}: ${what}`)
    }
    try {
      return await asking(limit, peer, cid, signal, force, attempt.size, said, watch)
    } finally {
      // A peer with nothing running or queued needs no limiter: peers met once leave nothing behind.
      if (limit.activeCount === 0 && limit.pendingCount === 0 && limiters.get(peer) === limit) limiters.delete(peer)
    }
  }

  const fail = (cause: string): void => { stats.failures[cause] = (stats.failures[cause] ?? 0) + 1 }

  const asking = async (limit: LimitFunction, peer: string, cid: string, signal: AbortSignal, force: boolean, size: number | undefined, said: (what: string) => void, watch?: Watch): Promise<Outcome> => {
    // The deadline starts when the request is queued, not when it is sent: behind a peer that
    // accepts streams and never answers, each queued request used to wait out the requests
    // ahead of it and then a whole deadline of its own (4 deadlines for 32 shards, measured).
    const deadline = AbortSignal.any([signal, AbortSignal.timeout(requestTimeoutMs)])
    let turn: () => void = () => {}
    const started = new Promise<void>(resolve => { turn = resolve })
    const run = limit(async () => {
      turn()
      return await requestOnce(peer, cid, signal, deadline, force, size, said, watch)
    })
    run.catch(() => {})
    try {
      await untilAborted(deadline, started)
    } catch (err) {
      if (signal.aborted) throw err
      // Never sent, so nothing is known about the peer: its requests ahead are scored instead.
      fail(`${peer === origin ? 'origin ' : ''}queued TimeoutError`)
      said('no answer in time (queued behind its other requests)')
      return undefined
    }
    // Once sent, a request ends at its deadline (network.request gets it) or the caller's abort.
    return await untilAborted(signal, run)
  }

  /** One request already through the peer's limiter; its outcome is scored here. */
  const requestOnce = async (peer: string, cid: string, signal: AbortSignal, deadline: AbortSignal, force: boolean, size: number | undefined, said: (what: string) => void, watch?: Watch): Promise<Outcome> => {
    // A turn that comes after the deadline (the caller has moved on) sends nothing.
    if (deadline.aborted) throw deadline.reason
    // Rested or banned while this request waited (the requests ahead timed out): skip it.
    if (!scores.usable(peer)) {
      fail('rested')
      said('rested, after failing other requests')
      return undefined
    }
    // Its object came from another peer while it waited in the queue: not sent at all.
    if (watch?.unwanted() === true) return undefined
    stats.requests++
    const sent = performance.now()
    watch?.sent()
    let answer: ShardAnswer
    // A peer's header is due within headerTimeoutMs. Not the origin's: a slow origin is still the
    // origin (its timeouts are not scored), and one that swallows dials is rested (above).
    const headerMs = Math.round(headerTimeoutMs())
    let heard = false
    const silence = peer === origin ? undefined : clearableDeadline(headerMs, 'no reply header')
    try {
      // Bounded by the object's own size where it is known: a peer that announces another one is
      // refused at its header, not after up to maxBytes (32 MiB) of body were read and hashed.
      answer = await network.request(peer, cid, {
        signal: silence === undefined ? deadline : AbortSignal.any([deadline, silence.signal]),
        force,
        maxBytes: Math.min(size ?? maxBytes, maxBytes),
        size,
        onHeader: status => {
          // Once: a kept stream that fails after its header is asked again on a fresh one.
          if (heard) return
          heard = true
          if (silence !== undefined) {
            silence.clear()
            // Not a busy answer's time (a holder waits up to 20 s for an object on its way before
            // it says so), and at most HEADER_SAMPLE_MAX_MS: one such wait taken as a header time
            // put the hedge delay at 22 s (review 50b).
            if (status !== 'busy') headerTimes.observe(Math.min(HEADER_SAMPLE_MAX_MS, performance.now() - sent))
          }
          watch?.header(status)
        }
      })
    } catch (err) {
      if (signal.aborted) throw err
      if (silence?.signal.aborted === true) {
        fail('header TimeoutError')
        said(`no reply within ${headerMs} ms`)
        scores.record(peer, 'timeout')
        return undefined
      }
      // Another size than the object's is as wrong as bytes that do not hash to its CID.
      if (err instanceof IntegrityError) {
        stats.corrupt++
        scores.record(peer, 'corrupt')
        said(`${err.message.slice(0, 120)} (banned)`)
        return undefined
      }
      // Whatever was thrown: a stream that ends under a killed peer can reject with a bare object.
      const thrown = err as { name?: unknown, message?: unknown } | null | undefined
      const name = typeof thrown?.name === 'string' ? thrown.name : 'Error'
      fail(`${peer === origin ? 'origin ' : ''}${name}`)
      said(name === 'TimeoutError' ? 'no answer in time' : `${name}: ${String(thrown?.message ?? thrown).slice(0, 120)}`)
      // Down, not slow: no connection, refused, reset. A timeout under load is not that.
      if (peer === origin) {
        originDown = name !== 'TimeoutError'
        // Only a dial that failed rests it: a stream reset or an error answer is one request's.
        // Without a fallback the origin is all there is: asked every time (review 49d).
        if (err instanceof NoConnectionError && fallback !== undefined) originRetryAt = performance.now() + originRetryMs
      }
      // A slow origin is still the origin: only bad bytes (below) ever make this source avoid it.
      if (peer !== origin) scores.record(peer, name === 'TimeoutError' ? 'timeout' : 'error')
      return undefined
    } finally {
      silence?.clear()
    }
    if (peer === origin) originDown = false
    switch (answer.status) {
      case 'ok':
        try {
          await verifyCid(cid, answer.bytes, 'object from a peer')
        } catch (err) {
          if (!(err instanceof IntegrityError)) throw err
          stats.corrupt++
          scores.record(peer, 'corrupt')
          said('bytes that do not hash to the CID (banned)')
          return undefined
        }
        // Bytes in the last quarter of the deadline count against their peer (`overdue`): a peer
        // that answered every request just inside its deadline ended with the best score and was
        // asked first again (review 42b 6: 64 objects from six such Sybils took 19 s, every time).
        // Not the origin's: a slow origin is still the origin (as for its timeouts, above), and a
        // capped one admits answers that take longer than this by design (review 43a).
        scores.record(peer, peer !== origin && performance.now() - sent > OVERDUE_FRACTION * requestTimeoutMs ? 'overdue' : 'ok')
        return { bytes: answer.bytes }
      case 'elsewhere':
        if (peer === origin) return { referral: answer.peers }
        // Only the origin refers (and referrals from peers are not followed): a peer that
        // answers "elsewhere" has not got the object, whatever its filter said.
        fail('elsewhere')
        said('does not hold it')
        scores.record(peer, 'not-found')
        return undefined
      case 'busy':
        // The origin's are counted in originBusy, and waited out within a patience of their own.
        if (peer !== origin) fail('busy')
        if (peer !== origin) said('busy')
        scores.record(peer, peer !== origin && beyondPatience(answer.retryMs) ? 'refused' : 'busy')
        return { busy: answer.retryMs }
      default:
        fail('not-found')
        said('does not hold it')
        // The origin not holding an object is news about the object, not about the origin.
        if (peer !== origin) scores.record(peer, 'not-found')
        return undefined
    }
  }

  /**
   * One request of an object's list, which the next candidate may join (a hedge) while it is
   * silent. `outcome` never rejects but on the caller's abort or `cancel`.
   */
  interface Hedged {
    peer: string
    outcome: Promise<{ peer: string, got: Outcome }>
    /** Resolves when the peer has sent no header for hedgeAfterMs; never once it has. */
    silent: Promise<'silent'>
    /**
     * Another peer served the object: an ok answer under way is cut at once (or at its header).
     * One not answered yet runs on to its header deadline, so that a silent peer is scored (and
     * rested) even when hedges always win; a busy or not-found answer is scored as it comes.
     */
    cancel: () => void
  }

  const hedged = (peer: string, cid: string, signal: AbortSignal, attempt: Attempt): Hedged => {
    // The caller's signal ends the request only until another peer has served: the loader aborts
    // a shard's signal once its block is whole, and a silent peer hedged away was then never
    // scored, nor rested, and cost every later object the hedge delay (review 50b).
    const own = new AbortController()
    let cancelled = false
    const onAbort = (): void => { if (!cancelled) own.abort(signal.reason) }
    if (signal.aborted) own.abort(signal.reason)
    else signal.addEventListener('abort', onAbort, { once: true })
    const served = (): void => { own.abort(new Error('another peer served the object first')) }
    let status: ShardAnswer['status'] | undefined
    let hedge: () => void = () => {}
    const silent = new Promise<'silent'>(resolve => { hedge = () => { resolve('silent') } })
    let timer: ReturnType<typeof setTimeout> | undefined
    const watch: Watch = {
      // From the send, not from the queue: a request waiting behind its peer's other requests
      // (perPeerConcurrency) is queued, not silent; its deadline already counts that wait.
      sent: () => {
        const hedgeMs = hedgeAfterMs()
        if (!cancelled && Number.isFinite(hedgeMs)) timer = setTimeout(hedge, hedgeMs)
      },
      header: heard => {
        status = heard
        clearTimeout(timer)
        if (cancelled && heard === 'ok') served()
      },
      unwanted: () => cancelled
    }
    const outcome = ask(peer, cid, own.signal, false, attempt, watch).then(got => ({ peer, got }))
    const settled = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
    }
    outcome.then(settled, settled)
    return {
      peer,
      outcome,
      silent,
      cancel: () => {
        cancelled = true
        clearTimeout(timer)
        if (status === 'ok') served()
      }
    }
  }

  /**
   * Tries `peers` one after the other until one serves; referrals from a peer are not followed.
   * A peer silent past hedgeAfterMs is joined by the next one (up to HEDGE_WIDTH at once), and
   * whichever serves first wins: one silent referred peer cost a load the request deadline.
   *
   * A peer that answered `busy` is asked again when it comes up again (the origin refers to it,
   * the DHT names it), after the wait it asked for, while the object's patience lasts: busy is
   * "later", not "no". Forcing the origin instead, because its referral named only peers that
   * had answered busy, was nearly all of its extra bytes in a capped wave.
   *
   * A busy peer holds its slot of the budget only where it may still be waited for: in a list
   * that names it. Peers that hints named and that answer busy to everything (Sybils of one
   * host) would otherwise spend the budget and leave the origin's referrals and the DHT's
   * providers unasked (with the origin down, the load failed beside an honest provider).
   */
  const fromPeers = async (peers: string[], cid: string, signal: AbortSignal, attempt: Attempt): Promise<Uint8Array | undefined> => {
    const listed = new Set(peers)
    let elsewhere = 0
    for (const busyPeer of attempt.busy.keys()) if (!listed.has(busyPeer)) elsewhere++
    const running = new Map<string, Hedged>()

    /** Takes in one request's outcome: its bytes, or what it says for the next lists. */
    const settle = (peer: string, got: Outcome): Uint8Array | undefined => {
      running.delete(peer)
      if (got !== undefined && 'bytes' in got) {
        stats.bytesFromPeers += got.bytes.length
        stats.perPeer[peer] = (stats.perPeer[peer] ?? 0) + got.bytes.length
        options.onReceived?.(cid, got.bytes, peer)
        return got.bytes
      }
      if (got !== undefined && 'busy' in got) {
        if (beyondPatience(got.busy)) {
          // Never waited for: not asked again for this object, and no slot held.
          attempt.asked--
        } else {
          attempt.tried.delete(peer)
          attempt.busy.set(peer, got.busy)
        }
      }
      return undefined
    }

    /**
     * Waits for bytes from any running request, until `latest` (if given) has settled without
     * them, or has been silent long enough to be hedged: then 'next' (ask the next candidate).
     */
    const waitFor = async (latest?: Hedged): Promise<Uint8Array | 'next'> => {
      for (;;) {
        if (running.size === 0) return 'next'
        const racing: Array<Promise<{ peer: string, got: Outcome } | 'silent'>> = [...running.values()].map(r => r.outcome)
        if (latest !== undefined && running.has(latest.peer) && running.size < HEDGE_WIDTH) racing.push(latest.silent)
        const first = await Promise.race(racing)
        if (first === 'silent') return 'next'
        const bytes = settle(first.peer, first.got)
        if (bytes !== undefined) return bytes
        if (latest !== undefined && !running.has(latest.peer)) return 'next'
      }
    }

    try {
      for (const peer of peers) {
        if (attempt.tried.has(peer)) continue
        const retryMs = attempt.busy.get(peer)
        // The budget bounds new peers only: one that answered busy may still be asked again.
        if (retryMs === undefined && attempt.asked - elsewhere >= maxPeers) continue
        attempt.tried.add(peer)
        if (retryMs === undefined) {
          attempt.asked++
        } else {
          attempt.busy.delete(peer)
          if (!await attempt.waitBusy(retryMs, signal)) continue
        }
        if (running.size > 0) stats.hedges++
        const request = hedged(peer, cid, signal, attempt)
        running.set(peer, request)
        const got = await waitFor(request)
        if (got !== 'next') return got
      }
      const got = await waitFor()
      return got === 'next' ? undefined : got
    } finally {
      for (const request of running.values()) request.cancel()
    }
  }

  /**
   * Asks the origin, following its referrals. Without `mayForce` it stops when the referred
   * peers fail (so DHT providers are tried before the origin is made to serve again). Without
   * bytes it says why, for `forcedBecause`.
   */
  const fromOrigin = async (originPeer: string, cid: string, signal: AbortSignal, attempt: Attempt, mayForce: boolean): Promise<Uint8Array | { reason: string }> => {
    // An origin that served bytes not matching their CID is banned like any peer (only bad bytes
    // ban it: its timeouts and errors are not scored).
    if (!scores.usable(originPeer)) return { reason: 'origin banned' }
    let force = mayForce
    for (let question = 0; question < ORIGIN_ATTEMPTS; question++) {
      const got = await ask(originPeer, cid, signal, force, attempt)
      if (got === undefined) return { reason: 'origin request failed' }
      if ('bytes' in got) {
        stats.bytesFromOrigin += got.bytes.length
        options.onReceived?.(cid, got.bytes, originPeer)
        return got.bytes
      }
      if ('busy' in got) {
        // The origin is up but its answer budget is full: wait as it asks, without using up
        // a question, within the busy patience; then fall back like a failed origin.
        if (!await attempt.waitOriginBusy(got.busy, signal)) {
          attempt.originBusySpent = true
          return { reason: 'origin busy' }
        }
        stats.originBusy++
        question--
        continue
      }
      stats.referrals++
      const referred = got.referral.filter(r => r.id !== network.self)
      await Promise.all(referred.map(async r => { await network.learn(r).catch(() => {}) }))
      const untried = referred.filter(r => !attempt.tried.has(r.id))
      // Unsaturated peers first, as in the other lists: requests queued behind a peer that does
      // not answer are not hedged, only bounded by their deadline (review 50b).
      const bytes = await fromPeers(byLoad(scores.rank(untried.map(r => r.id))), cid, signal, attempt)
      if (bytes !== undefined) return bytes
      // Referred peers that answered busy will serve later: ask the origin again (it may name
      // more holders by then) and them after their wait, within the patience, before forcing.
      if (!mayForce && scores.rank(referred.map(r => r.id)).some(id => attempt.busy.has(id)) && question < ORIGIN_ATTEMPTS - 1) continue
      if (!mayForce) {
        return { reason: untried.length === 0 ? 'referred peers already tried' : attempt.asked >= maxPeers ? 'peer budget spent' : 'referred peers failed' }
      }
      force = true
    }
    return { reason: 'origin attempts spent' }
  }

  return {
    name: 'swarm',
    scores,
    stats: () => ({ ...stats, perPeer: { ...stats.perPeer }, failures: { ...stats.failures }, forcedBecause: { ...stats.forcedBecause } }),
    async get (cid, getOptions) {
      const result = fetchObject(cid, getOptions)
      options.onFetching?.(cid, result)
      return await result
    }
  }

  async function fetchObject (cid: string, { signal, block, shard, size }: BlockSourceGetOptions): Promise<Uint8Array> {
    const key = block ?? cid
    const attempt: Attempt = { tried: new Set([network.self]), asked: 0, busy: new Map(), waitBusy: busyWaiter(PEER_BUSY_PATIENCE_MS), waitOriginBusy: busyWaiter(), originBusySpent: false, size, outcomes: [] }
    if (origin !== undefined) attempt.tried.add(origin)
    const order = (peers: string[]): string[] => {
      const usable = scores.rank(peers.filter(p => !attempt.tried.has(p)))
      // Peers in good standing in this node's own order for the block, connected ones first (the
      // budget goes to peers known to be up), the rest after them by score.
      const [up, down] = byConnection(spread(key, usable.filter(p => scores.score(p) >= 0)))
      const near = up.slice(0, maxPeers)
      const far = down.slice(0, maxPeers - near.length)
      const below = usable.filter(p => scores.score(p) < 0).slice(0, maxPeers - near.length - far.length)
      // The shards of one block start at different peers in good standing (connected ones while
      // there are any): one with a negative score comes after them for every shard, not first
      // for every k-th one.
      const turn = shard ?? 0
      return byLoad([...rotate(near, turn), ...rotate(far, turn), ...below])
    }

    let bytes = await fromPeers(order(network.likelyHolders(key)), cid, signal, attempt)
    if (bytes !== undefined) return bytes
    // The origin next, without `force`: it serves bytes only when it knows no peer that has
    // them, and otherwise names those peers — one round trip, where a DHT lookup that finds
    // nothing (the usual case in a cold wave) costs a whole query's deadline.
    /** Why the origin's unforced answer did not lead to the bytes. */
    let unforced = ''
    if (origin !== undefined && originResting()) {
      unforced = 'origin down'
      if (attempt.outcomes.length < OUTCOMES_SAID) attempt.outcomes.push('origin: skipped, no connection to it lately')
    } else if (origin !== undefined) {
      const got = await fromOrigin(origin, cid, signal, attempt, false)
      if (got instanceof Uint8Array) return got
      unforced = got.reason
    }
    bytes = await fromPeers(order(await providersOf(key, signal)), cid, signal, attempt)
    if (bytes !== undefined) return bytes
    // Bloom filters that arrived during the origin and DHT stages (a node that just joined has
    // none at first, and holders announce to it within a second or two): their holders are
    // asked before the origin is made to serve.
    bytes = await fromPeers(order(network.likelyHolders(key)), cid, signal, attempt)
    if (bytes !== undefined) return bytes
    // Without an origin that can answer (down or banned), the peers running the model are the
    // rest of what this node knows: a runtime restarting with its coordinator down found only
    // stopped providers in the DHT before any holder's filter came (e2e swarm.test). Not for an
    // origin that timed out or lacks the object: in a cold wave those peers hold nothing yet
    // (review 44b).
    if (origin === undefined || unforced === 'origin banned' || unforced === 'origin down' || (unforced === 'origin request failed' && originDown)) {
      bytes = await fromPeers(order(network.unhinted?.() ?? []), cid, signal, attempt)
      if (bytes !== undefined) return bytes
    }
    // Counted only when a forced request will be sent: a banned origin is not asked at all, nor
    // one that just failed to connect (a second dial deadline per object, review 49c).
    if (origin !== undefined && scores.usable(origin) && !originResting()) {
      stats.forcedBecause[unforced] = (stats.forcedBecause[unforced] ?? 0) + 1
      const got = await fromOrigin(origin, cid, signal, attempt, true)
      if (got instanceof Uint8Array) return got
    }
    if (fallback !== undefined) {
      try {
        bytes = await fallback.get(cid, { signal, size })
      } catch (err) {
        // Busy over HTTP too, after a whole patience of busy answers over libp2p: a failure, not
        // one more wait, or a caller that waits out busy answers (retry.ts `retrying`) would run
        // all of this again, a patience each time, for up to an hour per object (review 53a).
        if (err instanceof BusyError && attempt.originBusySpent) throw new UnavailableError(`${cid}: the coordinator stayed busy (its answer budget full) for ${BUSY_PATIENCE_MS / 1000} s, over libp2p and then HTTP`, { cause: err })
        throw err
      }
      await verifyCid(cid, bytes, `object from ${fallback.name}`)
      stats.bytesFromFallback += bytes.length
      options.onReceived?.(cid, bytes, fallback.name)
      return bytes
    }
    const outcomes = attempt.outcomes.length === 0 ? '' : `: ${attempt.outcomes.join('; ')}`
    throw new UnavailableError(`${cid}: no peer could serve it (asked ${attempt.asked} peer(s)${origin === undefined ? ', no origin' : ' and the origin'})${outcomes}`)
  }
}
