/**
 * The swarm source (shared/p2p/swarm-source.ts) against a fake SwarmNetwork: no sockets, every
 * peer a scripted function, every request logged. Objects are real CIDv1(raw, sha2-256) of
 * seeded bytes, so the source's CID check is the real one. Checked: the order of asking (Bloom
 * hints → origin unforced, following its referrals → DHT providers → origin forced → fallback;
 * never itself; the origin not while a hinted peer can serve, and never forced while a DHT
 * provider can), fail-over, bans for corrupt bytes, the per-peer and origin concurrency
 * limits, the origin's referrals / force / busy, shard rotation, the byte counts, and aborts.
 */
import { describe, it, expect, vi, afterEach } from 'vitest'
import { swarmSource, type SwarmNetwork, type SwarmSourceOptions, preferenceOrder } from '../../../shared/p2p/swarm-source.ts'
import type { Referral, ShardAnswer } from '../../../shared/p2p/shard-protocol.ts'
import type { BlockSource } from '../../../shared/load/source.ts'
import { rawCid } from '../../../shared/crypto/cid.ts'
import { BusyError, IntegrityError, NoConnectionError, NotFoundError, TimeoutError, UnavailableError } from '../../../shared/errors/errors.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'
import { BUSY_PATIENCE_MS, retrying } from '../../../shared/load/retry.ts'
import { sleep } from '../../../shared/load/deadline.ts'
import { peerScores } from '../../../shared/p2p/peer-score.ts'

const SELF = 'self'
const ORIGIN = 'origin'

/** `onHeader` tells the source the reply's header came (a behaviour may call it before it answers; otherwise it is called with the answer). */
interface Call { peer: string, cid: string, force: boolean, signal: AbortSignal, maxBytes: number, size?: number, onHeader: (status: ShardAnswer['status']) => void }
type Behaviour = (cid: string, call: Call) => Promise<ShardAnswer>

/** Seeded objects of different lengths, with their real CIDs. */
async function objects (count: number, seed = 1): Promise<Array<{ cid: string, bytes: Uint8Array }>> {
  const next = mulberry32(seed)
  return await Promise.all(Array.from({ length: count }, async (_, i) => {
    const bytes = new Uint8Array(100 + 37 * i).map(() => Math.floor(next() * 256))
    return { cid: await rawCid(bytes), bytes }
  }))
}

// --- Peer behaviours -------------------------------------------------------------------------

const store = new Map<string, Uint8Array>()
const holds: Behaviour = async cid => {
  const bytes = store.get(cid)
  return bytes === undefined ? { status: 'not-found' } : { status: 'ok', bytes }
}
const notFound: Behaviour = async () => ({ status: 'not-found' })
const fails: Behaviour = async () => { throw new UnavailableError('connection refused') }
/** Answers nothing until the request's signal fires (its deadline or the caller's abort). */
const hangs: Behaviour = async (_cid, { signal }) => await new Promise((_resolve, reject) => {
  if (signal.aborted) reject(signal.reason)
  signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
})
/** Bytes of the right length with one bit flipped. */
const corrupt: Behaviour = async cid => {
  const bytes = (store.get(cid) ?? new Uint8Array(64)).slice()
  bytes[0] = (bytes[0] as number) ^ 1
  return { status: 'ok', bytes }
}
/** Answers from `script` in turn (the last one repeats). */
function scripted (...script: Array<ShardAnswer | Behaviour>): Behaviour {
  let i = 0
  return async (cid, call) => {
    const step = script[Math.min(i++, script.length - 1)] as ShardAnswer | Behaviour
    return typeof step === 'function' ? await step(cid, call) : step
  }
}

interface FakeNetwork extends SwarmNetwork {
  calls: Call[]
  /** Every learn and request, in order, as "learn:<id>" / "ask:<peer>". */
  events: string[]
  lookups: string[]
  maxInFlight: Map<string, number>
  inFlight: Map<string, number>
  /** Requests in flight to all peers, now and at most. */
  running: number
  peak: number
}

function fakeNetwork (init: {
  peers: Record<string, Behaviour>
  holders?: Record<string, string[]>
  providers?: Record<string, string[]>
  findProviders?: SwarmNetwork['findProviders']
  connected?: SwarmNetwork['connected']
}): FakeNetwork {
  const net: FakeNetwork = {
    self: SELF,
    calls: [],
    events: [],
    lookups: [],
    maxInFlight: new Map(),
    inFlight: new Map(),
    running: 0,
    peak: 0,
    likelyHolders: block => [...(init.holders?.[block] ?? [])],
    connected: init.connected,
    async findProviders (block, options) {
      net.lookups.push(block)
      if (init.findProviders !== undefined) return await init.findProviders(block, options)
      return (init.providers?.[block] ?? []).slice(0, options.limit)
    },
    async request (peer, cid, { signal, force, maxBytes, size, onHeader }) {
      let heard = false
      const header = (status: ShardAnswer['status']): void => {
        if (heard) return
        heard = true
        onHeader?.(status)
      }
      const call = { peer, cid, force: force === true, signal, maxBytes, size, onHeader: header }
      net.calls.push(call)
      net.events.push(`ask:${peer}`)
      const behaviour = init.peers[peer]
      if (behaviour === undefined) throw new Error(`the source asked ${peer}, which no test defined`)
      const now = (net.inFlight.get(peer) ?? 0) + 1
      net.inFlight.set(peer, now)
      net.maxInFlight.set(peer, Math.max(now, net.maxInFlight.get(peer) ?? 0))
      net.peak = Math.max(net.peak, ++net.running)
      try {
        const answer = await behaviour(cid, call)
        header(answer.status)
        return answer
      } finally {
        net.running--
        net.inFlight.set(peer, (net.inFlight.get(peer) ?? 1) - 1)
      }
    },
    async learn (referral) {
      net.events.push(`learn:${referral.id}`)
    }
  }
  return net
}

function fallbackSource (bytesFor: (cid: string) => Uint8Array | undefined): BlockSource & { asked: string[] } {
  const source = {
    name: 'http',
    asked: [] as string[],
    async get (cid: string) {
      source.asked.push(cid)
      const bytes = bytesFor(cid)
      if (bytes === undefined) throw new NotFoundError(`no ${cid}`)
      return bytes
    }
  }
  return source
}

/** Holds each request at the peer until the test opens the gates. */
function gated (gates: Array<() => void>): Behaviour {
  return async (cid, call) => {
    await new Promise<void>(resolve => { gates.push(resolve) })
    return await holds(cid, call)
  }
}

