/**
 * Streams a peer wastes, on one connection and on all of them. libp2p bounds how many inbound
 * streams are open at once per protocol, not how fast they come and go: a peer that opens a
 * stream and resets it at once never holds one, yet each costs the server multistream-select's
 * exchange, a peer-store write and a handler start (review 43a: ~900 such streams a second from
 * one connection kept a server at ~0.9 core, and request rates, shared/p2p/request-rate.ts,
 * never see them).
 *
 * What sets such a peer apart is not how many streams it opens but how many it wastes: an honest
 * stream carries its exchange and ends cleanly, whereas these are reset by the peer. So the
 * inbound streams a peer resets are counted in a token bucket (32 a second, 256 at once: an
 * honest peer resets a few, when a load cancels a request), and the connection whose stream
 * empties it is closed. DHT streams are let off (`resetsAllowed`): every lookup resets its
 * requests still in flight when it ends. A rate of stream opens alone (first tried, 128 a
 * second) cut honest peers: the origin's burst of DHT provides, one stream each, reached 301 a
 * second on one runtime, and a server's own stall made streams that arrived in time look like a
 * burst (review 44a H1, M2). Opens keep a backstop above honest use (512 a second, 4,096 at
 * once): a stream past it is reset before libp2p negotiates it, and counts as wasted, which also
 * bounds a peer that opens streams and closes them cleanly without asking anything.
 *
 * The budget is the peer's, shared by all its connections: per connection, several connections
 * of one peer each got a whole one (review 44a M1). A budget shared by a host's peers was tried
 * and taken back (review 45a, 45b): cutting on it cut whole honest fleets behind one NAT;
 * holding the host back instead either let fresh ids under their own budgets through or charged
 * honest NAT-mates for an attacker's streams. Fresh ids from one host meet the host strikes
 * below instead.
 *
 * Closing a connection alone would not do: a peer that dials again, with a fresh id if need be,
 * gets fresh buckets (measured: 100 reconnections in 10 s, 25,500 streams, the server at 0.8
 * core). `floodCooldown` keeps the peer out for a while, and its host (host-group.ts) once
 * several of the host's peers were cut: the node refuses their connections before the Noise
 * handshake where it can.
 */
import type { Connection, Libp2pEvents, Stream, StreamMuxer, StreamMuxerFactory, TypedEventTarget } from '@libp2p/interface'
import { BusyError, InvalidInputError, UnavailableError } from '../errors/errors.ts'
import { tokenCount, type TokenCount } from './token-bucket.ts'

/** A connection closed because its peer kept wasting streams. */
export class StreamFloodError extends UnavailableError {
  override readonly name = 'StreamFloodError'
}

/**
 * A connection closed because its peer, or its host, was refused after a flood on another
 * connection: not itself a flood (its close punishes no one again).
 */
export class FloodCooldownError extends UnavailableError {
  override readonly name = 'FloodCooldownError'
}

/** Default streams a second one peer may open, and at once after an idle spell. */
export const STREAMS_PER_SECOND = 512
export const STREAM_BURST = 4096
/** Default streams a second a peer may waste (refused, or reset by it), and at once. */
export const WASTED_PER_SECOND = 32
export const WASTED_BURST = 256

export interface StreamLimitOptions {
  /** Streams a second a peer may open, on all its connections together. Default STREAMS_PER_SECOND. */
  perSecond?: number
  /** Streams it may open at once after an idle spell. Default STREAM_BURST. */
  burst?: number
  /**
   * Streams a second it may waste: streams refused by the open rate above, and inbound streams
   * the peer resets. The stream that finds this bucket empty closes the connection. Default
   * WASTED_PER_SECOND.
   */
  wastedPerSecond?: number
  /** Default WASTED_BURST. */
  wastedBurst?: number
  /**
   * Protocols whose streams the peer may reset without it counting as waste. Each DHT lookup
   * ends by resetting its requests still in flight (at its deadline, or when the swarm source has
   * enough providers), so an honest node's lookups reset streams on every holder it asked, about
   * one per lookup each (review 44b: up to 15 a second per holder). A peer resetting streams of
   * these protocols is still bounded by the open rate.
   */
  resetsAllowed?: readonly string[]
  /** Called for each stream refused, each stream wasted and each connection closed here (metrics). */
  onRefused?: (what: 'stream' | 'wasted' | 'connection') => void
  now?: () => number
}

