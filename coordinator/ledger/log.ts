/**
 * The version ledger's log (DESIGN.md, "Ledger entry"): an append-only RFC 9162 Merkle tree in
 * the coordinator's SQLite. Leaves keep the exact entry bytes; `ledger_nodes` keeps the hash of
 * every complete subtree, written once when the subtree completes and never changed, so a root
 * or a proof costs O(log n) point reads (shared/ledger/merkle.ts).
 *
 * `append` runs inside the caller's transaction — the one that records the version — so a
 * version and its leaf exist together or not at all; ingest calls `checkpoint` in that
 * transaction too, which signs the current tree as a C2SP tlog-checkpoint in a signed note.
 * Before signing it proves, from the stored hashes, that the new tree extends the last signed
 * checkpoint (whose root is read from the signed note, not from a column an edit could change),
 * so the log never signs two inconsistent checkpoints: a database whose history was rewritten or
 * truncated is refused.
 * After a kill -9 the next `checkpoint` signs what was committed; nothing can fork, because a
 * size always yields the same root.
 */
import type { Database } from '../store/database.ts'
import type { SigningKeyPair } from '../../shared/crypto/sign.ts'
import { entryBytes, type LedgerEntry } from '../../shared/ledger/entry.ts'
import { appendLeaf, consistencyProof, inclusionProof, leafHash, rootHash, verifyConsistency, type SubtreeReader } from '../../shared/ledger/merkle.ts'
import { openCheckpoint, signCheckpoint, type Checkpoint } from '../../shared/ledger/checkpoint.ts'
import { ed25519Signer, ed25519Verifier, parseSignatureLine, verifierKey } from '../../shared/ledger/note.ts'
import { equalBytes } from '../../shared/crypto/bytes.ts'
import { IntegrityError, InvalidConfigError, InvalidInputError, NotFoundError } from '../../shared/errors/errors.ts'

export interface SignedCheckpoint {
  checkpoint: Checkpoint
  /** The log-signed note. */
  note: string
  /** The note with the witnesses' cosignature lines appended (what `/ledger/checkpoint` serves). */
  cosigned: string
  /** Witness names that cosigned this checkpoint. */
  cosigners: string[]
}

export interface VersionLog {
  /** The log's name: the checkpoints' first line and the verifier key's name. */
  readonly origin: string
  /** Verifier key in the signed-note vkey format `origin+hexkeyid+base64(0x01‖pubkey)`. */
  readonly vkey: string
  size: () => number
  /** Appends one entry; call inside the transaction that records the version. Returns its index. */
  append: (entry: LedgerEntry) => number
  /** Signs a checkpoint of the current tree unless the latest one already covers it; returns the latest. */
  checkpoint: () => SignedCheckpoint
  /** The latest signed checkpoint, if any. */
  latest: () => SignedCheckpoint | undefined
  /**
   * True when the log holds entries no signed checkpoint covers yet: a version recorded whose
   * checkpoint failed to commit (review 46f), to be signed by `checkpoint()`.
   */
  unsigned: () => boolean
  /** A signed checkpoint of exactly `size` leaves, if the log signed one. */
  at: (size: number) => SignedCheckpoint | undefined
  entry: (index: number) => Uint8Array
  /** Leaf bytes of entries [from, to), in order. */
  entries: (from: number, to: number) => Uint8Array[]
  indexOf: (model: string, version: number) => number | undefined
  inclusionProof: (index: number, size: number) => Uint8Array[]
  consistencyProof: (from: number, to: number) => Uint8Array[]
  /** Stores a witness's verified cosignature line (exactly one line) for the checkpoint of `size`. */
  addCosignature: (size: number, witness: string, line: string) => void
  /** The size a witness last cosigned (0 when never), for its next add-checkpoint request. */
  witnessSize: (vkey: string) => number
  setWitnessSize: (vkey: string, size: number) => void
}

export interface VersionLogOptions {
  database: Database
  signing: SigningKeyPair
  /** Fixed when the log is created; later values must match. Default `blockfed.local/<keyId>`. */
  origin?: string
  keyId: string
}

