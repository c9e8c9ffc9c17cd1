/**
 * How often a runtime announces its Bloom filter while blocks arrive (node-runtime/p2p/swarm.ts):
 * the first announcement a second after the first block, then at most one every 5 s. Every node
 * of a wave announces and every copy reaches every node from each of its mesh peers, so at one a
 * second gossipsub was ≈ 2.6 s of each runtime's CPU in a wave of 16 (BENCHMARKS.md, "swarm").
 * The gaps are lower bounds (a timer never fires early), so the test does not depend on load.
 */
import { describe, it, expect, afterAll, vi } from 'vitest'
import { createSwarm, type Swarm } from '../../../node-runtime/p2p/swarm.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import type { CacheTier } from '../../../shared/cache/types.ts'
import { rawCid } from '../../../shared/crypto/cid.ts'
import { decodeGossip, modelTopic } from '../../../shared/p2p/gossip.ts'
import { testManifest } from '../../helpers/manifest.ts'
import { seedOf } from '../../helpers/libp2p.ts'

const stops: Array<() => Promise<void>> = []
afterAll(async () => { for (const stop of stops.reverse()) await stop().catch(() => {}) })

describe('have announcements while blocks arrive', () => {
  it('start a second after the first block and come at most every 5 s, each with every block held so far', async () => {
    const s = await createSwarm({ seed: seedOf(0xb1) })
    stops.push(async () => { await s.stop() })
    const topic = modelTopic('spacing-mlp')
    const cache = s.watch(memoryCache({ name: 'spacing' }))
    s.register(testManifest({ model: 'spacing-mlp' }), cache)
    const sent: Array<{ at: number, blocks: number }> = []
    const publish = s.node.services.pubsub.publish.bind(s.node.services.pubsub)
    vi.spyOn(s.node.services.pubsub, 'publish').mockImplementation(async (t, data) => {
      const message = data === undefined ? undefined : decodeGossip(data)
      if (t === topic && message?.type === 'have') sent.push({ at: performance.now(), blocks: message.blocks })
      return await publish(t, data)
    })
    // A block every 100 ms for 7 s, as in a cold load.
    const started = performance.now()
    for (let i = 0; i < 70; i++) {
      const bytes = new TextEncoder().encode(`spacing block ${i}`)
      await cache.put(await rawCid(bytes), bytes)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    await vi.waitFor(() => { expect(sent.length).toBeGreaterThanOrEqual(2) }, { timeout: 10_000, interval: 50 })
    expect((sent[0]?.at ?? 0) - started).toBeGreaterThanOrEqual(1_000)
    for (let i = 1; i < sent.length; i++) {
      // 5 s from the start of the previous announcement to the start of this one; each publishes
      // after checking its blocks are still cached (well under a millisecond in memory).
      expect((sent[i]?.at ?? 0) - (sent[i - 1]?.at ?? 0)).toBeGreaterThanOrEqual(4_900)
      expect(sent[i]?.blocks).toBeGreaterThan(sent[i - 1]?.blocks ?? 0)
    }
  }, 30_000)
})

/**
 * A swarm holding one block of `model`, and `joiners` other swarms to dial; resolves once the
 * block's own announcement (a second after it came) went out, with the times of every `have`
 * the holder publishes on the model's topic.
 */
async function holderAndJoiners (seed: number, model: string, joiners: number): Promise<{ holder: Swarm, others: Swarm[], topic: string, sent: number[], cache: CacheTier }> {
  const holder = await createSwarm({ seed: seedOf(seed) })
  stops.push(async () => { await holder.stop() })
  const others = await Promise.all(Array.from({ length: joiners }, async (_, i) => await createSwarm({ seed: seedOf(seed + 1 + i) })))
  for (const other of others) stops.push(async () => { await other.stop() })
  const topic = modelTopic(model)
  const cache = holder.watch(memoryCache({ name: model }))
  holder.register(testManifest({ model }), cache)
  const bytes = new TextEncoder().encode(`a block of ${model}`)
  await cache.put(await rawCid(bytes), bytes)
  const sent: number[] = []
  const publish = holder.node.services.pubsub.publish.bind(holder.node.services.pubsub)
  vi.spyOn(holder.node.services.pubsub, 'publish').mockImplementation(async (t, data) => {
    if (t === topic && data !== undefined && decodeGossip(data).type === 'have') sent.push(performance.now())
    return await publish(t, data)
  })
  await vi.waitFor(() => { expect(sent.length).toBe(1) }, { timeout: 5_000, interval: 50 })
  for (const other of others) await holder.node.dial(other.node.getMultiaddrs())
  return { holder, others, topic, sent, cache }
}

describe('have announcements for peers joining a model\'s topic', () => {
  it('come soon for the first joiner, then within a budget however often peers join (review 44b)', async () => {
    const { others: [joiner], topic, sent } = await holderAndJoiners(0xb2, 'joiners-mlp', 1)
    if (joiner === undefined) throw new Error('no joiner')
    await new Promise(resolve => setTimeout(resolve, 1_000))
    // A peer toggling its subscription every 500 ms for 17 s: unbounded, one announcement every
    // 5 s (3 or 4 of them); bounded, the first one and at most one more (one each 15 s).
    const started = performance.now()
    while (performance.now() - started < 17_000) {
      joiner.node.services.pubsub.subscribe(topic)
      await new Promise(resolve => setTimeout(resolve, 250))
      joiner.node.services.pubsub.unsubscribe(topic)
      await new Promise(resolve => setTimeout(resolve, 250))
    }
    const forJoiners = sent.slice(1)
    expect(forJoiners.length).toBeGreaterThanOrEqual(1)
    expect((forJoiners[0] ?? Infinity) - started).toBeLessThan(6_500)
    expect(forJoiners.length).toBeLessThanOrEqual(2)
  }, 40_000)

  it('come for a joiner that finds the last one just spent within 15 s, not at the 30 s repeat (review 45a)', async () => {
    const { others: [first, second], topic, sent } = await holderAndJoiners(0xb4, 'second-joiner-mlp', 2)
    if (first === undefined || second === undefined) throw new Error('no joiners')
    await new Promise(resolve => setTimeout(resolve, 500))
    // The first joiner toggles its subscription while its announcement is due: the toggles share
    // that announcement and do not push the next joiner's further out.
    for (let i = 0; i < 4; i++) {
      first.node.services.pubsub.subscribe(topic)
      await new Promise(resolve => setTimeout(resolve, 100))
      first.node.services.pubsub.unsubscribe(topic)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    first.node.services.pubsub.subscribe(topic)
    await vi.waitFor(() => { expect(sent.length).toBe(2) }, { timeout: 7_000, interval: 50 })
    // The second joiner comes after the first one's announcement went out.
    const joined = performance.now()
    second.node.services.pubsub.subscribe(topic)
    await vi.waitFor(() => { expect(sent.length).toBe(3) }, { timeout: 17_000, interval: 100 })
    expect((sent[2] ?? Infinity) - joined).toBeLessThan(15_500)
    // ...but no sooner than 15 s after the first joiner came (10 s or more after its announcement).
    expect((sent[2] ?? 0) - (sent[1] ?? 0)).toBeGreaterThanOrEqual(9_000)
  }, 60_000)

  it('do not hold back the announcement new blocks bring while a joiner\'s later one is due (review 45b)', async () => {
    const { others: [first, second], topic, sent, cache } = await holderAndJoiners(0xb7, 'blocks-and-joiners-mlp', 2)
    if (first === undefined || second === undefined) throw new Error('no joiners')
    await new Promise(resolve => setTimeout(resolve, 500))
    first.node.services.pubsub.subscribe(topic)
    await vi.waitFor(() => { expect(sent.length).toBe(2) }, { timeout: 7_000, interval: 50 })
    // The second joiner's announcement is due 15 s after the first joiner's...
    second.node.services.pubsub.subscribe(topic)
    await new Promise(resolve => setTimeout(resolve, 500))
    // ...but blocks that arrive meanwhile go out within the 5 s gap, not with it.
    const arrived = performance.now()
    const bytes = new TextEncoder().encode('a block that came later')
    await cache.put(await rawCid(bytes), bytes)
    await vi.waitFor(() => { expect(sent.length).toBe(3) }, { timeout: 8_000, interval: 50 })
    expect((sent[2] ?? Infinity) - arrived).toBeLessThan(5_500)
  }, 60_000)
})
