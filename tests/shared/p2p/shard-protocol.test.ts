/**
 * The shard protocol's sessions and the client's stream pool, over real libp2p on 127.0.0.1
 * (TCP, Noise, Yamux): many exchanges per stream, streams kept and reused per peer, a kept
 * stream the server closed meanwhile, answer slots (per peer and per host), a server that lies about a body's size, and
 * half-closed streams whose peer never closes its side (reset after a grace period).
 */
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Libp2p, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { createLibp2p } from 'libp2p'
import { rawCid } from '../../../shared/crypto/cid.ts'
import { IntegrityError } from '../../../shared/errors/errors.ts'
import { sleep } from '../../../shared/load/deadline.ts'
import { shardClient } from '../../../shared/p2p/shard-client.ts'
import { serveShardStream, serveSlots, shardSession, SHARD_PROTOCOL, type ShardAnswer, type ShardRequest } from '../../../shared/p2p/shard-protocol.ts'
import { requestRate } from '../../../shared/p2p/request-rate.ts'
import { uploadCap } from '../../../shared/p2p/token-bucket.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

const nodes: Libp2p[] = []
async function node (): Promise<Libp2p> {
  const n = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], connectionMonitor: { enabled: false } })
  nodes.push(n)
  return n
}

const objects = new Map<string, Uint8Array>()
let server: Libp2p
let client: Libp2p
let inbound = 0

/** Answers are delayed by this many ms for these CIDs (to hold a slot). */
const delays = new Map<string, number>()
/** The servers' answers: the stored object, or not-found. */
const lookup = async (request: ShardRequest): Promise<ShardAnswer> => {
  const delay = delays.get(request.cid)
  if (delay !== undefined) await sleep(delay)
  const bytes = objects.get(request.cid)
  return bytes === undefined ? { status: 'not-found' } : { status: 'ok', bytes }
}

const open = (target: Libp2p, protocol = SHARD_PROTOCOL) => async (_peer: string, signal: AbortSignal): Promise<Stream> =>
  await client.dialProtocol(target.getMultiaddrs(), protocol, { signal })

beforeAll(async () => {
  const next = mulberry32(11)
  for (const size of [0, 1, 1000, 65_536, 300_001, 1 << 20]) {
    const bytes = new Uint8Array(size).map(() => Math.floor(next() * 256))
    objects.set(await rawCid(bytes), bytes)
  }
  server = await node()
  client = await node()
  await server.handle(SHARD_PROTOCOL, async stream => {
    inbound++
    await serveShardStream(stream, lookup, { timeoutMs: 5_000 })
  }, { maxInboundStreams: 64 })
})

afterAll(async () => {
  for (const n of nodes) await n.stop()
})