/** Opens the gates in rounds until `all` settles (bounded: 100 rounds of 5 ms). */
async function openUntilDone (gates: Array<() => void>, all: Promise<unknown>): Promise<void> {
  let done = false
  void all.finally(() => { done = true }).catch(() => {})
  for (let round = 0; round < 100 && !done; round++) {
    for (const open of gates.splice(0)) open()
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

const source = (net: FakeNetwork, extra: Partial<SwarmSourceOptions> = {}): ReturnType<typeof swarmSource> =>
  swarmSource({ network: net, origin: ORIGIN, requestTimeoutMs: 2_000, lookupTimeoutMs: 500, ...extra })

const askedPeers = (net: FakeNetwork): string[] => net.calls.map(c => c.peer)
const signal = (): AbortSignal => AbortSignal.timeout(10_000)

afterEach(() => {
  store.clear()
  vi.useRealTimers()
})

describe('swarm source: order of asking', () => {
  it('asks Bloom-hinted peers, the origin unforced, DHT providers, the origin forced, then the fallback — never itself', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    const block = 'block-1'
    const net = fakeNetwork({
      peers: { h1: notFound, h2: notFound, p1: notFound, p2: notFound, [ORIGIN]: notFound },
      holders: { [block]: [SELF, 'h1', ORIGIN, 'h2'] },
      // A provider already asked as a holder, the origin and this node itself are not asked again here.
      providers: { [block]: ['p1', 'h1', SELF, ORIGIN, 'p2'] }
    })
    const fallback = fallbackSource(() => o.bytes)
    const received: string[] = []
    const s = source(net, { fallback, onReceived: (_cid, _bytes, from) => { received.push(from) } })
    const bytes = await s.get(o.cid, { signal: signal(), block })
    expect(bytes).toEqual(o.bytes)
    // Each group in this node's own order for the block.
    const [h1, h2] = preferenceOrder(SELF)(block, ['h1', 'h2'])
    const [p1, p2] = preferenceOrder(SELF)(block, ['p1', 'p2'])
    expect(net.calls.map(c => [c.peer, c.force])).toEqual([[h1, false], [h2, false], [ORIGIN, false], [p1, false], [p2, false], [ORIGIN, true]])
    expect(net.lookups).toEqual([block])
    expect(fallback.asked).toEqual([o.cid])
    expect(received).toEqual(['http'])
    expect(s.stats()).toMatchObject({ bytesFromPeers: 0, bytesFromOrigin: 0, bytesFromFallback: o.bytes.length, requests: 6, lookups: 1, forcedBecause: { 'origin request failed': 1 } })
  })

  // A node that just joined has no Bloom filter at first; holders announce to it within a second
  // or two, often while its origin and DHT stages run (a restart with the coordinator down found
  // only stopped providers in the DHT and failed; e2e swarm.test).
  it('asks holders whose Bloom filters arrived during the origin and DHT stages before forcing the origin', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const block = 'block-late'
    let hinted: string[] = []
    const net = fakeNetwork({
      peers: { late: holds, [ORIGIN]: fails },
      findProviders: async () => { hinted = ['late']; return [] }
    })
    net.likelyHolders = () => [...hinted]
    const s = source(net)
    expect(await s.get(o.cid, { signal: signal(), block })).toEqual(o.bytes)
    expect(net.calls.map(c => [c.peer, c.force])).toEqual([[ORIGIN, false], ['late', false]])
    expect(s.stats()).toMatchObject({ bytesFromPeers: o.bytes.length, bytesFromOrigin: 0, forcedBecause: {} })
  })

  it('with the origin unreachable, asks the model\'s peers whose filters it has not seen before the fallback; with it up, never', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    // The DHT names only a stopped peer; a connected runtime of the model holds the block.
    const down = fakeNetwork({ peers: { stopped: fails, runner: holds, [ORIGIN]: fails }, providers: { b: ['stopped'] } })
    down.unhinted = () => ['runner']
    const fallback = fallbackSource(() => o.bytes)
    const s = source(down, { fallback })
    expect(await s.get(o.cid, { signal: signal(), block: 'b' })).toEqual(o.bytes)
    expect(askedPeers(down)).toEqual([ORIGIN, 'stopped', 'runner'])
    expect(fallback.asked).toEqual([])
    // The origin up, referring to a peer that fails: the unhinted peers are not asked (a cold
    // wave's runtimes have no filters because they hold nothing), the origin is forced instead.
    const up = fakeNetwork({ peers: { gone: fails, runner: holds, [ORIGIN]: scripted({ status: 'elsewhere', peers: [{ id: 'gone', addrs: [] }] }, holds) } })
    up.unhinted = () => ['runner']
    expect(await source(up).get(o.cid, { signal: signal(), block: 'b' })).toEqual(o.bytes)
    expect(up.calls.map(c => [c.peer, c.force])).toEqual([[ORIGIN, false], ['gone', false], [ORIGIN, true]])
    // An origin that times out (loaded, not down) is not taken for gone either.
    const slow = fakeNetwork({ peers: { runner: holds, [ORIGIN]: async () => { throw new TimeoutError('the origin is slow') } } })
    slow.unhinted = () => ['runner']
    const fallback2 = fallbackSource(() => o.bytes)
    expect(await source(slow, { fallback: fallback2 }).get(o.cid, { signal: signal(), block: 'b' })).toEqual(o.bytes)
    expect(askedPeers(slow)).toEqual([ORIGIN, ORIGIN])
    expect(fallback2.asked).toEqual([o.cid])
  })

  it('an origin no connection could be made to is asked once, not forced, and skipped by the objects after it for a while (review 49c)', async () => {
    const all = await objects(3)
    for (const o of all) store.set(o.cid, o.bytes)
    // A p2p port that swallows dials: each dial failed after its 2 s deadline, twice per shard.
    const net = fakeNetwork({ peers: { [ORIGIN]: async () => { throw new NoConnectionError('no connection to peer origin (TimeoutError: the dial timed out)') } } })
    const fallback = fallbackSource(cid => store.get(cid))
    const s = source(net, { fallback, originRetryMs: 300 })
    for (const o of all) expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(net.calls.map(c => [c.peer, c.force])).toEqual([[ORIGIN, false]])
    expect(fallback.asked).toEqual(all.map(o => o.cid))
    expect(s.stats().failures).toEqual({ 'origin NoConnectionError': 1 })
    // Once the rest is over, the origin is asked again (and serves).
    await new Promise(resolve => setTimeout(resolve, 320))
    const up = fakeNetwork({ peers: { [ORIGIN]: holds } })
    net.request = up.request
    expect(await s.get((all[0] as { cid: string }).cid, { signal: signal() })).toEqual((all[0] as { bytes: Uint8Array }).bytes)
    expect(askedPeers(up)).toEqual([ORIGIN])
    // Without a fallback the origin is all there is: asked for every object (review 49d).
    const alone = fakeNetwork({ peers: { [ORIGIN]: async () => { throw new NoConnectionError('no connection') } } })
    const a = source(alone, { originRetryMs: 60_000 })
    for (const o of all.slice(0, 2)) await expect(a.get(o.cid, { signal: signal() })).rejects.toThrow(UnavailableError)
    expect(askedPeers(alone)).toEqual([ORIGIN, ORIGIN, ORIGIN, ORIGIN])
    // A timeout (loaded) or a stream error (one request's) rests nothing: asked again at once.
    for (const err of [new TimeoutError('slow'), new UnavailableError('stream reset')]) {
      const flaky = fakeNetwork({ peers: { [ORIGIN]: async () => { throw err } } })
      const f = source(flaky, { fallback: fallbackSource(cid => store.get(cid)) })
      for (const o of all.slice(0, 2)) await f.get(o.cid, { signal: signal() })
      expect(askedPeers(flaky), err.name).toEqual([ORIGIN, ORIGIN, ORIGIN, ORIGIN])
    }
  })

  it('fails over past peers whose requests reject with no Error at all (a stream ended under a killed peer)', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    // eslint-disable-next-line @typescript-eslint/only-throw-error
    const net = fakeNetwork({ peers: { bare: async () => { throw { name: 'StreamResetError' } }, nothing: async () => { throw undefined }, [ORIGIN]: holds }, holders: { [o.cid]: ['bare', 'nothing'] } })
    const s = source(net)
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(askedPeers(net).sort()).toEqual(['bare', 'nothing', ORIGIN].sort())
    expect(s.stats().failures).toEqual({ StreamResetError: 1, Error: 1 })
  })

  it('says what each peer asked did when none serves (review 49c)', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const net = fakeNetwork({ peers: { 'peer-corrupt-0001': corrupt, 'peer-missing-0002': notFound, 'peer-silent-00003': hangs, [ORIGIN]: async () => { throw new NoConnectionError('no connection to peer origin (refused)') } }, holders: { [o.cid]: ['peer-corrupt-0001', 'peer-missing-0002', 'peer-silent-00003'] } })
    const err = await source(net, { requestTimeoutMs: 200 }).get(o.cid, { signal: signal() }).catch((e: unknown) => e) as Error
    expect(err).toBeInstanceOf(UnavailableError)
    expect(err.message).toContain(`${o.cid}: no peer could serve it (asked 3 peer(s) and the origin): `)
    expect(err.message).toContain('peer …upt-0001: bytes that do not hash to the CID (banned)')
    expect(err.message).toContain('peer …ing-0002: does not hold it')
    expect(err.message).toContain('peer …nt-00003: no answer in time')
    expect(err.message).toContain('origin: NoConnectionError: no connection to peer origin (refused)')
  })

  it('without an origin: Bloom-hinted peers, then DHT providers, then the fallback', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    const net = fakeNetwork({ peers: { h1: fails, p1: notFound }, holders: { [o.cid]: ['h1'] }, providers: { [o.cid]: ['p1'] } })
    const fallback = fallbackSource(() => o.bytes)
    const s = swarmSource({ network: net, fallback, requestTimeoutMs: 2_000 })
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(askedPeers(net)).toEqual(['h1', 'p1'])
    expect(fallback.asked).toEqual([o.cid])
  })

  it('never asks the origin (nor looks up providers) while a hinted peer can serve', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const net = fakeNetwork({ peers: { h1: holds, [ORIGIN]: holds }, holders: { b: ['h1', ORIGIN] } })
    const s = source(net)
    expect(await s.get(o.cid, { signal: signal(), block: 'b' })).toEqual(o.bytes)
    expect(askedPeers(net)).toEqual(['h1'])
    expect(net.lookups).toEqual([])
    expect(s.stats().perPeer).toEqual({ h1: o.bytes.length })
  })

  it('never forces the origin while a DHT provider can serve; with no block hint the CID itself is looked up', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    // The origin refers to a peer that has lost the object; a DHT provider still has it.
    const net = fakeNetwork({
      peers: { gone: notFound, p1: holds, [ORIGIN]: scripted({ status: 'elsewhere', peers: [{ id: 'gone', addrs: [] }] }, holds) },
      providers: { [o.cid]: [ORIGIN, 'gone', 'p1'] }
    })
    const s = source(net)
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(net.calls.map(c => [c.peer, c.force])).toEqual([[ORIGIN, false], ['gone', false], ['p1', false]])
    expect(net.lookups).toEqual([o.cid])
    expect(s.stats()).toMatchObject({ bytesFromPeers: o.bytes.length, bytesFromOrigin: 0, referrals: 1 })
  })

  it('looks providers up once per block within the memo time, for all its shards', async () => {
    const objs = await objects(3)
    for (const o of objs) store.set(o.cid, o.bytes)
    const net = fakeNetwork({ peers: { p1: holds }, providers: { blk: ['p1'] } })
    const s = source(net)
    for (const [i, o] of objs.entries()) await s.get(o.cid, { signal: signal(), block: 'blk', shard: i })
    expect(net.lookups).toEqual(['blk'])
  })

  it('a DHT lookup that does not answer is cut at lookupTimeoutMs and the next source is asked', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    let lookupSignal: AbortSignal | undefined
    const net = fakeNetwork({
      peers: {},
      findProviders: async (_block, { signal }) => {
        lookupSignal = signal
        return await new Promise((_resolve, reject) => { signal.addEventListener('abort', () => { reject(signal.reason) }) })
      }
    })
    const fallback = fallbackSource(() => o.bytes)
    const s = swarmSource({ network: net, fallback, lookupTimeoutMs: 30 })
    expect(await s.get(o.cid, { signal: signal(), block: 'b' })).toEqual(o.bytes)
    expect(lookupSignal?.aborted).toBe(true)
    expect((lookupSignal?.reason as Error).name).toBe('TimeoutError')
    expect(fallback.asked).toEqual([o.cid])
    expect(s.stats().lookups).toBe(1)
  })

  it('a DHT lookup that ignores its signal is given up a grace past lookupTimeoutMs, for every shard that shares it (review 53a)', async () => {
    const shards = await objects(2)
    const net = fakeNetwork({ peers: {}, findProviders: async () => await new Promise<string[]>(() => {}) })
    const fallback = fallbackSource(cid => shards.find(o => o.cid === cid)?.bytes)
    const s = swarmSource({ network: net, fallback, lookupTimeoutMs: 30 })
    const got = await Promise.all(shards.map(async (o, shard) => await s.get(o.cid, { signal: signal(), block: 'b', shard })))
    expect(got).toEqual(shards.map(o => o.bytes))
    expect(s.stats().lookups).toBe(1)
  })

  it('with nothing able to serve, fails with UnavailableError naming the CID', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    const net = fakeNetwork({ peers: { h1: notFound, [ORIGIN]: notFound }, holders: { [o.cid]: ['h1'] } })
    const err = await source(net).get(o.cid, { signal: signal() }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UnavailableError)
    expect((err as Error).message).toContain(o.cid)
    // The origin is asked unforced before the DHT lookup and forced after it.
    expect(net.calls.map(c => [c.peer, c.force])).toEqual([['h1', false], [ORIGIN, false], [ORIGIN, true]])
  })

  // Regression (fixed): the cap in fromPeers is `tried.size > maxPeers + 2` with `tried`
  // holding this node and the origin, so maxPeers + 1 peers are asked (maxPeers + 2 with no origin).
  it('asks at most maxPeersPerObject peers for one object (the origin aside)', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    const peers = ['a', 'b', 'c', 'd', 'e', 'f']
    const net = fakeNetwork({
      peers: Object.fromEntries([...peers, ORIGIN].map(p => [p, notFound])),
      holders: { [o.cid]: peers.slice(0, 3) },
      providers: { [o.cid]: peers.slice(3) }
    })
    await source(net, { maxPeersPerObject: 2 }).get(o.cid, { signal: signal() }).catch(() => {})
    expect(askedPeers(net).filter(p => p !== ORIGIN).length).toBeLessThanOrEqual(2)
  })

  // Provider records outlive their providers: after churn the DHT names stopped runtimes first
  // as often as not, and with the origin down a load found no holder (e2e/swarm.test's restart).
  it('looks up more providers than its budget and asks connected ones first: stopped peers\' records do not use it up', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const gone = ['g1', 'g2', 'g3', 'g4', 'g5', 'g6', 'g7', 'g8']
    const net = fakeNetwork({
      peers: { ...Object.fromEntries(gone.map(p => [p, fails])), live: holds },
      providers: { [o.cid]: [...gone, 'live'] },
      connected: peer => peer === 'live'
    })
    const s = swarmSource({ network: net, requestTimeoutMs: 2_000, lookupTimeoutMs: 500 })
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(askedPeers(net)).toEqual(['live'])
  })

  it('asks the DHT for four budgets of providers, ending the walk at one budget of connected ones', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const asked: Array<{ limit: number, enoughConnected?: number }> = []
    let usable: ((peer: string) => boolean) | undefined
    const net = fakeNetwork({
      peers: { live: holds },
      findProviders: async (_block, options) => { asked.push({ limit: options.limit, enoughConnected: options.enoughConnected }); usable = options.usable; return ['live'] },
      connected: () => true
    })
    const s = swarmSource({ network: net, maxPeersPerObject: 3, requestTimeoutMs: 2_000, lookupTimeoutMs: 500 })
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(asked).toEqual([{ limit: 12, enoughConnected: 3 }])
    // Only peers this source would ask count towards the early end (review 44a L1): not a banned one.
    expect(usable?.('live')).toBe(true)
    s.scores.record('live', 'corrupt')
    expect(usable?.('live')).toBe(false)
  })

  it('the shards of one block start at different connected holders, never at one that is not connected', async () => {
    const objs = await objects(4)
    for (const o of objs) store.set(o.cid, o.bytes)
    const net = fakeNetwork({
      peers: { g1: fails, g2: fails, g3: fails, up1: holds, up2: holds },
      holders: { blk: ['g1', 'up1', 'g2', 'up2', 'g3'] },
      connected: peer => peer.startsWith('up')
    })
    const s = swarmSource({ network: net, requestTimeoutMs: 2_000, lookupTimeoutMs: 500 })
    for (const [i, o] of objs.entries()) expect(await s.get(o.cid, { signal: signal(), block: 'blk', shard: i })).toEqual(o.bytes)
    expect(new Set(askedPeers(net))).toEqual(new Set(['up1', 'up2']))
    expect(askedPeers(net).filter(p => p === 'up1')).toHaveLength(2)
  })

  it('without a connected peer among them, providers are asked up to the budget in the usual order', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    const gone = ['g1', 'g2', 'g3', 'g4', 'g5', 'g6', 'g7', 'g8']
    const net = fakeNetwork({ peers: Object.fromEntries(gone.map(p => [p, fails])), providers: { [o.cid]: gone }, connected: () => false })
    const err = await swarmSource({ network: net, requestTimeoutMs: 2_000, lookupTimeoutMs: 500, maxPeersPerObject: 3 }).get(o.cid, { signal: signal() }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UnavailableError)
    expect(askedPeers(net)).toEqual(preferenceOrder(SELF)(o.cid, gone).slice(0, 3))
  })
})

