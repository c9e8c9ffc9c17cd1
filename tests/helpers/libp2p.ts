/** Small helpers for tests that run real libp2p nodes on loopback. */
import type { Libp2p } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** A fixed 32-byte seed, for a node whose peer id is the same on every run. */
export const seedOf = (n: number): Uint8Array => new Uint8Array(32).fill(n)

/** The node's plain TCP listen address (not its WebSocket one). */
export function tcpAddr (node: Libp2p): Multiaddr {
  const addr = node.getMultiaddrs().find(a => a.toString().includes('/tcp/') && !a.toString().includes('/ws'))
  if (addr === undefined) throw new Error('no TCP address')
  return addr
}