/** Origins are one line of printable text (C2SP tlog-checkpoint), and name a note signer (no spaces or '+'). */
const ORIGIN = /^[\x21-\x2a\x2c-\x7e]{1,200}$/

export function versionLog (options: VersionLogOptions): VersionLog {
  const { db } = options.database
  const q = {
    meta: db.prepare('SELECT value FROM ledger_meta WHERE key = ?'),
    setMeta: db.prepare('INSERT INTO ledger_meta (key, value) VALUES (?, ?)'),
    last: db.prepare('SELECT MAX(idx) AS last FROM ledger_leaves'),
    insertLeaf: db.prepare('INSERT INTO ledger_leaves (idx, entry, model, version) VALUES (?, ?, ?, ?)'),
    node: db.prepare('SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?'),
    insertNode: db.prepare('INSERT INTO ledger_nodes (level, idx, hash) VALUES (?, ?, ?)'),
    leaf: db.prepare('SELECT entry FROM ledger_leaves WHERE idx = ?'),
    leaves: db.prepare('SELECT entry FROM ledger_leaves WHERE idx >= ? AND idx < ? ORDER BY idx'),
    indexOf: db.prepare('SELECT idx FROM ledger_leaves WHERE model = ? AND version = ?'),
    latest: db.prepare('SELECT size, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1'),
    at: db.prepare('SELECT size, note FROM ledger_checkpoints WHERE size = ?'),
    insertCheckpoint: db.prepare('INSERT INTO ledger_checkpoints (size, note, created_at) VALUES (?, ?, ?)'),
    cosignatures: db.prepare('SELECT witness, line FROM ledger_cosignatures WHERE size = ? ORDER BY witness'),
    addCosignature: db.prepare('INSERT OR REPLACE INTO ledger_cosignatures (size, witness, line, created_at) VALUES (?, ?, ?, ?)'),
    witnessSize: db.prepare('SELECT size FROM ledger_witnesses WHERE vkey = ?'),
    setWitnessSize: db.prepare('INSERT INTO ledger_witnesses (vkey, size) VALUES (?, ?) ON CONFLICT (vkey) DO UPDATE SET size = excluded.size')
  }

  const stored = (q.meta.get('origin') as { value: string } | undefined)?.value
  const origin = stored ?? options.origin ?? `blockfed.local/${options.keyId}`
  if (!ORIGIN.test(origin)) throw new InvalidConfigError(`ledger origin "${origin.slice(0, 60)}": expected 1–200 printable ASCII characters without spaces or "+"`)
  if (stored !== undefined && options.origin !== undefined && options.origin !== stored) {
    throw new InvalidConfigError(`ledger origin is "${stored}" since the log was created; it cannot become "${options.origin}"`)
  }
  if (stored === undefined) q.setMeta.run('origin', origin)
  const signer = ed25519Signer(origin, options.signing.secretKey)
  const verifier = ed25519Verifier(origin, options.signing.publicKey)

  const read: SubtreeReader = (level, index) => {
    const row = q.node.get(level, index) as { hash: Uint8Array } | undefined
    if (row === undefined) throw new IntegrityError(`ledger: the hash of subtree ${level}/${index} is missing from the database`)
    return row.hash
  }
  const size = (): number => {
    const last = (q.last.get() as { last: number | null }).last
    return last === null ? 0 : last + 1
  }
  const checkRange = (what: string, value: number, max: number): void => {
    if (!Number.isSafeInteger(value) || value < 0 || value > max) throw new InvalidInputError(`${what} ${value}: must be an integer from 0 to ${max}`)
  }

  // The last note this process signed or verified, so that a note read back unchanged is not
  // verified again (a signature check costs ≈ 2 ms); an edited row differs and is re-verified.
  let known: { note: string, checkpoint: Checkpoint } | undefined
  const opened = (note: string): Checkpoint => {
    if (known?.note !== note) known = { note, checkpoint: openCheckpoint(note, verifier).checkpoint }
    return known.checkpoint
  }

  const view = (row: { size: number, note: string }): SignedCheckpoint => {
    const checkpoint = opened(row.note)
    const cosignatures = q.cosignatures.all(row.size) as Array<{ witness: string, line: string }>
    return {
      checkpoint,
      note: row.note,
      cosigned: row.note + cosignatures.map(c => c.line.endsWith('\n') ? c.line : `${c.line}\n`).join(''),
      cosigners: cosignatures.map(c => c.witness)
    }
  }
  const latestRow = (): { size: number, note: string } | undefined => q.latest.get() as { size: number, note: string } | undefined

  return {
    origin,
    vkey: verifierKey(origin, options.signing.publicKey),
    size,
    append (entry) {
      const bytes = entryBytes(entry)
      const index = size()
      const nodes = appendLeaf(index, leafHash(bytes), read)
      q.insertLeaf.run(index, bytes, entry.model, entry.version)
      for (const n of nodes) q.insertNode.run(n.level, n.index, n.hash)
      return index
    },
    checkpoint () {
      return options.database.transaction(() => {
        const n = size()
        const last = latestRow()
        if (last !== undefined && last.size > n) {
          throw new IntegrityError(`ledger: the database holds ${n} entries but checkpoint ${last.size} was signed: history was truncated, refusing to sign`)
        }
        const root = rootHash(n, read)
        if (last !== undefined && last.size === n) {
          // Nothing new to sign, but the stored tree must still be the signed one: a history
          // rewritten at the same size would otherwise be served under the old signature.
          if (!equalBytes(opened(last.note).root, root)) {
            throw new IntegrityError(`ledger: the stored tree of ${n} entries has a different root from signed checkpoint ${n}: history was rewritten, refusing to sign`)
          }
          return view(last)
        }
        if (last !== undefined) {
          const previous = opened(last.note)
          try {
            verifyConsistency(previous.size, n, previous.root, root, consistencyProof(previous.size, n, read))
          } catch (err) {
            throw new IntegrityError(`ledger: the stored tree of ${n} entries does not extend signed checkpoint ${previous.size}: history was rewritten, refusing to sign`, { cause: err })
          }
        }
        const checkpoint: Checkpoint = { origin, size: n, root, extensions: [] }
        const note = signCheckpoint(checkpoint, signer)
        q.insertCheckpoint.run(n, note, new Date().toISOString())
        known = { note, checkpoint }
        return view({ size: n, note })
      })
    },
    latest () {
      const row = latestRow()
      return row === undefined ? undefined : view(row)
    },
    unsigned: () => size() > (latestRow()?.size ?? 0),
    at (n) {
      const row = q.at.get(n) as { size: number, note: string } | undefined
      return row === undefined ? undefined : view(row)
    },
    entry (index) {
      const row = q.leaf.get(index) as { entry: Uint8Array } | undefined
      if (row === undefined) throw new NotFoundError(`ledger has no entry ${index} (size ${size()})`)
      return row.entry
    },
    entries (from, to) {
      checkRange('to', to, size())
      checkRange('from', from, to)
      return (q.leaves.all(from, to) as Array<{ entry: Uint8Array }>).map(r => r.entry)
    },
    indexOf: (model, version) => (q.indexOf.get(model, version) as { idx: number } | undefined)?.idx,
    inclusionProof (index, n) {
      const current = size()
      checkRange('size', n, current)
      checkRange('index', index, Math.max(0, n - 1))
      if (index >= n) throw new InvalidInputError(`index ${index}: must be below size ${n}`)
      return inclusionProof(index, n, read)
    },
    consistencyProof (from, to) {
      checkRange('to', to, size())
      checkRange('from', from, to)
      return consistencyProof(from, to, read)
    },
    addCosignature (n, witness, line) {
      // One signature line by that witness, never a block of them: every stored line is served.
      if (parseSignatureLine(line).name !== witness) throw new InvalidInputError(`cosignature for ${witness}: the line is signed by another name`)
      q.addCosignature.run(n, witness, line, new Date().toISOString())
    },
    witnessSize: vkey => (q.witnessSize.get(vkey) as { size: number } | undefined)?.size ?? 0,
    setWitnessSize: (vkey, n) => { q.setWitnessSize.run(vkey, n) }
  }
}