describe('swarm source: fail-over and bans', () => {
  it('fails over past a peer that errors, one that times out and one that has not got it', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const net = fakeNetwork({
      peers: { err: fails, slow: hangs, none: notFound, good: holds, [ORIGIN]: holds },
      holders: { [o.cid]: ['err', 'slow', 'none', 'good'] }
    })
    const s = source(net, { requestTimeoutMs: 40 })
    // The good peer comes last: it starts below the others (a miss earlier), so after the three.
    s.scores.record('good', 'not-found')
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(askedPeers(net)).toEqual([...preferenceOrder(SELF)(o.cid, ['err', 'slow', 'none']), 'good'])
    // The slow peer's request was cut by its own deadline, not left hanging.
    const slowSignal = net.calls.find(c => c.peer === 'slow')?.signal
    expect(slowSignal?.aborted).toBe(true)
    expect((slowSignal?.reason as Error).name).toBe('TimeoutError')
    const snap = s.scores.snapshot()
    expect(snap.err).toMatchObject({ score: -2, consecutiveFailures: 1 })
    expect(snap.slow).toMatchObject({ score: -2, consecutiveFailures: 1 })
    expect(snap.none).toMatchObject({ score: -0.5, consecutiveFailures: 0 })
    expect(snap.good).toMatchObject({ score: 0.5, served: 1 })
    expect(s.stats().perPeer).toEqual({ good: o.bytes.length })
  })

  it('bans a peer whose bytes do not hash to the CID, counts it, and gets the object from the next peer', async () => {
    const objs = await objects(3)
    for (const o of objs) store.set(o.cid, o.bytes)
    const net = fakeNetwork({
      peers: { evil: corrupt, good: holds, [ORIGIN]: holds },
      holders: Object.fromEntries(objs.map(o => [o.cid, ['evil', 'good']]))
    })
    const received: string[] = []
    const s = source(net, { onReceived: (_cid, _bytes, from) => { received.push(from) } })
    // Evil first for the first object (the good peer starts a miss below it), then never again.
    s.scores.record('good', 'not-found')
    for (const o of objs) expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(askedPeers(net)).toEqual(['evil', 'good', 'good', 'good'])
    expect(s.stats().corrupt).toBe(1)
    expect(s.scores.usable('evil')).toBe(false)
    expect(s.scores.snapshot().evil?.corrupt).toBe(1)
    expect(s.stats().perPeer).toEqual({ good: objs.reduce((n, o) => n + o.bytes.length, 0) })
    expect(received).toEqual(['good', 'good', 'good'])
  })

  it('bounds each request by the object\'s size when the caller gives it, and bans a peer that announces another size like one whose bytes are corrupt', async () => {
    const [o] = await objects(1)
    const { cid, bytes } = o as { cid: string, bytes: Uint8Array }
    store.set(cid, bytes)
    // What the shard session throws for an answer whose header announces another size.
    const liar: Behaviour = async () => { throw new IntegrityError(`shard ${cid}: announces 33554432 bytes, but the object has ${bytes.length}`) }
    const net = fakeNetwork({ peers: { liar, good: holds, [ORIGIN]: holds }, holders: { [cid]: ['liar', 'good'] } })
    const s = source(net)
    s.scores.record('good', 'not-found')
    expect(await s.get(cid, { signal: signal(), size: bytes.length })).toEqual(bytes)
    expect(net.calls.map(c => [c.peer, c.maxBytes, c.size])).toEqual([['liar', bytes.length, bytes.length], ['good', bytes.length, bytes.length]])
    expect(s.stats().corrupt).toBe(1)
    expect(s.scores.usable('liar')).toBe(false)
    // Without a size, the source's own bound.
    await s.get(cid, { signal: signal() })
    expect(net.calls.at(-1)).toMatchObject({ peer: 'good', maxBytes: 32 << 20, size: undefined })
  })

  it('an origin that served corrupt bytes is banned like a peer: later objects skip it', async () => {
    const objs = await objects(2)
    for (const o of objs) store.set(o.cid, o.bytes)
    const net = fakeNetwork({ peers: { [ORIGIN]: corrupt }, providers: Object.fromEntries(objs.map(o => [o.cid, []])) })
    const fallback = fallbackSource(cid => store.get(cid))
    const s = source(net, { fallback })
    for (const o of objs) expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    // Asked once, unforced, for the first object; never again.
    expect(askedPeers(net)).toEqual([ORIGIN])
    expect(s.scores.usable(ORIGIN)).toBe(false)
    expect(fallback.asked).toEqual(objs.map(o => o.cid))
    // No forced request went out, so none is counted (review: it was, as 'origin request failed').
    expect(s.stats().forcedBecause).toEqual({})
  })

  it('with the origin banned, asks the model\'s peers whose filters it has not seen before the fallback', async () => {
    const objs = await objects(2)
    for (const o of objs) store.set(o.cid, o.bytes)
    const [first, second] = objs
    if (first === undefined || second === undefined) throw new Error('no objects')
    const net = fakeNetwork({ peers: { [ORIGIN]: corrupt, runner: holds }, providers: Object.fromEntries(objs.map(o => [o.cid, []])) })
    net.unhinted = () => ['runner']
    const fallback = fallbackSource(cid => store.get(cid))
    const s = source(net, { fallback })
    // The origin answered (with bad bytes): it is banned, but it was up, so the model's peers are
    // not asked for this object.
    expect(await s.get(first.cid, { signal: signal() })).toEqual(first.bytes)
    expect(askedPeers(net)).toEqual([ORIGIN])
    expect(fallback.asked).toEqual([first.cid])
    // Banned now: they are, before the fallback.
    expect(await s.get(second.cid, { signal: signal() })).toEqual(second.bytes)
    expect(askedPeers(net)).toEqual([ORIGIN, 'runner'])
    expect(fallback.asked).toEqual([first.cid])
  })

  it('a caller that gives up does not spoil a shared DHT lookup for the others', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    let answer: (providers: string[]) => void = () => {}
    const net = fakeNetwork({
      peers: { p1: holds },
      findProviders: async () => await new Promise<string[]>(resolve => { answer = resolve })
    })
    const s = swarmSource({ network: net, lookupTimeoutMs: 5_000 })
    const quitter = new AbortController()
    const first = s.get(o.cid, { signal: quitter.signal, block: 'blk', shard: 0 })
    const second = s.get(o.cid, { signal: signal(), block: 'blk', shard: 1 })
    await new Promise(resolve => setTimeout(resolve, 10))
    quitter.abort(new Error('the first caller gave up'))
    await expect(first).rejects.toThrow(/gave up/)
    answer(['p1'])
    expect(await second).toEqual(o.bytes)
    expect(net.lookups).toEqual(['blk'])
  })

  it('checks the fallback\'s bytes against the CID too', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    const net = fakeNetwork({ peers: { [ORIGIN]: notFound } })
    const s = source(net, { fallback: fallbackSource(() => new Uint8Array(o.bytes.length)) })
    await expect(s.get(o.cid, { signal: signal() })).rejects.toBeInstanceOf(IntegrityError)
    expect(s.stats().bytesFromFallback).toBe(0)
  })
})

