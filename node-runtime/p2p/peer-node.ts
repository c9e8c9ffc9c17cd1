/**
 * A blockfed libp2p node for Node processes (the coordinator's and every runtime's): TCP and
 * WebSockets transports, Noise, Yamux, identify, ping, a Kademlia DHT in server mode under
 * blockfed's own protocol id (so it is a private DHT, not the public IPFS one) and gossipsub.
 * Peers find each other from bootstrap addresses (the coordinator's, from the AoE config).
 *
 * The node's key is an Ed25519 seed the caller already keeps (the coordinator's identity, the
 * runtime's client key), so the coordinator's peer id follows from the key runtimes pin: the
 * origin is authenticated by the Noise handshake, not by an address.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bootstrap } from '@libp2p/bootstrap'
import { generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Libp2p, PeerId } from '@libp2p/interface'
import { kadDHT, type KadDHT } from '@libp2p/kad-dht'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { createLibp2p } from 'libp2p'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { DHT_PROTOCOL, GOSSIP_MAX_MESSAGE_BYTES } from '../../shared/p2p/gossip.ts'
import { hostGroup } from '../../shared/p2p/host-group.ts'
import { FloodCooldownError, floodCooldown, limitInboundStreams, StreamFloodError, type FloodCooldown, type FloodCounters, type StreamLimitOptions } from '../../shared/p2p/stream-limit.ts'
import { ProviderBoundedDatastore } from './provider-store.ts'

export interface PeerNodeOptions {
  /** The node's Ed25519 secret key (32-byte seed). */
  seed: Uint8Array
  /** Listen multiaddrs. Default TCP and WebSockets on 127.0.0.1, ports chosen by the OS. */
  listen?: string[]
  /** Multiaddrs with /p2p/<id> to join through. */
  bootstrap?: string[]
  /** How fast a peer may open and waste streams (stream-limit.ts; defaults there). */
  streamLimit?: Omit<StreamLimitOptions, 'onRefused'>
  /**
   * The host a remote address is at, for the flood cooldown's host strikes and refusals.
   * Default hostGroup (loopback has none; tests give one to play a NAT on loopback).
   */
  hostOf?: (remoteAddr: Multiaddr) => string | undefined
  /** How long a peer, and its host, that flooded this node with streams are refused. Default FLOOD_COOLDOWN_MS. */
  floodCooldownMs?: number
}

export type PeerServices = { dht: KadDHT, pubsub: ReturnType<ReturnType<typeof gossipsub>>, identify: unknown, ping: unknown }
export type PeerNode = Libp2p<PeerServices>

/** Streams a peer may open before the connection is fully set up here (yamux's default is 10). */
export const MAX_EARLY_STREAMS = 128

/**
 * Inbound streams open at once on one connection (yamux's default is 1,000): what the protocols
 * allow together (shards 256, the DHT 8, gossipsub, identify, ping) with room to spare. A stream
 * past it is reset by yamux before it is made. A peer's streams that never negotiate a protocol
 * are held until libp2p's negotiation deadline (10 s), at ~19 KB each (review 44a M1).
 */
export const MAX_INBOUND_STREAMS = 320

/** Inbound connections accepted from one host per second (libp2p's default is 5). */
export const INBOUND_CONNECTIONS_PER_HOST_PER_SECOND = 64

export const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws']

const hex = (bytes: Uint8Array | undefined): string => bytes === undefined ? '' : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')

/**
 * Gossipsub checks a message's signature before its seen-cache unless a fast id is given, so
 * without one every copy of a message (one from each mesh peer) costs an Ed25519 verify: in a
 * wave of 8 runtimes that was ≈ 1.9 s of CPU per runtime (BENCHMARKS.md, "swarm"). Author and
 * sequence number are what the signed message id is made of (StrictSign); a copy is recognised
 * only after one copy has been verified, so a forged copy cannot shadow the real message.
 */
function fastMsgIdFn (message: { from?: Uint8Array, seqno?: Uint8Array }): string {
  return `${hex(message.from)}:${hex(message.seqno)}`
}

/**
 * Gossipsub's peer score (v1.1 §"Peer Scoring") with its IP colocation factor (P6) off. By
 * default every peer beyond 10 connected from one IP costs each of them 5 × surplus², so with
 * 12 or more on one address they fall below the gossip threshold and with 11 or more they are
 * pruned from every mesh (negative score): 16 runtimes on one host saw one another at −125,
 * graylisted, and no message reached anyone (tests/node-runtime/p2p/gossip-scoring.test.ts).
 * Many runtimes on one address is what blockfed is for: a serverless cluster on one box, a
 * fleet behind one NAT. P6 is a Sybil defence for open networks; here a Sybil's messages are
 * hints that are checked anyway (signed manifests, CIDs), `have` filters are kept only from
 * reachable peers within a byte budget (swarm.ts), and invalid messages are penalised per
 * topic (topic-validator.ts).
 */
