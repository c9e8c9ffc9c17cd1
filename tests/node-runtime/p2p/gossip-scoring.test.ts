/**
 * Gossipsub's peer score as blockfed sets it (node-runtime/p2p/peer-node.ts, topic-validator.ts),
 * over real libp2p on 127.0.0.1:
 * - many runtimes on one address (a serverless cluster on one box, a fleet behind one NAT) keep
 *   gossiping: with gossipsub's default IP colocation penalty, 16 nodes on 127.0.0.1 scored one
 *   another −125, were graylisted, and no message reached anyone;
 * - a peer that sends invalid messages on a model topic is graylisted: what it sends next, valid
 *   or not, is dropped unread, while an honest peer's messages still arrive;
 * - one author's valid messages beyond AUTHOR_RATE are neither delivered nor relayed;
 * - one peer handing over messages signed by a fresh key each gets no more than SOURCE_RATE's
 *   bytes read and relayed, and peers of one host share that budget; what a source hands over
 *   beyond it is dropped before gossipsub's seen cache, so another peer's copy is still taken;
 *   copies of one message relayed by peers of one host are charged once; a peer whose IWANT
 *   answer that budget dropped is not penalised for a broken promise (P7);
 * - an author's old messages replayed are dropped (sequence numbers), spending none of its rate,
 *   and its newest number is forgotten SEQNO_MEMORY_MS after it was taken;
 * - two validations on one node share one check ahead of the seen cache, and undo it cleanly.
 */
import { describe, it, expect, afterAll, vi } from 'vitest'
import { createPeerNode, GOSSIP_GRAYLIST_THRESHOLD, type PeerNode } from '../../../node-runtime/p2p/peer-node.ts'
import { createSwarm } from '../../../node-runtime/p2p/swarm.ts'
import { generateKeyPairFromSeed, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { PublishConfigType } from '@libp2p/gossipsub/types'
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { randomBytes } from 'node:crypto'
import { AUTHOR_RATE, SEQNO_MEMORY_MS, SOURCE_RATE, topicValidation } from '../../../node-runtime/p2p/topic-validator.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import { rawCid } from '../../../shared/crypto/cid.ts'
import { blockFilter } from '../../../shared/p2p/bloom.ts'
import { encodeGossip, modelTopic } from '../../../shared/p2p/gossip.ts'
import { testManifest } from '../../helpers/manifest.ts'
import { seedOf, tcpAddr } from '../../helpers/libp2p.ts'

const stops: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const stop of stops.reverse()) await stop().catch(() => {})
})

/** getScore and getMeshPeers are on the GossipSub class, not on its exported interface. */
type Scored = { getScore: (peer: string) => number, getMeshPeers: (topic: string) => string[] }
const pubsubOf = (node: PeerNode): Scored => node.services.pubsub as unknown as Scored
const text = (s: string): Uint8Array => new TextEncoder().encode(s)

/** Publishes `message` `count` times from `node`, each signed by a new key (gossipsub's publishConfig is internal); returns the authors. */
async function publishUnderFreshKeys (node: PeerNode, topic: string, message: Uint8Array, count: number): Promise<string[]> {
  const pubsub = node.services.pubsub as unknown as { publishConfig: unknown }
  const authors: string[] = []
  for (let i = 0; i < count; i++) {
    const privateKey = await generateKeyPairFromSeed('Ed25519', randomBytes(32))
    const author = peerIdFromPrivateKey(privateKey)
    pubsub.publishConfig = { type: PublishConfigType.Signing, author, key: publicKeyToProtobuf(privateKey.publicKey), privateKey }
    await node.services.pubsub.publish(topic, message)
    authors.push(author.toString())
  }
  return authors
}

/** gossipsub's internals a test reaches to hand over a message exactly as another peer built it. */
type Raw = { mcache: { msgs: Map<string, { message: unknown }> }, sendRpc: (peer: string, rpc: { subscriptions: unknown[], messages: unknown[] }) => boolean }
const rawOf = (node: PeerNode): Raw => node.services.pubsub as unknown as Raw