describe('swarm source: per-peer concurrency', () => {
  it('never has more than perPeerConcurrency requests in flight to one peer, and fills other peers first', async () => {
    const objs = await objects(12)
    for (const o of objs) store.set(o.cid, o.bytes)
    const gates: Array<() => void> = []
    const net = fakeNetwork({ peers: { a: gated(gates), b: gated(gates) }, holders: Object.fromEntries(objs.map(o => [o.cid, ['a', 'b']])) })
    const s = source(net, { perPeerConcurrency: 2 })
    const all = Promise.all(objs.map(async o => await s.get(o.cid, { signal: signal() })))
    await vi.waitFor(() => { expect(net.calls.length).toBe(4) })
    // Two at each peer: the third request went to the unsaturated peer b, not into a's queue.
    expect(net.inFlight.get('a')).toBe(2)
    expect(net.inFlight.get('b')).toBe(2)
    await openUntilDone(gates, all)
    const got = await all
    got.forEach((bytes, i) => { expect(bytes).toEqual(objs[i]?.bytes) })
    expect(net.calls.length).toBe(12)
    expect(net.maxInFlight.get('a')).toBe(2)
    expect(net.maxInFlight.get('b')).toBe(2)
  })

  it('the origin has its own limit (originConcurrency)', async () => {
    const objs = await objects(10)
    for (const o of objs) store.set(o.cid, o.bytes)
    const gates: Array<() => void> = []
    const net = fakeNetwork({ peers: { [ORIGIN]: gated(gates) } })
    const s = source(net, { perPeerConcurrency: 1, originConcurrency: 3 })
    const all = Promise.all(objs.map(async o => await s.get(o.cid, { signal: signal() })))
    await vi.waitFor(() => { expect(net.calls.length).toBe(3) })
    await openUntilDone(gates, all)
    expect((await all).length).toBe(10)
    expect(net.maxInFlight.get(ORIGIN)).toBe(3)
  })
})

/** Serves the stored bytes `ms` after the request (abortable). */
function answersAfter (ms: number): Behaviour {
  return async (cid, call) => {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, ms)
      call.signal.addEventListener('abort', () => { clearTimeout(timer); reject(call.signal.reason) }, { once: true })
    })
    return await holds(cid, call)
  }
}

