/** A small in-memory ledger for trust tests: a Merkle log, its checkpoints signed by a log key, and witnesses that cosign them. */
import { ed25519 } from '@noble/curves/ed25519.js'
import { ENTRIES_PAGE } from '../../shared/ledger/api.ts'
import { memoryTree, type MemoryTree } from '../../shared/ledger/memory-tree.ts'
import { signCheckpoint } from '../../shared/ledger/checkpoint.ts'
import { ed25519Signer, ed25519Verifier, signLine, splitNote, type NoteSigner } from '../../shared/ledger/note.ts'
import { cosignatureSigner, cosignatureVerifier } from '../../shared/ledger/cosignature.ts'
import { entryBytes, type LedgerEntry } from '../../shared/ledger/entry.ts'
import type { LedgerClient } from '../../shared/ledger/client.ts'

export const ORIGIN = 'blockfed.test/log'
export const logSecret = new Uint8Array(32).fill(7)
export const logSigner = ed25519Signer(ORIGIN, logSecret)
export const logVerifier = ed25519Verifier(ORIGIN, ed25519.getPublicKey(logSecret))

export function witness (name: string, fill: number): { signer: NoteSigner, verifier: ReturnType<typeof cosignatureVerifier>, pub: Uint8Array } {
  const secret = new Uint8Array(32).fill(fill)
  const pub = ed25519.getPublicKey(secret)
  return { signer: cosignatureSigner(name, secret, () => 1_700_000_000), verifier: cosignatureVerifier(name, pub), pub }
}

export const entry = (model: string, version: number): LedgerEntry =>
  ({ model, version, manifestCid: `bafy${model}${version}`, parent: version === 1 ? null : version - 1, time: new Date(0).toISOString() })

/**
 * A ledger client over an in-memory tree and its leaves, answering as the coordinator's routes do
 * (entries in pages of ENTRIES_PAGE); `checkpoint` and `key` are the test's.
 */
export function treeClient (tree: MemoryTree, leaves: Uint8Array[], served: Pick<LedgerClient, 'checkpoint' | 'key'>): LedgerClient {
  return {
    ...served,
    entry: async index => ({ index, leaf: leaves[index] as Uint8Array }),
    entries: async (from, to) => leaves.slice(from, Math.min(to, from + ENTRIES_PAGE)),
    inclusion: async (index, size) => tree.inclusionProof(index, size),
    consistency: async (from, to) => tree.consistencyProof(from, to),
    channels: async () => { throw new Error('not used') }
  }
}

/** A log the test controls: appends entries, signs checkpoints at any size, adds cosignatures. */
export function fakeLog () {
  const tree = memoryTree()
  const leaves: Uint8Array[] = []
  let served = ''
  const client = treeClient(tree, leaves, { checkpoint: async () => served, key: async () => { throw new Error('not used') } })
  return {
    tree,
    client,
    append (e: LedgerEntry) { const b = entryBytes(e); leaves.push(b); return tree.append(b) },
    note (size: number, cosigners: NoteSigner[] = []): string {
      const note = signCheckpoint({ origin: ORIGIN, size, root: tree.root(size), extensions: [] }, logSigner)
      const { text } = splitNote(note)
      return note + cosigners.map(c => signLine(text, c)).join('')
    },
    serve (note: string) { served = note }
  }
}
