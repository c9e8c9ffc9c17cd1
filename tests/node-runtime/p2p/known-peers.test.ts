/**
 * known-peers.json (node-runtime/p2p/known-peers.ts) under a one-host Sybil, and the address it
 * keeps. Before: `write` kept the first 32 connections, whoever opened them, each at identify's
 * first address (sorted as strings), so
 *  A. one host connecting in with 36 free peer ids filled the list, and a runtime restarted while
 *     the coordinator was down dialled only it;
 *  B. a filled list stayed filled: a restart dialled the remembered ids first, they kept the
 *     oldest slots, and the next write remembered them again;
 *  C. a box listening on all interfaces was remembered at 127.0.0.1, not where it was reached.
 * All three were seen failing before the fix (review, stop 23).
 */
import { describe, it, expect, afterAll, beforeAll } from 'vitest'
import { mkdtemp, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { Libp2p } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { multiaddr } from '@multiformats/multiaddr'
import { createSwarm, type Swarm } from '../../../node-runtime/p2p/swarm.ts'
import { knownPeersFile } from '../../../node-runtime/p2p/known-peers.ts'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'


const stops: Array<() => Promise<void>> = []
let root = ''
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'known-peers-')) })
afterAll(async () => {
  for (const stop of stops.reverse()) await stop().catch(() => {})
  await rm(root, { recursive: true, force: true })
})

