/**
 * A runtime's shard index (node-runtime/p2p/swarm.ts) over real libp2p on 127.0.0.1: shards
 * stay served for the last few manifests registered per model and for every block still held
 * (which the runtime announces and provides); an older version's shards are forgotten once its
 * block is not held, so a long-lived runtime's index does not grow with every version it loads.
 */
import { describe, it, expect, afterAll } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { createPeerNode, type PeerNode } from '../../../node-runtime/p2p/peer-node.ts'
import { createSwarm, type Swarm } from '../../../node-runtime/p2p/swarm.ts'
import { defaultReedSolomon, erasureCoder } from '../../../shared/blocks/erasure.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import { rawCid } from '../../../shared/crypto/cid.ts'
import type { Manifest } from '../../../shared/manifest/schema.ts'
import { testManifest } from '../../helpers/manifest.ts'
import { requestShard, SHARD_PROTOCOL } from '../../../shared/p2p/shard-protocol.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

const MODEL = 'index-mlp'
const K = 2
const M = 1
const seedOf = (n: number): Uint8Array => new Uint8Array(32).fill(n)
const stops: Array<() => Promise<void>> = []

afterAll(async () => {
  for (const stop of stops.reverse()) await stop().catch(() => {})
})

interface SealedBlock { cid: string, sealed: Uint8Array, shardCids: string[] }

async function sealedBlock (seed: number): Promise<SealedBlock> {
  const next = mulberry32(seed)
  const sealed = new Uint8Array(4_001).map(() => Math.floor(next() * 256))
  const shards = (await erasureCoder(defaultReedSolomon, { k: K, m: M })).encode(sealed)
  return { cid: await rawCid(sealed), sealed, shardCids: await Promise.all(shards.map(async s => await rawCid(s))) }
}

function manifestOf (version: number, blocks: SealedBlock[]): Manifest {
  return testManifest({
    model: MODEL,
    version,
    parent: version === 1 ? null : version - 1,
    tensors: blocks.map((_, i) => ({ name: `w${i}`, dtype: 'float32' as const, shape: [1000], byteLength: 4_000, layer: `dense_${i}` })),
    erasure: { scheme: 'reed-solomon-gf8', k: K, m: M },
    blocks: blocks.map((b, i) => ({
      index: i,
      unit: `dense_${i}`,
      parts: [{ tensor: i, offset: 0, length: 4_000 }],
      plaintextLength: 4_000,
      plaintextSha256: '0'.repeat(64),
      cid: b.cid,
      sealedLength: b.sealed.length,
      keyId: '0'.repeat(32),
      access: 'public' as const,
      shards: { size: Math.ceil(b.sealed.length / K), cids: b.shardCids }
    }))
  })
}

describe('swarm shard index', () => {
  // Regression (fixed): after four newer versions an older version's shards were forgotten
  // while its block stayed cached, announced in the Bloom filter and provided in the DHT, so
  // peers sent here for its shards got "not found" until they rested this (honest) node.
  it('serves the shards of the last four versions, and of older ones while their block is held; forgets the rest', async () => {
    const swarm: Swarm = await createSwarm({ seed: seedOf(41) })
    stops.push(async () => { await swarm.stop() })
    const requester: PeerNode = await createPeerNode({ seed: seedOf(42) })
    stops.push(async () => { await requester.stop() })
    const addr = swarm.node.getMultiaddrs().find(a => a.toString().includes('/tcp/') && !a.toString().includes('/ws'))
    if (addr === undefined) throw new Error('the swarm node has no TCP address')
    const status = async (cid: string): Promise<string> => {
      const signal = AbortSignal.timeout(5_000)
      const stream = await requester.dialProtocol(multiaddr(addr.toString()), SHARD_PROTOCOL, { signal })
      return (await requestShard(stream, cid, { signal, force: true })).status
    }

    const shared = await sealedBlock(1)
    const only = await sealedBlock(2)
    const later = await Promise.all([3, 4, 5, 6].map(sealedBlock))
    // In version 1 but never cached here: nothing of it is held.
    const absent = await sealedBlock(7)
    const cache = memoryCache({ name: 'index' })
    const watched = swarm.watch(cache)
    for (const b of [shared, only, ...later]) await watched.put(b.cid, b.sealed)

    // Versions 1–4: version 1's shards are indexed.
    swarm.register(manifestOf(1, [shared, only, absent]), cache)
    for (const v of [2, 3, 4]) swarm.register(manifestOf(v, [later[v - 2] as SealedBlock]), cache)
    expect(await status(only.shardCids[0] as string)).toBe('ok')
    expect(await status(only.shardCids[K] as string)).toBe('ok')

    // Version 5 shares one block with version 1, which is now the fifth. Its blocks still held
    // keep their shards served, like the block itself.
    swarm.register(manifestOf(5, [shared, later[3] as SealedBlock]), cache)
    for (const cid of [...only.shardCids, ...shared.shardCids]) expect(await status(cid)).toBe('ok')
    expect(await status(only.cid)).toBe('ok')
    // Its block that was not held is forgotten: cached now behind the swarm's back (so not
    // held either), its shards are not served.
    await cache.put(absent.cid, absent.sealed)
    for (const cid of absent.shardCids) expect(await status(cid)).toBe('not-found')

    // Once a forgotten version's block leaves the cache, its shards are forgotten too.
    await watched.delete(only.cid)
    await cache.put(only.cid, only.sealed)
    for (const cid of only.shardCids) expect(await status(cid)).toBe('not-found')
    // A kept version's block that leaves the cache keeps its shards indexed.
    const kept = later[3] as SealedBlock
    await watched.delete(kept.cid)
    await cache.put(kept.cid, kept.sealed)
    expect(await status(kept.shardCids[0] as string)).toBe('ok')

    // Registering an already kept version again does not push the oldest kept one out.
    swarm.register(manifestOf(5, [shared, kept]), cache)
    expect(await status(later[0]?.shardCids[0] as string)).toBe('ok')
  })
})