describe('shard sessions', () => {
  it('carries many exchanges on one stream, of every size and answer', async () => {
    const before = inbound
    const session = shardSession(await open(server)(server.peerId.toString(), AbortSignal.timeout(5_000)))
    for (const [cid, bytes] of objects) {
      const answer = await session.request(cid, { signal: AbortSignal.timeout(5_000) })
      expect(answer).toEqual({ status: 'ok', bytes })
      expect(session.usable).toBe(true)
    }
    const unknown = await rawCid(new TextEncoder().encode('nobody has this'))
    expect(await session.request(unknown, { signal: AbortSignal.timeout(5_000) })).toEqual({ status: 'not-found' })
    expect(session.exchanges).toBe(objects.size + 1)
    await session.close()
    expect(inbound - before).toBe(1)
  })

  it('refuses a second exchange while one runs', async () => {
    const session = shardSession(await open(server)(server.peerId.toString(), AbortSignal.timeout(5_000)))
    const [cid] = [...objects.keys()]
    const first = session.request(cid as string, { signal: AbortSignal.timeout(5_000) })
    await expect(session.request(cid as string, { signal: AbortSignal.timeout(5_000) })).rejects.toThrow(/one exchange at a time/)
    expect((await first).status).toBe('ok')
    await session.close()
  })

  it('an answer announcing another size than the object\'s is refused on the header, as an integrity failure', async () => {
    const session = shardSession(await open(server)(server.peerId.toString(), AbortSignal.timeout(5_000)))
    const [cid, bytes] = [...objects].find(([, b]) => b.length === 1000) as [string, Uint8Array]
    expect(await session.request(cid, { signal: AbortSignal.timeout(5_000), size: 1000 })).toEqual({ status: 'ok', bytes })
    const err = await session.request(cid, { signal: AbortSignal.timeout(5_000), size: 999 }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(IntegrityError)
    expect((err as Error).message).toMatch(/announces 1000 bytes, but the object has 999/)
    expect(session.usable).toBe(false)
  })

  it('tells the requester its reply\'s header came before the body has (onHeader), once, with the status', async () => {
    // A server whose bodies wait on a gate: the header goes out, the body only when opened.
    let open1: () => void = () => {}
    const gate = new Promise<void>(resolve => { open1 = resolve })
    await server.handle('/test/gated-body', async stream => { await serveShardStream(stream, lookup, { timeoutMs: 5_000, pace: async () => { await gate } }) })
    try {
      const session = shardSession(await open(server, '/test/gated-body')(server.peerId.toString(), AbortSignal.timeout(5_000)))
      const [cid, bytes] = [...objects].find(([, b]) => b.length === 300_001) as [string, Uint8Array]
      const heard: string[] = []
      let answered = false
      const answer = session.request(cid, { signal: AbortSignal.timeout(5_000), onHeader: status => { heard.push(status) } }).finally(() => { answered = true })
      for (let i = 0; i < 200 && heard.length === 0; i++) await sleep(10)
      expect(heard).toEqual(['ok'])
      expect(answered).toBe(false)
      open1()
      expect(await answer).toEqual({ status: 'ok', bytes })
      expect(heard).toEqual(['ok'])
      const unknown = await rawCid(new TextEncoder().encode('nobody has this either'))
      expect(await session.request(unknown, { signal: AbortSignal.timeout(5_000), onHeader: status => { heard.push(status) } })).toEqual({ status: 'not-found' })
      expect(heard).toEqual(['ok', 'not-found'])
      await session.close()
    } finally {
      await server.unhandle('/test/gated-body')
    }
  })

  it('a body above the caller\'s bound is refused on the header', async () => {
    const session = shardSession(await open(server)(server.peerId.toString(), AbortSignal.timeout(5_000)))
    const big = [...objects].find(([, b]) => b.length === 1 << 20)?.[0] as string
    await expect(session.request(big, { signal: AbortSignal.timeout(5_000), maxBytes: 1000 })).rejects.toThrow(`announces ${1 << 20} bytes, above the 1000-byte bound`)
    expect(session.usable).toBe(false)
  })
})

describe('shard client', () => {
  it('reuses kept streams: sequential requests open one stream, concurrent ones at most as many as run at once', async () => {
    const pool = shardClient({ open: open(server), idleMs: 5_000 })
    const peer = server.peerId.toString()
    const before = inbound
    for (const [cid, bytes] of objects) expect(await pool.request(peer, cid, { signal: AbortSignal.timeout(5_000) })).toEqual({ status: 'ok', bytes })
    expect(pool.counters()).toMatchObject({ opened: 1, reused: objects.size - 1 })
    const cids = [...objects.keys()]
    const all = await Promise.all(Array.from({ length: 24 }, async (_, i) => await pool.request(peer, cids[i % cids.length] as string, { signal: AbortSignal.timeout(5_000) })))
    all.forEach((answer, i) => { expect(answer).toEqual({ status: 'ok', bytes: objects.get(cids[i % cids.length] as string) }) })
    expect(pool.counters().opened).toBeLessThanOrEqual(24)
    expect(inbound - before).toBe(pool.counters().opened)
    // Another sequential run opens nothing new: the concurrent run's streams were kept (8 per peer).
    const opened = pool.counters().opened
    for (const cid of cids) await pool.request(peer, cid, { signal: AbortSignal.timeout(5_000) })
    expect(pool.counters().opened).toBe(opened)
    await pool.close()
  })

  it('a kept stream the server has closed (its idle deadline) is replaced, and the request still succeeds', async () => {
    const impatient = await node()
    await impatient.handle(SHARD_PROTOCOL, async stream => { await serveShardStream(stream, lookup, { timeoutMs: 5_000, idleTimeoutMs: 300 }) })
    const pool = shardClient({ open: open(impatient), idleMs: 10_000 })
    const peer = impatient.peerId.toString()
    const [cid, bytes] = [...objects][3] as [string, Uint8Array]
    expect(await pool.request(peer, cid, { signal: AbortSignal.timeout(5_000) })).toEqual({ status: 'ok', bytes })
    await sleep(600) // the server's idle deadline is 300 ms
    expect(await pool.request(peer, cid, { signal: AbortSignal.timeout(5_000) })).toEqual({ status: 'ok', bytes })
    expect(pool.counters().opened).toBe(2)
    await pool.close()
  })

  it('answers busy when the server\'s slots are taken, and frees them as answers end', async () => {
    const slotted = await node()
    const slots = serveSlots(1)
    let busy = 0
    await slotted.handle(SHARD_PROTOCOL, async stream => {
      // Worked out when the answer is sent (as a runtime does from its upload cap), in whole ms.
      await serveShardStream(stream, lookup, { timeoutMs: 5_000, slots, busyRetryMs: () => 50.4, onBusy: () => { busy++ } })
    })
    const pool = shardClient({ open: open(slotted) })
    const peer = slotted.peerId.toString()
    const [cid, bytes] = [...objects][2] as [string, Uint8Array]
    delays.set(cid, 300)
    try {
      const [slow, refused] = await Promise.all([
        pool.request(peer, cid, { signal: AbortSignal.timeout(5_000) }),
        sleep(100).then(async () => await pool.request(peer, cid, { signal: AbortSignal.timeout(5_000) }))
      ])
      expect(slow).toEqual({ status: 'ok', bytes })
      expect(refused).toEqual({ status: 'busy', retryMs: 50 })
      expect(busy).toBe(1)
      expect(slots.inUse).toBe(0)
      expect(await pool.request(peer, cid, { signal: AbortSignal.timeout(5_000) })).toEqual({ status: 'ok', bytes })
    } finally {
      delays.delete(cid)
      await pool.close()
    }
  })
})

describe('request rate', () => {
  it('a peer asking faster than its rate is answered at the rate, not refused: its requests wait to be read', async () => {
    const rate = requestRate({ perPeer: 20, peerBurst: 5 })
    const paced = await node()
    await paced.handle(SHARD_PROTOCOL, async (stream, connection) => {
      await serveShardStream(stream, lookup, { timeoutMs: 5_000, rate, peer: connection.remotePeer.toString() })
    })
    const signal = AbortSignal.timeout(10_000)
    const unknown = await rawCid(new Uint8Array([7, 7, 7]))
    // From before the stream opens: the server takes the first request's turn as soon as the
    // stream is open (it waits before reading), so its bucket's clock starts at the dial (CI at
    // stop 43 measured 494.99 ms from a start taken after the dial).
    const start = performance.now()
    const session = shardSession(await client.dialProtocol(paced.getMultiaddrs(), SHARD_PROTOCOL, { signal }))
    const answers: ShardAnswer[] = []
    for (let i = 0; i < 15; i++) answers.push(await session.request(unknown, { signal }))
    // 5 at once, then 10 more at 20 a second: at least 500 ms, whatever the machine's speed (less
    // 1 ms for the bucket's floating-point refills; unpaced, the 15 answers took 42 ms here).
    expect(performance.now() - start).toBeGreaterThanOrEqual(499)
    expect(answers).toEqual(Array.from({ length: 15 }, () => ({ status: 'not-found' })))
    expect(rate.slowed).toBeGreaterThan(0)
    await session.close(AbortSignal.timeout(5_000))
  })
})

describe('request rate and closed streams', () => {
  // Regression (review 43a): the wait for a turn ignored the stream closing, so streams a peer
  // opened and reset past its rate stayed queued until their turn or deadline (4,143 parked
  // handlers from one connection in 12 s), outside the connection's stream limit.
  it('a stream reset while it waits for its turn leaves the queue at once', async () => {
    const rate = requestRate({ perPeer: 1, peerBurst: 1 })
    const paced = await node()
    let ended = 0
    await paced.handle(SHARD_PROTOCOL, async (stream, connection) => {
      await serveShardStream(stream, lookup, { timeoutMs: 30_000, rate, peer: connection.remotePeer.toString() })
      ended++
    }, { maxInboundStreams: 64 })
    const signal = AbortSignal.timeout(10_000)
    const unknown = await rawCid(new Uint8Array([5, 5, 5]))
    // The one token of the burst goes to a first request; the next 20 streams wait 1 s each.
    const first = shardSession(await client.dialProtocol(paced.getMultiaddrs(), SHARD_PROTOCOL, { signal }))
    expect(await first.request(unknown, { signal })).toEqual({ status: 'not-found' })
    await first.close(signal)
    await vi.waitFor(() => { expect(ended).toBe(1) }, { timeout: 5_000, interval: 20 })
    const waiting = await Promise.all(Array.from({ length: 20 }, async () => {
      const stream = await client.dialProtocol(paced.getMultiaddrs(), SHARD_PROTOCOL, { signal })
      await lpStream(stream).write(new TextEncoder().encode(JSON.stringify({ cid: unknown })))
      return stream
    }))
    for (const stream of waiting) stream.abort(new Error('gone'))
    const start = performance.now()
    await vi.waitFor(() => { expect(ended).toBe(21) }, { timeout: 5_000, interval: 20 })
    // Waiting their turns would have taken 20 s.
    expect(performance.now() - start).toBeLessThan(5_000)
  })
})

describe('answer slots against a peer that asks and never reads', () => {
  it('one peer holds at most its share of the slots: another peer is served meanwhile', async () => {
    const slots = serveSlots(4)
    const slotted = await node()
    await slotted.handle(SHARD_PROTOCOL, async (stream, connection) => {
      await serveShardStream(stream, lookup, { timeoutMs: 5_000, slots, peer: connection.remotePeer.toString(), busyRetryMs: 50 })
    }, { maxInboundStreams: 64 })
    const other = await node()
    const [cid, bytes] = [...objects][2] as [string, Uint8Array]
    delays.set(cid, 500)
    try {
      const ask = async (from: Libp2p): Promise<ShardAnswer> => {
        const signal = AbortSignal.timeout(5_000)
        return await shardSession(await from.dialProtocol(slotted.getMultiaddrs(), SHARD_PROTOCOL, { signal })).request(cid, { signal })
      }
      // The client peer asks on 4 streams at once: 1 slot (4 / 4) is its share, 3 are refused.
      const flood = Array.from({ length: 4 }, async () => await ask(client))
      await sleep(100)
      // Meanwhile another peer still finds a slot.
      expect(await ask(other)).toEqual({ status: 'ok', bytes })
      const answers = await Promise.all(flood)
      expect(answers.filter(a => a.status === 'ok')).toHaveLength(1)
      expect(answers.filter(a => a.status === 'busy')).toHaveLength(3)
      expect(slots.inUse).toBe(0)
    } finally {
      delays.delete(cid)
    }
  })

  it('peers of one host together hold at most the host\'s share: a peer of another host is served meanwhile', async () => {
    // 8 slots: 2 per peer, 4 per host. Loopback has no host (hostGroup), so the handler names
    // hosts itself: three peer ids stand for one host, a fourth for another. Answers wait for a
    // gate, not a delay, so slow dials on a loaded machine change nothing.
    const slots = serveSlots(8)
    const slotted = await node()
    const sybils = [await node(), await node(), await node()]
    const sybilIds = new Set(sybils.map(n => n.peerId.toString()))
    const other = await node()
    let open!: () => void
    const gate = new Promise<void>(resolve => { open = resolve })
    let busy = 0
    await slotted.handle(SHARD_PROTOCOL, async (stream, connection) => {
      const peer = connection.remotePeer.toString()
      await serveShardStream(stream, async request => { await gate; return await lookup(request) }, {
        timeoutMs: 10_000, slots, peer, host: sybilIds.has(peer) ? 'one host' : 'another host', busyRetryMs: 50, onBusy: () => { busy++ }
      })
    }, { maxInboundStreams: 64 })
    const [cid, bytes] = [...objects][2] as [string, Uint8Array]
    const ask = async (from: Libp2p): Promise<ShardAnswer> => {
      const signal = AbortSignal.timeout(10_000)
      return await shardSession(await from.dialProtocol(slotted.getMultiaddrs(), SHARD_PROTOCOL, { signal })).request(cid, { signal })
    }
    // Each id asks on 2 streams (its own share): 6 asked, 4 (the host's share) taken, 2 busy.
    const flood = sybils.flatMap(n => [ask(n), ask(n)])
    await vi.waitFor(() => { expect([slots.inUse, busy]).toEqual([4, 2]) }, { timeout: 10_000, interval: 20 })
    // Meanwhile a peer of another host still finds a slot.
    const fromOther = ask(other)
    await vi.waitFor(() => { expect(slots.inUse).toBe(5) }, { timeout: 10_000, interval: 20 })
    open()
    expect(await fromOther).toEqual({ status: 'ok', bytes })
    const answers = await Promise.all(flood)
    expect(answers.filter(a => a.status === 'ok')).toHaveLength(4)
    expect(answers.filter(a => a.status === 'busy')).toHaveLength(2)
    expect(slots.inUse).toBe(0)
  })

  it('an answer the peer stops reading is given up when a chunk makes no progress, freeing its slot', async () => {
    const slots = serveSlots(4)
    const slotted = await node()
    let ended = 0
    await slotted.handle(SHARD_PROTOCOL, async (stream, connection) => {
      await serveShardStream(stream, lookup, { timeoutMs: 30_000, progressMs: 300, slots, peer: connection.remotePeer.toString() })
      ended++
    })
    // 1 MiB asked for on a raw stream that is never read: Yamux's window fills, the write stalls.
    const [cid] = [...objects].find(([, b]) => b.length === 1 << 20) as [string, Uint8Array]
    const stream = await client.dialProtocol(slotted.getMultiaddrs(), SHARD_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
    const lp = lpStream(stream)
    await lp.write(new TextEncoder().encode(JSON.stringify({ cid })))
    stream.pause()
    const started = performance.now()
    await vi.waitFor(() => { expect(ended).toBe(1) }, { timeout: 5_000, interval: 20 })
    // Well before the answer's own 30 s deadline.
    expect(performance.now() - started).toBeLessThan(5_000)
    expect(slots.inUse).toBe(0)
    stream.abort(new Error('done'))
  })
})

describe('a requester that reads slowly', () => {
  // Regression (review 42b 7): a peer that read a little just inside every progress deadline
  // held its slot for the answer's whole deadline (120 s on the origin).
  it('an answer read slower than minReadBytesPerSecond on average is given up, though every chunk makes progress', async () => {
    const slots = serveSlots(4)
    const slotted = await node()
    const outcomes: string[] = []
    await slotted.handle(SHARD_PROTOCOL, async (stream, connection) => {
      await serveShardStream(stream, lookup, {
        timeoutMs: 30_000,
        progressMs: 500,
        minReadBytesPerSecond: 4 << 20,
        slots,
        peer: connection.remotePeer.toString(),
        onServed: () => { outcomes.push('served') },
        onBroken: () => { outcomes.push('broken') }
      })
    })
    const [cid] = [...objects].find(([, b]) => b.length === 1 << 20) as [string, Uint8Array]
    const stream = await client.dialProtocol(slotted.getMultiaddrs(), SHARD_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
    let received = 0
    stream.addEventListener('message', event => { received += event.data.byteLength })
    stream.pause()
    await lpStream(stream).write(new TextEncoder().encode(JSON.stringify({ cid })))
    // Reads what has arrived every 400 ms (inside the 500 ms progress deadline): one Yamux
    // window (256 KiB) per 400 ms, well under 4 MiB/s, so its waits outgrow the allowance
    // (500 ms + 1 MiB at 4 MiB/s) by the third window.
    const reader = setInterval(() => { stream.resume(); queueMicrotask(() => { if (stream.status === 'open') stream.pause() }) }, 400)
    try {
      await vi.waitFor(() => { expect(outcomes).toHaveLength(1) }, { timeout: 10_000, interval: 20 })
    } finally {
      clearInterval(reader)
    }
    expect(outcomes).toEqual(['broken'])
    expect(received).toBeGreaterThan(0)
    expect(received).toBeLessThan(1 << 20)
    expect(slots.inUse).toBe(0)
    stream.abort(new Error('done'))
  })
})

describe('a requester that reads at once, under the server\'s own upload cap', () => {
  it('is served in full: the time spent pacing is the server\'s, not counted against the reader', async () => {
    const capped = await node()
    const outcomes: string[] = []
    await capped.handle(SHARD_PROTOCOL, async stream => {
      await serveShardStream(stream, lookup, {
        timeoutMs: 30_000,
        progressMs: 200,
        minReadBytesPerSecond: 16 << 20,
        // 300 ms per chunk: slower than the floor allows, and each pause longer than progressMs.
        pace: async (_bytes, signal) => { await sleep(300, signal) },
        onServed: () => { outcomes.push('served') },
        onBroken: () => { outcomes.push('broken') }
      })
    })
    const [cid, bytes] = [...objects].find(([, b]) => b.length === 300_001) as [string, Uint8Array]
    const signal = AbortSignal.timeout(20_000)
    const session = shardSession(await client.dialProtocol(capped.getMultiaddrs(), SHARD_PROTOCOL, { signal }))
    expect(await session.request(cid, { signal })).toEqual({ status: 'ok', bytes })
    expect(outcomes).toEqual(['served'])
    await session.close(signal)
  })
})

describe('a shard session waiting idle', () => {
  it('ends when the peer sends bytes no request asked for, instead of buffering them', async () => {
    const pushy = await node()
    let pushed!: () => void
    const done = new Promise<void>(resolve => { pushed = resolve })
    await pushy.handle(SHARD_PROTOCOL, async stream => {
      // One honest exchange, then unsolicited bytes.
      const lp = lpStream(stream)
      await lp.read()
      await lp.write(new TextEncoder().encode(JSON.stringify({ status: 'not-found' })))
      await sleep(50)
      stream.send(new Uint8Array(64 * 1024))
      pushed()
    })
    const session = shardSession(await client.dialProtocol(pushy.getMultiaddrs(), SHARD_PROTOCOL, { signal: AbortSignal.timeout(5_000) }))
    const [cid] = [...objects][0] as [string, Uint8Array]
    expect(await session.request(cid, { signal: AbortSignal.timeout(5_000) })).toEqual({ status: 'not-found' })
    expect(session.usable).toBe(true)
    await done
    await vi.waitFor(() => { expect(session.usable).toBe(false) }, { timeout: 2_000, interval: 10 })
  })
})

describe('a server that lies about the body', () => {
  /** A server that announces `size` bytes and sends `send` of them, then ends its side (or not). */
  async function liar (size: number, send: number, end: boolean): Promise<Libp2p> {
    const n = await node()
    await n.handle('/liar', async stream => {
      const lp = lpStream(stream)
      await lp.read()
      await lp.write(new TextEncoder().encode(JSON.stringify({ status: 'ok', size })))
      const raw = lp.unwrap()
      raw.send(new Uint8Array(send).fill(1))
      if (end) await raw.close()
    })
    return n
  }

  it.each([
    { size: 100, send: 150, end: false, error: /more bytes than the announced 100/ },
    { size: 100, send: 40, end: true, error: /the stream ended after 40 of the announced 100 bytes/ },
    { size: 100, send: 40, end: false, error: /aborted/ }
  ])('announces $size, sends $send (end: $end): $error', async ({ size, send, end, error }) => {
    const n = await liar(size, send, end)
    const session = shardSession(await open(n, '/liar')(n.peerId.toString(), AbortSignal.timeout(5_000)))
    const cid = [...objects.keys()][0] as string
    await expect(session.request(cid, { signal: AbortSignal.timeout(500) })).rejects.toThrow(error)
    expect(session.usable).toBe(false)
  })
})

describe('a peer that never closes its side', () => {
  /** Resolves with the stream's status once it is closed, or 'still open' after `ms`. */
  const closedWithin = async (stream: Stream, ms: number): Promise<string> => await new Promise(resolve => {
    if (stream.status !== 'open' && stream.status !== 'closing') { resolve(stream.status); return }
    const t = setTimeout(() => { resolve('still open') }, ms)
    stream.addEventListener('close', () => { clearTimeout(t); resolve(stream.status) }, { once: true })
  })

  it('the server resets a stream after a malformed request when the client keeps sending', async () => {
    const n = await node()
    let served: Stream | undefined
    await n.handle('/half-open-server', async stream => {
      served = stream
      await serveShardStream(stream, lookup, { timeoutMs: 300 })
    })
    const stream = await client.dialProtocol(n.getMultiaddrs(), '/half-open-server', { signal: AbortSignal.timeout(5_000) })
    const lp = lpStream(stream)
    await lp.write(new TextEncoder().encode('{not json'))
    const reply = JSON.parse(new TextDecoder().decode((await lp.read()).subarray())) as { status: string }
    expect(reply.status).toBe('bad-request')
    // The client neither closes nor stops: it streams on into the server's buffer.
    lp.unwrap().send(new Uint8Array(256 << 10))
    for (let i = 0; i < 50 && served === undefined; i++) await sleep(10)
    expect(await closedWithin(served as Stream, 5_000)).not.toBe('still open')
  })

  it('a client session resets its stream when the server does not close after the client did', async () => {
    const n = await node()
    await n.handle('/half-open-client', async stream => {
      // Answers one request, then ignores the client's close and keeps its side open.
      const lp = lpStream(stream)
      await lp.read()
      await lp.write(new TextEncoder().encode(JSON.stringify({ status: 'not-found' })))
    })
    const stream = await client.dialProtocol(n.getMultiaddrs(), '/half-open-client', { signal: AbortSignal.timeout(5_000) })
    const session = shardSession(stream, { closeGraceMs: 300 })
    const cid = [...objects.keys()][0] as string
    expect(await session.request(cid, { signal: AbortSignal.timeout(5_000) })).toEqual({ status: 'not-found' })
    await session.close(AbortSignal.timeout(5_000))
    expect(await closedWithin(stream, 5_000)).toBe('aborted')
  })
})

describe('an upload cap with answer deadlines', () => {
  it('answers busy what could not get through the cap in time, so what it does send arrives', async () => {
    const n = await node()
    const rate = 32 << 10
    const cap = uploadCap(rate, 8_000) as NonNullable<ReturnType<typeof uploadCap>>
    let busy = 0
    await n.handle('/capped', async stream => {
      await serveShardStream(stream, lookup, { timeoutMs: 8_000, pace: cap.pace, admit: cap.admit, onBusy: () => { busy++ } })
    }, { maxInboundStreams: 64 })
    const body = [...objects.entries()].find(([, b]) => b.length === 65_536) as [string, Uint8Array]
    // Connected first, and set up on the server's side too, so that what is measured is the cap.
    // The dialler is done with Noise before the listener is: 16 streams opened at once on a
    // connection the server is still upgrading are "early" streams, and past 10 yamux closes the
    // connection (all 16 reset within 100 ms, seen three times on loaded machines, once in CI).
    await client.dial(n.getMultiaddrs(), { signal: AbortSignal.timeout(10_000) })
    for (let i = 0; i < 500 && n.getConnections(client.peerId).length === 0; i++) await sleep(10)
    expect(n.getConnections(client.peerId).length).toBeGreaterThan(0)
    // Sixteen answers of 64 KiB at 32 KiB/s need 32 s; each has 8 s. (At 64 KiB/s and 4 s, a
    // request that a starved CI machine delivered after the server's 4 s wait for it was reset.)
    const outcomes = await Promise.all(Array.from({ length: 16 }, async () => {
      let session: ReturnType<typeof shardSession> | undefined
      try {
        session = shardSession(await client.dialProtocol(n.getMultiaddrs(), '/capped', { signal: AbortSignal.timeout(10_000) }))
        const answer = await session.request(body[0], { signal: AbortSignal.timeout(20_000) })
        return answer.status === 'ok' ? (answer.bytes.length === body[1].length ? 'ok' : 'short') : answer.status
      } catch (err) {
        return (err as Error).name
      } finally {
        await session?.close().catch(() => {})
      }
    }))
    const count = (what: string): number => outcomes.filter(o => o === what).length
    // Everything admitted arrives whole; the rest is told to come back, not left to time out.
    expect(count('ok') + count('busy'), outcomes.join(', ')).toBe(16)
    expect(count('ok')).toBeGreaterThanOrEqual(1)
    expect(count('busy')).toBe(busy)
  })
})
