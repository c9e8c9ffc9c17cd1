/**
 * Exchange protocol: blockfed's shard protocol (shared/p2p/shard-protocol.ts) against bitswap
 * (@helia/bitswap, Bitswap 1.2.0, what stock IPFS nodes speak), in one run, over loopback,
 * between real libp2p nodes (node-runtime/p2p/peer-node.ts: TCP, Noise, Yamux). Issue 5.
 *
 * Payload: 48 raw CIDv1 sha2-256 objects of 256 KiB of seeded random bytes (12 MiB, the shards
 * of one 12 MiB model). The servers run in a child process (this file again, with
 * BLOCKFED_EXCHANGE_BENCH_ROLE=servers), so the CPU time measured here is the client's alone;
 * every server node speaks both protocols and holds every object.
 *
 * Scenarios, 8 requests in flight:
 *  - one server: a client fetches the 48 objects from it;
 *  - three servers: object i from server i mod 3. Bitswap has no "ask this peer" call: `want`
 *    sends every want to every connected peer (measured as it is, duplicates included), and one
 *    session pinned to each server gives the like-for-like split (measured too).
 * Each variant: 1 warm-up, then RUNS runs, interleaved across variants; medians count. A run
 * ends with a full garbage collection in both processes, inside its CPU window. Every
 * object is verified against its CID (verifyCid, as the swarm source does) on both protocols;
 * bitswap also hashes each block itself to learn which want it answers, so that is inside its
 * figures. Measured: total time, throughput (MB = 10^6 payload bytes), time to the first
 * verified object, the time to fetch one object alone on an idle connection, client and server CPU (process.cpuUsage) per MB, and the bytes the client
 * read from its sockets (Linux /proc/self/io rchar: TCP payload, so Noise, Yamux and protocol
 * framing and any duplicate blocks are in it).
 *
 * Figure: our throughput from one server; reference: bitswap `want` from one server; ratio
 * ours / bitswap.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { MemoryBlockstore } from 'blockstore-core'
import { CID } from 'multiformats/cid'
import { createPeerNode, type PeerNode } from '../../node-runtime/p2p/peer-node.ts'
import { rawCid, verifyCid } from '../../shared/crypto/cid.ts'
import { TimeoutError, UnavailableError } from '../../shared/errors/errors.ts'
import { shardClient, type ShardClient } from '../../shared/p2p/shard-client.ts'
import { serveShardStream, SHARD_PROTOCOL } from '../../shared/p2p/shard-protocol.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { BITSWAP_PROTOCOL, startBitswap, type BitswapPeer } from './exchange-bitswap.ts'
import { machine, procIo } from './machine.ts'

const ROLE_VARIABLE = 'BLOCKFED_EXCHANGE_BENCH_ROLE'
const OBJECTS = 48
const OBJECT_BYTES = 256 * 1024
const PAYLOAD_SEED = 0xb10cfed
const SERVERS = 3
const CONCURRENCY = 8
const WARMUP = 1
const RUNS = 7
/** Single-object fetches per variant, after the runs. */
const ALONE_SAMPLES = 15
/** After each run, before reading counters: duplicate blocks still on their way land in this run. */
const SETTLE_MS = 150
const RUN_TIMEOUT_MS = 20_000
const SERVE_TIMEOUT_MS = 10_000
const READY_TIMEOUT_MS = 30_000
const BENCH_MAX_MS = 110_000
/** The child never outlives a bench that died without closing its stdin. */
const CHILD_MAX_MS = 150_000
/**
 * Bitswap's defaults, except the do-not-resend window: a server ignores a re-want of a block it
 * sent the same peer less than that long ago (5 s by default), and the runs ask for the same
 * objects again a few hundred ms later. (Even at 0 it drops a re-want that arrives while its
 * ledger still holds the earlier entry — a pinned session sends no cancel — hence one client
 * node per variant and distinct objects per variant in the single-object samples.)
 */
const BITSWAP_OPTIONS = { doNotResendBlockWindow: 0 }

interface BenchObject { cid: string, parsed: CID, bytes: Uint8Array }
interface ServerInfo { id: string, addr: string }
interface Usage { cpuMicros: number, wchar: number | null }
interface Sample { ms: number, firstMs: number, clientCpuMs: number, serverCpuMs: number, clientBytesRead: number | null, serverBytesWritten: number | null }