/** The last `count` messages `node` published, as it built them (signed, with their sequence numbers). */
const lastPublished = (node: PeerNode, count: number): unknown[] => [...rawOf(node).mcache.msgs.values()].slice(-count).map(entry => entry.message)

/** A valid `have` message of ≈ 104 KB: a filter of 65,536 blocks' capacity. */
async function largeHave (): Promise<Uint8Array> {
  const filter = blockFilter({ capacity: 65_536, falsePositiveRate: 0.01 })
  filter.add(await rawCid(text('a block nobody holds')))
  return encodeGossip({ type: 'have', filter: filter.encode(), blocks: 1 })
}

/** A node validating `topic` and listening to it, with the authors and sources of what it takes. */
async function listener (seed: number, topic: string, options: Parameters<typeof topicValidation>[1] = {}): Promise<{ node: PeerNode, validation: ReturnType<typeof topicValidation>, taken: Array<{ author: string, source: string }> }> {
  const node = await createPeerNode({ seed: seedOf(seed) })
  stops.push(async () => { await node.stop() })
  const validation = topicValidation(node.services.pubsub, options)
  validation.add(topic)
  node.services.pubsub.subscribe(topic)
  const taken: Array<{ author: string, source: string }> = []
  node.services.pubsub.addEventListener('gossipsub:message', event => {
    const { msg, propagationSource } = event.detail
    if (msg.topic === topic && msg.type === 'signed') taken.push({ author: msg.from.toString(), source: propagationSource.toString() })
  })
  return { node, validation, taken }
}

/** Peers connected to `to` and subscribed to `topic`, none of them publishing to it. */
async function relayers (seeds: number[], to: PeerNode, topic: string): Promise<PeerNode[]> {
  const nodes: PeerNode[] = []
  for (const seed of seeds) {
    const n = await createPeerNode({ seed: seedOf(seed) })
    stops.push(async () => { await n.stop() })
    n.services.pubsub.subscribe(topic)
    await n.dial(tcpAddr(to))
    nodes.push(n)
  }
  await vi.waitFor(() => { expect(pubsubOf(to).getMeshPeers(topic).length).toBe(seeds.length) }, { timeout: 10_000, interval: 50 })
  return nodes
}

