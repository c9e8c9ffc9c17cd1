/**
 * The coordinator's libp2p origin under greedy and broken requesters (found by review): a peer
 * holding many answers open meets the per-peer bound, and only a peer that got a whole object, or
 * is being sent it, is ever named in a referral. Real libp2p nodes over loopback TCP.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Libp2p, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { encode as varint } from 'uint8-varint'
import { createOrigin, ORIGIN_PROVIDES_PER_SECOND, type Origin } from '../../coordinator/p2p/origin.ts'
import { answerAdmission } from '../../coordinator/answers.ts'
import { blockFiles } from '../../coordinator/store/block-files.ts'
import { rawCid } from '../../shared/crypto/cid.ts'
import { requestShard, SHARD_PROTOCOL, type ShardAnswer } from '../../shared/p2p/shard-protocol.ts'

let root: string
const cids: string[] = []
const stops: Array<() => Promise<void>> = []

const peer = async (): Promise<Libp2p> => {
  const node = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], connectionMonitor: { enabled: false } })
  stops.push(async () => { await node.stop() })
  return node
}
const frame = (value: unknown): Uint8Array => {
  const body = new TextEncoder().encode(JSON.stringify(value))
  const prefix = varint(body.length)
  const out = new Uint8Array(prefix.length + body.length)
  out.set(prefix)
  out.set(body, prefix.length)
  return out
}
async function origin (budgetBytes: number, bytesPerSecond?: number): Promise<{ origin: Origin, addr: string }> {
  const files = blockFiles(join(root, `blocks-${budgetBytes}`), 0)
  for (const [i, cid] of cids.entries()) await files.put(cid, new Uint8Array(1 << 20).fill(i + 1))
  const o = await createOrigin({ seed: new Uint8Array(32).fill(budgetBytes % 251), files, listen: ['/ip4/127.0.0.1/tcp/0'], answers: answerAdmission({ maxBytes: budgetBytes, bytesPerSecond, deadlineMs: 120_000 }) })
  stops.push(async () => { await o.stop() })
  return { origin: o, addr: o.addresses().find(a => a.includes('127.0.0.1')) as string }
}
/** Opens `count` streams asking for objects and never reads the answers; returns the streams. */
async function hold (from: Libp2p, addr: string, count: number, force: boolean): Promise<Stream[]> {
  const connection = await from.dial(multiaddr(addr))
  const streams: Stream[] = []
  for (let i = 0; i < count; i++) {
    const stream = await connection.newStream(SHARD_PROTOCOL, { maxOutboundStreams: 1024 })
    stream.pause()
    stream.send(frame({ cid: cids[i % cids.length], force }))
    streams.push(stream)
  }
  return streams
}
const answerTo = async (from: Libp2p, addr: string, cid: string, force = false): Promise<ShardAnswer> => {
  const signal = AbortSignal.timeout(20_000)
  return await requestShard(await from.dialProtocol(multiaddr(addr), SHARD_PROTOCOL, { signal }), cid, { signal, force })
}
const ask = async (from: Libp2p, addr: string, cid: string, force = false): Promise<string> => (await answerTo(from, addr, cid, force)).status

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-origin-'))
  for (let i = 0; i < 4; i++) cids.push(await rawCid(new Uint8Array(1 << 20).fill(i + 1)))
})

afterAll(async () => {
  for (const stop of stops.reverse()) await stop().catch(() => {})
  await rm(root, { recursive: true, force: true })
})

