/**
 * Referrals do not make runtimes dial a local socket a peer named (review 42b 5). A peer that
 * fetched an object from the origin is referred to others; the origin handed out every address
 * that peer announced, and runtimes dialled them, `/unix/` sockets included. Now no node dials
 * anything but a TCP or WebSocket address, and the origin refers only to those. (A TCP address
 * at another host is still passed on: boxes behind one NAT reach each other at LAN addresses the
 * origin never sees.) Real libp2p nodes on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createServer, type Server } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { multiaddr } from '@multiformats/multiaddr'
import { createOrigin, type Origin } from '../../../coordinator/p2p/origin.ts'
import { blockFiles } from '../../../coordinator/store/block-files.ts'
import { createSwarm, type Swarm } from '../../../node-runtime/p2p/swarm.ts'
import { dialable } from '../../../node-runtime/p2p/peer-node.ts'
import { rawCid } from '../../../shared/crypto/cid.ts'
import { requestShard, SHARD_PROTOCOL } from '../../../shared/p2p/shard-protocol.ts'
import { swarmSource } from '../../../shared/p2p/swarm-source.ts'

let root: string
const hits: string[] = []
const servers: Server[] = []
let origin: Origin
let attacker: Libp2p
let runtime: Swarm

/** A service that records the first bytes anyone sends it. */
async function victim (name: string, at: { host: string, port: number } | string): Promise<Server> {
  const server = createServer(socket => {
    socket.once('data', () => { hits.push(name); socket.destroy() })
  })
  await new Promise<void>(resolve => server.listen(at, resolve))
  servers.push(server)
  return server
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-referrals-'))
})

afterAll(async () => {
  await runtime?.stop()
  await attacker?.stop()
  await origin?.stop()
  for (const s of servers) s.close()
  await rm(root, { recursive: true, force: true })
})

describe('referral addresses', () => {
  it('dials only TCP or WebSocket addresses at an IP or a DNS name', () => {
    for (const ok of ['/ip4/10.0.0.1/tcp/4001', '/ip6/::1/tcp/4001/ws', '/dns4/edge.example/tcp/443/wss/p2p/12D3KooWDYc5rRpzvWrjm46q4vieytLzpFcCc4A4xtw5WUcoAqq6']) expect(dialable(multiaddr(ok)), ok).toBe(true)
    for (const no of ['/unix/%2Fvar%2Frun%2Fdocker.sock', '/ip4/10.0.0.1/udp/4001/quic-v1', '/ip4/10.0.0.1', '/memory/x']) expect(dialable(multiaddr(no)), no).toBe(false)
  })

  it('a peer announcing a local socket is not dialled there by the runtimes it is referred to', async () => {
    const socketPath = join(root, 'internal.sock')
    await victim('a local unix socket', socketPath)
    const sealed = new Uint8Array(50_000).map((_, i) => i * 7)
    const cid = await rawCid(sealed)
    const files = blockFiles(join(root, 'blocks'))
    await files.put(cid, sealed)
    origin = await createOrigin({ seed: new Uint8Array(32).fill(2), files, listen: ['/ip4/127.0.0.1/tcp/0'] })
    const originAddr = origin.addresses()[0] as string

    // Listens nowhere; announces a socket on the runtimes' machines.
    const announced = [`/unix/${encodeURIComponent(socketPath)}`]
    attacker = await createLibp2p({ addresses: { listen: [], announce: announced }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { identify: identify() }, connectionMonitor: { enabled: false } })
    const stream = await attacker.dialProtocol(multiaddr(originAddr), SHARD_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
    // Fetched with force: the origin now counts it among the object's holders, to refer others to.
    expect((await requestShard(stream, cid, { signal: AbortSignal.timeout(5_000), force: true })).status).toBe('ok')
    // Identify has told the origin the announced addresses.
    const known = async (): Promise<string[]> => (await origin.node.peerStore.get(attacker.peerId).catch(() => undefined))?.addresses.map(a => a.multiaddr.toString()) ?? []
    for (let i = 0; i < 100 && (await known()).length < 1; i++) await new Promise(resolve => setTimeout(resolve, 20))
    expect(await known()).toEqual(expect.arrayContaining(announced))

    runtime = await createSwarm({ seed: new Uint8Array(32).fill(9), listen: ['/ip4/127.0.0.1/tcp/0'] })
    await runtime.join([originAddr], AbortSignal.timeout(5_000))
    const source = swarmSource({ network: runtime.network, origin: origin.peerId })
    const bytes = await source.get(cid, { signal: AbortSignal.timeout(20_000), size: sealed.length })
    expect(bytes).toEqual(sealed)
    // Let any dial the referral caused reach its target.
    await new Promise(resolve => setTimeout(resolve, 500))
    expect(hits).toEqual([])
  })
})
