/**
 * A runtime's place in the swarm (DESIGN.md, pipelines 2–3): its libp2p node, the shard server
 * that serves what it holds, the Bloom filter of its blocks gossiped on each model's topic, its
 * provider records in the DHT, and the SwarmNetwork its loads go through.
 *
 * What it serves: objects it received recently (shards, kept in a small memory LRU so a peer
 * can pass a shard on while its own load is still running) and every shard of every sealed
 * block in its caches, re-encoded on demand (Reed-Solomon encode is ≈ 680 MB/s, cheaper than
 * keeping shards twice). Shard CIDs are mapped to their block by the manifests it loaded.
 * Uploads are paced by an optional cap and bounded in concurrency (over the bound: `busy`).
 * The DHT holds block CIDs; a holder of a block serves all its shards.
 */
import { mkdir } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { LRUCache } from 'lru-cache'
import { KEEP_ALIVE, type Connection, type PeerId, type Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { SingleKadDHT } from '@libp2p/kad-dht'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { defaultReedSolomon, erasureCoder, type ErasureCoder } from '../../shared/blocks/erasure.ts'
import { memoryCache } from '../../shared/cache/memory-lru.ts'
import type { CacheTier } from '../../shared/cache/types.ts'
import { InvalidInputError, NoConnectionError } from '../../shared/errors/errors.ts'
import type { Manifest } from '../../shared/manifest/schema.ts'
import { blockFilter, optimalParams, type BlockFilter } from '../../shared/p2p/bloom.ts'
import { encodeGossip, GOSSIP_MAX_MESSAGE_BYTES, modelTopic, readTopicMessage } from '../../shared/p2p/gossip.ts'
import { hostGroup } from '../../shared/p2p/host-group.ts'
import { requestRate } from '../../shared/p2p/request-rate.ts'
import { shardClient } from '../../shared/p2p/shard-client.ts'
import { DEFAULT_BUSY_RETRY_MS, serveShardStream, serveSlots, SHARD_PROTOCOL, type ShardAnswer, type ShardRequest } from '../../shared/p2p/shard-protocol.ts'
import type { SwarmNetwork } from '../../shared/p2p/swarm-source.ts'
import { uploadCap } from '../../shared/p2p/token-bucket.ts'
import { clearableDeadline, untilAborted } from '../../shared/load/deadline.ts'
import { createPeerNode, floodCounters, hostOfPeer, type PeerNode } from './peer-node.ts'
import type { FloodCounters } from '../../shared/p2p/stream-limit.ts'
import { knownPeersFile } from './known-peers.ts'
import { topicValidation } from './topic-validator.ts'

export interface SwarmOptions {
  /** The node's Ed25519 seed (a runtime's: derived from its client key, runtime.ts p2pNodeSeed). */
  seed: Uint8Array
  /** Where peers seen are remembered (`known-peers.json`), so a restart finds the swarm without the coordinator. */
  dir?: string
  listen?: string[]
  bootstrap?: string[]
  /** Upload cap in bytes per second; unlimited when absent. */
  uploadBytesPerSecond?: number
  /** Answers being sent at once; more get `busy`. Default 64. */
  maxServing?: number
  /** Memory for recently received objects, served on. Default 64 MiB. */
  recentBytes?: number
  /** How long a request for an object still on its way here waits before it is answered busy. Default PENDING_ANSWER_MS (20 s). */
  pendingAnswerMs?: number
  /**
   * The Bloom filter's least capacity in blocks (default 64; it grows with the blocks held, see
   * filterCapacity) and its false-positive rate (default 1%).
   */
  filterCapacity?: number
  filterFalsePositiveRate?: number
  /**
   * Other peers' filters are used for this long after their last announcement (holders repeat
   * theirs every 30 s), and at most `maxFilters` are kept, the oldest dropped first: gossip is
   * relayed, so a peer that left never sends a disconnect here, and anyone may announce under
   * any number of keys (so only filters of peers connected to this node are kept, and dropped
   * when they disconnect). Their bits together stay within
   * `maxFilterBytes`, the oldest dropped first (256 filters of the gossip limit's size would be
   * ≈ 50 MB; an honest runtime's is 77 B for one model, ≈ 12 KB for 10,000 blocks). Defaults
   * 90 s (three repeats), 256 and 4 MiB.
   */
  filterTtlMs?: number
  maxFilters?: number
  maxFilterBytes?: number
  /** Longest DHT provider records are held back while fetches keep going. Default 60 s. */
  provideMaxDeferMs?: number
  /** A version was announced on a model topic this node follows. */
  onVersion?: (model: string, version: number, manifestCid: string, from: string) => void
}

/** What the swarm counts, with the node's refusals of stream floods (stream-limit.ts). */
export interface SwarmCounters extends FloodCounters {
  bytesServed: number
  objectsServed: number
  badRequests: number
  busy: number
  notFound: number
  provided: number
  provideFailures: number
  /** Blocks Reed-Solomon encoded to answer parity-shard requests (each kept a while: see PARITY_CACHE_BYTES). */
  parityEncodes: number
  /** Shard requests read late: their peer or host was over its request rate (requestRate). */
  requestsSlowed: number
}

export interface Swarm {
  readonly node: PeerNode
  readonly peerId: string
  readonly network: SwarmNetwork
  /**
   * Maps a manifest's shard CIDs to its blocks (in `cache`), joins its model's topic. The last
   * few manifests per model stay mapped; older versions' shards are forgotten.
   */
  register: (manifest: Manifest, cache: CacheTier) => void
  /** `cache` wrapped so that every stored block is announced (Bloom filter) and provided (DHT). */
  watch: (cache: CacheTier) => CacheTier
  /** Keeps a received object to serve it on, and counts who sent it (the swarm source's `onReceived`). */
  keepRecent: (cid: string, bytes: Uint8Array, from?: string) => void
  /** An object this node is fetching: a request for it waits for it (the swarm source's `onFetching`). */
  fetching: (cid: string, result: Promise<Uint8Array>) => void
  /** Dials the bootstrap peers (again); resolves when at least one answered or all failed. */
  join: (bootstrap: string[], signal?: AbortSignal) => Promise<void>
  counters: () => SwarmCounters
  stop: () => Promise<void>
}

interface ShardRef {
  block: string
  /** The shard's index in the block's k+m shards. */
  index: number
  sealedLength: number
  k: number
  m: number
  cache: CacheTier
}

/**
 * Announcements are debounced while blocks arrive, spaced, and repeated for late joiners. Every
 * copy of an announcement reaches a node from each of its mesh peers (gossipsub's D = 6), and
 * every node of a wave announces, so their number and size are CPU on every node: with a 12 KB
 * filter every 250 ms a runtime of a wave of 8 read 17 MB of gossip beside its 59 MB model, and
 * loads took 26% longer. With one announcement a second (and a 10 s repeat), gossipsub was the
 * largest single cost a working mesh added to a runtime of a wave of 16: ≈ 2.6 s of its CPU
 * (BENCHMARKS.md, "swarm"). During a wave the origin's referrals point at new holders anyway.
 */
const ANNOUNCE_DEBOUNCE_MS = 1_000
/** Least time between two announcements while the held set changes. */
const ANNOUNCE_MIN_GAP_MS = 5_000
/** An unchanged filter is repeated this often, for peers that joined since. */
const ANNOUNCE_REPEAT_MS = 30_000
/**
 * Least time between two announcements peers joining a model's topic bring about. Without it,
 * peers joining (or one toggling its subscription) made holders announce every 5 s instead of
 * every 30 s (review 44b); with it a joiner waits 15 s at most, not until the repeat (45a).
 */
const JOINER_ANNOUNCE_GAP_MS = 15_000
/** Known peers are saved, and the repeat considered, this often. */
const HEARTBEAT_MS = 10_000
/** Bytes of encoded parity shards kept to answer repeated requests without encoding again. */
const PARITY_CACHE_BYTES = 32 << 20
/** Peers whose bytes sent to this node are counted (the most recent ones). */
const MAX_SERVED_US = 1024

/**
 * A filter's capacity for `held` blocks: twice as many, to a power of two, at least `least`, so
 * the false-positive rate stays under its bound as blocks arrive and a filter is as small as
 * what it describes (64 blocks at 1%: 78 bytes). Capped so the announcement (the filter in
 * base64 inside JSON) fits one gossip message: at 1% that is 131,072 blocks of capacity; a node
 * holding more announces a fuller filter, whose false positives rise but which never misses.
 */
export function filterCapacity (held: number, least: number, falsePositiveRate = 0.01): number {
  let capacity = Math.max(least, 2 ** Math.ceil(Math.log2(Math.max(1, 2 * held))))
  while (capacity > 1 && optimalParams(capacity, falsePositiveRate).bits / 8 > MAX_ANNOUNCED_FILTER_BYTES) capacity = Math.floor(capacity / 2)
  return capacity
}
/** Filter bytes whose announcement fits GOSSIP_MAX_MESSAGE_BYTES: base64 is 4/3, plus the JSON and filter headers. */
const MAX_ANNOUNCED_FILTER_BYTES = Math.floor(GOSSIP_MAX_MESSAGE_BYTES * 3 / 4) - 256
const SERVE_TIMEOUT_MS = 30_000
/**
 * Manifests per model whose shards stay indexed: the version in use, its rollback target, a
 * prefetched next one and one spare. An older version's shards are forgotten once their block
 * has left the cache too: a held block is in the Bloom filter and the DHT, and peers sent here
 * ask for its shards (answered "not found", they would rest this node). So the index is bounded
 * by the kept manifests and the cache, not by the versions a long-lived runtime has seen.
 */
const KEPT_MANIFESTS = 4
/** Blocks are provided in the DHT once none has arrived for this long and nothing is on its way. */
const PROVIDE_QUIET_MS = 2_000
/** Longest provider records are held back while fetches keep going. */
const PROVIDE_MAX_DEFER_MS = 60_000
/** Between two provider records of one node (± half). */
const PROVIDE_GAP_MS = 1_000
/** How long `join` waits for the DHT routing table to hold a peer. */
const ROUTING_WAIT_MS = 3_000
/**
 * How long a request for an object still on its way here waits for it before it is answered
 * `busy`: the origin referred the requester here because this node is getting it, so waiting
 * (within the requester's own deadline) beats sending it back to the origin. 2 s, to fit
 * a 4 s header deadline on requesters, cost the coordinator 1.41 × the model in the uncapped
 * swarm bench where this took 1.00–1.07 × (BENCHMARKS.md, "Stop 50"): requesters sent back
 * re-asked the origin, and timed out more.
 */
const PENDING_ANSWER_MS = 20_000
/** The wait a `busy` answer for an object still on its way asks for. */
const PENDING_RETRY_MS = 500
/**
 * Longest a dial to a peer not connected yet may take before its request is given up (the
 * request's own deadline is 10 s). A DHT provider record names any address its author likes: an
 * address that accepts TCP and never speaks held each request for libp2p's whole dial timeout.
 * A reachable peer answers a dial in a few round trips.
 */
const DIAL_TIMEOUT_MS = 2_000
/**
 * After dials to a peer failed UNDIALABLE_AFTER times in a row (refused, or no answer within
 * DIAL_TIMEOUT_MS), how long requests to it fail at once instead of dialling again: every shard
 * of a load otherwise waited out its own dial to a coordinator whose p2p port a firewall drops
 * (review 49c). Not after one failure: one lost dial (a stall, a reset) then took the origin from
 * a whole load (review 49d). A connection to the peer opening ends it.
 */
const UNDIALABLE_MS = 5_000
const UNDIALABLE_AFTER = 2
/** Peers remembered as undialable at most. */
const MAX_UNDIALABLE = 1024

export async function createSwarm (options: SwarmOptions): Promise<Swarm> {
  if (options.dir !== undefined) await mkdir(options.dir, { recursive: true })
  const node = await createPeerNode({ seed: options.seed, listen: options.listen, bootstrap: options.bootstrap })
  const self = node.peerId.toString()
  const shards = new Map<string, ShardRef>()
  /** The shard CIDs indexed for each block, to forget them together. */
  const shardsOf = new Map<string, string[]>()
  const registered = new Map<string, Manifest[]>()
  const blockCaches = new Map<string, CacheTier>()
  const recent = memoryCache({ capacityBytes: options.recentBytes ?? 64 << 20, name: 'swarm-recent' })
  const coders = new Map<string, Promise<ErasureCoder>>()
  const cap = uploadCap(options.uploadBytesPerSecond, SERVE_TIMEOUT_MS)
  const counters: Omit<SwarmCounters, keyof FloodCounters> = { bytesServed: 0, objectsServed: 0, badRequests: 0, busy: 0, notFound: 0, provided: 0, provideFailures: 0, parityEncodes: 0, requestsSlowed: 0 }
  const held = new Set<string>()
  const pending = new Map<string, Promise<Uint8Array>>()
  const filters = new Map<string, { filter: BlockFilter, at: number }>()
  const filterTtlMs = options.filterTtlMs ?? 3 * ANNOUNCE_REPEAT_MS
  const maxFilters = options.maxFilters ?? 256
  const maxFilterBytes = options.maxFilterBytes ?? 4 << 20
  const provideMaxDeferMs = options.provideMaxDeferMs ?? PROVIDE_MAX_DEFER_MS
  const pendingAnswerMs = options.pendingAnswerMs ?? PENDING_ANSWER_MS
  let filterBytes = 0
  const filterSize = (f: BlockFilter): number => Math.ceil(f.bits / 8)
  const dropFilter = (peer: string): void => {
    const kept = filters.get(peer)
    if (kept === undefined) return
    filters.delete(peer)
    filterBytes -= filterSize(kept.filter)
  }
  const topics = new Set<string>()
  const stopping = new AbortController()
  let stopped = false

  const coder = async (k: number, m: number): Promise<ErasureCoder> => {
    const key = `${k}+${m}`
    let c = coders.get(key)
    if (c === undefined) {
      c = erasureCoder(defaultReedSolomon, { k, m })
      coders.set(key, c)
    }
    return await c
  }

  /** The bytes of `cid` if this node holds them: a recent object, a whole block, or a shard of a held block. */
  const lookup = async (request: ShardRequest, signal: AbortSignal): Promise<ShardAnswer> => {
    const recentBytes = await recent.get(request.cid)
    if (recentBytes !== undefined) return { status: 'ok', bytes: recentBytes }
    const coming = pending.get(request.cid)
    if (coming !== undefined) {
      // Referred here while the object is still on its way: answer when it lands, or say when
      // to ask again if it has not landed within PENDING_ANSWER_MS (a failed fetch falls through).
      const wait = clearableDeadline(pendingAnswerMs)
      try {
        const bytes = await untilAborted(AbortSignal.any([signal, wait.signal]), coming).catch(() => undefined)
        if (bytes !== undefined) return { status: 'ok', bytes }
        if (wait.signal.aborted && !signal.aborted && pending.get(request.cid) === coming) return { status: 'busy', retryMs: PENDING_RETRY_MS }
      } finally {
        wait.clear()
      }
    }
    const blockCache = blockCaches.get(request.cid)
    if (blockCache !== undefined) {
      const bytes = await blockCache.get(request.cid, { peek: true })
      if (bytes !== undefined) return { status: 'ok', bytes }
    }
    const ref = shards.get(request.cid)
    if (ref === undefined) return { status: 'not-found' }
    const sealed = await ref.cache.get(ref.block, { peek: true })
    if (sealed === undefined || sealed.length !== ref.sealedLength) return { status: 'not-found' }
    // The code is systematic: data shard i is the i-th slice of the sealed block (the last one
    // zero-padded), so only a parity shard needs the Reed-Solomon encoder.
    const size = Math.max(1, Math.ceil(ref.sealedLength / ref.k))
    if (ref.index < ref.k) {
      const start = ref.index * size
      if (start + size <= sealed.length) return { status: 'ok', bytes: sealed.subarray(start, start + size) }
      const padded = new Uint8Array(size)
      padded.set(sealed.subarray(Math.min(start, sealed.length)))
      return { status: 'ok', bytes: padded }
    }
    // Encoded once per block while it stays in the cache below: every parity request re-encoded
    // the whole block, 14.7 ms of this node's CPU for ~2 ms of the requester's (review 42b 4).
    let parity = parityShards.get(ref.block)
    if (parity === undefined) {
      parity = (await coder(ref.k, ref.m)).encode(sealed).slice(ref.k)
      parityShards.set(ref.block, parity)
      counters.parityEncodes++
    }
    return { status: 'ok', bytes: parity[ref.index - ref.k] as Uint8Array }
  }

  const slots = serveSlots(options.maxServing ?? 64)
  const rate = requestRate()
  await node.handle(SHARD_PROTOCOL, async (stream: Stream, connection: Connection) => {
    await serveShardStream(stream, async (request, signal) => {
      const answer = await lookup(request, signal)
      if (answer.status === 'not-found') counters.notFound++
      return answer
    }, {
      timeoutMs: SERVE_TIMEOUT_MS,
      pace: cap?.pace,
      admit: cap?.admit,
      slots,
      rate,
      // Full slots under a cap drain as fast as the cap lets the answers under way out.
      busyRetryMs: () => Math.max(DEFAULT_BUSY_RETRY_MS, cap?.drainMs() ?? 0),
      peer: connection.remotePeer.toString(),
      host: hostGroup(connection.remoteAddr),
      onServed: n => { counters.bytesServed += n; counters.objectsServed++ },
      onBadRequest: () => { counters.badRequests++ },
      onBusy: () => { counters.busy++ }
    })
  }, { maxInboundStreams: 256 })

  // --- Announcements: the Bloom filter of held blocks, debounced and repeated for late joiners.
  // Times on the monotonic clock: a wall-clock step must not hold announcements back (review 45b).
  let announceTimer: ReturnType<typeof setTimeout> | undefined
  /** When the pending timer fires. */
  let announceDue = Infinity
  let lastAnnounced = -Infinity
  // Called by the debounce timer when it fires, or by the heartbeat when none is pending.
  const announceNow = async (): Promise<void> => {
    announceTimer = undefined
    announceDue = Infinity
    if (stopped || topics.size === 0) return
    lastAnnounced = performance.now()
    // Evicted blocks leave the filter (a Bloom filter cannot remove, so it is rebuilt).
    const evicted: string[] = []
    for (const cid of [...held]) {
      if (await blockCaches.get(cid)?.has(cid).catch(() => false) !== true) {
        held.delete(cid)
        blockCaches.delete(cid)
        evicted.push(cid)
      }
    }
    unindex(evicted)
    const falsePositiveRate = options.filterFalsePositiveRate ?? 0.01
    const filter = blockFilter({ capacity: filterCapacity(held.size, options.filterCapacity ?? 64, falsePositiveRate), falsePositiveRate })
    for (const cid of held) filter.add(cid)
    const message = encodeGossip({ type: 'have', filter: filter.encode(), blocks: held.size })
    for (const topic of topics) await node.services.pubsub.publish(topic, message).catch(() => {})
  }
  /**
   * Announces after the debounce and the gap since the last one, and not before `notBefore`; a
   * timer already pending is kept unless this one is due sooner (new blocks must not wait for a
   * joiner's later announcement, review 45b).
   */
  const announceSoon = (notBefore = 0): void => {
    if (stopped) return
    const now = performance.now()
    const wait = Math.max(ANNOUNCE_DEBOUNCE_MS, lastAnnounced + ANNOUNCE_MIN_GAP_MS - now, notBefore - now)
    if (announceTimer !== undefined && announceDue <= now + wait) return
    clearTimeout(announceTimer)
    announceDue = now + wait
    announceTimer = setTimeout(() => { void announceNow() }, wait)
  }
  /** The parity shards of blocks asked for lately, by block CID (bounded by bytes). */
  const parityShards = new LRUCache<string, Uint8Array[]>({ maxSize: PARITY_CACHE_BYTES, sizeCalculation: shards => Math.max(1, shards.reduce((n, x) => n + x.length, 0)) })
  /** Bytes each peer (or the origin) sent this node, most recently active last: known-peers.json keeps those first. */
  const servedUs = new Map<string, number>()
  const knownPeers = knownPeersFile(node, options.dir, peer => servedUs.get(peer) ?? 0)
  const heartbeat = setInterval(() => {
    if (held.size > 0 && announceTimer === undefined && performance.now() - lastAnnounced >= ANNOUNCE_REPEAT_MS) void announceNow()
    void knownPeers.write().catch(() => {})
  }, HEARTBEAT_MS)
  heartbeat.unref()

  const validation = topicValidation(node.services.pubsub, { hostOf: peer => hostOfPeer(node, peer) })
  // A peer that joins a model's topic (a runtime starting, or restarting with its coordinator
  // down) has no Bloom filter from anyone until the next repeat, up to 30 s away, and until then
  // only the DHT names holders, whose records go out slowly (1 a second) and outlive stopped
  // peers: a restart then found two stopped providers for a block and no live one (e2e
  // swarm.test). Holders announce again soon instead (announceSoon keeps its 5 s gap), one
  // announcement JOINER_ANNOUNCE_GAP_MS after the last a joiner brought about at the earliest;
  // joiners that come while one is due share it.
  let joinerAnnounceAt = 0
  node.services.pubsub.addEventListener('subscription-change', (event) => {
    if (held.size === 0 || announceTimer !== undefined || !event.detail.subscriptions.some(s => s.subscribe && topics.has(s.topic))) return
    const at = Math.max(performance.now(), joinerAnnounceAt)
    joinerAnnounceAt = at + JOINER_ANNOUNCE_GAP_MS
    announceSoon(at)
  })
  node.services.pubsub.addEventListener('message', event => {
    const message = event.detail
    if (!topics.has(message.topic) || message.type !== 'signed') return
    const from = message.from.toString()
    if (from === self) return
    // Read by the topic validator before delivery; a message it rejected never gets here. One
    // it did not see (delivered another way) is read here, with the same checks.
    let decoded = validation.read(message)
    if (decoded === undefined) {
      try {
        decoded = readTopicMessage(message.topic, message.data)
      } catch {
        return
      }
    }
    if (decoded.type === 'have') {
      // Kept only from a peer connected to this node, and only while it is (peer:disconnect
      // below). The author is signed, but a key costs nothing, and addresses in the peer store
      // prove nothing either: any peer can plant some for ids it makes up (one DHT ADD_PROVIDER
      // naming them). Filters under such ids pushed real peers' filters out (maxFilters) and sent
      // every load first to "holders" that were dials into the void, 6 s each (stop 31's review:
      // a shard took 36 s instead of 29 ms). A holder asked is one a stream can be opened to now.
      if (node.getConnections(message.from).length === 0) return
      dropFilter(from)
      // Re-inserted so the map's order stays the order of last announcement.
      filters.set(from, { filter: decoded.filter, at: Date.now() })
      filterBytes += filterSize(decoded.filter)
      while (filters.size > 1 && (filters.size > maxFilters || filterBytes > maxFilterBytes)) dropFilter(filters.keys().next().value as string)
    } else {
      options.onVersion?.(decoded.model, decoded.version, decoded.manifestCid, from)
    }
  })
  node.addEventListener('peer:disconnect', event => { dropFilter(event.detail.toString()) })

  // Provider records are background work: each one is a Kademlia lookup and an ADD_PROVIDER to
  // the closest peers, and in a fleet no larger than a k-bucket both reach every node, so a wave
  // of n runtimes holding b blocks costs each node ≈ 2·n·b DHT requests to answer. Sent as soon
  // as blocks stopped arriving (2 at a time), they took the CPU the wave's later loads needed
  // (16 runtimes at 50 MB/s: load CPU 12.2 s against 6.5 s without provides, and the timeouts
  // sent objects back to the origin; BENCHMARKS.md, "swarm", stop 26). So they wait until this
  // node has nothing on its way, then go out one at a time, PROVIDE_GAP_MS apart. During a wave
  // the origin's referrals and the Bloom filters already point at holders.
  const unprovided = new Set<string>()
  let provideTimer: ReturnType<typeof setTimeout> | undefined
  let providing = false
  /** When provider records were first held back for a fetch under way. */
  let deferredSince: number | undefined
  const provideLater = (): void => {
    if (provideTimer !== undefined) clearTimeout(provideTimer)
    if (!stopped) provideTimer = setTimeout(() => { void provideQueued() }, PROVIDE_QUIET_MS)
  }
  const provideQueued = async (): Promise<void> => {
    provideTimer = undefined
    if (providing) return
    providing = true
    try {
      for (const cid of unprovided) {
        if (stopped) return
        // A load started again (a new version, a prefetch): wait until it is over, but not for
        // ever: a runtime that is always fetching something still provides what it holds.
        if (pending.size > 0) {
          deferredSince ??= Date.now()
          if (Date.now() - deferredSince < provideMaxDeferMs) {
            provideLater()
            return
          }
        } else {
          deferredSince = undefined
        }
        unprovided.delete(cid)
        if (!held.has(cid)) continue
        try {
          await node.contentRouting.provide(CID.parse(cid), { signal: AbortSignal.any([stopping.signal, AbortSignal.timeout(10_000)]) })
          counters.provided++
        } catch {
          if (stopped) return
          counters.provideFailures++
        }
        // Jittered, so the runtimes of one wave, finishing together, do not provide in step.
        await sleep(PROVIDE_GAP_MS * (0.5 + Math.random()), undefined, { signal: stopping.signal }).catch(() => {})
      }
    } finally {
      providing = false
    }
  }
  const provide = (cid: string): void => {
    unprovided.add(cid)
    provideLater()
  }

  /** Forgets the shards of `blocks` that are neither held nor in a kept manifest. */
  const unindex = (blocks: string[]): void => {
    if (blocks.length === 0) return
    const live = new Set([...registered.values()].flat().flatMap(r => r.blocks.map(b => b.cid)))
    for (const block of blocks) {
      if (held.has(block) || live.has(block)) continue
      for (const cid of shardsOf.get(block) ?? []) {
        if (shards.get(cid)?.block === block) shards.delete(cid)
      }
      shardsOf.delete(block)
    }
  }

  const hold = (cid: string, cache: CacheTier): void => {
    blockCaches.set(cid, cache)
    if (held.has(cid)) return
    held.add(cid)
    provide(cid)
    announceSoon()
  }

  /** Peer id → dials failed in a row, when the last did, and until when (performance.now()) none is tried again. */
  const undialable = new Map<string, { failed: number, at: number, until: number }>()
  const dialFailed = (peer: string): void => {
    const now = performance.now()
    const last = undialable.get(peer)
    // libp2p joins concurrent dials to a peer into one: its failure reaches every request that
    // waited on it, and counts once (review 49g: 4 requests on one lost dial made 4 failures).
    if (last !== undefined && now - last.at < DIAL_TIMEOUT_MS / 2) return
    const failed = (last?.failed ?? 0) + 1
    undialable.delete(peer)
    undialable.set(peer, { failed, at: now, until: failed >= UNDIALABLE_AFTER ? now + UNDIALABLE_MS : 0 })
    if (undialable.size > MAX_UNDIALABLE) undialable.delete(undialable.keys().next().value as string)
  }
  node.addEventListener('connection:open', event => { undialable.delete(event.detail.remotePeer.toString()) })

  const client = shardClient({
    async open (peer, signal) {
      let id: PeerId
      try {
        id = peerIdFromString(peer)
      } catch (err) {
        throw new InvalidInputError(`peer id "${peer.slice(0, 80)}" does not parse`, { cause: err })
      }
      const dialing = node.getConnections(id).length === 0
      if (!dialing) return await node.dialProtocol(id, SHARD_PROTOCOL, { signal })
      const waitMs = (undialable.get(peer)?.until ?? 0) - performance.now()
      if (waitMs > 0) throw new NoConnectionError(`no connection to peer ${peer.slice(-12)}: a dial to it failed moments ago (tried again in ${Math.ceil(waitMs / 1000)} s)`)
      try {
        return await node.dialProtocol(id, SHARD_PROTOCOL, { signal: AbortSignal.any([signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)]) })
      } catch (err) {
        if (signal.aborted || node.getConnections(id).length > 0) throw err
        dialFailed(peer)
        // No connection came of it: the peer is down or unreachable, not slow (the swarm source
        // stops asking an origin so for a while; review 49c).
        throw new NoConnectionError(`no connection to peer ${peer.slice(-12)} (${err instanceof Error ? `${err.name}: ${err.message.slice(0, 120)}` : String(err)})`, { cause: err })
      }
    }
  })

  /** Addresses last merged into the peer store per referred peer. */
  const learnt = new Map<string, string>()
  const network: SwarmNetwork = {
    self,
    likelyHolders: block => {
      const now = Date.now()
      const holders: string[] = []
      for (const [peer, { filter, at }] of filters) {
        if (now - at > filterTtlMs) dropFilter(peer)
        else if (filter.has(block)) holders.push(peer)
      }
      return holders
    },
    unhinted: () => {
      const peers = new Set<string>()
      for (const topic of topics) {
        for (const peer of node.services.pubsub.getSubscribers(topic)) {
          const id = peer.toString()
          if (id !== self && !filters.has(id)) peers.add(id)
        }
      }
      return [...peers]
    },
    connected: peer => {
      try {
        return node.getConnections(peerIdFromString(peer)).length > 0
      } catch {
        return false
      }
    },
    async findProviders (block, { signal, limit, enoughConnected, usable }) {
      const found: string[] = []
      let connected = 0
      try {
        for await (const provider of node.contentRouting.findProviders(CID.parse(block), { signal })) {
          const id = provider.id.toString()
          if (id === self || found.includes(id)) continue
          found.push(id)
          if (node.getConnections(provider.id).length > 0 && (usable?.(id) ?? true)) connected++
          if (found.length >= limit || (enoughConnected !== undefined && connected >= enoughConnected)) break
        }
      } catch (err) {
        // The deadline ends the query, not its result: one peer that never answers keeps the
        // walk open until the deadline, and the providers found before it are still good.
        if (!signal.aborted) throw err
      }
      return found
    },
    async request (peer, cid, options) {
      // As given, `onHeader` included (review 50b: dropped here, no header ever reached the
      // source, so every answer slower than the hedge delay was hedged, and none was cut).
      return await client.request(peer, cid, options)
    },
    async learn (referral) {
      // The origin names the same few peers in hundreds of referrals: a peer already connected
      // or already learnt with these addresses costs no peer-store write (each one a load,
      // dedupe and protobuf save: ≈ 4 s of CPU per runtime in a wave of 8 before this check).
      const key = referral.addrs.join(' ')
      if (learnt.get(referral.id) === key) return
      const id = peerIdFromString(referral.id)
      if (node.getConnections(id).length > 0) return
      const addrs = referral.addrs.flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
      if (addrs.length === 0) return
      await node.peerStore.merge(id, { multiaddrs: addrs })
      learnt.set(referral.id, key)
      if (learnt.size > 4096) learnt.delete(learnt.keys().next().value as string)
    }
  }

  return {
    node,
    peerId: self,
    network,
    register (manifest, cache) {
      const topic = modelTopic(manifest.model)
      if (!topics.has(topic)) {
        topics.add(topic)
        // The validator first, so no message on the topic is relayed unchecked.
        validation.add(topic)
        node.services.pubsub.subscribe(topic)
      }
      const kept = [...(registered.get(manifest.model) ?? []).filter(r => r.version !== manifest.version), manifest]
      const forgotten = kept.splice(0, Math.max(0, kept.length - KEPT_MANIFESTS))
      registered.set(manifest.model, kept)
      unindex(forgotten.flatMap(r => r.blocks.map(b => b.cid)))
      const { k, m } = manifest.erasure
      for (const block of manifest.blocks) {
        block.shards.cids.forEach((cid, index) => { shards.set(cid, { block: block.cid, index, sealedLength: block.sealedLength, k, m, cache }) })
        shardsOf.set(block.cid, block.shards.cids)
        // Blocks already in the cache (an earlier version, a restart) are held from now on.
        void cache.has(block.cid).then(has => { if (has) hold(block.cid, cache) }, () => {})
      }
    },
    watch (cache) {
      return {
        ...cache,
        name: cache.name,
        async put (key, bytes) {
          // Announced only when held: a block the cache skipped is not served here.
          const stored = await cache.put(key, bytes)
          // `!== false`: a tier written before put said whether it stored resolves undefined.
          if (stored !== false) hold(key, cache)
          return stored
        },
        async delete (key) {
          held.delete(key)
          blockCaches.delete(key)
          unindex([key])
          announceSoon()
          return await cache.delete(key)
        }
      }
    },
    keepRecent (cid, bytes, from) {
      void recent.put(cid, bytes).catch(() => {})
      if (from !== undefined) {
        const total = (servedUs.get(from) ?? 0) + bytes.length
        servedUs.delete(from)
        servedUs.set(from, total)
        if (servedUs.size > MAX_SERVED_US) servedUs.delete(servedUs.keys().next().value as string)
      }
    },
    fetching (cid, result) {
      pending.set(cid, result)
      result.then(() => {}, () => {}).finally(() => { if (pending.get(cid) === result) pending.delete(cid) })
    },
    async join (bootstrap, signal) {
      const remembered = options.dir === undefined ? [] : await knownPeers.read()
      const targets = [...new Set([...bootstrap, ...remembered])]
      // Bootstrap peers (the coordinator's node, the origin) keep their addresses in the peer
      // store and a keep-alive tag, so a closed connection is redialled and a request by peer
      // id always finds an address.
      for (const text of bootstrap) {
        const addr = multiaddr(text)
        const id = addr.getComponents().find(c => c.name === 'p2p')?.value
        if (id !== undefined) await node.peerStore.merge(peerIdFromString(id), { multiaddrs: [addr.decapsulateCode(421)], tags: { [KEEP_ALIVE]: { value: 1 } } }).catch(() => {})
      }
      // Each dial within DIAL_TIMEOUT_MS: an address that accepts TCP and never speaks (a firewall
      // dropping the p2p port) held the load for the fetch's whole deadline (review 49c).
      const dialSignal = (): AbortSignal => signal === undefined ? AbortSignal.timeout(DIAL_TIMEOUT_MS) : AbortSignal.any([signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)])
      const results = await Promise.allSettled(targets.map(async a => {
        const addr = multiaddr(a)
        try {
          return await node.dial(addr, { signal: dialSignal() })
        } catch (err) {
          // The shard requests that follow fail at once instead of dialling it again.
          const id = addr.getComponents().find(c => c.name === 'p2p')?.value
          if (id !== undefined && signal?.aborted !== true && node.getConnections(peerIdFromString(id)).length === 0) dialFailed(id)
          throw err
        }
      }))
      if (results.every(r => r.status === 'rejected')) {
        const first = results[0]
        if (first?.status === 'rejected') throw first.reason
        return
      }
      // A lookup with an empty routing table returns nothing at once: wait (bounded) until the
      // peers just dialled have been identified and added to it.
      const dht = node.services.dht as SingleKadDHT
      const until = Date.now() + ROUTING_WAIT_MS
      while (dht.routingTable.size === 0 && Date.now() < until && signal?.aborted !== true) await new Promise(resolve => setTimeout(resolve, 20))
    },
    counters: () => ({ ...counters, requestsSlowed: rate.slowed, ...floodCounters(node) }),
    async stop () {
      if (stopped) return
      stopped = true
      await knownPeers.write().catch(() => {})
      clearInterval(heartbeat)
      if (announceTimer !== undefined) clearTimeout(announceTimer)
      if (provideTimer !== undefined) clearTimeout(provideTimer)
      stopping.abort()
      validation.stop()
      await client.close()
      await node.stop()
      await recent.close()
    }
  }
}
