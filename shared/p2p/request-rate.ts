/**
 * How fast one peer, and one host, may send shard requests to a server. Every request waits its
 * turn in two token buckets (counted in requests) before it is read, so a peer over its rate is
 * slowed by back-pressure (its streams stop being read; Yamux's windows fill) rather than
 * answered: a `busy` or `not-found` answer costs the server what the request-response flood it
 * would answer costs (review 42b: ~12,500 answers a second from one connection, 70 % of a core).
 *
 * The rates sit far above what an honest loader sends: it asks each object once per source and
 * at most a few dozen at a time, so a whole model's requests fit in the burst. Hosts are
 * hostGroup's (none for loopback), so Sybil ids of one host share the host's bucket.
 */
import { tokenBucket, type TokenBucket } from './token-bucket.ts'

/** Default requests a second one peer may send, and at once after an idle spell. */
export const PEER_REQUESTS_PER_SECOND = 500
export const PEER_REQUEST_BURST = 1000

export interface RequestRateOptions {
  /** Requests a second one peer may send. Default PEER_REQUESTS_PER_SECOND. */
  perPeer?: number
  /** Requests one peer may send at once after an idle spell. Default PEER_REQUEST_BURST. */
  peerBurst?: number
  /** Requests a second all peers of one host may send. Default 4 × perPeer. */
  perHost?: number
  /** Requests all peers of one host may send at once. Default 4 × peerBurst. */
  hostBurst?: number
  /** Peers and hosts remembered at most (the least recently seen are forgotten). Default 4096. */
  maxKeys?: number
  now?: () => number
}

export interface RequestRate {
  /** Resolves when `peer` (from `host`) may send its next request; rejects when the signal fires first. */
  wait: (peer: string | undefined, host: string | undefined, signal: AbortSignal) => Promise<void>
  /** Requests that had to wait for a token (of their peer, their host or both). */
  readonly slowed: number
}

export function requestRate (options: RequestRateOptions = {}): RequestRate {
  const perPeer = options.perPeer ?? PEER_REQUESTS_PER_SECOND
  const peerBurst = options.peerBurst ?? PEER_REQUEST_BURST
  const perHost = options.perHost ?? 4 * perPeer
  const hostBurst = options.hostBurst ?? 4 * peerBurst
  const maxKeys = options.maxKeys ?? 4096
  // Insertion order is recency order: a key seen again moves to the end.
  const buckets = new Map<string, TokenBucket>()
  let slowed = 0

  const bucketOf = (key: string, rate: number, burst: number): TokenBucket => {
    let bucket = buckets.get(key)
    if (bucket === undefined) {
      bucket = tokenBucket({ bytesPerSecond: rate, burstBytes: burst, now: options.now })
      if (buckets.size >= maxKeys) buckets.delete(buckets.keys().next().value as string)
    } else {
      buckets.delete(key)
    }
    buckets.set(key, bucket)
    return bucket
  }

  return {
    get slowed () { return slowed },
    async wait (peer, host, signal) {
      // The peer's own bucket first: a request waiting there has taken nothing from its host, so
      // one id flooding past its rate does not drain what the host's other ids share (review 43a).
      let waited = peer !== undefined && await bucketOf(`peer ${peer}`, perPeer, peerBurst).take(1, signal)
      if (host !== undefined) waited = await bucketOf(`host ${host}`, perHost, hostBurst).take(1, signal) || waited
      if (waited) slowed++
    }
  }
}
