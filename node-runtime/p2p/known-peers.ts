/**
 * The peers a runtime saw, kept in `<dir>/known-peers.json` (atomically replaced), so that a
 * restart can rejoin the swarm when the coordinator — the usual bootstrap — is down. The file
 * is local state but is checked like input: a damaged file is ignored, never trusted blindly
 * (a wrong address only costs a failed dial; Noise authenticates whoever answers).
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { multiaddr } from '@multiformats/multiaddr'
import { writeFileAtomic } from '../atomic-file.ts'
import type { PeerNode } from './peer-node.ts'

const MAX_PEERS = 32
const fileSchema = z.strictObject({ peers: z.array(z.string().max(512)).max(MAX_PEERS) })

export interface KnownPeers {
  /** Remembered multiaddrs (with /p2p/<id>); empty when none or the file is damaged. */
  read: () => Promise<string[]>
  /** Remembers the peers connected now (up to 32), if any. */
  write: () => Promise<void>
}

export function knownPeersFile (node: PeerNode, dir: string | undefined): KnownPeers {
  const path = dir === undefined ? undefined : join(dir, 'known-peers.json')
  return {
    async read () {
      if (path === undefined) return []
      try {
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
      for (const connection of node.getConnections()) {
        if (peers.length >= MAX_PEERS) break
        // The address it listens on (from identify), not the connection's ephemeral port.
        const known = await node.peerStore.get(connection.remotePeer).catch(() => undefined)
        const addr = known?.addresses[0]?.multiaddr
        if (addr !== undefined) peers.push(`${addr.toString()}/p2p/${connection.remotePeer.toString()}`)
      }
      if (peers.length > 0) await writeFileAtomic(path, `${JSON.stringify({ peers: [...new Set(peers)] })}\n`)
    }
  }
}
