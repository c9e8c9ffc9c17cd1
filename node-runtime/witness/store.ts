/**
 * The witness's memory: for each log origin, the latest checkpoint it cosigned, in one SQLite
 * file (`node:sqlite`). tlog-witness requires the check of the old size and the write of the new
 * checkpoint to be atomic; `replace` is a compare-and-swap on (size, root) in one statement, so
 * it holds across processes sharing the file too. synchronous=FULL: a commit is on disk before
 * the witness answers with a cosignature.
 */
import { DatabaseSync } from 'node:sqlite'

export interface StoredCheckpoint {
  size: number
  root: Uint8Array
  /** The checkpoint text with the log signature(s) the witness verified and its cosignature. */
  note: string
}

export interface WitnessStore {
  get: (origin: string) => StoredCheckpoint | undefined
  /**
   * Stores `next` for `origin` only if the stored checkpoint is still `expected` (undefined:
   * none stored yet). False when another request got there first.
   */
  replace: (origin: string, expected: StoredCheckpoint | undefined, next: StoredCheckpoint) => boolean
  /** The public key (hex) whose cosignatures this memory records; undefined before bindKey. */
  boundKey: () => string | undefined
  /** Records the key this memory belongs to (once; a later call with another key is refused by the caller). */
  bindKey: (publicKeyHex: string) => void
  close: () => void
}

export function openWitnessStore (path: string): WitnessStore {
  const db = new DatabaseSync(path)
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;
    CREATE TABLE IF NOT EXISTS checkpoints (
      origin TEXT PRIMARY KEY,
      size INTEGER NOT NULL CHECK (size >= 0),
      root BLOB NOT NULL CHECK (length(root) = 32),
      note TEXT NOT NULL,
      updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE IF NOT EXISTS meta (
      key TEXT PRIMARY KEY,
      value TEXT NOT NULL
    ) STRICT;`)
  const select = db.prepare('SELECT size, root, note FROM checkpoints WHERE origin = ?')
  const insert = db.prepare('INSERT INTO checkpoints (origin, size, root, note, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO NOTHING')
  const update = db.prepare('UPDATE checkpoints SET size = ?, root = ?, note = ?, updated_at = ? WHERE origin = ? AND size = ? AND root = ?')
  const selectMeta = db.prepare("SELECT value FROM meta WHERE key = 'public_key'")
  const insertMeta = db.prepare("INSERT INTO meta (key, value) VALUES ('public_key', ?) ON CONFLICT (key) DO NOTHING")
  let open = true

  return {
    get (origin) {
      const row = select.get(origin) as { size: number, root: Uint8Array, note: string } | undefined
      if (row === undefined) return undefined
      return { size: row.size, root: new Uint8Array(row.root), note: row.note }
    },
    replace (origin, expected, next) {
      const now = Date.now()
      const { changes } = expected === undefined
        ? insert.run(origin, next.size, next.root, next.note, now)
        : update.run(next.size, next.root, next.note, now, origin, expected.size, expected.root)
      return Number(changes) === 1
    },
    boundKey: () => (selectMeta.get() as { value: string } | undefined)?.value,
    bindKey: publicKeyHex => { insertMeta.run(publicKeyHex) },
    close () {
      if (!open) return
      open = false
      db.close()
    }
  }
}