describe('swarm source: peers that answer just inside the deadline', () => {
  // Regression (review 42b 6): six Sybil ids in the Bloom hints answering valid bytes just inside
  // the deadline took 19 s for 64 objects, ended with the best scores and were asked first again.
  it('are rested like peers that time out, and later objects come from elsewhere', async () => {
    const objs = await objects(64)
    for (const o of objs) store.set(o.cid, o.bytes)
    const sybils = ['s1', 's2', 's3', 's4', 's5', 's6']
    const net = fakeNetwork({
      peers: { ...Object.fromEntries(sybils.map(p => [p, answersAfter(800)])), [ORIGIN]: holds },
      holders: Object.fromEntries(objs.map(o => [o.cid, sybils]))
    })
    // 800 ms of a 1 s deadline: past three quarters, so overdue; rested after 3 in a row here
    // (8 by default, as "not found": peer-score.test).
    const s = swarmSource({ network: net, origin: ORIGIN, requestTimeoutMs: 1_000, scores: peerScores({ missesBeforeCoolDown: 3 }) })
    const queue = [...objs]
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let o = queue.shift(); o !== undefined; o = queue.shift()) expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    }))
    // Each Sybil that answered three times is rested; once all are, the objects go to the origin.
    const snap = s.scores.snapshot()
    const rested = sybils.filter(p => !s.scores.usable(p))
    for (const p of sybils) {
      expect(snap[p]?.score, p).toBeLessThan(0)
      if ((snap[p]?.served ?? 0) >= 3) expect(rested, p).toContain(p)
    }
    expect(rested.length).toBeGreaterThanOrEqual(3)
    expect(s.stats().bytesFromOrigin).toBeGreaterThan(0)
  })

  it('the origin is never scored overdue: a slow origin is still the origin', async () => {
    const objs = await objects(4)
    for (const o of objs) store.set(o.cid, o.bytes)
    const net = fakeNetwork({ peers: { [ORIGIN]: answersAfter(800) } })
    const s = swarmSource({ network: net, origin: ORIGIN, requestTimeoutMs: 1_000 })
    for (const o of objs) expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(s.scores.usable(ORIGIN)).toBe(true)
    expect(s.scores.score(ORIGIN)).toBeGreaterThanOrEqual(0)
  })

  it('an answer inside three quarters of the deadline is a plain success', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const net = fakeNetwork({ peers: { p1: answersAfter(50) }, holders: { [o.cid]: ['p1'] } })
    const s = swarmSource({ network: net, requestTimeoutMs: 20_000 })
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(s.scores.snapshot().p1).toMatchObject({ score: 1, served: 1, consecutiveFailures: 0 })
  })
})

describe('swarm source: a peer that accepts requests and never answers', () => {
  // Regression (fixed): requests queued in such a peer's concurrency limit were sent when their
  // turn came although the requests ahead had already got it rested, each with a fresh deadline
  // of its own: 32 shards behind one hanging likely holder took 4 request deadlines.
  it('requests queued behind it are not sent once the peer is rested', async () => {
    const objs = await objects(4)
    for (const o of objs) store.set(o.cid, o.bytes)
    const net = fakeNetwork({ peers: { stuck: hangs, [ORIGIN]: holds }, holders: Object.fromEntries(objs.map(o => [o.cid, ['stuck']])) })
    const s = source(net, { requestTimeoutMs: 200, perPeerConcurrency: 1, scores: peerScores({ failuresBeforeCoolDown: 1 }) })
    const got = await Promise.all(objs.map(async o => await s.get(o.cid, { signal: signal() })))
    got.forEach((bytes, i) => { expect(bytes).toEqual(objs[i]?.bytes) })
    // One request timed out and rested the peer; the three queued behind it never reached it.
    expect(askedPeers(net).filter(p => p === 'stuck')).toEqual(['stuck'])
    expect(s.stats().bytesFromOrigin).toBe(objs.reduce((n, o) => n + o.bytes.length, 0))
  })

  it('time spent queued counts against the request\'s deadline', async () => {
    const objs = await objects(6)
    for (const o of objs) store.set(o.cid, o.bytes)
    const net = fakeNetwork({ peers: { stuck: hangs, [ORIGIN]: holds }, holders: Object.fromEntries(objs.map(o => [o.cid, ['stuck']])) })
    // Never rested, so only the deadline can free the queue: one deadline for all six, where
    // a fresh deadline per turn made it six in a row (3 s here).
    const requestTimeoutMs = 500
    const s = source(net, { requestTimeoutMs, perPeerConcurrency: 1, scores: peerScores({ failuresBeforeCoolDown: 1_000 }) })
    const started = performance.now()
    const got = await Promise.all(objs.map(async o => await s.get(o.cid, { signal: signal() })))
    const elapsed = performance.now() - started
    got.forEach((bytes, i) => { expect(bytes).toEqual(objs[i]?.bytes) })
    expect(elapsed).toBeLessThan(2.5 * requestTimeoutMs)
    for (const call of net.calls.filter(c => c.peer === 'stuck')) expect(call.signal.aborted).toBe(true)
  })

  it('"elsewhere" from a peer (only the origin refers) is scored like "not found"', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const net = fakeNetwork({
      peers: { liar: scripted({ status: 'elsewhere', peers: [{ id: 'other', addrs: [] }] }), [ORIGIN]: holds },
      holders: { [o.cid]: ['liar'] }
    })
    const s = source(net, { scores: peerScores({ missesBeforeCoolDown: 1 }) })
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(s.scores.snapshot().liar).toMatchObject({ score: -0.5 })
    // Rested like a peer whose filter keeps pointing at blocks it has not got.
    expect(s.scores.usable('liar')).toBe(false)
    expect(s.stats().failures).toEqual({ elsewhere: 1 })
    expect(net.events).not.toContain('learn:other')
  })
})

describe('swarm source: silent peers (review 49c)', () => {
  /** Resolves with the reason `call`'s request was ended with. */
  const endOf = async (call: Call | undefined): Promise<unknown> => await new Promise(resolve => {
    if (call === undefined) throw new Error('no such call')
    if (call.signal.aborted) resolve(call.signal.reason)
    call.signal.addEventListener('abort', () => { resolve(call.signal.reason) }, { once: true })
  })
  const referralTo = (...ids: string[]): ShardAnswer => ({ status: 'elsewhere', peers: ids.map(id => ({ id, addrs: [] })) })

  it('a referred peer silent past hedgeAfterMs is joined by the next, which serves; the silent one is scored at its header deadline', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const net = fakeNetwork({ peers: { quiet: hangs, good: holds, [ORIGIN]: scripted(referralTo('quiet', 'good'), holds) } })
    const s = source(net, { requestTimeoutMs: 10_000, hedgeAfterMs: 100, headerTimeoutMs: 600 })
    // The caller lets go once it has the object, as the loader does once a block is whole.
    const caller = new AbortController()
    expect(await s.get(o.cid, { signal: caller.signal })).toEqual(o.bytes)
    caller.abort(new Error('the block is whole'))
    // The second referred peer was asked while the first was still silent, and the origin not forced.
    expect(net.calls.map(c => c.peer)).toEqual([ORIGIN, 'quiet', 'good'])
    const quiet = net.calls[1]
    expect(quiet?.signal.aborted).toBe(false)
    expect(s.stats()).toMatchObject({ hedges: 1, perPeer: { good: o.bytes.length }, bytesFromOrigin: 0, forcedBecause: {} })
    // The silent peer's request runs on to its header deadline (not the 10 s request deadline),
    // past the caller's letting go, and counts against it: hedges winning must not hide a peer
    // that never answers (review 50b: the caller's abort ended it unscored).
    const reason = await endOf(quiet)
    expect(reason).toBeInstanceOf(TimeoutError)
    expect((reason as Error).message).toBe('no reply header within 600 ms')
    await vi.waitFor(() => { expect(s.scores.snapshot().quiet).toMatchObject({ consecutiveFailures: 1 }) }, { timeout: 1_000 })
    expect(s.stats().failures).toEqual({ 'header TimeoutError': 1 })
  })

  it('without hedging, a silent peer is given up at headerTimeoutMs, not at the request deadline, and says so', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    const net = fakeNetwork({ peers: { quiet: hangs, [ORIGIN]: notFound }, holders: { [o.cid]: ['quiet'] } })
    const s = source(net, { requestTimeoutMs: 30_000, hedgeAfterMs: Infinity, headerTimeoutMs: 300 })
    const err = await s.get(o.cid, { signal: signal() }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(UnavailableError)
    expect((err as Error).message).toContain(`peer …quiet: no reply within 300 ms`)
    expect((net.calls[0]?.signal.reason as Error).message).toBe('no reply header within 300 ms')
    expect(s.stats()).toMatchObject({ hedges: 0, failures: { 'header TimeoutError': 1 } })
  })

  it('the header deadline follows the header times seen (RFC 6298): peers slow alike are not cut', async () => {
    const objs = await objects(12)
    for (const o of objs) store.set(o.cid, o.bytes)
    // Headers after 100 or 300 ms, in turn: SRTT ≈ 200 ms, RTTVAR ≈ 100 ms, so a deadline of
    // SRTT + 4·RTTVAR ≈ 600 ms, past the floor of 400 ms, which the last object's 500 ms would miss.
    let i = 0
    const varying: Behaviour = async (cid, call) => {
      const ms = i++ < objs.length - 1 ? (i % 2 === 0 ? 100 : 300) : 500
      // Ended by the request's signal, as a real stream is.
      await sleep(ms, call.signal)
      return await holds(cid, call)
    }
    const net = fakeNetwork({ peers: { p: varying, [ORIGIN]: notFound }, holders: Object.fromEntries(objs.map(o => [o.cid, ['p']])) })
    const s = source(net, { requestTimeoutMs: 10_000, headerTimeoutMs: 400, hedgeAfterMs: Infinity })
    for (const o of objs) expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(s.stats()).toMatchObject({ failures: {}, perPeer: { p: objs.reduce((n, o) => n + o.bytes.length, 0) } })
  })

  it('a peer whose header came is not hedged, however long its body then takes', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const slowBody: Behaviour = async (cid, call) => {
      call.onHeader('ok')
      await new Promise(resolve => setTimeout(resolve, 400))
      return await holds(cid, call)
    }
    const net = fakeNetwork({ peers: { slow: slowBody, other: holds, [ORIGIN]: scripted(referralTo('slow', 'other'), holds) } })
    const s = source(net, { hedgeAfterMs: 50, headerTimeoutMs: 100 })
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(net.calls.map(c => c.peer)).toEqual([ORIGIN, 'slow'])
    expect(s.stats()).toMatchObject({ hedges: 0, perPeer: { slow: o.bytes.length }, failures: {} })
  })

  it('a hedged peer whose ok header comes after another served is cut there, and not held against it', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    let late: Call | undefined
    // Its header at 300 ms, its body never (until its request is ended).
    const lateStart: Behaviour = async (cid, call) => {
      late = call
      await new Promise(resolve => setTimeout(resolve, 300))
      call.onHeader('ok')
      return await hangs(cid, call)
    }
    const net = fakeNetwork({ peers: { late: lateStart, quick: holds, [ORIGIN]: scripted(referralTo('late', 'quick'), holds) } })
    const s = source(net, { hedgeAfterMs: 50, headerTimeoutMs: 5_000, requestTimeoutMs: 10_000 })
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(s.stats().perPeer).toEqual({ quick: o.bytes.length })
    expect(late?.signal.aborted).toBe(false)
    const reason = await endOf(late)
    expect((reason as Error).message).toBe('another peer served the object first')
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(s.scores.snapshot().late).toBeUndefined()
    expect(s.stats().failures).toEqual({})
  })

  it('asks at most three peers of a list at once, and takes the first that serves', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const quiet = ['q1', 'q2', 'q3', 'q4']
    const net = fakeNetwork({
      peers: { ...Object.fromEntries(quiet.map(q => [q, hangs])), last: holds, [ORIGIN]: scripted(referralTo(...quiet, 'last'), holds) }
    })
    const s = source(net, { hedgeAfterMs: 30, headerTimeoutMs: 300, requestTimeoutMs: 10_000, maxPeersPerObject: 6 })
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    // q1–q3 at once; q4 when q1's header deadline ended it; `last` when q2's did.
    expect(net.calls.map(c => c.peer)).toEqual([ORIGIN, ...quiet, 'last'])
    expect(net.peak).toBe(3)
    expect(s.stats()).toMatchObject({ perPeer: { last: o.bytes.length }, bytesFromOrigin: 0 })
  })
})

