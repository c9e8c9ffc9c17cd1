/**
 * `have` announcements under keys nobody can reach. The gossip `from` is the
 * StrictSign author (unforgeable), but a fresh Ed25519 key costs nothing, so any peer can
 * announce under as many authors as it likes; gossipsub relays every valid one. Addresses in the
 * peer store prove nothing either: any peer can plant some for ids it makes up (a DHT
 * ADD_PROVIDER naming them). Only filters of peers connected to this node are kept.
 *
 * One runtime swarm node, and plain peer nodes connected to it where a test needs a connected
 * author: messages are delivered as gossipsub delivers a verified message (as
 * tests/node-runtime/p2p/bad-input.test.ts does).
 */
import { describe, it, expect, afterAll, vi } from 'vitest'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { createPeerNode } from '../../../node-runtime/p2p/peer-node.ts'
import { createSwarm, type Swarm } from '../../../node-runtime/p2p/swarm.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import { rawCid } from '../../../shared/crypto/cid.ts'
import { blockFilter } from '../../../shared/p2p/bloom.ts'
import { encodeGossip, modelTopic } from '../../../shared/p2p/gossip.ts'
import { swarmSource } from '../../../shared/p2p/swarm-source.ts'
import { testManifest } from '../../helpers/manifest.ts'

const MODEL = 'review23-mlp'
const topic = modelTopic(MODEL)
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => { for (const c of cleanups.reverse()) await c().catch(() => {}) })

let n = 0
const freshAuthor = async (): Promise<PeerId> => {
  const seed = new Uint8Array(32)
  new DataView(seed.buffer).setUint32(0, 0x2300_0000 + ++n)
  return peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', seed))
}

const haveOf = (cids: string[]): Uint8Array => {
  const f = blockFilter({ capacity: 64, falsePositiveRate: 0.01 })
  for (const cid of cids) f.add(cid)
  return encodeGossip({ type: 'have', filter: f.encode(), blocks: cids.length })
}

const deliver = (s: Swarm, from: PeerId, data: Uint8Array): void => {
  s.node.services.pubsub.dispatchEvent(new CustomEvent('message', {
    detail: { type: 'signed', from, topic, data, sequenceNumber: 1n, signature: new Uint8Array(64), key: from.publicKey }
  }))
}

/** A peer node connected to `s`: an author whose filters `s` keeps. */
const connectedAuthor = async (s: Swarm, seed: number): Promise<PeerId> => {
  const peer = await createPeerNode({ seed: new Uint8Array(32).fill(seed) })
  cleanups.push(async () => { await peer.stop() })
  await s.node.dial(peer.getMultiaddrs()[0] as ReturnType<typeof multiaddr>)
  return peer.peerId
}

const swarmNode = async (seed: number, options: { maxFilters?: number, maxFilterBytes?: number } = {}): Promise<Swarm> => {
  const s = await createSwarm({ seed: new Uint8Array(32).fill(seed), ...options })
  cleanups.push(async () => { await s.stop() })
  s.register(testManifest({ model: MODEL }), memoryCache({ name: `r23-${seed}` }))
  return s
}

describe('have announcements from authors this node cannot reach', () => {
  it('send no load into a DHT peer lookup (a holder is asked without any lookup)', async () => {
    const s = await swarmNode(0x51)
    const findPeer = vi.spyOn(s.node.peerRouting, 'findPeer')
    const blocks = await Promise.all([1, 2, 3].map(async i => await rawCid(new TextEncoder().encode(`block ${i}`))))
    // 20 authors no one can dial, each "holding" every block of the model (block CIDs are public).
    for (let i = 0; i < 20; i++) deliver(s, await freshAuthor(), haveOf(blocks))
    await new Promise(resolve => setTimeout(resolve, 100))

    const source = swarmSource({ network: s.network, requestTimeoutMs: 3_000, lookupTimeoutMs: 200 })
    for (const block of blocks) {
      await source.get(block, { signal: AbortSignal.timeout(20_000), block }).catch(() => {})
    }
    // Before: 6 (maxPeersPerObject) dials per object to unreachable authors, each one a
    // kad-dht FIND_NODE walk through the swarm (here with an empty routing table): 18 lookups
    // for 3 objects, and the per-object peer budget spent on them.
    expect(findPeer).not.toHaveBeenCalled()
    expect(source.stats().requests).toBe(0)
    expect(s.network.likelyHolders(blocks[0] as string)).toEqual([])
  })

  it('keeps no filter of an author it is not connected to, though that author has addresses in its peer store', async () => {
    const s = await swarmNode(0x54)
    const held = await rawCid(new TextEncoder().encode('a block "held" by a made-up id'))
    // As a DHT ADD_PROVIDER from any peer would leave it: addresses, no connection.
    const planted = await freshAuthor()
    await s.node.peerStore.merge(planted, { multiaddrs: [multiaddr('/ip4/127.0.0.1/tcp/9')] })
    deliver(s, planted, haveOf([held]))
    // The same announcement from a connected peer is kept: the refusal is about the connection.
    const connected = await connectedAuthor(s, 0x64)
    deliver(s, connected, haveOf([held]))
    await vi.waitFor(() => { expect(s.network.likelyHolders(held)).toEqual([connected.toString()]) }, { timeout: 2_000, interval: 10 })
    await new Promise(resolve => setTimeout(resolve, 100))
    expect(s.network.likelyHolders(held)).toEqual([connected.toString()])
    // Dropped when it disconnects.
    await s.node.hangUp(connected)
    await vi.waitFor(() => { expect(s.network.likelyHolders(held)).toEqual([]) }, { timeout: 2_000, interval: 10 })
  })

  it('cannot push out the filter of a connected peer', async () => {
    const s = await swarmNode(0x52)
    const held = await rawCid(new TextEncoder().encode('a block the reachable peer holds'))
    const reachable = await connectedAuthor(s, 0x62)
    deliver(s, reachable, haveOf([held]))
    await vi.waitFor(() => { expect(s.network.likelyHolders(held)).toEqual([reachable.toString()]) }, { timeout: 2_000, interval: 10 })

    // 300 announcements under fresh keys (default maxFilters: 256), a few ms of signing for
    // the sender, nothing it must keep reachable.
    const flood = haveOf([await rawCid(new TextEncoder().encode('anything'))])
    for (let i = 0; i < 300; i++) deliver(s, await freshAuthor(), flood)
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(s.network.likelyHolders(held)).toEqual([reachable.toString()])
  })

  it('keeps the filters it holds within maxFilterBytes, dropping the oldest', async () => {
    // Three connected peers, 78-byte filters (capacity 64 at 1 %: 617 bits), 200 bytes allowed.
    const s = await swarmNode(0x53, { maxFilterBytes: 200 })
    const held = await rawCid(new TextEncoder().encode('a block all three hold'))
    const authors = [await connectedAuthor(s, 0x71), await connectedAuthor(s, 0x72), await connectedAuthor(s, 0x73)]
    for (const a of authors) {
      deliver(s, a, haveOf([held]))
      await vi.waitFor(() => { expect(s.network.likelyHolders(held)).toContain(a.toString()) }, { timeout: 2_000, interval: 10 })
    }
    expect(s.network.likelyHolders(held)).toEqual(authors.slice(1).map(a => a.toString()))
  })
})
