/**
 * The peers a runtime saw, kept in `<dir>/known-peers.json` (atomically replaced), so that a
 * restart can rejoin the swarm when the coordinator — the usual bootstrap — is down. The file
 * is local state but is checked like input: a damaged file is ignored, never trusted blindly
 * (a wrong address only costs a failed dial; Noise authenticates whoever answers).
 */
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { writeFileAtomic } from '../atomic-file.ts'
import type { PeerNode } from './peer-node.ts'

const MAX_PEERS = 32
/**
 * Entries per network (one IPv4 address, one IPv6 /64): peer ids cost nothing, addresses do, so
 * one attacker host with many ids cannot fill the list and be all a restarted runtime dials.
 */
const MAX_PER_NETWORK = 4
/** Far above what `write` produces (32 entries of at most 512 characters). */
const MAX_FILE_BYTES = 64 * 1024
const fileSchema = z.strictObject({ peers: z.array(z.string().max(512)).max(MAX_PEERS) })

/** The address's IP component (ip4 or ip6), if it has one. */
function ipOf (addr: Multiaddr): { name: string, value?: string } | undefined {
  return addr.getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')
}

/** The network an address is in: its IPv4 address, or its IPv6 /64; undefined for other addresses (DNS, relays). */
function networkOf (addr: Multiaddr): string | undefined {
  if (addr.getComponents().some(c => c.name === 'p2p-circuit')) return undefined
  const ip = ipOf(addr)
  if (ip?.value === undefined) return undefined
  if (ip.name === 'ip4') return ip.value
  // The 16 address bytes follow the one-byte protocol code (41).
  return `ip6:${Buffer.from(multiaddr(`/ip6/${ip.value}`).bytes.subarray(1, 9)).toString('hex')}`
}

export interface KnownPeers {
  /** Remembered multiaddrs (with /p2p/<id>); empty when none or the file is damaged. */
  read: () => Promise<string[]>
  /**
   * Remembers the peers connected now (up to 32, at most 4 per network, if any): those that sent
   * this node the most bytes first, then dialled ones.
   */
  write: () => Promise<void>
}

/** `servedBytes`: what a peer (by id) sent this node; a restart asks the peers that served it first. */
export function knownPeersFile (node: PeerNode, dir: string | undefined, servedBytes: (peerId: string) => number = () => 0): KnownPeers {
  const path = dir === undefined ? undefined : join(dir, 'known-peers.json')
  let written = ''
  return {
    async read () {
      if (path === undefined) return []
      try {
        if ((await stat(path)).size > MAX_FILE_BYTES) return []
        const parsed = fileSchema.safeParse(JSON.parse(await readFile(path, 'utf8')))
        if (!parsed.success) return []
        return parsed.data.peers.filter(a => { try { return multiaddr(a).getComponents().some(c => c.name === 'p2p') } catch { return false } })
      } catch {
        return []
      }
    },
    async write () {
      if (path === undefined) return
      const peers: string[] = []
      const seen = new Set<string>()
      const perNetwork = new Map<string, number>()
      // Peers that sent this node verified bytes first: with 4 places per network (one host, or a
      // machine's loopback), the peers a restart with the coordinator down needs could be left
      // out for others that held nothing. Then peers this node dialled
      // (the origin's referrals, bootstrap, hints it acted on): anyone can connect in, with as many
      // ids as it likes. The sort is stable.
      const served = (c: { remotePeer: { toString: () => string } }): number => servedBytes(c.remotePeer.toString())
      const connections = [...node.getConnections()].sort((a, b) => served(b) - served(a) || Number(a.direction !== 'outbound') - Number(b.direction !== 'outbound'))
      for (const connection of connections) {
        if (peers.length >= MAX_PEERS) break
        const id = connection.remotePeer.toString()
        const network = networkOf(connection.remoteAddr)
        if (seen.has(id) || network === undefined || (perNetwork.get(network) ?? 0) >= MAX_PER_NETWORK) continue
        // An address it is reachable at: the one dialled, or, for a peer that dialled in, one it
        // listens on (from identify) at the host it connected from. Identify's other claims are
        // not taken: they may be loopback or another host altogether.
        let addr: Multiaddr | undefined
        if (connection.direction === 'outbound') {
          addr = connection.remoteAddr.decapsulateCode(421)
        } else {
          const known = await node.peerStore.get(connection.remotePeer).catch(() => undefined)
          const host = ipOf(connection.remoteAddr)?.value
          addr = known?.addresses.map(a => a.multiaddr).find(ma => ipOf(ma)?.value === host)
        }
        if (addr === undefined) continue
        seen.add(id)
        perNetwork.set(network, (perNetwork.get(network) ?? 0) + 1)
        peers.push(`${addr.toString()}/p2p/${id}`)
      }
      const text = `${JSON.stringify({ peers })}\n`
      // Written every 10 s: an unchanged list is not rewritten (an fsync each time wears the SD
      // cards edge boxes run on).
      if (peers.length === 0 || text === written) return
      await writeFileAtomic(path, text)
      written = text
    }
  }
}
