/**
 * The stream-open rate per connection (shared/p2p/stream-limit.ts) over real libp2p on 127.0.0.1
 * (TCP, Noise, Yamux): streams past the rate are reset before their protocol is negotiated, a
 * peer that keeps opening past it loses its connection and is refused for the cooldown, and an
 * honest peer beside it is served throughout. The cooldown's bookkeeping runs on a fake clock.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Connection, Libp2p } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { createPeerNode, floodCounters, type PeerNode } from '../../../node-runtime/p2p/peer-node.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { floodCooldown, limitInboundStreams, type StreamLimitOptions } from '../../../shared/p2p/stream-limit.ts'

const PROTOCOL = '/blockfed-test/echo/1'
const nodes: Libp2p[] = []
afterEach(async () => {
  await Promise.all(nodes.splice(0).map(async n => { await n.stop() }))
})

async function plain (): Promise<Libp2p> {
  const n = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], connectionMonitor: { enabled: false } })
  nodes.push(n)
  return n
}

const seed = (n: number): Uint8Array => new Uint8Array(32).fill(n)

/** Opens `count` streams on `connection` as fast as it can, `parallel` at a time, each reset once open; resolves with how many opened. */
async function openMany (connection: Connection, count: number, parallel = 32): Promise<number> {
  let opened = 0
  let left = count
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (left-- > 0) {
      try {
        const stream = await connection.newStream(PROTOCOL, { signal: AbortSignal.timeout(5_000), maxOutboundStreams: 1024 })
        opened++
        stream.abort(new Error('done'))
      } catch {}
    }
  }))
  return opened
}

/** One echo exchange with `target` over a fresh stream. */
async function echo (from: Libp2p, target: Libp2p, text: string): Promise<string> {
  const stream = await from.dialProtocol(target.getMultiaddrs(), PROTOCOL, { signal: AbortSignal.timeout(5_000) })
  stream.send(new TextEncoder().encode(text))
  await stream.close({ signal: AbortSignal.timeout(5_000) })
  let got = ''
  for await (const chunk of stream) got += new TextDecoder().decode(chunk.subarray())
  return got
}

/** A plain node whose streams are limited; its handler counts the streams it gets and ends them. */
async function limitedServer (limit: StreamLimitOptions): Promise<{ server: Libp2p, handled: { count: number }, refused: string[] }> {
  const handled = { count: 0 }
  const refused: string[] = []
  const server = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [limitInboundStreams(yamux(), { ...limit, onRefused: what => refused.push(what) })],
    connectionMonitor: { enabled: false }
  })
  nodes.push(server)
  await server.handle(PROTOCOL, stream => { handled.count++; stream.abort(new Error('handled')) }, { maxInboundStreams: 1024 })
  return { server, handled, refused }
}

describe('limitInboundStreams on a plain libp2p node', () => {
  it('resets streams past the rate before any handler runs, then closes a connection that keeps on', async () => {
    // One stream a second: what refills during the test is at most a few streams.
    const { server, handled, refused } = await limitedServer({ perSecond: 1, burst: 20, refusedBurst: 10, refusedPerSecond: 0.1 })
    const attacker = await plain()
    const connection = await attacker.dial(server.getMultiaddrs())
    const started = performance.now()
    const refills = (): number => Math.floor((performance.now() - started) / 1000) + 1

    // The burst, one at a time: every stream negotiated and handled.
    for (let i = 0; i < 20; i++) expect(await openMany(connection, 1, 1)).toBe(1)
    await expect.poll(() => handled.count, { timeout: 5_000 }).toBe(20)
    // Past it: reset before negotiation (the opener sees the stream end), no handler run, the
    // connection kept while the refused streams stay within their own budget.
    const opened = await openMany(connection, 5, 1)
    expect(refused.filter(r => r === 'stream').length).toBeGreaterThanOrEqual(5 - refills())
    expect(opened).toBeLessThanOrEqual(refills())
    expect(handled.count).toBeLessThanOrEqual(20 + refills())
    expect(connection.status).toBe('open')
    // Keeping on past the refused streams' budget closes the connection on both sides.
    await openMany(connection, 40)
    expect(refused.filter(r => r === 'connection')).toEqual(['connection'])
    expect(handled.count).toBeLessThanOrEqual(20 + refills())
    await expect.poll(() => server.getConnections().length, { timeout: 5_000 }).toBe(0)
    await expect.poll(() => connection.status, { timeout: 5_000 }).not.toBe('open')
  })

  it('lets a peer that stays within its burst open every stream, however fast', async () => {
    const { server, handled, refused } = await limitedServer({ perSecond: 5, burst: 64 })
    const peer = await plain()
    const connection = await peer.dial(server.getMultiaddrs())
    expect(await openMany(connection, 64)).toBe(64)
    await expect.poll(() => handled.count, { timeout: 5_000 }).toBe(64)
    expect(refused).toEqual([])
    expect(connection.status).toBe('open')
  })

  it('refuses nonsense limits by name', () => {
    expect(() => limitInboundStreams(yamux(), { perSecond: 0 })).toThrow(InvalidInputError)
    expect(() => limitInboundStreams(yamux(), { burst: Number.NaN })).toThrow(/burst must be a positive number/)
  })
})

