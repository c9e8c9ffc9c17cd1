/**
 * What blockfed says on gossipsub (one topic per model, `blockfed/model/<name>`):
 *   {"type":"version", "model", "version", "manifestCid"}  — the coordinator published a version;
 *   {"type":"have", "filter": base64, "blocks": n}           — the sender's Bloom filter of the
 *                                                             blocks it holds (bloom.ts).
 * Messages are JSON, bounded in size and checked against their schema; the sender is the
 * gossipsub message's signed `from`, never a field of the message. A version announcement is
 * only a hint to look: the runtime still verifies the signed manifest and its ledger anchor.
 * `readTopicMessage` checks a message in full (its filter decoded, its model the topic's), so a
 * node can refuse to relay what it would itself drop.
 */
import { z } from 'zod'
import { InvalidInputError } from '../errors/errors.ts'
import { parseJsonWith } from '../errors/parse-json.ts'
import { decodeBase64, toBase64 } from '../crypto/bytes.ts'
import { decodeBlockFilter, type BlockFilter } from './bloom.ts'

/** blockfed's private Kademlia DHT (its own protocol id, so it never mixes with the IPFS DHT). */
export const DHT_PROTOCOL = '/blockfed/kad/1.0.0'
/** Bound on one gossip message (a Bloom filter of 100,000 blocks at 1% is ≈ 120 KB). */
export const GOSSIP_MAX_MESSAGE_BYTES = 256 * 1024

const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

export function modelTopic (model: string): string {
  if (!MODEL_NAME.test(model)) throw new InvalidInputError(`model topic: "${model.slice(0, 80)}" is not a model name`)
  return `blockfed/model/${model}`
}

const messageSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('version'), model: z.string().regex(MODEL_NAME), version: z.number().int().min(1), manifestCid: z.string().min(1).max(200) }),
  z.strictObject({ type: z.literal('have'), filter: z.string().min(1).max(GOSSIP_MAX_MESSAGE_BYTES), blocks: z.number().int().min(0) })
])

export type GossipMessage =
  | { type: 'version', model: string, version: number, manifestCid: string }
  | { type: 'have', filter: Uint8Array, blocks: number }

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

export function encodeGossip (message: GossipMessage): Uint8Array {
  const wire = message.type === 'have' ? { ...message, filter: toBase64(message.filter) } : message
  return encoder.encode(JSON.stringify(wire))
}

/** Parses a message from the topic; InvalidInputError naming the problem otherwise. */
export function decodeGossip (bytes: Uint8Array): GossipMessage {
  if (bytes.length > GOSSIP_MAX_MESSAGE_BYTES) throw new InvalidInputError(`gossip message: ${bytes.length} bytes, above the ${GOSSIP_MAX_MESSAGE_BYTES}-byte bound`)
  let text: string
  try {
    text = decoder.decode(bytes)
  } catch (err) {
    throw new InvalidInputError('gossip message: not UTF-8', { cause: err })
  }
  const message = parseJsonWith(messageSchema, text, 'gossip message')
  if (message.type === 'version') return message
  return { type: 'have', filter: decodeBase64(message.filter, 'gossip message: filter'), blocks: message.blocks }
}

/** A message read from a model topic: a `have` filter already decoded (and bounded) by bloom.ts. */
export type TopicMessage =
  | { type: 'version', model: string, version: number, manifestCid: string }
  | { type: 'have', filter: BlockFilter, blocks: number }

/**
 * Parses a message received on `topic` as far as any use of it goes: the JSON (decodeGossip),
 * a `have` filter (decodeBlockFilter, with its size and false-positive bounds) and a version's
 * model, which must be the topic's. InvalidInputError naming the problem otherwise.
 *
 * @example readTopicMessage(modelTopic('mlp'), event.detail.data) // { type: 'have', filter, blocks }
 */
export function readTopicMessage (topic: string, bytes: Uint8Array): TopicMessage {
  const message = decodeGossip(bytes)
  if (message.type === 'version') {
    if (modelTopic(message.model) !== topic) {
      throw new InvalidInputError(`gossip message: a version of model "${message.model}" on topic "${topic.slice(0, 160)}"`)
    }
    return message
  }
  return { type: 'have', filter: decodeBlockFilter(message.filter), blocks: message.blocks }
}