describe('coordinator origin', () => {
  it('answers a request for an object whose file is damaged not-found, and counts it', async () => {
    const { origin: o, addr } = await origin(48 << 20)
    const path = join(root, `blocks-${48 << 20}`, (cids[2] as string).slice(-2), cids[2] as string)
    const bytes = await readFile(path)
    bytes[0] = (bytes[0] as number) ^ 0xff
    await writeFile(path, bytes)
    const p = await peer()
    // Before, the stream was aborted and nothing counted; the peer now asks elsewhere at once.
    expect(await ask(p, addr, cids[2] as string, true)).toBe('not-found')
    expect(o.counters()).toMatchObject({ damaged: 1, notFound: 0, objectsServed: 0 })
    expect(await ask(p, addr, cids[1] as string, true)).toBe('ok')
  })

  it('bounds the answers one peer holds open; another peer is still served', async () => {
    // Answers paced at 4 MiB/s in all: the 16 admitted ones stay under way for seconds, so the
    // count does not depend on whether they end before the later requests arrive (unpaced, an
    // answer into a paused stream could finish first under load, and fewer requests were busy).
    const { origin: o, addr } = await origin(256 << 20, 4 << 20)
    const greedy = await peer()
    await hold(greedy, addr, 24, true) // a quarter of 64 slots is 16: the rest are answered busy
    for (let i = 0; i < 400 && o.counters().busy < 8; i++) await new Promise(resolve => setTimeout(resolve, 50))
    expect(o.counters().busy).toBe(8)
    expect(await ask(await peer(), addr, cids[0] as string, true)).toBe('ok')
  })

  it('refers later requesters to a peer being sent the object, never to one answered busy or whose download broke off', async () => {
    const { origin: o, addr } = await origin(1 << 20)
    // A paused download holds the whole 1 MiB budget, so the next requester is answered busy.
    const holder = await peer()
    const [download] = await hold(holder, addr, 1, true)
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(await ask(await peer(), addr, cids[1] as string)).toBe('busy')
    // Before that fix the busy requester was remembered as served, and this one referred to it.
    expect(await ask(await peer(), addr, cids[1] as string)).not.toBe('elsewhere')
    expect(o.counters().referrals).toBe(0)
    // The holder's copy is on its way: a requester is referred to it rather than sent a second
    // copy (before, it was answered busy here, and served a copy of its own once there was room).
    const referred = await peer()
    const first = await answerTo(referred, addr, cids[0] as string)
    expect(first.status === 'elsewhere' ? first.peers.map(p => p.id) : first.status).toEqual([holder.peerId.toString()])
    // The holder gives up that download but stays connected (a loader cancelling a straggler):
    // once its answer has ended (the budget is free again) it is named no more; the requester
    // referred to it still is (it may have got the object since).
    download?.abort(new Error('cancelled'))
    let status = 'busy'
    for (let i = 0; i < 100 && status === 'busy'; i++) {
      status = await ask(await peer(), addr, cids[2] as string, true)
      if (status === 'busy') await new Promise(resolve => setTimeout(resolve, 100))
    }
    expect(status).toBe('ok')
    expect(o.node.getPeers().map(String)).toContain(holder.peerId.toString())
    const answer = await answerTo(await peer(), addr, cids[0] as string)
    expect(answer.status === 'elsewhere' ? answer.peers.map(p => p.id) : answer.status).toEqual([referred.peerId.toString()])
  })

  it('sends its DHT provide records at ORIGIN_PROVIDES_PER_SECOND at most, after a burst of as many', async () => {
    const { origin: o } = await origin(64 << 20)
    const at: number[] = []
    vi.spyOn(o.node.contentRouting, 'provide').mockImplementation(async () => { at.push(performance.now()) })
    const count = 2 * ORIGIN_PROVIDES_PER_SECOND + 20
    const many = await Promise.all(Array.from({ length: count }, async (_, i) => (await rawCid(new TextEncoder().encode(`provided ${i}`))).toString()))
    const started = performance.now()
    o.provide(many)
    await expect.poll(() => at.length, { timeout: 10_000 }).toBe(count)
    // The burst goes at once; the rest at the rate (unpaced, all of them took a few ms).
    const afterBurst = (count - ORIGIN_PROVIDES_PER_SECOND) / ORIGIN_PROVIDES_PER_SECOND * 1000
    expect((at.at(-1) ?? 0) - started).toBeGreaterThanOrEqual(afterBurst - 20)
    for (let i = ORIGIN_PROVIDES_PER_SECOND; i < count; i++) {
      expect((at[i] ?? 0) - started).toBeGreaterThanOrEqual((i + 1 - ORIGIN_PROVIDES_PER_SECOND) * 1000 / ORIGIN_PROVIDES_PER_SECOND - 20)
    }
  })
})