const log = (line: string): void => { console.error(`[exchange bench] ${line}`) }
const round = (x: number, digits = 2): number => +x.toFixed(digits)
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const payloadMB = OBJECTS * OBJECT_BYTES / 1e6

/** The 48 objects: the same seeded bytes in both processes. */
async function payload (): Promise<BenchObject[]> {
  const next = mulberry32(PAYLOAD_SEED)
  const objects: BenchObject[] = []
  for (let i = 0; i < OBJECTS; i++) {
    const words = new Uint32Array(OBJECT_BYTES / 4)
    for (let j = 0; j < words.length; j++) words[j] = Math.floor(next() * 2 ** 32)
    const bytes = new Uint8Array(words.buffer)
    const cid = await rawCid(bytes)
    objects.push({ cid, parsed: CID.parse(cid), bytes })
  }
  return objects
}

/**
 * A full garbage collection, run at the end of every measured run inside its CPU window (both
 * processes), so each variant pays for its own garbage rather than the previous variant's.
 */
function exposeGc (): () => void {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as unknown
  if (typeof gc !== 'function') throw new UnavailableError('--expose-gc did not expose gc')
  return gc as () => void
}
const collectGarbage = exposeGc()

function cpuMicros (): number {
  const { user, system } = process.cpuUsage()
  return user + system
}

/** Runs a teardown step; a failure must not keep the steps after it from running. */
async function quietly (step: () => Promise<void>): Promise<void> {
  try {
    await step()
  } catch (err) {
    log(`teardown: ${(err as Error).message}`)
  }
}

function randomSeed (): Uint8Array {
  return globalThis.crypto.getRandomValues(new Uint8Array(32))
}

/** The node's loopback TCP address, with its /p2p/ id. */
function tcpAddr (node: PeerNode): string {
  const addr = node.getMultiaddrs().map(a => a.toString()).find(a => a.includes('/tcp/') && !a.includes('/ws'))
  if (addr === undefined) throw new UnavailableError('a server node listens on no TCP address')
  return addr
}

async function withTimeout<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new TimeoutError(`${what}: no answer in ${ms} ms`)) }, ms) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

// --- The servers' process -------------------------------------------------------------------

/**
 * Starts SERVERS nodes that hold every object and serve both protocols; prints their addresses
 * as one JSON line, then answers each "usage" line on stdin with a JSON line of its CPU time and
 * written bytes. Stops every node when stdin ends.
 */
async function serveAll (): Promise<void> {
  const nodes: PeerNode[] = []
  const bitswaps: BitswapPeer[] = []
  const stopAll = async (): Promise<void> => {
    for (const b of bitswaps) await quietly(b.stop)
    for (const n of nodes) await quietly(async () => { await n.stop() })
  }
  const guard = setTimeout(() => { void stopAll().finally(() => process.exit(1)) }, CHILD_MAX_MS)
  try {
    const objects = await payload()
    const byCid = new Map(objects.map(o => [o.cid, o.bytes]))
    const blockstore = new MemoryBlockstore()
    for (const o of objects) await blockstore.put(o.parsed, o.bytes)
    for (let i = 0; i < SERVERS; i++) {
      const node = await createPeerNode({ seed: randomSeed() })
      nodes.push(node)
      await node.handle(SHARD_PROTOCOL, async (stream: Stream) => {
        await serveShardStream(stream, async (request) => {
          const bytes = byCid.get(request.cid)
          return bytes === undefined ? { status: 'not-found' } : { status: 'ok', bytes }
        }, { timeoutMs: SERVE_TIMEOUT_MS })
      }, { maxInboundStreams: 256 })
      bitswaps.push(await startBitswap(node, blockstore, BITSWAP_OPTIONS))
    }
    const servers: ServerInfo[] = nodes.map(n => ({ id: n.peerId.toString(), addr: tcpAddr(n) }))
    process.stdout.write(`${JSON.stringify({ servers, firstCid: objects[0]?.cid })}\n`)
    for await (const line of createInterface({ input: process.stdin })) {
      if (line !== 'usage') continue
      collectGarbage()
      const usage: Usage = { cpuMicros: cpuMicros(), wchar: procIo()?.wchar ?? null }
      process.stdout.write(`${JSON.stringify(usage)}\n`)
    }
  } finally {
    clearTimeout(guard)
    await stopAll()
  }
}

