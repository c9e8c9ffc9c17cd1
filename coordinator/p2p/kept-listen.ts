/**
 * The libp2p addresses a coordinator listened on at its last start, kept in its data dir and
 * listened on again at the next one when none are given (`--p2p-listen`): runtimes' AoE configs
 * name the coordinator's node in `peers.bootstrap`, and OS-chosen ports changed at every restart,
 * so the addresses handed out went stale without a word (review 52a).
 */
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { readIfExists, writeFileAtomic } from '../../node-runtime/atomic-file.ts'

export const KEPT_LISTEN_FILE = 'p2p-listen.json'

const keptSchema = z.object({ listen: z.array(z.string().max(200)).min(1).max(8) }).strict()

/**
 * The addresses kept by the last start; undefined when none were kept, or the file does not
 * parse as listen addresses (it is then written anew at this start, so no error).
 */
export async function keptListen (dataDir: string): Promise<string[] | undefined> {
  const text = await readIfExists(join(dataDir, KEPT_LISTEN_FILE))
  if (text === undefined) return undefined
  try {
    const kept = keptSchema.parse(JSON.parse(text)).listen
    for (const a of kept) multiaddr(a)
    return kept
  } catch {
    return undefined
  }
}

/** Keeps the addresses the node listens on, without their `/p2p/<id>` suffix (listen addresses name no peer). */
export async function keepListen (dataDir: string, addresses: readonly string[]): Promise<void> {
  const listen = [...new Set(addresses.map(a => multiaddr(a).decapsulateCode(421).toString()))].slice(0, 8)
  if (listen.length === 0) return
  await writeFileAtomic(join(dataDir, KEPT_LISTEN_FILE), `${JSON.stringify({ listen })}\n`, 0o600)
}
