/**
 * What a runtime relays on a model topic (node-runtime/p2p/swarm.ts with topic-validator.ts),
 * over real libp2p on 127.0.0.1: X (a bare peer node) — R (a runtime) — V (a runtime), X and
 * V never connected. X publishes what every runtime drops (not JSON, a `have` whose filter
 * does not decode, a version of another model), then a valid announcement. V must get the valid
 * one through R and none of the others: a runtime does not pass on what it would not use.
 */
import { describe, it, expect, afterAll, vi } from 'vitest'
import { createPeerNode } from '../../../node-runtime/p2p/peer-node.ts'
import { createSwarm } from '../../../node-runtime/p2p/swarm.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import { toBase64 } from '../../../shared/crypto/bytes.ts'
import { rawCid } from '../../../shared/crypto/cid.ts'
import { testManifest } from '../../helpers/manifest.ts'
import { blockFilter } from '../../../shared/p2p/bloom.ts'
import { encodeGossip, GOSSIP_MAX_MESSAGE_BYTES, modelTopic } from '../../../shared/p2p/gossip.ts'
import { seedOf, tcpAddr } from '../../helpers/libp2p.ts'

const MODEL = 'relay-mlp'
const stops: Array<() => Promise<void>> = []

afterAll(async () => {
  for (const stop of stops.reverse()) await stop().catch(() => {})
})

const manifest = testManifest({ model: MODEL })

describe('gossip relay', () => {
  it('a runtime does not relay messages its topic validator rejects, and relays valid ones', async () => {
    const topic = modelTopic(MODEL)
    const r = await createSwarm({ seed: seedOf(61) })
    stops.push(async () => { await r.stop() })
    const v = await createSwarm({ seed: seedOf(62) })
    stops.push(async () => { await v.stop() })
    const x = await createPeerNode({ seed: seedOf(63) })
    stops.push(async () => { await x.stop() })
    r.register(manifest, memoryCache({ name: 'r' }))
    v.register(manifest, memoryCache({ name: 'v' }))
    x.services.pubsub.subscribe(topic)
    await v.node.dial(tcpAddr(r.node))
    await x.dial(tcpAddr(r.node))
    const xId = x.peerId.toString()
    // R's mesh for the topic holds both (gossipsub's heartbeat is 1 s), so R forwards at once.
    // getMeshPeers is on the GossipSub class, not on its exported interface.
    const mesh = r.node.services.pubsub as unknown as { getMeshPeers: (topic: string) => string[] }
    await vi.waitFor(() => { expect(mesh.getMeshPeers(topic).sort()).toEqual([v.peerId, xId].sort()) }, { timeout: 10_000, interval: 50 })

    const fromX: string[] = []
    const bytesFromX: number[] = []
    v.node.services.pubsub.addEventListener('message', event => {
      if (event.detail.type !== 'signed' || event.detail.from.toString() !== xId) return
      fromX.push(new TextDecoder().decode(event.detail.data).slice(0, 100))
      bytesFromX.push(event.detail.data.length)
    })
    const text = (s: string): Uint8Array => new TextEncoder().encode(s)
    const rejected = [
      new Uint8Array(GOSSIP_MAX_MESSAGE_BYTES - 1024).fill(0x41),
      // An all-ones filter (version 2, m = 1021 prime = fd 07, its last byte's 3 padding bits
      // clear): says yes to every block, refused by decodeBlockFilter.
      text(JSON.stringify({ type: 'have', filter: toBase64(new Uint8Array([2, 0xfd, 0x07, 7, 1, 1, ...new Uint8Array(127).fill(0xff), 0x1f])), blocks: 1 })),
      text(JSON.stringify({ type: 'version', model: 'other-mlp', version: 2, manifestCid: 'bafy' }))
    ]
    for (const data of rejected) await x.services.pubsub.publish(topic, data)
    // V knows X's address (as from the DHT) but is not connected to it: the announcement is
    // relayed, but its filter is not kept (only connected peers' are; gossip-unreachable.test).
    await v.node.peerStore.merge(x.peerId, { multiaddrs: [tcpAddr(x)] })
    const held = await rawCid(text('a block X holds'))
    const filter = blockFilter({ capacity: 64, falsePositiveRate: 0.01 })
    filter.add(held)
    const valid = encodeGossip({ type: 'have', filter: filter.encode(), blocks: 1 })
    await x.services.pubsub.publish(topic, valid)

    // The valid announcement, published last, crosses R to V; nothing published before it did.
    await vi.waitFor(() => { expect(bytesFromX).toEqual([valid.length]) }, { timeout: 10_000, interval: 50 })
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(fromX).toEqual([new TextDecoder().decode(valid).slice(0, 100)])
    expect(bytesFromX).toEqual([valid.length])
    expect(v.network.likelyHolders(held)).toEqual([])
  }, 30_000)
})