function positive (value: number, name: string): number {
  if (!(Number.isFinite(value) && value > 0)) throw new InvalidInputError(`limitInboundStreams: ${name} must be a positive number, got ${String(value)}`)
  return value
}

/** A stream budget: the streams its connections may open, and waste, each a token count. */
interface Budget {
  admit: TokenCount
  forgive: TokenCount
}

/** A peer's budget, shared by its connections, with how many draw on it now. */
interface SharedBudget extends Budget {
  users: number
  full: () => boolean
}

/** The budget a connection's streams draw on: its own until it joins its peer's. */
interface Limit {
  budget: Budget
}

/** Each admitted stream's way to charge its connection's budgets with it as wasted, once. */
const chargers = new WeakMap<Stream, () => void>()

/**
 * Counts `stream` as wasted by its peer, for a protocol that knows it asked nothing valid (a
 * shard stream closed before its first request, or with a malformed one): such streams cost
 * their server as much as the honest ones, and end cleanly (review 44a M1: 8 fresh ids from one
 * host opening and closing 120 such streams a second each kept a server at 0.7 core). A stream
 * is charged once, whichever way; one the limit did not admit, or one not limited, is left alone.
 */
export function wastedStream (stream: Stream): void {
  const charge = chargers.get(stream)
  chargers.delete(stream)
  charge?.()
}

/** Peers' budgets a node keeps at most; unused ones go first, refilled ones before the others. */
const MAX_SHARED_BUDGETS = 4096