async function until (what: string, done: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!await done()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

/** A bare peer (identify only): an honest runtime's stand-in, or one of an attacker's ids. */
async function peer (listen: string, announce?: string[]): Promise<Libp2p> {
  const node = await createLibp2p({
    addresses: { listen: [listen], announce },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    connectionMonitor: { enabled: false }
  })
  stops.push(async () => { await node.stop() })
  return node
}

const tcpOf = (node: Libp2p): string => {
  const a = node.getMultiaddrs().find(m => m.toString().includes('/tcp/') && !m.toString().includes('/ws'))
  if (a === undefined) throw new Error('no tcp address')
  return a.decapsulateCode(421).toString()
}

async function runtime (name: string): Promise<{ swarm: Swarm, dir: string }> {
  const dir = join(root, name)
  const swarm = await createSwarm({ seed: crypto.getRandomValues(new Uint8Array(32)), dir, listen: ['/ip4/127.0.0.1/tcp/0'] })
  stops.push(async () => { await swarm.stop() })
  return { swarm, dir }
}

const remembered = async (dir: string): Promise<string[]> =>
  (JSON.parse(await readFile(join(dir, 'known-peers.json'), 'utf8')) as { peers: string[] }).peers
const idOf = (a: string): string => multiaddr(a).getComponents().findLast(c => c.name === 'p2p')?.value ?? ''
const hostOf = (a: string): string => multiaddr(a).getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')?.value ?? ''

/** Waits until identify has given the runtime a listen address for every one of `nodes`. */
async function identified (swarm: Swarm, nodes: Libp2p[]): Promise<void> {
  await until('identify', async () => {
    for (const n of nodes) {
      const p = await swarm.node.peerStore.get(n.peerId).catch(() => undefined)
      // Identify done: protocols are known (a dial alone already stores the dialled address).
      if (p === undefined || p.addresses.length === 0 || p.protocols.length === 0) return false
    }
    return true
  })
}

const ATTACKER_IDS = 36

describe('known-peers.json under a one-host Sybil', () => {
  let attackers: Libp2p[] = []
  let honest: Libp2p[] = []

  beforeAll(async () => {
    // One attacker machine (127.0.0.1), 36 ids. Three honest runtimes, each its own host.
    attackers = await Promise.all(Array.from({ length: ATTACKER_IDS }, async () => await peer('/ip4/127.0.0.1/tcp/0')))
    honest = await Promise.all([11, 12, 13].map(async i => await peer(`/ip4/127.0.0.${i}/tcp/0`)))
  })

  it('A: ids dialling in from one host do not crowd out the peers this runtime dialled', async () => {
    const { swarm, dir } = await runtime('a')
    const target = tcpOf(swarm.node) + `/p2p/${swarm.peerId}`
    // The attacker connects first (it keeps its connections; honest runtimes come and go) ...
    for (const a of attackers) await a.dial(multiaddr(target))
    // ... then the runtime reaches honest peers (say, referred by the origin).
    for (const h of honest) await swarm.node.dial(multiaddr(`${tcpOf(h)}/p2p/${h.peerId.toString()}`))
    await identified(swarm, [...attackers, ...honest])
    await swarm.stop() // writes known-peers.json

    const peers = await remembered(dir)
    const ids = peers.map(idOf)
    const fromOneHost = peers.filter(p => hostOf(p) === '127.0.0.1').length
    for (const h of honest) expect(ids).toContain(h.peerId.toString())
    expect(fromOneHost).toBeLessThanOrEqual(4)
  })

  it('B: a list already filled by the attacker does not stay filled after a restart', async () => {
    const dir = join(root, 'b')
    await mkdir(dir, { recursive: true })
    // What the last run left behind (what A writes today): the attacker's ids only.
    const filled = attackers.slice(0, 32).map(a => `${tcpOf(a)}/p2p/${a.peerId.toString()}`)
    await writeFile(join(dir, 'known-peers.json'), JSON.stringify({ peers: filled }))
    const swarm = await createSwarm({ seed: crypto.getRandomValues(new Uint8Array(32)), dir, listen: ['/ip4/127.0.0.1/tcp/0'] })
    stops.push(async () => { await swarm.stop() })
    // Restart with the coordinator down: no bootstrap answers, only the remembered peers.
    await swarm.join([])
    expect(swarm.node.getConnections().length).toBeGreaterThanOrEqual(32)
    // Honest peers reached later (DHT, gossip, referrals once the origin is back).
    for (const h of honest) await swarm.node.dial(multiaddr(`${tcpOf(h)}/p2p/${h.peerId.toString()}`))
    await identified(swarm, [...attackers.slice(0, 32), ...honest])
    await swarm.stop()

    const peers = await remembered(dir)
    const ids = peers.map(idOf)
    for (const h of honest) expect(ids).toContain(h.peerId.toString())
  })
})

describe('the address remembered for a peer', () => {
  it('C: is the one it was reached at, not identify\'s first (loopback) address', async () => {
    // An edge box listening on all interfaces, reached at 127.0.0.20 (a LAN address stands in
    // here: loopback only in tests); identify also lists 127.0.0.1, which sorts first.
    const box = await peer('/ip4/0.0.0.0/tcp/0')
    const port = multiaddr(tcpOf(box)).getComponents().find(c => c.name === 'tcp')?.value
    const { swarm, dir } = await runtime('c')
    await swarm.node.dial(multiaddr(`/ip4/127.0.0.20/tcp/${port}/p2p/${box.peerId.toString()}`))
    await identified(swarm, [box])
    const stored = (await swarm.node.peerStore.get(box.peerId)).addresses.map(x => x.multiaddr.toString())
    expect(stored.some(a => a.startsWith('/ip4/127.0.0.1/'))).toBe(true)
    await swarm.stop()
    const entry = (await remembered(dir)).find(p => idOf(p) === box.peerId.toString())
    expect(entry).toBeDefined()
    expect(hostOf(entry as string)).toBe('127.0.0.20')
  })
})

describe('writing the list', () => {
  it('does not rewrite an unchanged list (it is written every 10 s), and does a changed one', async () => {
    const dir = join(root, 'unchanged')
    await mkdir(dir, { recursive: true })
    const ids = await Promise.all([1, 2].map(async n => peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(n)))))
    const outbound = (n: number): object => ({ remotePeer: ids[n], remoteAddr: multiaddr(`/ip4/127.0.0.${n + 30}/tcp/4001/p2p/${String(ids[n])}`), direction: 'outbound' })
    let connections = [outbound(0)]
    const file = knownPeersFile({ getConnections: () => connections } as never, dir)
    await file.write()
    const first = await stat(join(dir, 'known-peers.json'))
    await file.write()
    // The atomic writer renames a new file into place: an unchanged inode means no write.
    expect((await stat(join(dir, 'known-peers.json'))).ino).toBe(first.ino)
    connections = [outbound(0), outbound(1)]
    await file.write()
    expect(await remembered(dir)).toEqual(ids.map((id, n) => `/ip4/127.0.0.${n + 30}/tcp/4001/p2p/${id.toString()}`))
  })
  it('keeps the peers that served this node first, so a restart finds them among its 4 places per network', async () => {
    const dir = join(root, 'served-first')
    await mkdir(dir, { recursive: true })
    const ids = await Promise.all([1, 2, 3, 4, 5, 6].map(async n => peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(n + 40)))))
    // Six peers on one machine's loopback: four dialled (the origin, referrals) that sent nothing, then
    // two that sent blocks, one of which connected in (its listen address known from identify).
    const at = (n: number): string => `/ip4/127.0.0.1/tcp/${4000 + n}`
    const connections = ids.map((id, n) => ({ remotePeer: id, remoteAddr: multiaddr(n === 5 ? '/ip4/127.0.0.1/tcp/55555' : `${at(n)}/p2p/${id.toString()}`), direction: n === 5 ? 'inbound' : 'outbound' }))
    const node = { getConnections: () => connections, peerStore: { get: async () => ({ addresses: [{ multiaddr: multiaddr(at(5)) }] }) } }
    const served = new Map([[ids[4]?.toString(), 1000], [ids[5]?.toString(), 5000]])
    await knownPeersFile(node as never, dir, peer => served.get(peer) ?? 0).write()
    expect(await remembered(dir)).toEqual([5, 4, 0, 1].map(n => `${at(n)}/p2p/${ids[n]?.toString() ?? ''}`))
    // Without the counts, the dialled ones take the four places.
    const plain = join(root, 'served-unknown')
    await mkdir(plain, { recursive: true })
    await knownPeersFile(node as never, plain).write()
    expect(await remembered(plain)).toEqual([0, 1, 2, 3].map(n => `${at(n)}/p2p/${ids[n]?.toString() ?? ''}`))
  })
})