// --- The client (this process) --------------------------------------------------------------

/** Line-by-line answers of the servers' process. */
function lineReader (stream: Readable): (ms: number, what: string) => Promise<string> {
  const lines = createInterface({ input: stream })[Symbol.asyncIterator]()
  return async (ms, what) => {
    const next = await withTimeout(lines.next(), ms, what)
    if (next.done === true) throw new UnavailableError(`${what}: the servers' process closed its output`)
    return next.value
  }
}

interface Client { node: PeerNode, bitswap: BitswapPeer, peers: PeerId[], shards: ShardClient }

/** A client node with bitswap, connected to `servers` and past identify with each. */
async function connectClient (servers: ServerInfo[], signal: AbortSignal): Promise<Client> {
  const node = await createPeerNode({ seed: randomSeed() })
  const bitswap = await startBitswap(node, new MemoryBlockstore(), BITSWAP_OPTIONS)
  const shards = shardClient({ open: async (peer, signal) => await node.dialProtocol(peerIdFromString(peer), SHARD_PROTOCOL, { signal }) })
  const client = { node, bitswap, peers: servers.map(s => peerIdFromString(s.id)), shards }
  try {
    // A DHT client is not put in the servers' routing tables, so clients never learn of each
    // other and connect: bitswap would send them its wants too.
    await node.services.dht.setMode('client')
    for (const s of servers) await node.dial(multiaddr(s.addr), { signal })
    // Bitswap sends wants only to peers identify has reported as speaking it.
    const until = Date.now() + 10_000
    for (const peer of client.peers) {
      for (;;) {
        const protocols = await node.peerStore.get(peer).then(p => p.protocols, () => [] as string[])
        if (protocols.includes(BITSWAP_PROTOCOL) && protocols.includes(SHARD_PROTOCOL)) break
        if (Date.now() > until) throw new TimeoutError(`identify with ${peer.toString()} did not finish in 10 s`)
        await sleep(20)
      }
    }
    return client
  } catch (err) {
    await stopClient(client)
    throw err
  }
}

async function stopClient (client: Client): Promise<void> {
  await quietly(client.bitswap.stop)
  await quietly(client.shards.close)
  await quietly(async () => { await client.node.stop() })
}

type Getter = (index: number, object: BenchObject, signal: AbortSignal) => Promise<Uint8Array>

/** Fetches every object with CONCURRENCY in flight, verifying each against its CID. */
async function fetchAll (objects: BenchObject[], get: Getter, outer: AbortSignal): Promise<{ ms: number, firstMs: number }> {
  const failed = new AbortController()
  const signal = AbortSignal.any([outer, failed.signal, AbortSignal.timeout(RUN_TIMEOUT_MS)])
  const start = performance.now()
  let firstMs: number | undefined
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < objects.length) {
      const index = next++
      const object = objects[index] as BenchObject
      const bytes = await get(index, object, signal)
      await verifyCid(object.cid, bytes, 'bench object')
      firstMs ??= performance.now() - start
    }
  }
  try {
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => { await worker() }))
  } catch (err) {
    failed.abort(err)
    throw err
  }
  return { ms: performance.now() - start, firstMs: firstMs as number }
}

/** One request on the shard protocol, on a kept stream to `peer` (the swarm's client pool). */
async function shardFrom (client: Client, peer: PeerId, cid: string, signal: AbortSignal): Promise<Uint8Array> {
  const answer = await client.shards.request(peer.toString(), cid, { signal })
  if (answer.status !== 'ok') throw new UnavailableError(`shard ${cid}: the server answered ${answer.status}`)
  return answer.bytes
}

/** One way to fetch: `get` builds a run's getter on the variant's own client. */
interface Variant { name: string, get: (client: Client) => Getter }

