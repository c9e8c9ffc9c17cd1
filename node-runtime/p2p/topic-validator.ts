/**
 * Gossipsub validation of blockfed's model topics (gossipsub v1.1, "extended validators"): every
 * message is read in full (shared/p2p/gossip.ts, readTopicMessage) before gossipsub delivers it
 * here or relays it to the mesh. A bad one is rejected: it goes no further than this node, and
 * it counts against the peer that sent it (P4, "invalid messages", in the topic's score
 * parameters below), which is graylisted after a few. A message whose signed author is
 * graylisted here is ignored even when an honest peer relays it (that relayer is not penalised).
 * Without the validator a runtime relayed messages it then dropped itself (junk, undecodable
 * filters): 20 of 256 KB each crossed a runtime unchanged.
 *
 * Valid messages are rate-limited per signed author and topic (AUTHOR_RATE): beyond the limit
 * an author's messages are ignored, neither read nor relayed, so one key cannot make every node
 * of the mesh decode and forward a stream of filters. Keys are free, though: one connection
 * carrying messages signed by a fresh key each passed every one of them (60 filters of 190 KB
 * in a few seconds, all relayed on). So every message, whoever signed it, also spends the byte
 * budget of what handed it over (SOURCE_RATE): the propagation source's host (hostGroup of its
 * connection) where it has one, so that fresh peer ids from one address share it, else its peer
 * id (loopback peers, a cluster on one machine, are each their own).
 *
 * The budget is spent before gossipsub sees the message (at its per-message entry,
 * `admitBefore` below), not in the validator: gossipsub puts a message in its seen cache, and
 * tells its mesh not to send it (IDONTWANT), before it asks the validator, so a message the
 * validator ignored is a duplicate for 2 minutes (seenTTL) whoever sends it next. A source that
 * had spent its budget could thus keep from this node the messages it was first to relay.
 * Dropped before, an over-budget message is as if never received, and the copy another peer
 * relays is read as usual; if it answered our IWANT, that peer's promise is settled
 * (settlePromise), or gossipsub would penalise it for a message it did send. A copy of a
 * message already seen (gossipsub's fast id cache) is not charged: gossipsub drops it for a map
 * lookup, and honest meshes hand over every message several times. What a message's author decides (graylisted, over its rate, an old sequence
 * number) stays in the validator: such a message is stale whoever relays it, and being
 * ignored there also tells gossipsub's IWANT tracker that it arrived, so the honest peer that
 * answered our IWANT with it is not penalised for a broken promise (P7, −10 × count²).
 *
 * Replays: an author's messages are taken in increasing sequence number only (the pubsub spec's
 * "linearly increasing" seqno; gossipsub seeds it from the clock, so it grows across restarts
 * too; kubo's BasicSeqnoValidator does the same). So a relayer cannot spend an author's rate, or
 * pass off a stale filter or announcement, with that author's old signed messages, once this
 * node has taken a newer one. The newest number is kept for the AUTHORS_KEPT most recently
 * heard authors, for SEQNO_MEMORY_MS after it was taken: an author whose clock went back across
 * a restart is heard again after that, and one pushed out can have old messages taken once more
 * (still within AUTHOR_RATE). A node that never heard an author takes its replayed old messages
 * in order until the rate stops them; the next real one is then ignored (and seen-cached), and
 * the one after, a window later, is taken.
 *
 * What a validator read is kept for the `message` event that follows (the same object), so a
 * filter of up to 256 KB is decoded once.
 */
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import { RateLimiter } from '@libp2p/utils'
import { LRUCache } from 'lru-cache'
import { peerIdFromMultihash } from '@libp2p/peer-id'
import * as Digest from 'multiformats/hashes/digest'
import { createTopicScoreParams, validateTopicScoreParams, type TopicScoreParams } from '@libp2p/gossipsub/score'
import { readTopicMessage, type TopicMessage } from '../../shared/p2p/gossip.ts'
import { GOSSIP_GRAYLIST_THRESHOLD, type PeerNode } from './peer-node.ts'