describe('createPeerNode and a stream flood', () => {
  it('cuts the flooding peer, refuses its redial for the cooldown, and keeps serving another peer', async () => {
    const server: PeerNode = await createPeerNode({ seed: seed(201), streamLimit: { perSecond: 5, burst: 20, refusedBurst: 10, refusedPerSecond: 1 }, floodCooldownMs: 60_000 })
    nodes.push(server)
    await server.handle(PROTOCOL, async stream => {
      let text = ''
      for await (const chunk of stream) text += new TextDecoder().decode(chunk.subarray())
      stream.send(new TextEncoder().encode(text.toUpperCase()))
      await stream.close({ signal: AbortSignal.timeout(5_000) })
    }, { maxInboundStreams: 1024 })
    const attacker: PeerNode = await createPeerNode({ seed: seed(202) })
    const honest: PeerNode = await createPeerNode({ seed: seed(203) })
    nodes.push(attacker, honest)

    expect(await echo(honest, server, 'before')).toBe('BEFORE')
    const connection = await attacker.dial(server.getMultiaddrs())
    await openMany(connection, 300)
    await expect.poll(() => floodCounters(server).connectionsCut, { timeout: 5_000 }).toBe(1)
    expect(floodCounters(server).streamsRefused).toBeGreaterThanOrEqual(10)
    await expect.poll(() => server.getConnections(attacker.peerId).length, { timeout: 5_000 }).toBe(0)
    await expect.poll(() => attacker.getConnections(server.peerId).length, { timeout: 5_000 }).toBe(0)

    // The same id dialling again is refused after the handshake (loopback has no host to refuse
    // before it: host-group.ts), while the honest peer's connection and new streams go on.
    // Noise's initiator is done before the responder, so the dial may resolve; the server
    // refuses the connection at once and no stream gets through.
    const redial = await attacker.dial(server.getMultiaddrs(), { signal: AbortSignal.timeout(5_000) }).catch(() => undefined)
    await expect.poll(() => floodCounters(server).connectionsRefused, { timeout: 5_000 }).toBeGreaterThanOrEqual(1)
    await expect.poll(() => attacker.getConnections(server.peerId).length, { timeout: 5_000 }).toBe(0)
    expect(await redial?.newStream(PROTOCOL, { signal: AbortSignal.timeout(5_000) }).then(() => 'opened', () => 'refused')).not.toBe('opened')
    expect(await echo(honest, server, 'after')).toBe('AFTER')
    expect(server.getConnections(attacker.peerId).length).toBe(0)
  })
})

describe('floodCooldown', () => {
  it('refuses a punished peer and its host until the cooldown ends, and counts what it refused', () => {
    let t = 0
    const cooldown = floodCooldown({ cooldownMs: 1_000, now: () => t })
    cooldown.punish('peer-a', '203.0.113.7')
    expect(cooldown.refuses('peer-a', undefined)).toBe(true)
    // A fresh id from the same host is refused by host; another host's peer is not.
    expect(cooldown.refuses(undefined, '203.0.113.7')).toBe(true)
    expect(cooldown.refuses('peer-b', '198.51.100.1')).toBe(false)
    t = 999
    expect(cooldown.refuses('peer-a', undefined)).toBe(true)
    t = 1_000
    expect(cooldown.refuses('peer-a', undefined)).toBe(false)
    expect(cooldown.refuses(undefined, '203.0.113.7')).toBe(false)
    cooldown.onRefused('stream')
    cooldown.onRefused('stream')
    cooldown.onRefused('connection')
    expect(cooldown.counters()).toEqual({ streamsRefused: 2, connectionsCut: 1, connectionsRefused: 3 })
  })

  it('punishes a peer without a host by its id only', () => {
    const cooldown = floodCooldown({ now: () => 0 })
    cooldown.punish('peer-a', undefined)
    expect(cooldown.refuses('peer-a', undefined)).toBe(true)
    expect(cooldown.refuses('peer-b', undefined)).toBe(false)
  })

  it('forgets the oldest punishment past its bound', () => {
    const cooldown = floodCooldown({ maxKeys: 2, now: () => 0 })
    cooldown.punish('p1', undefined)
    cooldown.punish('p2', undefined)
    cooldown.punish('p3', undefined)
    expect(['p1', 'p2', 'p3'].map(p => cooldown.refuses(p, undefined))).toEqual([false, true, true])
  })
})