function summarize (samples: Sample[]): Record<string, unknown> {
  const ms = median(samples.map(s => s.ms))
  const read = samples.map(s => s.clientBytesRead).filter((b): b is number => b !== null)
  const written = samples.map(s => s.serverBytesWritten).filter((b): b is number => b !== null)
  return {
    medianMs: round(ms, 1),
    MBps: round(payloadMB / (ms / 1000), 1),
    firstObjectMs: round(median(samples.map(s => s.firstMs)), 1),
    clientCpuMsPerMB: round(median(samples.map(s => s.clientCpuMs / payloadMB))),
    serverCpuMsPerMB: round(median(samples.map(s => s.serverCpuMs / payloadMB))),
    clientBytesReadPerPayloadByte: read.length === 0 ? null : round(median(read) / (payloadMB * 1e6), 3),
    serverBytesWrittenPerPayloadByte: written.length === 0 ? null : round(median(written) / (payloadMB * 1e6), 3),
    runsMs: samples.map(s => round(s.ms, 1))
  }
}

async function bench (): Promise<void> {
  // A rejection nobody awaits (bitswap's session internals can leave one behind on an abort)
  // ends the bench cleanly, nodes stopped, instead of killing the process mid-run.
  const failure = new AbortController()
  const onUnhandled = (reason: unknown): void => {
    log(`unhandled rejection: ${reason instanceof Error ? reason.message : String(reason)}`)
    failure.abort(reason)
  }
  process.on('unhandledRejection', onUnhandled)
  const deadline = AbortSignal.any([AbortSignal.timeout(BENCH_MAX_MS), failure.signal])
  log(`payload: ${OBJECTS} objects of ${OBJECT_BYTES / 1024} KiB`)
  const objects = await payload()
  const child: ChildProcess = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
    env: { ...process.env, [ROLE_VARIABLE]: 'servers' },
    stdio: ['pipe', 'pipe', 'inherit']
  })
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  const clients: Client[] = []
  try {
    if (child.stdout === null || child.stdin === null) throw new UnavailableError('the servers\' process has no pipes')
    const stdin = child.stdin
    const readLine = lineReader(child.stdout)
    const ready = JSON.parse(await readLine(READY_TIMEOUT_MS, 'servers\' process start')) as { servers: ServerInfo[], firstCid: string }
    if (ready.firstCid !== objects[0]?.cid) throw new UnavailableError('the servers\' process built a different payload')
    const serverUsage = async (): Promise<Usage> => {
      stdin.write('usage\n')
      return JSON.parse(await readLine(5000, 'servers\' usage')) as Usage
    }

    const measure = async (get: Getter): Promise<Sample> => {
      const server0 = await serverUsage()
      collectGarbage()
      const io0 = procIo()
      const cpu0 = cpuMicros()
      const { ms, firstMs } = await fetchAll(objects, get, deadline)
      await sleep(SETTLE_MS)
      collectGarbage()
      const clientCpuMs = (cpuMicros() - cpu0) / 1000
      const io1 = procIo()
      const server1 = await serverUsage()
      return {
        ms,
        firstMs,
        clientCpuMs,
        serverCpuMs: (server1.cpuMicros - server0.cpuMicros) / 1000,
        clientBytesRead: io0 === null || io1 === null ? null : io1.rchar - io0.rchar,
        serverBytesWritten: server0.wchar === null || server1.wchar === null ? null : server1.wchar - server0.wchar
      }
    }

    /**
     * Runs `variants` against `servers`, each from its own client node: a bitswap server keeps
     * a want ledger per peer, and one variant's leftovers there must not stall the next one's.
     */
    const scenario = async (servers: ServerInfo[], variants: Variant[]): Promise<Record<string, unknown>> => {
      const own = new Map<string, Client>()
      for (const v of variants) {
        const client = await connectClient(servers, deadline)
        clients.push(client)
        own.set(v.name, client)
      }
      const clientOf = (v: Variant): Client => own.get(v.name) as Client
      const samples = new Map<string, Sample[]>(variants.map(v => [v.name, []]))
      for (let run = -WARMUP; run < RUNS; run++) {
        for (const v of variants) {
          const sample = await measure(v.get(clientOf(v)))
          if (run >= 0) samples.get(v.name)?.push(sample)
        }
      }
      // Request latency on an idle connection: one object alone, fetched and verified; each
      // variant asks for objects the others do not.
      const alone = new Map<string, number[]>(variants.map(v => [v.name, []]))
      const getters = variants.map(v => v.get(clientOf(v)))
      for (let k = 0; k < ALONE_SAMPLES; k++) {
        for (const [n, v] of variants.entries()) {
          const index = (k * variants.length + n) % OBJECTS
          const object = objects[index] as BenchObject
          const signal = AbortSignal.any([deadline, AbortSignal.timeout(RUN_TIMEOUT_MS)])
          const start = performance.now()
          await verifyCid(object.cid, await (getters[n] as Getter)(index, object, signal), 'bench object')
          alone.get(v.name)?.push(performance.now() - start)
        }
      }
      const result: Record<string, unknown> = {}
      for (const v of variants) {
        const client = clientOf(v)
        const connected = client.node.getConnections().map(c => c.remotePeer.toString())
        result[v.name] = {
          ...summarize(samples.get(v.name) ?? []),
          oneObjectAloneMs: round(median(alone.get(v.name) ?? []), 1),
          clientConnectedTo: { servers: client.peers.filter(p => connected.includes(p.toString())).length, otherPeers: new Set(connected.filter(id => !servers.some(s => s.id === id))).size }
        }
        clients.splice(clients.indexOf(client), 1)
        await stopClient(client)
      }
      return result
    }

    const shardProtocol: Variant = { name: 'shardProtocol', get: client => async (i, o, signal) => await shardFrom(client, client.peers[i % client.peers.length] as PeerId, o.cid, signal) }
    const bitswapWant: Variant = { name: 'bitswapWant', get: client => async (_i, o, signal) => await client.bitswap.want(o.parsed, { signal }) }
    const bitswapSessions: Variant = {
      name: 'bitswapSessions',
      get: client => {
        const sessions = client.peers.map(p => client.bitswap.session(p))
        return async (i, o, signal) => await (sessions[i % sessions.length] as (typeof sessions)[number]).retrieve(o.parsed, { signal })
      }
    }
    log('one server: shard protocol vs bitswap want')
    const one = await scenario(ready.servers.slice(0, 1), [shardProtocol, bitswapWant])
    log('three servers, objects split across them: shard protocol vs bitswap want (broadcast) vs bitswap pinned sessions')
    const three = await scenario(ready.servers, [shardProtocol, bitswapWant, bitswapSessions])

    if (failure.signal.aborted) throw new UnavailableError('a promise was rejected unhandled during the bench', { cause: failure.signal.reason })
    const ours = one.shardProtocol as { MBps: number, firstObjectMs: number }
    const theirs = one.bitswapWant as { MBps: number, firstObjectMs: number }
    console.log(JSON.stringify({
      bench: 'exchange',
      payload: { objects: OBJECTS, objectBytes: OBJECT_BYTES, MB: round(payloadMB, 3), cid: 'CIDv1 raw sha2-256', seed: PAYLOAD_SEED },
      concurrency: CONCURRENCY,
      warmup: WARMUP,
      runs: RUNS,
      figure: { what: 'blockfed shard protocol, 1 server, MB/s', value: ours.MBps, firstObjectMs: ours.firstObjectMs },
      reference: { what: '@helia/bitswap want, 1 server, MB/s', value: theirs.MBps, firstObjectMs: theirs.firstObjectMs },
      ratio: round(ours.MBps / theirs.MBps, 3),
      oneServer: one,
      threeServers: three,
      notes: [
        'every object verified with verifyCid on both protocols; bitswap also re-hashes each block to match it to a want',
        `bitswap options: defaults except ${JSON.stringify(BITSWAP_OPTIONS)}`,
        'bytes read/written: /proc/self/io rchar/wchar of the client/servers process over the run (TCP payload incl. Noise, Yamux, framing, duplicates)'
      ],
      machine: machine(),
      date: new Date().toISOString().slice(0, 10)
    }, null, 2))
  } finally {
    for (const c of clients) await stopClient(c)
    child.stdin?.end()
    await withTimeout(exited, 10_000, 'servers\' process exit').catch(() => { child.kill('SIGKILL') })
    process.off('unhandledRejection', onUnhandled)
  }
}

if (process.env[ROLE_VARIABLE] === 'servers') await serveAll()
else await bench()