/**
 * Score parameters of a model topic: only P4, the square of a peer's decaying count of invalid
 * messages, negative. Model topics carry a few messages a minute, so the delivery-rate terms
 * (P1–P3b) would only punish quiet peers. With weight −1 and the default graylist threshold
 * (−80), 9 invalid messages in a burst graylist a peer: gossipsub then drops its RPCs unread
 * until the count has decayed below √80 ≈ 8.9 (0.98 a second: 2 minutes after a burst of 100).
 * An honest peer of another protocol version, whose every announcement is invalid here, settles
 * at a count of ≈ 2.2 (score ≈ −5: out of the mesh, still heard) at the 30 s repeat, and at
 * ≈ 10 (graylisted) while it loads and announces every 5 s (swarm.ts).
 */
export const MODEL_TOPIC_SCORE: TopicScoreParams = createTopicScoreParams({
  topicWeight: 1,
  timeInMeshWeight: 0,
  firstMessageDeliveriesWeight: 0,
  meshMessageDeliveriesWeight: 0,
  meshFailurePenaltyWeight: 0,
  invalidMessageDeliveriesWeight: -1,
  invalidMessageDeliveriesDecay: 0.98
})
validateTopicScoreParams(MODEL_TOPIC_SCORE)

/**
 * Messages one author may have read and relayed per topic in a fixed window. An honest runtime
 * announces at most every 5 s while it loads (swarm.ts: 2–3 in 10 s) and a coordinator once per
 * version, so a flood is the only thing the limit stops. Over it a message is ignored, not
 * rejected: a relayer whose window started at another time than ours may pass on one more of
 * an author's messages than we take, and must not be penalised (P4) for it.
 */
export const AUTHOR_RATE = { messages: 10, seconds: 10 }

/**
 * Bytes one host (or peer without a host) may hand this node per topic and window, whoever
 * signed them; a message costs at least `leastCost` (small ones still cost a signature check
 * and a parse). Filters grow with the blocks their author holds (swarm.ts, filterCapacity: 78
 * bytes for 64 blocks, the 190 KB maximum past 65,536), so an honest relayer passing 2
 * announcements a window from each of 100 authors of 1,000 blocks each (3.3 KB a message)
 * spends a third of it; 10 authors announcing the largest filters every 5 s would spend it all.
 * Only the first copy of a message is charged, so peers of one host relaying the same messages
 * spend it once between them.
 */
export const SOURCE_RATE = { bytes: 2 << 20, seconds: 10, leastCost: 512 }

/** Authors whose newest sequence number is kept, the most recently heard first (≈ 150 bytes each). */
export const AUTHORS_KEPT = 16_384
/** How long an author's newest sequence number is kept after it was taken. */
export const SEQNO_MEMORY_MS = 5 * 60_000

/**
 * Where gossipsub keeps per-topic score parameters. Its public interface has no way to score a
 * topic known only after start (model topics come with registrations), so this reaches the
 * `score.params.topics` record its peer score reads on every computation; a gossipsub whose
 * internals differ fails here, loudly, and the scoring test catches it.
 */
function topicScores (pubsub: PeerNode['services']['pubsub']): Record<string, TopicScoreParams> {
  const topics = (pubsub as unknown as { score?: { params?: { topics?: Record<string, TopicScoreParams> } } }).score?.params?.topics
  if (topics === undefined) throw new Error('gossipsub: no score.params.topics to set model topic scores in')
  return topics
}

/** A message of a received RPC as gossipsub takes it in: nothing checked yet, not even its signature. */
interface ReceivedMessage { topic: string, data?: Uint8Array, from?: Uint8Array, seqno?: Uint8Array }
type ReceiveMessage = (from: PeerId, message: ReceivedMessage) => Promise<void>
/** A check before gossipsub's seen cache: false drops the message as though it never came. */
type Admit = (from: PeerId, message: ReceivedMessage) => boolean

/** Per gossipsub instance: its own entry, and the checks every topicValidation on it added. */
const admitted = new WeakMap<object, { receive: ReceiveMessage, wrapper: ReceiveMessage, admits: Set<Admit> }>()