describe('swarm source: the origin', () => {
  it('follows a referral: learns the referred peers\' addresses, asks them, then asks the origin with force', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const referral: Referral[] = [
      { id: 'r1', addrs: ['/ip4/10.0.0.1/tcp/4001'] },
      { id: SELF, addrs: ['/ip4/10.0.0.9/tcp/4001'] },
      { id: 'r2', addrs: ['/ip4/10.0.0.2/tcp/4001', '/ip4/10.0.0.2/tcp/4002/ws'] }
    ]
    const learned: Referral[] = []
    const net = fakeNetwork({ peers: { r1: fails, r2: notFound, [ORIGIN]: scripted({ status: 'elsewhere', peers: referral }, holds) } })
    const learn = net.learn
    net.learn = async r => { learned.push(r); await learn(r) }
    const s = source(net)
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(net.calls.map(c => [c.peer, c.force])).toEqual([[ORIGIN, false], ['r1', false], ['r2', false], [ORIGIN, true]])
    // Addresses are learned before the referred peers are dialled; this node never refers to itself.
    expect(net.events).toEqual([`ask:${ORIGIN}`, 'learn:r1', 'learn:r2', 'ask:r1', 'ask:r2', `ask:${ORIGIN}`])
    expect(learned).toEqual([referral[0], referral[2]])
    expect(s.stats()).toMatchObject({ referrals: 1, bytesFromOrigin: o.bytes.length, bytesFromPeers: 0, forcedBecause: { 'referred peers failed': 1 } })
  })

  it('says why an object came to be forced: a referral naming only peers already asked', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const net = fakeNetwork({
      peers: { h1: notFound, [ORIGIN]: scripted({ status: 'elsewhere', peers: [{ id: 'h1', addrs: [] }] }, holds) },
      holders: { [o.cid]: ['h1'] }
    })
    const s = source(net)
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    // h1 is not asked twice: the referral adds nobody, so the origin is made to serve.
    expect(net.calls.map(c => [c.peer, c.force])).toEqual([['h1', false], [ORIGIN, false], [ORIGIN, true]])
    expect(s.stats().forcedBecause).toEqual({ 'referred peers already tried': 1 })
  })

  it('a hinted peer that answers busy is counted, and the next source is asked', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const net = fakeNetwork({ peers: { h1: scripted({ status: 'busy', retryMs: 200 }), [ORIGIN]: holds }, holders: { [o.cid]: ['h1'] } })
    const s = source(net)
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(askedPeers(net)).toEqual(['h1', ORIGIN])
    expect(s.stats()).toMatchObject({ failures: { busy: 1 }, originBusy: 0, bytesFromOrigin: o.bytes.length })
  })

  it('a hinted peer that answered busy is asked again when the origin refers to it, after the wait it asked for; the origin is not made to serve', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const referral = { status: 'elsewhere', peers: [{ id: 'h1', addrs: [] }] } satisfies ShardAnswer
    const at: number[] = []
    const h1: Behaviour = scripted(async () => { at.push(Date.now()); return { status: 'busy', retryMs: 300 } }, async (cid, call) => { at.push(Date.now()); return await holds(cid, call) })
    const net = fakeNetwork({ peers: { h1, [ORIGIN]: scripted(referral, holds) }, holders: { [o.cid]: ['h1'] } })
    const s = source(net)
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(net.calls.map(c => [c.peer, c.force])).toEqual([['h1', false], [ORIGIN, false], ['h1', false]])
    expect((at[1] as number) - (at[0] as number)).toBeGreaterThanOrEqual(300 - 5)
    expect(s.stats()).toMatchObject({ bytesFromOrigin: 0, perPeer: { h1: o.bytes.length }, failures: { busy: 1 }, forcedBecause: {} })
  })

  it('a busy peer is asked again even when the peer budget is spent, past referred peers the budget leaves out', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    // r2 (score 0) ranks before h1 (a busy answer costs score), and the budget of 1 is spent on h1.
    const referral = { status: 'elsewhere', peers: [{ id: 'r2', addrs: [] }, { id: 'h1', addrs: [] }] } satisfies ShardAnswer
    const net = fakeNetwork({ peers: { h1: scripted({ status: 'busy', retryMs: 50 }, holds), r2: holds, [ORIGIN]: scripted(referral, holds) }, holders: { [o.cid]: ['h1'] } })
    const s = source(net, { maxPeersPerObject: 1 })
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(net.calls.map(c => [c.peer, c.force])).toEqual([['h1', false], [ORIGIN, false], ['h1', false]])
    expect(s.stats()).toMatchObject({ bytesFromOrigin: 0, perPeer: { h1: o.bytes.length } })
  })

  // Regression (review 37c): six hinted ids answering busy with 60 s (a wait no loader takes)
  // spent the budget of 6, so the origin's referral was skipped ("peer budget spent") and the
  // origin made to serve; they were asked for every object and never rested.
  it('hinted peers that answer busy with a wait beyond the patience spend no budget, are not asked again, and are rested when they keep at it', async () => {
    const objs = await objects(8, 11)
    for (const o of objs) store.set(o.cid, o.bytes)
    const sybils = ['s1', 's2', 's3', 's4', 's5', 's6']
    const net = fakeNetwork({
      peers: { ...Object.fromEntries(sybils.map(p => [p, scripted({ status: 'busy', retryMs: 60_000 })])), honest: holds, [ORIGIN]: scripted({ status: 'elsewhere', peers: [{ id: 'honest', addrs: [] }] }) },
      holders: Object.fromEntries(objs.map(o => [o.cid, sybils]))
    })
    const s = source(net)
    for (const o of objs) expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    const stats = s.stats()
    expect(stats).toMatchObject({ bytesFromOrigin: 0, forcedBecause: {} })
    expect(stats.perPeer).toEqual({ honest: objs.reduce((n, o) => n + o.bytes.length, 0) })
    // Asked once per object until the 8th refusal (missesBeforeCoolDown) rested them.
    for (const p of sybils) {
      expect(net.calls.filter(c => c.peer === p).length, p).toBe(8)
      expect(s.scores.usable(p), p).toBe(false)
    }
    expect(s.scores.snapshot().s1).toMatchObject({ score: -4 })
  })

  it('hinted peers busy within the patience, but named by no later list, leave the budget to the origin\'s referral and the DHT\'s providers', async () => {
    const objs = await objects(2, 12)
    for (const o of objs) store.set(o.cid, o.bytes)
    const sybils = ['s1', 's2', 's3', 's4', 's5', 's6']
    const busy = scripted({ status: 'busy', retryMs: 4_000 })
    const [viaReferral, viaDht] = objs as [{ cid: string, bytes: Uint8Array }, { cid: string, bytes: Uint8Array }]
    const net = fakeNetwork({
      peers: { ...Object.fromEntries(sybils.map(p => [p, busy])), honest: holds, [ORIGIN]: async cid => cid === viaReferral.cid ? { status: 'elsewhere', peers: [{ id: 'honest', addrs: [] }] } : { status: 'not-found' } },
      holders: Object.fromEntries(objs.map(o => [o.cid, sybils])),
      providers: { [viaDht.cid]: ['honest'] }
    })
    const s = source(net)
    for (const o of objs) expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(s.stats()).toMatchObject({ bytesFromOrigin: 0, forcedBecause: {}, perPeer: { honest: viaReferral.bytes.length + viaDht.bytes.length } })
    // Busy within the patience is "later": no rest, and no wait either, since nobody named them again.
    for (const p of sybils) expect(s.scores.usable(p), p).toBe(true)
  })

  it('peers still busy when the patience for busy answers runs out: the origin is made to serve', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const referral = { status: 'elsewhere', peers: [{ id: 'h1', addrs: [] }] } satisfies ShardAnswer
    // 3 s asked (waited 3–4.5 s, jittered): one wait fits the 5 s patience, a second does not.
    const net = fakeNetwork({ peers: { h1: scripted({ status: 'busy', retryMs: 3_000 }), [ORIGIN]: scripted(referral, referral, holds) }, holders: { [o.cid]: ['h1'] } })
    const s = source(net)
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    // Asked again once, after its wait, with the origin asked again in between (it may name more holders by then).
    expect(net.calls.map(c => [c.peer, c.force])).toEqual([['h1', false], [ORIGIN, false], ['h1', false], [ORIGIN, false], [ORIGIN, true]])
    expect(s.stats()).toMatchObject({ bytesFromOrigin: o.bytes.length, failures: { busy: 2 }, forcedBecause: { 'referred peers failed': 1 } })
  }, 15_000)

  it('a referred peer that serves saves the origin its bytes', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const net = fakeNetwork({ peers: { r1: holds, [ORIGIN]: scripted({ status: 'elsewhere', peers: [{ id: 'r1', addrs: [] }] }, holds) } })
    const s = source(net)
    expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(askedPeers(net)).toEqual([ORIGIN, 'r1'])
    expect(s.stats()).toMatchObject({ referrals: 1, bytesFromOrigin: 0, bytesFromPeers: o.bytes.length, perPeer: { r1: o.bytes.length } })
  })

  it('a learn that fails does not stop the referral from being tried', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const net = fakeNetwork({ peers: { r1: holds, [ORIGIN]: scripted({ status: 'elsewhere', peers: [{ id: 'r1', addrs: ['garbage'] }] }) } })
    net.learn = async () => { throw new Error('bad multiaddr') }
    expect(await source(net).get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(askedPeers(net)).toEqual([ORIGIN, 'r1'])
  })

  it('busy from the origin waits retryMs (jittered up to 1.5 ×), then asks again, without using up its attempts', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    // More busy answers in a row than the origin's 4 attempts: waited out all the same.
    const busy: ShardAnswer = { status: 'busy', retryMs: 1_000 }
    const net = fakeNetwork({ peers: { [ORIGIN]: scripted(busy, busy, busy, busy, busy, holds) } })
    const s = source(net)
    const pending = s.get(o.cid, { signal: AbortSignal.timeout(120_000) })
    await vi.waitUntil(() => net.calls.length === 1, { interval: 0, timeout: 1_000 })
    await vi.advanceTimersByTimeAsync(999)
    expect(net.calls.length).toBe(1)
    await vi.advanceTimersByTimeAsync(501)
    expect(net.calls.length).toBe(2)
    await vi.advanceTimersByTimeAsync(4 * 1_500)
    expect(await pending).toEqual(o.bytes)
    expect(net.calls.length).toBe(6)
    expect(s.stats().originBusy).toBe(5)
  })

  it('an origin busy for longer than BUSY_PATIENCE_MS is given up for the fallback, the patience shared by its unforced and forced asks', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    const net = fakeNetwork({ peers: { [ORIGIN]: scripted({ status: 'busy', retryMs: 20_000 }) } })
    const fallback = fallbackSource(() => o.bytes)
    const s = source(net, { fallback })
    const pending = s.get(o.cid, { signal: AbortSignal.timeout(600_000) })
    await vi.advanceTimersByTimeAsync(BUSY_PATIENCE_MS + 1)
    expect(await pending).toEqual(o.bytes)
    // Two waits of 20–30 s fit in 60 s, a third does not: the unforced pass asks three times;
    // the forced one once, its patience spent (review 53a: it had one of its own, 60 s more),
    // then the fallback serves.
    expect(net.calls.map(c => c.force)).toEqual([false, false, false, true])
    expect(fallback.asked).toEqual([o.cid])
    expect(s.stats().forcedBecause).toEqual({ 'origin busy': 1 })
  })

  it('a coordinator busy over libp2p for a whole patience and then over HTTP fails the object, where a caller that waits out busy ran it all again (review 53a)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    const net = fakeNetwork({ peers: { [ORIGIN]: scripted({ status: 'busy', retryMs: 20_000 }) } })
    const busyHttp = { name: 'http', async get (): Promise<Uint8Array> { throw new BusyError('the coordinator is sending as much as it may at once', 1000) } }
    // As a runtime composes them (runtime.ts): the swarm, its HTTP fallback, waited out on busy.
    const s = retrying(source(net, { fallback: busyHttp }), 0)
    const outcome = s.get(o.cid, { signal: AbortSignal.timeout(86_400_000) }).then(() => 'served', (err: Error) => err)
    await vi.advanceTimersByTimeAsync(BUSY_PATIENCE_MS + 1)
    const err = await outcome
    expect(err).toBeInstanceOf(UnavailableError)
    expect((err as Error).message).toBe(`${o.cid}: the coordinator stayed busy (its answer budget full) for 60 s, over libp2p and then HTTP`)
    expect(net.calls).toHaveLength(4)
  })
})