describe('gossipsub peer scoring', () => {
  it('16 nodes on one address still gossip: no IP colocation penalty', async () => {
    const topic = modelTopic('colocated-mlp')
    const nodes = await Promise.all(Array.from({ length: 16 }, async (_, i) => await createPeerNode({ seed: seedOf(0x90 + i) })))
    stops.push(async () => { await Promise.all(nodes.map(async n => { await n.stop() })) })
    const received = nodes.map(() => new Set<string>())
    nodes.forEach((n, i) => {
      n.services.pubsub.subscribe(topic)
      n.services.pubsub.addEventListener('message', event => { received[i]?.add(new TextDecoder().decode(event.detail.data)) })
    })
    // A hub that every other node dials (15 peers from 127.0.0.1 there), and a ring around it.
    const [hub, ...leaves] = nodes as [PeerNode, ...PeerNode[]]
    for (const [i, leaf] of leaves.entries()) {
      await leaf.dial(tcpAddr(hub))
      await leaf.dial(tcpAddr(leaves[(i + 1) % leaves.length] as PeerNode))
    }
    await vi.waitFor(() => { expect(pubsubOf(hub).getMeshPeers(topic).length).toBeGreaterThanOrEqual(4) }, { timeout: 10_000, interval: 50 })
    for (const leaf of leaves) expect(pubsubOf(hub).getScore(leaf.peerId.toString())).toBeGreaterThanOrEqual(0)

    const said = ['from the hub', 'from leaf 3', 'from leaf 9']
    await hub.services.pubsub.publish(topic, text(said[0] as string))
    await leaves[2]?.services.pubsub.publish(topic, text(said[1] as string))
    await leaves[8]?.services.pubsub.publish(topic, text(said[2] as string))
    // Every node gets every message but its own (emitSelf is off).
    await vi.waitFor(() => {
      expect(received.map(r => r.size)).toEqual(nodes.map(n => n === hub || n === leaves[2] || n === leaves[8] ? 2 : 3))
    }, { timeout: 15_000, interval: 50 })
  }, 60_000)

  it('graylists a peer that sends invalid messages on a model topic; an honest peer still gets through', async () => {
    const MODEL = 'scored-mlp'
    const topic = modelTopic(MODEL)
    const s = await createSwarm({ seed: seedOf(0xa1) })
    stops.push(async () => { await s.stop() })
    const honest = await createSwarm({ seed: seedOf(0xa2) })
    stops.push(async () => { await honest.stop() })
    const x = await createPeerNode({ seed: seedOf(0xa3) })
    stops.push(async () => { await x.stop() })
    s.register(testManifest({ model: MODEL }), memoryCache({ name: 's' }))
    honest.register(testManifest({ model: MODEL }), memoryCache({ name: 'h' }))
    x.services.pubsub.subscribe(topic)
    await x.dial(tcpAddr(s.node))
    await honest.node.dial(tcpAddr(s.node))
    const xId = x.peerId.toString()
    await vi.waitFor(() => { expect(pubsubOf(s.node).getMeshPeers(topic).sort()).toEqual([honest.peerId, xId].sort()) }, { timeout: 10_000, interval: 50 })

    // X's own node has no validator on the topic, so it publishes what S's validator rejects.
    for (let i = 0; i < 12; i++) await x.services.pubsub.publish(topic, text(`{"type":"junk","n":${i}}`))
    // P4: 12² × −1, decaying by 0.98 a second; the score is cached for a heartbeat (1 s).
    await vi.waitFor(() => { expect(pubsubOf(s.node).getScore(xId)).toBeLessThan(GOSSIP_GRAYLIST_THRESHOLD) }, { timeout: 5_000, interval: 50 })
    expect(pubsubOf(s.node).getScore(honest.peerId)).toBeGreaterThanOrEqual(0)
    // A peer seen in good standing is accepted unscored for up to 1 s (or 128 messages) after
    // (gossipsub's acceptFrom whitelist): X's junk opened such a window.
    await new Promise(resolve => setTimeout(resolve, 1_100))

    const haveOf = async (label: string): Promise<{ cid: string, message: Uint8Array }> => {
      const cid = await rawCid(text(label))
      const filter = blockFilter({ capacity: 64, falsePositiveRate: 0.01 })
      filter.add(cid)
      return { cid, message: encodeGossip({ type: 'have', filter: filter.encode(), blocks: 1 }) }
    }
    const fromX = await haveOf('a block X claims')
    const fromHonest = await haveOf('a block the honest runtime holds')
    await x.services.pubsub.publish(topic, fromX.message)
    await new Promise(resolve => setTimeout(resolve, 200))
    await honest.node.services.pubsub.publish(topic, fromHonest.message)
    // The honest announcement, sent after X's, is kept; X's valid one never was: S reads no RPC
    // from X below the graylist threshold, and ignores X's messages that others relay (the
    // honest node may have met X through the DHT).
    await vi.waitFor(() => { expect(s.network.likelyHolders(fromHonest.cid)).toEqual([honest.peerId]) }, { timeout: 10_000, interval: 50 })
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(s.network.likelyHolders(fromX.cid)).toEqual([])
  }, 60_000)

  it('takes and relays at most AUTHOR_RATE of one author\'s valid messages per window; another author still gets through', async () => {
    const MODEL = 'rated-mlp'
    const topic = modelTopic(MODEL)
    const versionsFrom = new Map<string, number[]>()
    // L validates (a runtime); F floods and B listens behind L, both bare nodes without validators.
    const l = await createSwarm({ seed: seedOf(0xb1), onVersion: (_model, version, _cid, from) => { versionsFrom.set(from, [...versionsFrom.get(from) ?? [], version]) } })
    stops.push(async () => { await l.stop() })
    const f = await createPeerNode({ seed: seedOf(0xb2) })
    stops.push(async () => { await f.stop() })
    const b = await createPeerNode({ seed: seedOf(0xb3) })
    stops.push(async () => { await b.stop() })
    const honest = await createPeerNode({ seed: seedOf(0xb4) })
    stops.push(async () => { await honest.stop() })
    l.register(testManifest({ model: MODEL }), memoryCache({ name: 'l' }))
    const relayed: number[] = []
    const fId = f.peerId.toString()
    // What L passed on: F's messages that reached B through L.
    b.services.pubsub.addEventListener('gossipsub:message', event => {
      const { msg, propagationSource } = event.detail
      if (msg.type === 'signed' && msg.from.toString() === fId && propagationSource.toString() === l.peerId) relayed.push(JSON.parse(new TextDecoder().decode(msg.data)).version)
    })
    for (const n of [f, b, honest]) {
      n.services.pubsub.subscribe(topic)
      await n.dial(tcpAddr(l.node))
    }
    await vi.waitFor(() => { expect(pubsubOf(l.node).getMeshPeers(topic).length).toBe(3) }, { timeout: 10_000, interval: 50 })

    const version = (v: number): Uint8Array => encodeGossip({ type: 'version', model: MODEL, version: v, manifestCid: 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku' })
    const flood = 4 * AUTHOR_RATE.messages
    // F and B may have met through the DHT: F would then reach B directly.
    await f.hangUp(b.peerId)
    for (let v = 1; v <= flood; v++) await f.services.pubsub.publish(topic, version(v))
    await honest.services.pubsub.publish(topic, version(1000))
    await vi.waitFor(() => { expect(versionsFrom.get(honest.peerId.toString())).toEqual([1000]) }, { timeout: 10_000, interval: 50 })
    await new Promise(resolve => setTimeout(resolve, 500))
    // Within one window (the flood took well under AUTHOR_RATE.seconds): the first ones only.
    const first = Array.from({ length: AUTHOR_RATE.messages }, (_, i) => i + 1)
    expect(versionsFrom.get(fId)).toEqual(first)
    expect(relayed.sort((x, y) => x - y)).toEqual(first)
    // Not a penalty: F is ignored over the limit, not scored down.
    expect(pubsubOf(l.node).getScore(fId)).toBeGreaterThanOrEqual(0)
  }, 60_000)

  it('reads and relays no more than SOURCE_RATE bytes a window from one peer, whatever keys sign them', async () => {
    const MODEL = 'sourced-mlp'
    const topic = modelTopic(MODEL)
    // L validates (a runtime); F hands over filters each signed by a new key; B listens behind L.
    const l = await createSwarm({ seed: seedOf(0xc1) })
    stops.push(async () => { await l.stop() })
    const f = await createPeerNode({ seed: seedOf(0xc2) })
    stops.push(async () => { await f.stop() })
    const b = await createPeerNode({ seed: seedOf(0xc3) })
    stops.push(async () => { await b.stop() })
    const honest = await createPeerNode({ seed: seedOf(0xc4) })
    stops.push(async () => { await honest.stop() })
    l.register(testManifest({ model: MODEL }), memoryCache({ name: 'l' }))
    const fId = f.peerId.toString()
    const honestId = honest.peerId.toString()
    const taken: string[] = []
    l.node.services.pubsub.addEventListener('message', event => {
      if (event.detail.topic === topic && event.detail.type === 'signed') taken.push(event.detail.from.toString())
    })
    let relayed = 0
    b.services.pubsub.addEventListener('gossipsub:message', event => {
      const { msg, propagationSource } = event.detail
      if (msg.type === 'signed' && msg.from.toString() !== honestId && propagationSource.toString() === l.peerId) relayed++
    })
    for (const n of [f, b, honest]) {
      n.services.pubsub.subscribe(topic)
      await n.dial(tcpAddr(l.node))
    }
    await vi.waitFor(() => { expect(pubsubOf(l.node).getMeshPeers(topic).length).toBe(3) }, { timeout: 10_000, interval: 50 })
    await f.hangUp(b.peerId)

    // A valid filter of 65,536 blocks' capacity: ≈ 104 KB on the wire.
    const filter = blockFilter({ capacity: 65_536, falsePositiveRate: 0.01 })
    filter.add(await rawCid(text('a block nobody holds')))
    const message = encodeGossip({ type: 'have', filter: filter.encode(), blocks: 1 })
    const flood = 60
    await publishUnderFreshKeys(f, topic, message, flood)
    await honest.services.pubsub.publish(topic, message)
    await vi.waitFor(() => { expect(taken).toContain(honestId) }, { timeout: 10_000, interval: 50 })
    await vi.waitFor(() => { expect(taken.some(author => author !== honestId)).toBe(true) }, { timeout: 10_000, interval: 50 })
    await new Promise(resolve => setTimeout(resolve, 500))

    const fromF = taken.filter(author => author !== honestId)
    const withinBudget = Math.floor(SOURCE_RATE.bytes / message.length)
    // Every one was signed by a different author, so AUTHOR_RATE stopped none of them.
    expect(new Set(fromF).size).toBe(fromF.length)
    expect(fromF.length).toBeGreaterThan(0)
    expect(fromF.length).toBeLessThanOrEqual(withinBudget)
    expect(withinBudget).toBeLessThan(flood / 2)
    expect(relayed).toBeLessThanOrEqual(fromF.length)
    expect(fromF).not.toContain(fId)
    // Not a penalty: F is ignored over the budget, not scored down.
    expect(pubsubOf(l.node).getScore(fId)).toBeGreaterThanOrEqual(0)
  }, 60_000)

  it('charges peers of one host one SOURCE_RATE budget, however many ids they dial from', async () => {
    const topic = modelTopic('hosted-mlp')
    // Loopback peers have no host (hostGroup), so the validator is told they share one.
    const l = await createPeerNode({ seed: seedOf(0xe1) })
    stops.push(async () => { await l.stop() })
    const validation = topicValidation(l.services.pubsub, { hostOf: () => 'one host' })
    validation.add(topic)
    l.services.pubsub.subscribe(topic)
    let taken = 0
    l.services.pubsub.addEventListener('message', event => { if (event.detail.topic === topic) taken++ })
    const ids = await Promise.all([0xe2, 0xe3, 0xe4].map(async n => await createPeerNode({ seed: seedOf(n) })))
    stops.push(async () => { await Promise.all(ids.map(async n => { await n.stop() })) })
    for (const n of ids) {
      n.services.pubsub.subscribe(topic)
      await n.dial(tcpAddr(l))
    }
    await vi.waitFor(() => { expect(pubsubOf(l).getMeshPeers(topic).length).toBe(3) }, { timeout: 10_000, interval: 50 })
    const filter = blockFilter({ capacity: 65_536, falsePositiveRate: 0.01 })
    filter.add(await rawCid(text('a block nobody holds')))
    const message = encodeGossip({ type: 'have', filter: filter.encode(), blocks: 1 })
    const perId = 15
    for (const n of ids) await publishUnderFreshKeys(n, topic, message, perId)
    await vi.waitFor(() => { expect(taken).toBeGreaterThan(0) }, { timeout: 10_000, interval: 50 })
    await new Promise(resolve => setTimeout(resolve, 1_500))
    // 45 sent by 3 ids; each id alone was within its own budget (15 < 20), the host is not.
    const withinBudget = Math.floor(SOURCE_RATE.bytes / message.length)
    expect(perId).toBeLessThan(withinBudget)
    expect(taken).toBeLessThanOrEqual(withinBudget)
    validation.stop()
  }, 60_000)

  it('drops what a source hands over beyond its budget before the seen cache: the same message from another peer is still taken', async () => {
    const topic = modelTopic('relayed-mlp')
    const marker = 'blockfed-test/marker'
    // L validates; F has spent its budget when it hands over M; H then hands over the same M.
    const l = await createPeerNode({ seed: seedOf(0xf1) })
    stops.push(async () => { await l.stop() })
    const validation = topicValidation(l.services.pubsub)
    validation.add(topic)
    l.services.pubsub.subscribe(topic)
    l.services.pubsub.subscribe(marker)
    const f = await createPeerNode({ seed: seedOf(0xf2) })
    const h = await createPeerNode({ seed: seedOf(0xf3) })
    stops.push(async () => { await Promise.all([f, h].map(async n => { await n.stop() })) })
    const taken: Array<{ author: string, source: string }> = []
    let markers = 0
    l.services.pubsub.addEventListener('gossipsub:message', event => {
      const { msg, propagationSource } = event.detail
      if (msg.topic === marker) markers++
      else if (msg.type === 'signed') taken.push({ author: msg.from.toString(), source: propagationSource.toString() })
    })
    for (const n of [f, h]) {
      n.services.pubsub.subscribe(topic)
      await n.dial(tcpAddr(l))
    }
    f.services.pubsub.subscribe(marker)
    await vi.waitFor(() => { expect(pubsubOf(l).getMeshPeers(topic).length).toBe(2) }, { timeout: 10_000, interval: 50 })
    await vi.waitFor(() => { expect(pubsubOf(l).getMeshPeers(marker).length).toBe(1) }, { timeout: 10_000, interval: 50 })

    const filter = blockFilter({ capacity: 65_536, falsePositiveRate: 0.01 })
    filter.add(await rawCid(text('a block nobody holds')))
    const message = encodeGossip({ type: 'have', filter: filter.encode(), blocks: 1 })
    const withinBudget = Math.floor(SOURCE_RATE.bytes / message.length)
    // F spends its budget, then hands over M, signed by one more fresh key, and a marker behind it
    // on an unbudgeted topic: once the marker is in, L has had M from F (one stream, in order).
    await publishUnderFreshKeys(f, topic, message, withinBudget + 1)
    const [author] = await publishUnderFreshKeys(f, topic, message, 1)
    const m = [...rawOf(f).mcache.msgs.values()].at(-1)?.message
    expect(m).toBeDefined()
    await f.services.pubsub.publish(marker, text('after M'))
    await vi.waitFor(() => { expect(markers).toBe(1) }, { timeout: 10_000, interval: 50 })
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(taken.filter(t => t.source === f.peerId.toString()).length).toBeLessThanOrEqual(withinBudget)
    expect(taken.map(t => t.author)).not.toContain(author)

    // H hands over the very message F built (same author, sequence number and signature).
    expect(rawOf(h).sendRpc(l.peerId.toString(), { subscriptions: [], messages: [m] })).toBe(true)
    await vi.waitFor(() => { expect(taken).toContainEqual({ author, source: h.peerId.toString() }) }, { timeout: 10_000, interval: 50 })
    validation.stop()
  }, 60_000)

  it('takes an author\'s messages in increasing sequence only: replayed old ones are dropped, and spend none of its rate', async () => {
    const topic = modelTopic('replayed-mlp')
    const l = await listener(0xa1, topic)
    // A signs 12 announcements while apart from everyone; H and R will hand them over.
    const a = await createPeerNode({ seed: seedOf(0xa2) })
    stops.push(async () => { await a.stop() })
    a.services.pubsub.subscribe(topic)
    for (let i = 1; i <= 12; i++) await a.services.pubsub.publish(topic, encodeGossip({ type: 'version', model: 'replayed-mlp', version: i, manifestCid: `cid-${i}` }))
    const [m1to10, m11, m12] = [lastPublished(a, 12).slice(0, 10), lastPublished(a, 2)[0], lastPublished(a, 1)[0]]
    const [h, r] = await relayers([0xa3, 0xa4], l.node, topic)
    if (h === undefined || r === undefined) throw new Error('two relayers expected')
    const author = a.peerId.toString()
    expect(rawOf(h).sendRpc(l.node.peerId.toString(), { subscriptions: [], messages: [m11] })).toBe(true)
    await vi.waitFor(() => { expect(l.taken).toHaveLength(1) }, { timeout: 10_000, interval: 50 })
    // R replays the 10 older ones, which L has never seen: as many as the author's rate allows.
    expect(rawOf(r).sendRpc(l.node.peerId.toString(), { subscriptions: [], messages: m1to10 })).toBe(true)
    expect(rawOf(h).sendRpc(l.node.peerId.toString(), { subscriptions: [], messages: [m12] })).toBe(true)
    await vi.waitFor(() => { expect(l.taken).toHaveLength(2) }, { timeout: 10_000, interval: 50 })
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(l.taken).toEqual([{ author, source: h.peerId.toString() }, { author, source: h.peerId.toString() }])
    l.validation.stop()
  }, 60_000)

  it('forgets an author\'s newest sequence number SEQNO_MEMORY_MS after taking it (a clock gone back is heard again)', async () => {
    const topic = modelTopic('forgetful-mlp')
    let now = 1_000
    const l = await createPeerNode({ seed: seedOf(0x81) })
    stops.push(async () => { await l.stop() })
    const validation = topicValidation(l.services.pubsub, { now: () => now })
    validation.add(topic)
    const validate = l.services.pubsub.topicValidators.get(topic)
    if (validate === undefined) throw new Error('no validator on the topic')
    const author = peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', seedOf(0x82)))
    // The validator reads type, author, sequence number, topic and data (gossipsub checked the signature before).
    const signed = (sequenceNumber: bigint): Message => ({ type: 'signed', from: author, sequenceNumber, topic, data: encodeGossip({ type: 'version', model: 'forgetful-mlp', version: Number(sequenceNumber), manifestCid: 'cid' }), signature: new Uint8Array(64), key: author.publicKey })
    const verdict = async (sequenceNumber: bigint): Promise<TopicValidatorResult> => {
      // lru-cache reuses a time it read for 1 ms (ttlResolution): let that pass before each check.
      await new Promise(resolve => setTimeout(resolve, 5))
      return await validate(l.peerId, signed(sequenceNumber))
    }
    expect(await verdict(100n)).toBe(TopicValidatorResult.Accept)
    expect(await verdict(99n)).toBe(TopicValidatorResult.Ignore)
    now += SEQNO_MEMORY_MS - 1
    expect(await verdict(99n)).toBe(TopicValidatorResult.Ignore)
    now += 2
    expect(await verdict(99n)).toBe(TopicValidatorResult.Accept)
    expect(await verdict(99n)).toBe(TopicValidatorResult.Ignore)
    validation.stop()
  }, 60_000)

  it('charges one host once for a message its peers all relay', async () => {
    const topic = modelTopic('shared-host-mlp')
    const l = await listener(0xb1, topic, { hostOf: () => 'one host' })
    const a = await createPeerNode({ seed: seedOf(0xb2) })
    stops.push(async () => { await a.stop() })
    a.services.pubsub.subscribe(topic)
    const message = await largeHave()
    const withinBudget = Math.floor(SOURCE_RATE.bytes / message.length)
    const count = withinBudget - 2
    await publishUnderFreshKeys(a, topic, message, count)
    const messages = lastPublished(a, count)
    const peers = await relayers([0xb3, 0xb4, 0xb5], l.node, topic)
    // Each message comes from all three peers of the host, the first copy taken before the others.
    for (const [i, m] of messages.entries()) {
      expect(rawOf(peers[0] as PeerNode).sendRpc(l.node.peerId.toString(), { subscriptions: [], messages: [m] })).toBe(true)
      await vi.waitFor(() => { expect(l.taken).toHaveLength(i + 1) }, { timeout: 10_000, interval: 20 })
      for (const p of peers.slice(1)) rawOf(p).sendRpc(l.node.peerId.toString(), { subscriptions: [], messages: [m] })
    }
    // Every one of them was taken, so three copies each did not spend three times the budget.
    expect(l.taken).toHaveLength(count)
    expect(count * 3).toBeGreaterThan(withinBudget)
    l.validation.stop()
  }, 60_000)

  it('does not hold a peer to its IWANT promise of a message its spent budget had dropped (no P7 penalty)', async () => {
    const topic = modelTopic('promised-mlp')
    const l = await listener(0x91, topic)
    // A signs M (a large filter) apart from everyone; R holds M as a relayer does (its message cache) and advertises it.
    const a = await createPeerNode({ seed: seedOf(0x92) })
    stops.push(async () => { await a.stop() })
    a.services.pubsub.subscribe(topic)
    const message = await largeHave()
    await a.services.pubsub.publish(topic, message)
    const cacheOfA = (a.services.pubsub as unknown as { mcache: { msgs: Map<string, { message: unknown }>, history: Array<Array<{ msgId: Uint8Array, msgIdStr: string }>> } }).mcache
    const id = cacheOfA.history[0]?.at(-1)
    const m = id === undefined ? undefined : cacheOfA.msgs.get(id.msgIdStr)?.message
    if (id === undefined || m === undefined) throw new Error('A published nothing')
    const [r] = await relayers([0x93], l.node, topic)
    if (r === undefined) throw new Error('one relayer expected')
    const internals = r.services.pubsub as unknown as {
      mcache: { put: (id: { msgId: Uint8Array, msgIdStr: string }, message: unknown, validated: boolean) => void }
      handleControlMessage: (peer: string, control: { iwant?: unknown[] }) => Promise<void>
      sendRpc: (peer: string, rpc: unknown) => boolean
    }
    internals.mcache.put(id, m, true)
    let iwants = 0
    const control = internals.handleControlMessage.bind(r.services.pubsub)
    internals.handleControlMessage = async (peer, ctl) => { iwants += ctl.iwant?.length ?? 0; await control(peer, ctl) }

    // R spends its budget on filters signed by fresh keys, then advertises M: L asks, R answers, L drops it.
    await publishUnderFreshKeys(r, topic, message, Math.floor(SOURCE_RATE.bytes / message.length) + 1)
    const rId = r.peerId.toString()
    await vi.waitFor(() => { expect(l.taken.length).toBeGreaterThan(0) }, { timeout: 10_000, interval: 50 })
    internals.sendRpc(l.node.peerId.toString(), { subscriptions: [], messages: [], control: { ihave: [{ topicID: topic, messageIDs: [id.msgId] }], iwant: [], graft: [], prune: [], idontwant: [] } })
    await vi.waitFor(() => { expect(iwants).toBe(1) }, { timeout: 10_000, interval: 20 })
    // gossipsub counts a promise broken 3 s after the IWANT (gossipsubIWantFollowupMs), at a heartbeat.
    let lowest = 0
    for (let i = 0; i < 50; i++) {
      lowest = Math.min(lowest, pubsubOf(l.node).getScore(rId))
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    expect(l.taken.map(t => t.author)).not.toContain(a.peerId.toString())
    expect(lowest).toBe(0)
    expect(pubsubOf(l.node).getMeshPeers(topic)).toContain(rId)
    l.validation.stop()
  }, 60_000)

  it('shares one check before the seen cache between validations on one node, and gives gossipsub its own entry back', async () => {
    const topic = modelTopic('twice-mlp')
    const own = (node: PeerNode): unknown => (node.services.pubsub as unknown as { handleReceivedMessage: unknown }).handleReceivedMessage
    const l = await listener(0xd1, topic)
    const original = Object.getPrototypeOf(l.node.services.pubsub).handleReceivedMessage
    const other = topicValidation(l.node.services.pubsub)
    other.add(topic)
    l.validation.stop()
    l.validation.add(topic)
    const [p] = await relayers([0xd2], l.node, topic)
    await (p as PeerNode).services.pubsub.publish(topic, encodeGossip({ type: 'version', model: 'twice-mlp', version: 1, manifestCid: 'cid' }))
    await vi.waitFor(() => { expect(l.taken).toHaveLength(1) }, { timeout: 10_000, interval: 50 })
    expect(own(l.node)).not.toBe(original)
    l.validation.stop()
    other.stop()
    expect(own(l.node)).toBe(original)
  }, 60_000)
})