/** Wraps a stream muxer factory (e.g. `yamux()`) so every connection it multiplexes is limited. */
export function limitInboundStreams<C, M extends StreamMuxer> (
  muxer: (components: C) => StreamMuxerFactory<M>,
  options: StreamLimitOptions = {}
): (components: C) => StreamMuxerFactory<M> {
  const perSecond = positive(options.perSecond ?? STREAMS_PER_SECOND, 'perSecond')
  const burst = positive(options.burst ?? STREAM_BURST, 'burst')
  const wastedPerSecond = positive(options.wastedPerSecond ?? WASTED_PER_SECOND, 'wastedPerSecond')
  const wastedBurst = positive(options.wastedBurst ?? WASTED_BURST, 'wastedBurst')
  const now = options.now ?? (() => performance.now())
  const resetsAllowed = new Set(options.resetsAllowed ?? [])

  const budget = (): SharedBudget => {
    const admit = tokenCount(perSecond, burst, now)
    const forgive = tokenCount(wastedPerSecond, wastedBurst, now)
    return { admit, forgive, users: 0, full: () => admit.available() >= burst && forgive.available() >= wastedBurst }
  }

  return (components) => {
    const factory = muxer(components)
    // Per node: the budgets peers share, and the budget each muxer draws on.
    const shared = new Map<string, SharedBudget>()
    const limits = new WeakMap<StreamMuxer, Limit>()
    const sharedBudget = (key: string): SharedBudget => {
      let found = shared.get(key)
      if (found !== undefined) return found
      if (shared.size >= MAX_SHARED_BUDGETS) for (const [k, b] of shared) if (b.users === 0 && b.full()) shared.delete(k)
      if (shared.size >= MAX_SHARED_BUDGETS) for (const [k, b] of shared) if (b.users === 0) shared.delete(k)
      found = budget()
      // Every kept budget in use: the newcomer's is its own (not kept).
      if (shared.size < MAX_SHARED_BUDGETS) shared.set(key, found)
      return found
    }
    // libp2p announces a connection synchronously once its muxer is made, before the muxer hands
    // out any stream (early ones wait for a microtask, @libp2p/utils AbstractStreamMuxer).
    const join = (connection: Connection): void => {
      // Already closed (libp2p may announce one so): it would never say so again.
      if (connection.status !== 'open') return
      // libp2p's Connection keeps its muxer in a public field its interface does not name.
      const multiplexer = (connection as unknown as { muxer?: StreamMuxer }).muxer
      const limit = multiplexer === undefined ? undefined : limits.get(multiplexer)
      if (limit === undefined) return
      const key = connection.remotePeer.toString()
      const peer = sharedBudget(key)
      // No stream has drawn on the connection's own budget yet (none comes before this), and the
      // peer's is drawn on by each of its connections: it is the one that runs out first.
      limit.budget = peer
      peer.users++
      connection.addEventListener('close', () => {
        peer.users--
        // Dropped once refilled, not at once: a peer must not get a fresh budget by redialling.
        if (peer.users === 0 && shared.get(key) === peer && peer.full()) shared.delete(key)
      }, { once: true })
    }
    ;(components as { events?: TypedEventTarget<Libp2pEvents> }).events?.addEventListener('connection:open', (event) => { join(event.detail) })

    return {
      protocol: factory.protocol,
      createStreamMuxer (connection) {
        const multiplexer = factory.createStreamMuxer(connection)
        // Its own budget until it joins its peer's, and for good if it cannot (no muxer on
        // libp2p's connection; with every peer budget in use, the join hands it a fresh one).
        const limit: Limit = { budget: budget() }
        limits.set(multiplexer, limit)
        const open = (): boolean => multiplexer.status === 'open' && connection.status === 'open'
        const admit = (): boolean => {
          if (limit.budget.admit.available() < 1) return false
          limit.budget.admit.spend(1)
          return true
        }
        const wasted = (): void => {
          // Streams that end because the connection does (a peer going away) are not its doing.
          if (!open()) return
          options.onRefused?.('wasted')
          if (limit.budget.forgive.available() >= 1) {
            limit.budget.forgive.spend(1)
            return
          }
          // The muxer's abort leaves the socket (and libp2p's connection record) open; the
          // encrypted stream beneath it closes both.
          const err = new StreamFloodError(`connection closed: the peer kept wasting streams (more than ${wastedPerSecond} a second reset by it or refused here)`)
          multiplexer.abort(err)
          connection.abort(err)
          options.onRefused?.('connection')
        }
        const guard = (event: CustomEvent<Stream>): void => {
          const stream = event.detail
          if (!admit()) {
            stream.abort(new BusyError(`this peer opens streams faster than ${perSecond} a second`, Math.ceil(1000 / perSecond)))
            options.onRefused?.('stream')
            wasted()
            return
          }
          chargers.set(stream, wasted)
          // Reset by the peer, not ended here: kad-dht's handler aborts every stream it serves with
          // an UnexpectedEOFError when the asker closes it (a clean end), 190 a second per runtime
          // during an origin's provides.
          stream.addEventListener('close', (closed) => {
            if (closed.error !== undefined && !closed.local && !resetsAllowed.has(stream.protocol)) wastedStream(stream)
          }, { once: true })
        }
        // The guard must run before libp2p's own 'stream' listener (so a refused stream is never
        // negotiated), yet cannot be added here: the muxer holds the streams a peer opens before
        // the connection is set up until a first listener comes, and hands them to that listener
        // alone (@libp2p/utils AbstractStreamMuxer), so a listener added now took them from
        // libp2p, whose connections then never answered their first streams. It is added in
        // front of libp2p's listener, when that one is added.
        const add = multiplexer.addEventListener.bind(multiplexer)
        let guarded = false
        multiplexer.addEventListener = ((type: 'stream', listener: never, listenerOptions?: boolean | AddEventListenerOptions) => {
          if (type === 'stream' && !guarded) {
            guarded = true
            add('stream', guard)
          }
          add(type, listener, listenerOptions)
        }) as typeof multiplexer.addEventListener
        return multiplexer
      }
    }
  }
}

