/**
 * The coordinator's libp2p node: the swarm's bootstrap peer and its fallback origin. It serves
 * sealed blocks and shards from the block files over the shard protocol, provides block CIDs
 * in the DHT, and announces each new version on the model's gossip topic.
 *
 * Super-seeding (after BitTorrent's super-seed mode, BEP 16): the origin hands each object out
 * once, and answers later requests for it with a referral (`elsewhere`) to the peers that got
 * it — the ones served directly first, then those it is being sent to (a runtime answers a
 * request for an object on its way when it lands), then the earliest referred (by now the
 * likeliest to hold it). A requester that cannot get it from them asks again with `force` and is served. So
 * a wave of cold starts costs the origin about one copy of the model plus the forced retries,
 * instead of one copy per runtime, without any peer having to know the others in advance.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import pLimit from 'p-limit'
import { IntegrityError, NotFoundError } from '../../shared/errors/errors.ts'
import { encodeGossip, modelTopic } from '../../shared/p2p/gossip.ts'
import { hostGroup } from '../../shared/p2p/host-group.ts'
import { PEER_REQUEST_BURST, PEER_REQUESTS_PER_SECOND, requestRate } from '../../shared/p2p/request-rate.ts'
import { MAX_REFERRALS, serveShardStream, serveSlots, SHARD_PROTOCOL, type Referral, type ShardAnswer } from '../../shared/p2p/shard-protocol.ts'
import type { FloodCounters } from '../../shared/p2p/stream-limit.ts'
import { tokenBucket } from '../../shared/p2p/token-bucket.ts'
import { createPeerNode, dialable, floodCounters, hostOfPeer, type PeerNode } from '../../node-runtime/p2p/peer-node.ts'
import { topicValidation } from '../../node-runtime/p2p/topic-validator.ts'
import type { BlockFiles } from '../store/block-files.ts'
import type { AnswerAdmission } from '../answers.ts'
import { BUSY_RETRY_MS, SERVE_TIMEOUT_MS } from '../constants.ts'

/** DHT provide records the origin sends a second at most (each reaches every runtime of a small fleet). */
export const ORIGIN_PROVIDES_PER_SECOND = 50

export interface OriginOptions {
  /** The coordinator's Ed25519 identity seed: its peer id follows from the key runtimes pin. */
  seed: Uint8Array
  files: BlockFiles
  listen?: string[]
  /** Refer repeat requests to peers that already got the object. Default true. */
  superSeed?: boolean
  /** Admits and paces bodies: the coordinator's answer budget and upload cap, shared with its HTTP API. */
  answers?: AnswerAdmission
}

/** What the origin counts, with its node's refusals of stream floods (stream-limit.ts). */
export interface OriginCounters extends FloodCounters {
  bytesServed: number
  objectsServed: number
  referrals: number
  forced: number
  badRequests: number
  notFound: number
  /** Requests for an object whose file is damaged (it does not hash to its CID): answered `not-found`, so the peer asks elsewhere. */
  damaged: number
  /** Requests answered `busy`: the answer budget (or the upload cap) had no room. */
  busy: number
  /** Requests read late: their peer or host was over its request rate (requestRate). */
  requestsSlowed: number
}

export interface Origin {
  readonly node: PeerNode
  readonly peerId: string
  /** Addresses runtimes bootstrap from (with /p2p/<id>). */
  addresses: () => string[]
  announce: (model: string, version: number, manifestCid: string) => Promise<void>
  provide: (cids: string[]) => void
  counters: () => OriginCounters
  stop: () => Promise<void>
}

/** How long a runtime's kept-open stream may wait for its next request. */
const IDLE_TIMEOUT_MS = 30_000
/** Objects whose hand-outs are remembered; older ones are served again (a new wave re-seeds). */
const REMEMBERED_OBJECTS = 65_536
/** Answers under way at once (a quarter of them per peer, half per host at most: serveSlots). */
const ORIGIN_SERVE_SLOTS = 64

/**
 * Peers' worth of request rate the peers of one host share at the origin: every runtime of a
 * fleet asks it about every object of a cold start (most answers are referrals), and a fleet
 * behind one NAT is one host.
 */
export const ORIGIN_HOST_SHARE = 16