describe('swarm source: shards and stats', () => {
  it('starts the shards of one block at different peers (rotated by shard index)', async () => {
    const shards = await objects(6)
    for (const o of shards) store.set(o.cid, o.bytes)
    const holders = ['a', 'b', 'c', 'd']
    const net = fakeNetwork({ peers: Object.fromEntries(holders.map(p => [p, holds])), holders: { blk: holders } })
    const s = source(net)
    await Promise.all(shards.map(async (o, shard) => await s.get(o.cid, { signal: signal(), block: 'blk', shard })))
    const firstAsked = shards.map(o => net.calls.find(c => c.cid === o.cid)?.peer)
    const [a, b, c, d] = preferenceOrder(SELF)('blk', holders)
    expect(firstAsked).toEqual([a, b, c, d, a, b])
    expect(net.calls.length).toBe(6)
  })

  it('rotates the same way among holders none of which is connected yet (a cold start)', async () => {
    const shards = await objects(6)
    for (const o of shards) store.set(o.cid, o.bytes)
    const holders = ['a', 'b', 'c', 'd']
    const net = fakeNetwork({ peers: Object.fromEntries(holders.map(p => [p, holds])), holders: { blk: holders }, connected: () => false })
    const s = source(net)
    await Promise.all(shards.map(async (o, shard) => await s.get(o.cid, { signal: signal(), block: 'blk', shard })))
    const firstAsked = shards.map(o => net.calls.find(c => c.cid === o.cid)?.peer)
    const [a, b, c, d] = preferenceOrder(SELF)('blk', holders)
    expect(firstAsked).toEqual([a, b, c, d, a, b])
  })

  it('loaders of one block spread over its holders instead of all going to the same first one', async () => {
    // Before, every loader asked the holders in one shared order (their scores, then the order of
    // their announcements): 16 loaders all went first to the same holder.
    const holders = Array.from({ length: 16 }, (_, i) => `12D3KooWholder${String(i).padStart(2, '0')}`)
    const loaders = Array.from({ length: 16 }, (_, i) => `12D3KooWloader${String(i).padStart(2, '0')}`)
    const firstChoices = new Map<string, number>()
    for (const loader of loaders) {
      const order = preferenceOrder(loader)('bafkreiblock', holders)
      expect([...order].sort()).toEqual([...holders].sort())
      firstChoices.set(order[0] as string, (firstChoices.get(order[0] as string) ?? 0) + 1)
    }
    // 16 independent uniform choices of 16 holders hit ≈ 10.3 distinct ones on average.
    expect(firstChoices.size).toBeGreaterThanOrEqual(8)
    expect(Math.max(...firstChoices.values())).toBeLessThanOrEqual(4)
    // A node's order is stable for a block (the same holder first each time) and differs by block.
    expect(preferenceOrder(loaders[0] as string)('bafkreiblock', holders)).toEqual(preferenceOrder(loaders[0] as string)('bafkreiblock', [...holders].reverse()))
    const byBlock = new Set(Array.from({ length: 16 }, (_, i) => preferenceOrder(loaders[0] as string)(`bafkreiblock${i}`, holders)[0]))
    expect(byBlock.size).toBeGreaterThanOrEqual(8)
  })

  it('a peer with a negative score is asked after the peers in good standing for every shard, not first for every k-th one', async () => {
    const shards = await objects(6, 4)
    for (const o of shards) store.set(o.cid, o.bytes)
    const holders = ['liar', 'a', 'b']
    const net = fakeNetwork({ peers: { liar: notFound, a: holds, b: holds }, holders: { blk: holders } })
    const s = source(net)
    s.scores.record('liar', 'not-found')
    await Promise.all(shards.map(async (o, shard) => await s.get(o.cid, { signal: signal(), block: 'blk', shard })))
    expect(net.calls.filter(c => c.peer === 'liar')).toEqual([])
    expect(shards.map(o => net.calls.find(c => c.cid === o.cid)?.peer)).toEqual(['a', 'b', 'a', 'b', 'a', 'b'])
  })

  it('the origin answering "not found" is not held against it', async () => {
    const [o] = await objects(1, 5)
    if (o === undefined) throw new Error('no object')
    const net = fakeNetwork({ peers: { [ORIGIN]: notFound } })
    const s = source(net, { fallback: fallbackSource(() => o.bytes) })
    for (let i = 0; i < 10; i++) expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    expect(s.scores.snapshot()[ORIGIN]).toBeUndefined()
    expect(s.scores.usable(ORIGIN)).toBe(true)
  })

  it('counts bytes per source, and they add up to what was received', async () => {
    const objs = await objects(6, 9)
    const [o1, o2, o3, o4, o5, o6] = objs
    if (o6 === undefined || o1 === undefined || o2 === undefined || o3 === undefined || o4 === undefined || o5 === undefined) throw new Error('no objects')
    const only = (...held: Array<{ cid: string, bytes: Uint8Array }>): Behaviour => async cid => {
      const o = held.find(h => h.cid === cid)
      return o === undefined ? { status: 'not-found' } : { status: 'ok', bytes: o.bytes }
    }
    const net = fakeNetwork({
      peers: { a: only(o1, o2), b: only(o3), p: only(o4), [ORIGIN]: only(o5) },
      holders: Object.fromEntries(objs.map(o => [o.cid, ['a', 'b']])),
      providers: Object.fromEntries(objs.map(o => [o.cid, ['p']]))
    })
    let receivedBytes = 0
    const s = source(net, { fallback: fallbackSource(cid => cid === o6.cid ? o6.bytes : undefined), onReceived: (_c, bytes) => { receivedBytes += bytes.length } })
    for (const o of objs) expect(await s.get(o.cid, { signal: signal() })).toEqual(o.bytes)
    const stats = s.stats()
    const len = (...os: Array<{ bytes: Uint8Array }>): number => os.reduce((n, o) => n + o.bytes.length, 0)
    expect(stats.perPeer).toEqual({ a: len(o1, o2), b: len(o3), p: len(o4) })
    expect(stats.bytesFromPeers).toBe(len(o1, o2, o3, o4))
    expect(stats.bytesFromOrigin).toBe(len(o5))
    expect(stats.bytesFromFallback).toBe(len(o6))
    expect(stats.bytesFromPeers + stats.bytesFromOrigin + stats.bytesFromFallback).toBe(len(...objs))
    expect(receivedBytes).toBe(len(...objs))
    expect(stats.requests).toBe(net.calls.length)
    // stats() is a copy.
    stats.perPeer.a = 0
    expect(s.stats().perPeer.a).toBe(len(o1, o2))
  })

  it('tells onFetching about every fetch with a promise of its bytes', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const fetching: Array<[string, Promise<Uint8Array>]> = []
    const net = fakeNetwork({ peers: { [ORIGIN]: holds } })
    const s = source(net, { onFetching: (cid, result) => { fetching.push([cid, result]) } })
    await s.get(o.cid, { signal: signal() })
    expect(fetching.map(f => f[0])).toEqual([o.cid])
    expect(await fetching[0]?.[1]).toEqual(o.bytes)
  })
})