const GOSSIP_SCORE_PARAMS = { IPColocationFactorWeight: 0 }
/**
 * blockfed stores no values in its DHT (provider records only), so a PUT_VALUE is refused:
 * kad-dht's default `pk` validator accepts any public key record whose key names it, and keys
 * are free — one stream stored 5,000 records, kept for the life of the process (review).
 */
const NO_DHT_VALUES = { pk: async (): Promise<void> => { throw new InvalidInputError('this DHT keeps no values (blockfed uses provider records only)') } }

/** Below this score gossipsub drops a peer's RPCs unread (its default, stated for topic-validator.ts). */
export const GOSSIP_GRAYLIST_THRESHOLD = -80

/** kad-dht's inbound streams per connection (its default 32). */
export const DHT_MAX_INBOUND_STREAMS = 8

/**
 * Provider records kad-dht re-provides at once, a day after the first (its default 10): each is
 * a stream to every peer of a small fleet, so fewer at once keep the daily burst far under what
 * a peer may open (stream-limit.ts; review 44a H1).
 */
export const DHT_REPROVIDE_CONCURRENCY = 2

/** Checks bootstrap addresses from a config or CLI: parseable, with a /p2p/ peer id. */
export function checkBootstrap (addrs: string[], where: string): void {
  for (const [i, text] of addrs.entries()) {
    let ok = false
    try {
      ok = multiaddr(text).getComponents().some(c => c.name === 'p2p')
    } catch (err) {
      throw new InvalidInputError(`${where}[${i}]: "${text.slice(0, 120)}" is not a multiaddr`, { cause: err })
    }
    if (!ok) throw new InvalidInputError(`${where}[${i}]: "${text.slice(0, 120)}" has no /p2p/<peer id>`)
  }
}

/** The host `peer` is connected from (shared/p2p/host-group.ts), if it is connected and has one. */
export function hostOfPeer (node: Libp2p, peer: PeerId): string | undefined {
  return hostGroup(node.getConnections(peer)[0]?.remoteAddr)
}

/** Components a dialled address may have: IP or DNS host, TCP, WebSockets (with TLS), the peer id. */
const DIALABLE = new Set(['ip4', 'ip6', 'dns', 'dns4', 'dns6', 'tcp', 'ws', 'wss', 'tls', 'sni', 'p2p'])

/** True for an address this node may dial: every component in DIALABLE, and a host and TCP port. */
export function dialable (ma: Multiaddr): boolean {
  const names = ma.getComponents().map(c => c.name)
  return names.every(n => DIALABLE.has(n)) && names.includes('tcp') && names.some(n => n === 'ip4' || n === 'ip6' || n.startsWith('dns'))
}

/** The peer id of the node whose Ed25519 public key is `publicKey` (e.g. the pinned coordinator key). */
export function peerIdOfKey (publicKey: Uint8Array): PeerId {
  return peerIdFromPublicKey(publicKeyFromRaw(publicKey))
}

const floods = new WeakMap<PeerNode, FloodCooldown>()

/** The node's stream-flood counters (shared/p2p/stream-limit.ts). */
export function floodCounters (node: PeerNode): FloodCounters {
  return floods.get(node)?.counters() ?? { streamsRefused: 0, streamsWasted: 0, connectionsCut: 0, connectionsRefused: 0 }
}