/**
 * Runs `admit` on every message gossipsub takes in, before its duplicate check, signature check,
 * seen cache and validator: at GossipSub.handleReceivedMessage, which its handleReceivedRpc
 * calls through `this` for each message of an RPC (IWANT answers included) and which nothing
 * else calls. Its public interface has no hook ahead of the seen cache; a gossipsub whose
 * internals differ fails here, loudly, and the scoring test catches it. One wrapper per
 * instance, however many validations share it; the last removal puts gossipsub's own back.
 */
function admitBefore (pubsub: PeerNode['services']['pubsub'], admit: Admit): () => void {
  const target = pubsub as unknown as { handleReceivedMessage?: unknown }
  let entry = admitted.get(pubsub)
  if (entry === undefined) {
    if (typeof target.handleReceivedMessage !== 'function') throw new Error('gossipsub: no handleReceivedMessage to check messages at before its seen cache')
    const receive = target.handleReceivedMessage as ReceiveMessage
    const admits = new Set<Admit>()
    const wrapper: ReceiveMessage = async (from, message) => {
      for (const check of admits) if (!check(from, message)) return
      await receive.call(pubsub, from, message)
    }
    entry = { receive, wrapper, admits }
    admitted.set(pubsub, entry)
    target.handleReceivedMessage = wrapper
  }
  const { admits } = entry
  admits.add(admit)
  return () => {
    admits.delete(admit)
    const current = admitted.get(pubsub)
    if (admits.size === 0 && current !== undefined && target.handleReceivedMessage === current.wrapper) {
      target.handleReceivedMessage = current.receive
      admitted.delete(pubsub)
    }
  }
}

/** Whether gossipsub has already taken in (and signature-checked) a copy of `message`: its fast id cache. */
function seenCopy (pubsub: PeerNode['services']['pubsub']): (message: ReceivedMessage) => boolean {
  const internals = pubsub as unknown as { fastMsgIdFn?: (m: ReceivedMessage) => string, fastMsgIdCache?: { get: (id: string) => unknown } }
  return message => {
    const id = internals.fastMsgIdFn?.(message)
    return id !== undefined && internals.fastMsgIdCache?.get(id) !== undefined
  }
}

/**
 * Forgets `from`'s IWANT promise of `message` (gossipsub v1.1 §"Promises", P7) when the message
 * is dropped before gossipsub sees it: the peer did answer, and breaking the promise would cost
 * it −10 × count² and its place in the mesh for a limit that is ours. Only `from`'s promise goes,
 * not other peers' for the same id, since the message is not yet verified: a peer claiming an
 * id with a bad signature escapes P7 only by spending its own budget. The id is gossipsub's
 * StrictSign one (author key and sequence number), computed by its own msgIdFn.
 */
function settlePromise (pubsub: PeerNode['services']['pubsub']): (from: PeerId, message: ReceivedMessage) => void {
  const internals = pubsub as unknown as {
    msgIdFn?: (message: { type: 'signed', from: PeerId, sequenceNumber: bigint }) => Uint8Array | Promise<Uint8Array>
    msgIdToStrFn?: (id: Uint8Array) => string
    gossipTracer?: { promises?: Map<string, Map<string, number>> }
  }
  return (from, message) => {
    const promises = internals.gossipTracer?.promises
    if (promises === undefined || promises.size === 0 || message.from === undefined || message.seqno === undefined) return
    void (async () => {
      const author = peerIdFromMultihash(Digest.decode(message.from as Uint8Array))
      const sequenceNumber = BigInt(`0x${Buffer.from(message.seqno as Uint8Array).toString('hex')}`)
      const id = await internals.msgIdFn?.({ type: 'signed', from: author, sequenceNumber })
      if (id === undefined || internals.msgIdToStrFn === undefined) return
      const idStr = internals.msgIdToStrFn(id)
      const byPeer = promises.get(idStr)
      byPeer?.delete(from.toString())
      if (byPeer?.size === 0) promises.delete(idStr)
    })().catch(() => {}) // an author field that is no peer id: nothing was promised under it
  }
}

/** A peer's gossipsub score (getScore is on the GossipSub class, not on its exported interface). */
function scoreOf (pubsub: PeerNode['services']['pubsub']): (peer: string) => number {
  const scored = pubsub as unknown as { getScore?: (peer: string) => number }
  if (typeof scored.getScore !== 'function') throw new Error('gossipsub: no getScore to read peer scores with')
  return peer => scored.getScore?.(peer) ?? 0
}