/** How long a flooding peer, and a host several of whose peers flooded, are refused. */
export const FLOOD_COOLDOWN_MS = 60_000
/**
 * Peers of one host cut within the cooldown before the host itself is refused: one id alone is
 * refused by id (a NAT-mate of a flooding peer stays welcome, review 44a M3), several are a host
 * making fresh ids (which are free) to come back.
 */
export const HOST_STRIKES = 3

export interface FloodCounters {
  /** Streams reset before negotiation: past their connection's or peer's open rate. */
  streamsRefused: number
  /** Inbound streams wasted: refused, or reset by the peer. */
  streamsWasted: number
  /** Connections closed because their peer kept wasting streams. */
  connectionsCut: number
  /** Inbound connections refused because their peer or host was cooling down. */
  connectionsRefused: number
}

export interface FloodCooldown {
  /**
   * Keeps `peer` out for the cooldown, and `host` (when there is one) once HOST_STRIKES of its
   * peers were; says whether the host is now refused too.
   */
  punish: (peer: string, host: string | undefined) => { hostRefused: boolean }
  /** True while `peer` or `host` is cooling down (counted as a refused connection). */
  refuses: (peer: string | undefined, host: string | undefined) => boolean
  /** True while `peer` or `host` is cooling down (not counted: for this node's own dials). */
  cooling: (peer: string | undefined, host?: string) => boolean
  /** Pass to limitInboundStreams' `onRefused`. */
  onRefused: (what: 'stream' | 'wasted' | 'connection') => void
  counters: () => FloodCounters
}

export interface FloodCooldownOptions {
  cooldownMs?: number
  /**
   * Peers, and hosts, remembered at most (each apart: fresh peer ids cannot push a host's
   * refusal out); past it the punishment that ends first is forgotten. Default 4096.
   */
  maxKeys?: number
  now?: () => number
}

export function floodCooldown (options: FloodCooldownOptions = {}): FloodCooldown {
  const cooldownMs = options.cooldownMs ?? FLOOD_COOLDOWN_MS
  const maxKeys = options.maxKeys ?? 4096
  const now = options.now ?? (() => performance.now())
  // Insertion order is punishment order, so the first key is the one whose cooldown ends first.
  const peers = new Map<string, number>()
  const hosts = new Map<string, number>()
  const strikes = new Map<string, Map<string, number>>()
  const counters: FloodCounters = { streamsRefused: 0, streamsWasted: 0, connectionsCut: 0, connectionsRefused: 0 }

  const remember = <V>(map: Map<string, V>, key: string, value: V): void => {
    map.delete(key)
    if (map.size >= maxKeys) map.delete(map.keys().next().value as string)
    map.set(key, value)
  }
  const cooling = (map: Map<string, number>, key: string | undefined): boolean => {
    if (key === undefined) return false
    const end = map.get(key)
    if (end === undefined) return false
    if (end > now()) return true
    map.delete(key)
    return false
  }

  return {
    punish (peer, host) {
      const t = now()
      remember(peers, peer, t + cooldownMs)
      if (host === undefined) return { hostRefused: false }
      const cut = strikes.get(host) ?? new Map<string, number>()
      for (const [id, at] of cut) if (at + cooldownMs <= t) cut.delete(id)
      cut.set(peer, t)
      remember(strikes, host, cut)
      if (cut.size < HOST_STRIKES) return { hostRefused: false }
      remember(hosts, host, t + cooldownMs)
      return { hostRefused: true }
    },
    refuses (peer, host) {
      const refused = cooling(peers, peer) || cooling(hosts, host)
      if (refused) counters.connectionsRefused++
      return refused
    },
    cooling: (peer, host) => cooling(peers, peer) || cooling(hosts, host),
    onRefused (what) {
      if (what === 'stream') counters.streamsRefused++
      else if (what === 'wasted') counters.streamsWasted++
      else counters.connectionsCut++
    },
    counters: () => ({ ...counters })
  }
}
