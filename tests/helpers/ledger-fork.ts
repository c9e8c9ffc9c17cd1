/**
 * An honest log H (m@1 … m@10 at entries 0–9) and a fork F of it, signed by the same log key
 * (one coordinator lying): F agrees on entries 0–7 and rewrites 8–9 (m@9 twice, other manifests).
 */
import { ENTRIES_PAGE } from '../../shared/ledger/api.ts'
import { signCheckpoint } from '../../shared/ledger/checkpoint.ts'
import type { LedgerClient } from '../../shared/ledger/client.ts'
import { entryBytes, type LedgerEntry } from '../../shared/ledger/entry.ts'
import { memoryTree, type MemoryTree } from '../../shared/ledger/memory-tree.ts'
import type { LedgerTrust } from '../../shared/ledger/verify.ts'
import { entry, logSigner, logVerifier, ORIGIN } from './ledger-fake-log.ts'

interface Log { tree: MemoryTree, leaves: Uint8Array[] }

function build (entries: LedgerEntry[]): Log {
  const tree = memoryTree()
  const leaves = entries.map(e => entryBytes(e))
  for (const leaf of leaves) tree.append(leaf)
  return { tree, leaves }
}

const honest = Array.from({ length: 10 }, (_, i) => entry('m', i + 1))
export const H = build(honest)
export const F = build([...honest.slice(0, 8), { ...entry('m', 9), manifestCid: 'bafyEVIL9a' }, { ...entry('m', 9), manifestCid: 'bafyEVIL9b' }])
export const forkTrust: LedgerTrust = { log: logVerifier, witnesses: [], minWitnesses: 0 }

/** A client of `log` serving its checkpoint of `size`; `beforeConsistency` runs before each consistency proof is given. */
export function forkClient (log: Log, size: number, beforeConsistency?: () => Promise<void>): LedgerClient {
  const note = signCheckpoint({ origin: ORIGIN, size, root: log.tree.root(size), extensions: [] }, logSigner)
  return {
    checkpoint: async () => note,
    key: async () => { throw new Error('not used') },
    entry: async index => ({ index, leaf: log.leaves[index] as Uint8Array }),
    entries: async (from, to) => log.leaves.slice(from, Math.min(to, from + ENTRIES_PAGE)),
    inclusion: async (index, n) => log.tree.inclusionProof(index, n),
    async consistency (from, to) {
      await beforeConsistency?.()
      return log.tree.consistencyProof(from, to)
    },
    channels: async () => { throw new Error('not used') }
  }
}
