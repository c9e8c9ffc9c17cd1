/**
 * Gossipsub validation of blockfed's model topics (gossipsub v1.1, "extended validators"): every
 * message is read in full (shared/p2p/gossip.ts, readTopicMessage) before gossipsub delivers it
 * here or relays it to the mesh. A bad one is rejected: it goes no further than this node.
 * gossipsub records the rejection against the peer that sent it, but that costs the peer nothing
 * yet: no topic score parameters are set (its P4 weight is per topic, and model topics come and
 * go), so a peer is not pruned or graylisted for sending them. Without the validator a runtime
 * relayed messages it then dropped itself (junk, undecodable filters): 20 of 256 KB each crossed
 * a runtime unchanged.
 *
 * What a validator read is kept for the `message` event that follows (the same object), so a
 * filter of up to 256 KB is decoded once.
 */
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import { readTopicMessage, type TopicMessage } from '../../shared/p2p/gossip.ts'
import type { PeerNode } from './peer-node.ts'

export interface TopicValidation {
  /** Validates every message on `topic` from now on (idempotent). */
  add: (topic: string) => void
  /** What the validator read from `message`; undefined for a message it did not see. */
  read: (message: Message) => TopicMessage | undefined
  /** Removes every validator this added. */
  stop: () => void
}

export function topicValidation (pubsub: PeerNode['services']['pubsub']): TopicValidation {
  const topics = new Set<string>()
  const read = new WeakMap<Message, TopicMessage>()
  const validate = (_from: unknown, message: Message): TopicValidatorResult => {
    try {
      read.set(message, readTopicMessage(message.topic, message.data))
      return TopicValidatorResult.Accept
    } catch {
      return TopicValidatorResult.Reject
    }
  }
  return {
    add (topic) {
      if (topics.has(topic)) return
      topics.add(topic)
      pubsub.topicValidators.set(topic, validate)
    },
    read: message => read.get(message),
    stop () {
      for (const topic of topics) {
        if (pubsub.topicValidators.get(topic) === validate) pubsub.topicValidators.delete(topic)
      }
      topics.clear()
    }
  }
}
