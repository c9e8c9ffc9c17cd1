/**
 * Peers that answer every shard request `busy` with a wait no loader takes (review 37c), over
 * real libp2p on 127.0.0.1: six ids of one host connect to a loading runtime, announce Bloom
 * filters naming the model's blocks and answer busy with retryMs 60 s. Before the fix they spent
 * the swarm source's per-object peer budget (maxPeersPerObject 6) on every object, so the
 * origin's referral to an honest holder and the honest DHT provider were never asked: the
 * coordinator served everything, and with it down the load failed; and busy never rested them.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createOrigin, type Origin } from '../../../coordinator/p2p/origin.ts'
import { blockFiles } from '../../../coordinator/store/block-files.ts'
import { createPeerNode, type PeerNode } from '../../../node-runtime/p2p/peer-node.ts'
import { createSwarm, type Swarm } from '../../../node-runtime/p2p/swarm.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import { rawCid } from '../../../shared/crypto/cid.ts'
import { blockFilter } from '../../../shared/p2p/bloom.ts'
import { encodeGossip, modelTopic } from '../../../shared/p2p/gossip.ts'
import { serveShardStream, SHARD_PROTOCOL } from '../../../shared/p2p/shard-protocol.ts'
import { swarmSource, type SwarmNetwork, type SwarmSource } from '../../../shared/p2p/swarm-source.ts'
import { seedOf, tcpAddr } from '../../helpers/libp2p.ts'
import { testManifest } from '../../helpers/manifest.ts'

const MODEL = 'busy-sybils'
/** As many objects as "not found"/refused answers rest a peer by default (missesBeforeCoolDown 8). */
const N = 8
const SYBILS = 6

const cleanups: Array<() => Promise<void>> = []
let root = ''
let origin: Origin
let holder: Swarm
const objects: Array<{ cid: string, bytes: Uint8Array }> = []
const sybils: PeerNode[] = []
const sybilIds = new Set<string>()