export interface TopicValidation {
  /** Validates and scores every message on `topic` from now on (idempotent). */
  add: (topic: string) => void
  /** What the validator read from `message`; undefined for a message it did not see. */
  read: (message: Message) => TopicMessage | undefined
  /** Removes every validator and score parameter this added. */
  stop: () => void
}

export interface TopicValidationOptions {
  /** The host a peer is connected from (hostGroup of its connection), for SOURCE_RATE; none by default. */
  hostOf?: (peer: PeerId) => string | undefined
  /** Monotonic milliseconds the seqno memory (SEQNO_MEMORY_MS) is timed by; performance.now by default. */
  now?: () => number
}

export function topicValidation (pubsub: PeerNode['services']['pubsub'], options: TopicValidationOptions = {}): TopicValidation {
  const topics = new Set<string>()
  const scored = topicScores(pubsub)
  const score = scoreOf(pubsub)
  const read = new WeakMap<Message, TopicMessage>()
  // Entries expire with their window, so the record holds only authors heard from in the last one.
  // Only valid messages count (invalid ones are P4's), but one over the limit is not even read.
  const rate = new RateLimiter({ points: AUTHOR_RATE.messages, duration: AUTHOR_RATE.seconds, keyPrefix: '' })
  const sourceRate = new RateLimiter({ points: SOURCE_RATE.bytes, duration: SOURCE_RATE.seconds, keyPrefix: '' })
  const newest = new LRUCache<string, bigint>({ max: AUTHORS_KEPT, ttl: SEQNO_MEMORY_MS, ...(options.now === undefined ? {} : { perf: { now: options.now } }) })
  const seen = seenCopy(pubsub)
  const settle = settlePromise(pubsub)
  const admit: Admit = (from, message) => {
    if (!topics.has(message.topic) || seen(message)) return true
    const source = `${options.hostOf?.(from) ?? from.toString()} ${message.topic}`
    const cost = Math.max(SOURCE_RATE.leastCost, message.data?.length ?? 0)
    if ((sourceRate.get(source)?.consumedPoints ?? 0) + cost > SOURCE_RATE.bytes) {
      settle(from, message)
      return false
    }
    // Spent before anything is read, valid or not, so the budget bounds what the reading costs.
    sourceRate.consume(source, cost)
    return true
  }
  let removeAdmit: (() => void) | undefined
  const validate = (_from: PeerId, message: Message): TopicValidatorResult => {
    let signed: { key: string, seqno: bigint } | undefined
    if (message.type === 'signed') {
      const author = message.from.toString()
      if (score(author) < GOSSIP_GRAYLIST_THRESHOLD) return TopicValidatorResult.Ignore
      signed = { key: `${author} ${message.topic}`, seqno: message.sequenceNumber }
      const last = newest.peek(signed.key)
      if (last !== undefined && signed.seqno <= last) return TopicValidatorResult.Ignore
      if ((rate.get(signed.key)?.consumedPoints ?? 0) >= AUTHOR_RATE.messages) return TopicValidatorResult.Ignore
    }
    try {
      read.set(message, readTopicMessage(message.topic, message.data))
    } catch {
      return TopicValidatorResult.Reject
    }
    if (signed !== undefined) {
      rate.consume(signed.key)
      newest.set(signed.key, signed.seqno)
    }
    return TopicValidatorResult.Accept
  }
  return {
    add (topic) {
      if (topics.has(topic)) return
      removeAdmit ??= admitBefore(pubsub, admit)
      topics.add(topic)
      scored[topic] = MODEL_TOPIC_SCORE
      pubsub.topicValidators.set(topic, validate)
    },
    read: message => read.get(message),
    stop () {
      for (const topic of topics) {
        if (pubsub.topicValidators.get(topic) === validate) pubsub.topicValidators.delete(topic)
        if (scored[topic] === MODEL_TOPIC_SCORE) delete scored[topic]
      }
      topics.clear()
      removeAdmit?.()
      removeAdmit = undefined
    }
  }
}