export async function createOrigin (options: OriginOptions): Promise<Origin> {
  const node = await createPeerNode({ seed: options.seed, listen: options.listen })
  const self = node.peerId.toString()
  const superSeed = options.superSeed ?? true
  const counters: Omit<OriginCounters, keyof FloodCounters> = { bytesServed: 0, objectsServed: 0, referrals: 0, forced: 0, badRequests: 0, notFound: 0, damaged: 0, busy: 0, requestsSlowed: 0 }
  /** Per object: peers served directly, peers it is being sent to, then peers referred, each in order. */
  const handedOut = new Map<string, { served: string[], sending: string[], referred: string[] }>()
  const provideLimit = pLimit(4)
  // Each provide is a DHT stream to every runtime of a fleet smaller than a k-bucket: unpaced,
  // a new model's provides reached 301 streams a second on one runtime (review 44a H1), where a
  // stream flood is judged (stream-limit.ts). Providing is background work: the origin serves
  // what it holds whether or not the DHT says so.
  const providePace = tokenBucket({ bytesPerSecond: ORIGIN_PROVIDES_PER_SECOND, burstBytes: ORIGIN_PROVIDES_PER_SECOND })
  const slots = serveSlots(ORIGIN_SERVE_SLOTS)
  const rate = requestRate({ perHost: ORIGIN_HOST_SHARE * PEER_REQUESTS_PER_SECOND, hostBurst: ORIGIN_HOST_SHARE * PEER_REQUEST_BURST })
  const topics = new Set<string>()

  /**
   * Where others may reach `peer`: the dialable addresses it announced (review 42b 5: a `/unix/`
   * socket it named was dialled by every runtime referred to it). Not matched to the host it
   * connects from: boxes behind one NAT reach each other at LAN addresses the origin never sees.
   */
  const addressesOf = async (peer: PeerId): Promise<string[]> => {
    try {
      const known = await node.peerStore.get(peer)
      return known.addresses.map(a => a.multiaddr).filter(dialable).map(ma => ma.toString()).slice(0, 8)
    } catch {
      return []
    }
  }

  const referralFor = async (cid: string, requester: string): Promise<Referral[]> => {
    const record = handedOut.get(cid)
    if (record === undefined) return []
    const connected = new Map(node.getPeers().map(p => [p.toString(), p]))
    // A peer can be in two lists (referred, then served): named once.
    const ids = [...new Set([...record.served, ...record.sending, ...record.referred])].filter(p => p !== requester && connected.has(p)).slice(0, MAX_REFERRALS)
    return await Promise.all(ids.map(async id => ({ id, addrs: await addressesOf(connected.get(id) as PeerId) })))
  }

  const remember = (cid: string, peer: string, how: 'served' | 'sending' | 'referred'): void => {
    let record = handedOut.get(cid)
    if (record === undefined) {
      record = { served: [], sending: [], referred: [] }
      handedOut.set(cid, record)
      if (handedOut.size > REMEMBERED_OBJECTS) handedOut.delete(handedOut.keys().next().value as string)
    }
    const list = record[how]
    if (!list.includes(peer) && list.length < 64) list.push(peer)
  }
  const sendingEnded = (cid: string, peer: string): void => {
    const sending = handedOut.get(cid)?.sending
    const at = sending?.indexOf(peer) ?? -1
    if (at >= 0) sending?.splice(at, 1)
  }

  await node.handle(SHARD_PROTOCOL, async (stream: Stream, connection: Connection) => {
    const requester = connection.remotePeer.toString()
    await serveShardStream(stream, async (request): Promise<ShardAnswer> => {
      if (superSeed && request.force !== true) {
        const peers = await referralFor(request.cid, requester)
        if (peers.length > 0) {
          counters.referrals++
          remember(request.cid, requester, 'referred')
          return { status: 'elsewhere', peers }
        }
      }
      if (request.force === true) counters.forced++
      let bytes: Uint8Array
      try {
        bytes = await options.files.get(request.cid)
      } catch (err) {
        // A damaged file (blockFiles checks each read against its CID) is not served: as if not
        // held, rather than a stream aborted with nothing counted.
        if (err instanceof IntegrityError) {
          counters.damaged++
          return { status: 'not-found' }
        }
        if (!(err instanceof NotFoundError)) throw err
        counters.notFound++
        return { status: 'not-found' }
      }
      return { status: 'ok', bytes }
    }, {
      timeoutMs: SERVE_TIMEOUT_MS,
      // Answer slots with a per-peer bound, as the runtimes' own serving: one peer holding paused
      // streams must not take the whole serving budget (found by review).
      slots,
      rate,
      peer: requester,
      host: hostGroup(connection.remoteAddr),
      idleTimeoutMs: IDLE_TIMEOUT_MS,
      pace: options.answers?.pace,
      admit: options.answers?.admit,
      busyRetryMs: BUSY_RETRY_MS,
      // A peer answered busy holds nothing and is not referred to; one being sent the object is,
      // until its download breaks off (found by review). Referring only to peers that had got
      // the whole object served every request that came while the first copy was on its way: a
      // 50 MB/s cap made that 2.8 model copies for 16 runtimes (BENCHMARKS.md, "swarm").
      onSending: request => { remember(request.cid, requester, 'sending') },
      onServed: (n, request) => { counters.bytesServed += n; counters.objectsServed++; sendingEnded(request.cid, requester); remember(request.cid, requester, 'served') },
      onBroken: request => { sendingEnded(request.cid, requester) },
      onBadRequest: () => { counters.badRequests++ },
      onBusy: () => { counters.busy++ }
    })
  }, { maxInboundStreams: 256 })

  const validation = topicValidation(node.services.pubsub, { hostOf: peer => hostOfPeer(node, peer) })
  return {
    node,
    peerId: self,
    addresses: () => node.getMultiaddrs().map(a => a.toString()),
    async announce (model, version, manifestCid) {
      const topic = modelTopic(model)
      if (!topics.has(topic)) {
        topics.add(topic)
        // As on runtimes: what the origin relays on a model topic is checked first.
        validation.add(topic)
        node.services.pubsub.subscribe(topic)
      }
      await node.services.pubsub.publish(topic, encodeGossip({ type: 'version', model, version, manifestCid })).catch(() => {})
    },
    provide (cids) {
      for (const cid of cids) {
        void provideLimit(async () => {
          await providePace.take(1)
          await node.contentRouting.provide(CID.parse(cid), { signal: AbortSignal.timeout(10_000) }).catch(() => {})
        })
      }
    },
    counters: () => ({ ...counters, requestsSlowed: rate.slowed, ...floodCounters(node) }),
    async stop () {
      provideLimit.clearQueue()
      validation.stop()
      await node.stop()
    }
  }
}