describe('swarm source: abort', () => {
  /** Rejects if `p` has not settled within `ms` (a bound for "promptly"). */
  async function within<T> (p: Promise<T>, ms: number): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`still pending after ${ms} ms`)) }, ms) })
    try {
      return await Promise.race([p, late])
    } finally {
      clearTimeout(timer)
    }
  }

  it('an abort during a request rejects at once, cancels the request and asks nobody else', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    store.set(o.cid, o.bytes)
    const net = fakeNetwork({ peers: { slow: hangs, good: holds, [ORIGIN]: holds }, holders: { [o.cid]: ['slow', 'good'] } })
    const fallback = fallbackSource(() => o.bytes)
    const s = source(net, { requestTimeoutMs: 60_000, fallback })
    const controller = new AbortController()
    const pending = s.get(o.cid, { signal: controller.signal })
    await vi.waitFor(() => { expect(net.calls.length).toBe(1) })
    const reason = new Error('load cancelled')
    controller.abort(reason)
    await expect(within(pending, 1_000)).rejects.toBe(reason)
    expect(net.calls[0]?.signal.aborted).toBe(true)
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(askedPeers(net)).toEqual(['slow'])
    expect(fallback.asked).toEqual([])
    // A caller's abort says nothing about the peer.
    expect(s.scores.snapshot().slow).toBeUndefined()
  })

  it('an abort while waiting out the origin\'s busy rejects at once', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    const net = fakeNetwork({ peers: { [ORIGIN]: scripted({ status: 'busy', retryMs: 10_000 }) } })
    const controller = new AbortController()
    const pending = source(net).get(o.cid, { signal: controller.signal })
    await vi.waitFor(() => { expect(net.calls.length).toBe(1) })
    controller.abort(new Error('stop'))
    await expect(within(pending, 1_000)).rejects.toThrow('stop')
    expect(net.calls.length).toBe(1)
  })

  it('an already-aborted signal asks no peer', async () => {
    const [o] = await objects(1)
    if (o === undefined) throw new Error('no object')
    const net = fakeNetwork({ peers: { h: holds, [ORIGIN]: holds }, holders: { [o.cid]: ['h'] } })
    const fallback = fallbackSource(() => o.bytes)
    await expect(source(net, { fallback }).get(o.cid, { signal: AbortSignal.abort(new Error('never mind')) })).rejects.toThrow('never mind')
    expect(net.calls).toEqual([])
    expect(fallback.asked).toEqual([])
  })

  // Regression (fixed): a request waiting in a peer's concurrency queue checks its signal only
  // when its turn comes, so it stays pending until the requests ahead of it end (up to
  // requestTimeoutMs, here 60 s) although its caller gave up.
  it('an abort while queued behind a busy peer rejects at once', async () => {
    const [o1, o2] = await objects(2)
    if (o1 === undefined || o2 === undefined) throw new Error('no objects')
    const net = fakeNetwork({ peers: { slow: hangs, [ORIGIN]: notFound }, holders: { [o1.cid]: ['slow'], [o2.cid]: ['slow'] } })
    const s = source(net, { requestTimeoutMs: 60_000, perPeerConcurrency: 1 })
    const first = new AbortController()
    const second = new AbortController()
    const p1 = s.get(o1.cid, { signal: first.signal }).catch(() => {})
    const p2 = s.get(o2.cid, { signal: second.signal })
    await vi.waitFor(() => { expect(net.calls.length).toBe(1) })
    second.abort(new Error('second cancelled'))
    try {
      await expect(within(p2, 500)).rejects.toThrow('second cancelled')
    } finally {
      first.abort(new Error('cleanup'))
      await p1
      await p2.catch(() => {})
    }
  })
})