async function until (what: string, done: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!done()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function newSwarm (seed: number, bootstrap: string): Promise<Swarm> {
  const s = await createSwarm({ seed: seedOf(seed) })
  cleanups.push(async () => { await s.stop() })
  await s.join([bootstrap])
  s.register(testManifest({ model: MODEL }), memoryCache({ name: `busy-sybils-${seed}` }))
  return s
}

/** The Sybils dial `loader` and announce filters naming every object, until it takes all of them as likely holders. */
async function hintSybils (loader: Swarm): Promise<void> {
  for (const sybil of sybils) await sybil.dial(tcpAddr(loader.node))
  const filter = blockFilter({ capacity: 64, falsePositiveRate: 0.01 })
  for (const o of objects) filter.add(o.cid)
  const message = encodeGossip({ type: 'have', filter: filter.encode(), blocks: N })
  const hinted = (): number => loader.network.likelyHolders(objects[0]?.cid ?? '').filter(p => sybilIds.has(p)).length
  const end = Date.now() + 15_000
  // Announced again until heard: a publish before the loader's subscription is known goes nowhere.
  while (hinted() < SYBILS) {
    if (Date.now() > end) throw new Error(`the loader took ${hinted()} of ${SYBILS} Sybils as holders`)
    for (const sybil of sybils) await sybil.services.pubsub.publish(modelTopic(MODEL), message).catch(() => {})
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

/**
 * The loader's network with hints naming only the Sybils (as before the honest holder's own
 * filter reaches it), so that they are asked first for every object, whatever gossip's timing.
 */
function sybilsHinted (network: SwarmNetwork): SwarmNetwork {
  return { ...network, likelyHolders: block => network.likelyHolders(block).filter(p => sybilIds.has(p)) }
}

async function loadAll (source: SwarmSource): Promise<Array<Uint8Array | Error>> {
  return await Promise.all(objects.map(async o =>
    await source.get(o.cid, { signal: AbortSignal.timeout(30_000), block: o.cid, size: o.bytes.length }).catch((err: unknown) => err as Error)))
}

function expectSybilsRested (source: SwarmSource): void {
  const snap = source.scores.snapshot()
  for (const id of sybilIds) {
    expect(snap[id], id).toBeDefined()
    expect(source.scores.usable(id), `Sybil ${id} rested (record ${JSON.stringify(snap[id])})`).toBe(false)
  }
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'busy-sybils-'))
  const files = blockFiles(join(root, 'blocks'))
  for (let i = 0; i < N; i++) {
    const bytes = new Uint8Array(16 * 1024).map((_, j) => (i * 31 + j * 7) & 0xff)
    const cid = await rawCid(bytes)
    await files.put(cid, bytes)
    objects.push({ cid, bytes })
  }
  origin = await createOrigin({ seed: seedOf(61), files })
  cleanups.push(async () => { await origin.stop() })
  const originAddr = tcpAddr(origin.node).toString()

  // The honest holder gets every object from the origin (which then refers others to it) and
  // keeps them in a watched cache, so it also provides them in the DHT.
  holder = await newSwarm(62, originAddr)
  const first = swarmSource({ network: holder.network, origin: origin.peerId })
  const got = await loadAll(first)
  for (const [i, bytes] of got.entries()) expect(bytes).toEqual(objects[i]?.bytes)
  const kept = holder.watch(memoryCache({ name: 'busy-sybils-holder' }))
  for (const o of objects) await kept.put(o.cid, o.bytes)

  for (let i = 0; i < SYBILS; i++) {
    const sybil = await createPeerNode({ seed: seedOf(70 + i) })
    cleanups.push(async () => { await sybil.stop() })
    await sybil.handle(SHARD_PROTOCOL, async stream => {
      await serveShardStream(stream, async () => ({ status: 'busy', retryMs: 60_000 }), { timeoutMs: 10_000 })
    })
    sybil.services.pubsub.subscribe(modelTopic(MODEL))
    sybils.push(sybil)
    sybilIds.add(sybil.peerId.toString())
  }
}, 60_000)

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {})
  if (root !== '') await rm(root, { recursive: true, force: true })
})

describe('busy Sybils hinted first', () => {
  it('with the origin up, its referral to the honest holder is followed: the coordinator serves nothing, and the Sybils end rested', async () => {
    const loader = await newSwarm(63, tcpAddr(origin.node).toString())
    await hintSybils(loader)
    const source = swarmSource({ network: sybilsHinted(loader.network), origin: origin.peerId })
    const servedBefore = origin.counters().bytesServed
    const got = await loadAll(source)
    for (const [i, bytes] of got.entries()) expect(bytes).toEqual(objects[i]?.bytes)
    const stats = source.stats()
    expect(stats.bytesFromOrigin).toBe(0)
    expect(origin.counters().bytesServed - servedBefore).toBe(0)
    expect(stats.perPeer).toEqual({ [holder.peerId]: N * 16 * 1024 })
    expect(stats.forcedBecause).toEqual({})
    expectSybilsRested(source)
  }, 60_000)

  it('with the origin down and no fallback, the load completes from the honest DHT provider, and the Sybils end rested', async () => {
    await until('the holder provided every object', () => holder.counters().provided >= N, 30_000)
    await origin.stop()
    const loader = await newSwarm(64, tcpAddr(holder.node).toString())
    await hintSybils(loader)
    const source = swarmSource({ network: sybilsHinted(loader.network), origin: origin.peerId })
    const got = await loadAll(source)
    const failed = got.filter(g => g instanceof Error)
    expect(failed.map(e => `${e.name}: ${e.message}`)).toEqual([])
    for (const [i, bytes] of got.entries()) expect(bytes).toEqual(objects[i]?.bytes)
    expect(source.stats().perPeer).toEqual({ [holder.peerId]: N * 16 * 1024 })
    expectSybilsRested(source)
  }, 60_000)
})