export async function createPeerNode (options: PeerNodeOptions): Promise<PeerNode> {
  const bootstrapList = options.bootstrap ?? []
  checkBootstrap(bootstrapList, 'bootstrap')
  const privateKey = await generateKeyPairFromSeed('Ed25519', options.seed)
  const flood = floodCooldown({ cooldownMs: options.floodCooldownMs })
  const hostOf = options.hostOf ?? hostGroup
  const node = await createLibp2p({
    privateKey,
    // Addresses reach this node from peers (identify, referrals, DHT records): only TCP or
    // WebSocket addresses at an IP or a DNS name are dialled. A referral to a `/unix/` path made
    // every runtime that took it connect to a local socket of the attacker's choosing (review 42b 5).
    // A peer (and its host) that flooded this node with streams is refused for a while: by host
    // before the Noise handshake, by peer id right after it (stream-limit.ts). The dialler may
    // see its connection open for a moment: Noise's initiator is done before the responder.
    // Nor does this node dial them (a DHT walk or identify would otherwise reconnect them).
    connectionGater: {
      denyDialMultiaddr: (ma: Multiaddr) => !dialable(ma) || flood.cooling(undefined, hostOf(ma)),
      denyInboundConnection: maConn => flood.refuses(undefined, hostOf(maConn.remoteAddr)),
      denyInboundEncryptedConnection: peer => flood.refuses(peer.toString(), undefined),
      denyDialPeer: peer => flood.cooling(peer.toString())
    },
    datastore: new ProviderBoundedDatastore(peerIdFromPublicKey(privateKey.publicKey).toString()),
    addresses: { listen: options.listen ?? DEFAULT_LISTEN },
    transports: [tcp(), webSockets()],
    connectionEncrypters: [noise()],
    // A peer that dials and at once asks for many objects opens its streams before this side
    // has finished upgrading the connection; yamux aborts the whole connection past 10 such
    // "early" streams (MaxEarlyStreamsError), which under load cut runtimes off the origin.
    // The bound stays finite: inbound streams are limited per protocol anyway.
    // Streams come at a bounded rate per connection and peer, whatever their protocol
    // (stream-limit.ts).
    streamMuxers: [limitInboundStreams(yamux({ maxEarlyStreams: MAX_EARLY_STREAMS, maxInboundStreams: MAX_INBOUND_STREAMS }), { resetsAllowed: [DHT_PROTOCOL], ...options.streamLimit, onRefused: flood.onRefused })],
    peerDiscovery: bootstrapList.length > 0 ? [bootstrap({ list: bootstrapList, timeout: 100 })] : [],
    // The connection monitor closes a connection whose ping is late; on a loaded machine (a cold
    // start decrypting a model) a busy event loop is not a dead peer. Requests have deadlines.
    connectionMonitor: { enabled: false },
    // libp2p refuses more than 5 inbound connections a second from one host and more than 10
    // upgrading at once: a fleet behind one NAT (or a wave of runtimes on one machine) dialling
    // its origin together was refused and fell back to HTTP. Still bounded, per host.
    connectionManager: { inboundConnectionThreshold: INBOUND_CONNECTIONS_PER_HOST_PER_SECOND, maxIncomingPendingConnections: 64 },
    services: {
      identify: identify(),
      ping: ping(),
      // Loopback and private addresses are the point here (edge boxes on one LAN, tests on
      // 127.0.0.1), so the DHT keeps them, dialable ones only (review 42b 5). Kept whatever host
      // a peer connects from: boxes behind one NAT reach each other at their LAN addresses.
      // kad-dht reads a message into a 4 MiB buffer with no bound of its own, for up to its 10 s
      // deadline: fewer streams bound what a peer pins (review 42b: 32 × 4 MiB per connection).
      // The deadline cannot be shortened: kad-dht 16 takes incomingMessageTimeout but never hands
      // it to its RPC handler. Its messages here (FIND_NODE, providers, PING) are a few KiB.
      dht: kadDHT({ protocol: DHT_PROTOCOL, clientMode: false, peerInfoMapper: info => ({ ...info, multiaddrs: info.multiaddrs.filter(dialable) }), allowQueryWithZeroPeers: true, validators: NO_DHT_VALUES, maxInboundStreams: DHT_MAX_INBOUND_STREAMS, reprovide: { concurrency: DHT_REPROVIDE_CONCURRENCY } }),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false, maxInboundDataLength: GOSSIP_MAX_MESSAGE_BYTES, fastMsgIdFn, scoreParams: GOSSIP_SCORE_PARAMS, scoreThresholds: { graylistThreshold: GOSSIP_GRAYLIST_THRESHOLD } })
    },
    // Started below, once every connection (bootstrap dials included) is watched for floods.
    start: false
  }) as PeerNode
  node.addEventListener('connection:open', ({ detail: connection }) => {
    connection.addEventListener('close', (event) => {
      if (!(event.error instanceof StreamFloodError)) return
      const peer = connection.remotePeer
      const host = hostOf(connection.remoteAddr)
      const { hostRefused } = flood.punish(peer.toString(), host)
      // Its other connections go too (one this node dialled, a second one it opened), and once its
      // host is refused, every connection from that host; not as floods of their own, so that a
      // NAT-mate's id is not refused with its host (review 45a).
      const others = hostRefused ? node.getConnections().filter(c => hostOf(c.remoteAddr) === host) : node.getConnections(peer)
      const reason = new FloodCooldownError(`connection closed: ${hostRefused ? 'its host' : 'its peer'} is refused for a while after a stream flood`)
      for (const other of others) other.abort(reason)
    }, { once: true })
  })
  floods.set(node, flood)
  try {
    await node.start()
  } catch (err) {
    // One address taken (a kept port, say) fails the start after others listen: closed here,
    // or their sockets outlive the failure (and a retry on other ports).
    await Promise.resolve(node.stop()).catch(() => {})
    throw err
  }
  return node
}
