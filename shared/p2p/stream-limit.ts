/**
 * How fast a peer may open streams on one connection. libp2p bounds how many inbound streams are
 * open at once per protocol, not how fast they come: a peer that opens a stream and resets it at
 * once never holds one, yet each costs the server multistream-select's exchange, a peer-store
 * write and a handler start (review 43a: ~900 such streams a second from one connection kept a
 * server at ~0.9 core, and request rates, shared/p2p/request-rate.ts, never see them).
 *
 * Each connection's inbound streams draw from a token bucket before libp2p negotiates them: a
 * stream past the bucket is reset at once (its protocol never negotiated, no handler run), and a
 * connection whose streams keep coming past the bucket is closed. An honest peer opens few:
 * shard sessions are kept and reused (shard-client.ts), gossipsub keeps one stream, and a DHT
 * walk asks each peer once or twice.
 *
 * Closing a connection alone would not do: a peer that dials again, with a fresh id if need be,
 * gets a fresh bucket (measured: 100 reconnections in 10 s, 25,500 streams, the server at 0.8
 * core). `floodCooldown` keeps the peer, and its host when it has one (host-group.ts), out for a
 * while; the node refuses their connections before the Noise handshake where it can.
 */
import type { Stream, StreamMuxer, StreamMuxerFactory } from '@libp2p/interface'
import { BusyError, InvalidInputError, UnavailableError } from '../errors/errors.ts'

/** A connection closed because its peer kept opening streams past its rate. */
export class StreamFloodError extends UnavailableError {
  override readonly name = 'StreamFloodError'
}

/** Default streams a second one connection may open, and at once after an idle spell. */
export const STREAMS_PER_SECOND = 128
export const STREAM_BURST = 256
/** Default streams past the rate a connection may open before it is closed, and their refill. */
export const REFUSED_BURST = 64
export const REFUSED_PER_SECOND = 16

export interface StreamLimitOptions {
  /** Streams a second a connection's peer may open. Default STREAMS_PER_SECOND. */
  perSecond?: number
  /** Streams it may open at once after an idle spell. Default STREAM_BURST. */
  burst?: number
  /**
   * Streams past the rate are reset, and drawn from a second bucket of this size refilled at
   * `refusedPerSecond`; the stream that finds it empty closes the connection. A peer over its
   * rate now and then loses a few streams; one that keeps opening past it (tokens come back
   * every few ms, so "in a row" would never count) is cut off within a second.
   * Default REFUSED_BURST.
   */
  refusedBurst?: number
  /** Default REFUSED_PER_SECOND. */
  refusedPerSecond?: number
  /** Called for each stream reset and each connection closed here (metrics). */
  onRefused?: (what: 'stream' | 'connection') => void
  now?: () => number
}

function positive (value: number, name: string): number {
  if (!(Number.isFinite(value) && value > 0)) throw new InvalidInputError(`limitInboundStreams: ${name} must be a positive number, got ${String(value)}`)
  return value
}

/** A token count refilled at `rate` a second up to `burst`, taken from synchronously. */
function bucket (rate: number, burst: number, now: () => number): () => boolean {
  let tokens = burst
  let stamp = now()
  return () => {
    const t = now()
    tokens = Math.min(burst, tokens + (t - stamp) * rate / 1000)
    stamp = t
    if (tokens < 1) return false
    tokens -= 1
    return true
  }
}

/** Wraps a stream muxer factory (e.g. `yamux()`) so every connection it multiplexes is limited. */
export function limitInboundStreams<C, M extends StreamMuxer> (
  muxer: (components: C) => StreamMuxerFactory<M>,
  options: StreamLimitOptions = {}
): (components: C) => StreamMuxerFactory<M> {
  const perSecond = positive(options.perSecond ?? STREAMS_PER_SECOND, 'perSecond')
  const burst = positive(options.burst ?? STREAM_BURST, 'burst')
  const refusedBurst = positive(options.refusedBurst ?? REFUSED_BURST, 'refusedBurst')
  const refusedPerSecond = positive(options.refusedPerSecond ?? REFUSED_PER_SECOND, 'refusedPerSecond')
  const now = options.now ?? (() => performance.now())

  return (components) => {
    const factory = muxer(components)
    return {
      protocol: factory.protocol,
      createStreamMuxer (connection) {
        const multiplexer = factory.createStreamMuxer(connection)
        const admit = bucket(perSecond, burst, now)
        const forgive = bucket(refusedPerSecond, refusedBurst, now)
        const guard = (event: CustomEvent<Stream>): void => {
          if (admit()) return
          event.detail.abort(new BusyError(`this peer opens streams faster than ${perSecond} a second on one connection`, Math.ceil(1000 / perSecond)))
          options.onRefused?.('stream')
          if (!forgive() && multiplexer.status === 'open') {
            // The muxer's abort leaves the socket (and libp2p's connection record) open; the
            // encrypted stream beneath it closes both.
            const err = new StreamFloodError(`connection closed: the peer kept opening streams faster than ${perSecond} a second`)
            multiplexer.abort(err)
            connection.abort(err)
            options.onRefused?.('connection')
          }
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

/** How long a flooding peer and its host are refused. */
export const FLOOD_COOLDOWN_MS = 60_000

export interface FloodCounters {
  /** Streams reset because their connection was over its rate. */
  streamsRefused: number
  /** Connections closed because their peer kept opening streams past its rate. */
  connectionsCut: number
  /** Inbound connections refused because their peer or host was cooling down. */
  connectionsRefused: number
}

export interface FloodCooldown {
  /** Keeps `peer`, and `host` when there is one, out for the cooldown. */
  punish: (peer: string, host: string | undefined) => void
  /** True while `peer` or `host` is cooling down (counted as a refused connection). */
  refuses: (peer: string | undefined, host: string | undefined) => boolean
  /** Pass to limitInboundStreams' `onRefused`. */
  onRefused: (what: 'stream' | 'connection') => void
  counters: () => FloodCounters
}

export interface FloodCooldownOptions {
  cooldownMs?: number
  /** Peers and hosts remembered at most; the oldest punishment is forgotten first. Default 4096. */
  maxKeys?: number
  now?: () => number
}

export function floodCooldown (options: FloodCooldownOptions = {}): FloodCooldown {
  const cooldownMs = options.cooldownMs ?? FLOOD_COOLDOWN_MS
  const maxKeys = options.maxKeys ?? 4096
  const now = options.now ?? (() => performance.now())
  // Insertion order is punishment order.
  const until = new Map<string, number>()
  const counters: FloodCounters = { streamsRefused: 0, connectionsCut: 0, connectionsRefused: 0 }

  const mark = (key: string): void => {
    until.delete(key)
    if (until.size >= maxKeys) until.delete(until.keys().next().value as string)
    until.set(key, now() + cooldownMs)
  }
  const cooling = (key: string): boolean => {
    const end = until.get(key)
    if (end === undefined) return false
    if (end > now()) return true
    until.delete(key)
    return false
  }

  return {
    punish (peer, host) {
      mark(`peer ${peer}`)
      if (host !== undefined) mark(`host ${host}`)
    },
    refuses (peer, host) {
      const refused = (peer !== undefined && cooling(`peer ${peer}`)) || (host !== undefined && cooling(`host ${host}`))
      if (refused) counters.connectionsRefused++
      return refused
    },
    onRefused (what) {
      if (what === 'stream') counters.streamsRefused++
      else counters.connectionsCut++
    },
    counters: () => ({ ...counters })
  }
}
