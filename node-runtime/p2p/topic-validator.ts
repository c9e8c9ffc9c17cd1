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
 * That budget is spent before gossipsub sees the message (at its per-message entry, below),
 * not in the validator: gossipsub puts a message in its seen cache, and tells its mesh not to
 * send it (IDONTWANT), before it asks the validator, so a message the validator ignored was a
 * duplicate for 2 minutes (seenTTL) whoever sent it next. A source that had spent its budget
 * could thus keep from this node the messages it was first to relay. Dropped before, an over-
 * budget message is as if never received, and the copy another peer relays is read as usual.
 *
 * What a validator read is kept for the `message` event that follows (the same object), so a
 * filter of up to 256 KB is decoded once.
 */
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import { RateLimiter } from '@libp2p/utils'
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
 * announcements a window from each of 100 authors of 1,000 blocks each (≈ 1.2 KB) spends a
 * quarter of it; 10 authors announcing the largest filters every 5 s would spend it all.
 */
export const SOURCE_RATE = { bytes: 2 << 20, seconds: 10, leastCost: 512 }

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

/** gossipsub's handling of one message of a received RPC, from the peer that handed it over. */
type ReceiveMessage = (from: PeerId, message: { topic: string, data?: Uint8Array }) => Promise<void>

/**
 * Where gossipsub takes in each message of an RPC: GossipSub.handleReceivedMessage, which its
 * handleReceivedRpc calls through `this` before any duplicate check, signature check or validator.
 * Its public interface has no hook ahead of the seen cache; a gossipsub whose internals differ
 * fails here, loudly, and the scoring test catches it.
 */
function messageEntry (pubsub: PeerNode['services']['pubsub']): { handleReceivedMessage: ReceiveMessage } {
  const entry = pubsub as unknown as { handleReceivedMessage?: unknown }
  if (typeof entry.handleReceivedMessage !== 'function') throw new Error('gossipsub: no handleReceivedMessage to spend source budgets at')
  return entry as { handleReceivedMessage: ReceiveMessage }
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
  const entry = messageEntry(pubsub)
  let receive = entry.handleReceivedMessage
  // Spent before anything is read, valid or not, so the budget bounds what the reading costs.
  // Duplicates count too: telling them apart means reaching into gossipsub's caches, and an
  // honest relayer hands each message over once.
  const budgeted: ReceiveMessage = async (from, message) => {
    if (topics.has(message.topic)) {
      const source = `${options.hostOf?.(from) ?? from.toString()} ${message.topic}`
      const cost = Math.max(SOURCE_RATE.leastCost, message.data?.length ?? 0)
      if ((sourceRate.get(source)?.consumedPoints ?? 0) + cost > SOURCE_RATE.bytes) return
      sourceRate.consume(source, cost)
    }
    await receive.call(pubsub, from, message)
  }
  const validate = (_from: PeerId, message: Message): TopicValidatorResult => {
    let key: string | undefined
    if (message.type === 'signed') {
      const author = message.from.toString()
      if (score(author) < GOSSIP_GRAYLIST_THRESHOLD) return TopicValidatorResult.Ignore
      key = `${author} ${message.topic}`
      if ((rate.get(key)?.consumedPoints ?? 0) >= AUTHOR_RATE.messages) return TopicValidatorResult.Ignore
    }
    try {
      read.set(message, readTopicMessage(message.topic, message.data))
    } catch {
      return TopicValidatorResult.Reject
    }
    if (key !== undefined) rate.consume(key)
    return TopicValidatorResult.Accept
  }
  return {
    add (topic) {
      if (topics.has(topic)) return
      if (topics.size === 0) {
        receive = entry.handleReceivedMessage
        entry.handleReceivedMessage = budgeted
      }
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
      if (entry.handleReceivedMessage === budgeted) entry.handleReceivedMessage = receive
    }
  }
}
