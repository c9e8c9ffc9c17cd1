/**
 * The coordinator's state in one SQLite file through Node's built-in `node:sqlite`: models,
 * versions (with their signed manifests), blocks, wrapped data keys and API tokens. Writes that
 * belong together go through `transaction`, so a failed ingest leaves no trace.
 */
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs'
import { DatabaseSync } from 'node:sqlite'
import { InvalidConfigError } from '../../shared/errors/errors.ts'

/** Each schema version's SQL, in order (exported for the migration tests). */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE models (
     name TEXT PRIMARY KEY,
     format TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE TABLE versions (
     model TEXT NOT NULL REFERENCES models(name),
     version INTEGER NOT NULL,
     parent INTEGER,
     manifest_cid TEXT NOT NULL,
     signed_manifest TEXT NOT NULL,
     blocks INTEGER NOT NULL,
     weight_bytes INTEGER NOT NULL,
     round TEXT,
     created_at TEXT NOT NULL,
     PRIMARY KEY (model, version)
   );
   CREATE TABLE blocks (
     cid TEXT PRIMARY KEY,
     plaintext_sha256 TEXT NOT NULL UNIQUE,
     key_id TEXT NOT NULL,
     sealed_length INTEGER NOT NULL,
     shard_size INTEGER NOT NULL,
     shard_cids TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE TABLE shards (
     cid TEXT PRIMARY KEY,
     block_cid TEXT NOT NULL REFERENCES blocks(cid),
     idx INTEGER NOT NULL
   );
   CREATE TABLE data_keys (
     key_id TEXT PRIMARY KEY,
     wrapped BLOB NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE TABLE tokens (
     token_hash TEXT PRIMARY KEY,
     role TEXT NOT NULL,
     label TEXT,
     created_at TEXT NOT NULL
   );`,
  // Rounds (DESIGN.md, "Round"): the state machine's state, the clients offered the round and
  // the uploads accepted, so a restarted coordinator can finish or cleanly fail a round.
  `CREATE TABLE rounds (
     id TEXT PRIMARY KEY,
     model TEXT NOT NULL REFERENCES models(name),
     base_version INTEGER NOT NULL,
     config TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('open', 'collecting', 'unmasking', 'published', 'failed')),
     reason TEXT,
     version INTEGER,
     metrics TEXT,
     secure_state TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE INDEX rounds_by_model ON rounds(model, created_at);
   CREATE TABLE round_clients (
     round_id TEXT NOT NULL REFERENCES rounds(id),
     client_id TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('offered', 'accepted', 'declined', 'uploaded', 'dropped')),
     updated_at TEXT NOT NULL,
     PRIMARY KEY (round_id, client_id)
   );
   CREATE INDEX round_clients_by_client ON round_clients(client_id, updated_at);
   CREATE TABLE round_uploads (
     round_id TEXT NOT NULL REFERENCES rounds(id),
     client_id TEXT NOT NULL,
     payload BLOB NOT NULL,
     received_at TEXT NOT NULL,
     PRIMARY KEY (round_id, client_id)
   );
   CREATE TABLE strategy_state (
     model TEXT NOT NULL REFERENCES models(name),
     layout TEXT NOT NULL,
     state BLOB NOT NULL,
     updated_at TEXT NOT NULL,
     PRIMARY KEY (model, layout)
   );`,
  // The version ledger (DESIGN.md, "Ledger entry"; RFC 9162 Merkle log). Leaves hold the exact
  // entry bytes; `ledger_nodes` holds every complete subtree's hash (level 0 = leaf hashes), so
  // roots and proofs cost O(log n) reads. Checkpoints are the log's signed notes; cosignatures
  // are witnesses' lines for one checkpoint. Channels point a release channel at a version.
  `CREATE TABLE ledger_meta (
     key TEXT PRIMARY KEY,
     value TEXT NOT NULL
   );
   CREATE TABLE ledger_leaves (
     idx INTEGER PRIMARY KEY,
     entry BLOB NOT NULL,
     model TEXT NOT NULL,
     version INTEGER NOT NULL,
     UNIQUE (model, version)
   );
   CREATE TABLE ledger_nodes (
     level INTEGER NOT NULL,
     idx INTEGER NOT NULL,
     hash BLOB NOT NULL,
     PRIMARY KEY (level, idx)
   ) WITHOUT ROWID;
   CREATE TABLE ledger_checkpoints (
     size INTEGER PRIMARY KEY,
     note TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE TABLE ledger_cosignatures (
     size INTEGER NOT NULL REFERENCES ledger_checkpoints(size),
     witness TEXT NOT NULL,
     line TEXT NOT NULL,
     created_at TEXT NOT NULL,
     PRIMARY KEY (size, witness)
   );
   CREATE TABLE ledger_witnesses (
     vkey TEXT PRIMARY KEY,
     size INTEGER NOT NULL
   );
   CREATE TABLE channels (
     model TEXT NOT NULL REFERENCES models(name),
     channel TEXT NOT NULL CHECK (channel IN ('stable', 'canary')),
     version INTEGER NOT NULL,
     rollout REAL NOT NULL CHECK (rollout > 0 AND rollout <= 1),
     updated_at TEXT NOT NULL,
     PRIMARY KEY (model, channel)
   );`,
  // Each upload's signature is kept beside it: the Paillier decryptor checks it (an upload opens
  // only in the round its client signed it for).
  'ALTER TABLE round_uploads ADD COLUMN signature TEXT;',
  // When a round's sum was taken: from then on its DP noise is spent, whether or not it publishes.
  `ALTER TABLE rounds ADD COLUMN summed_at TEXT;
   UPDATE rounds SET summed_at = updated_at WHERE state = 'published';`,
  // The version a server optimiser's state was last stepped to: an upload published after it
  // starts the state afresh (coordinator/rounds/strategy.ts, carriedState).
  'ALTER TABLE strategy_state ADD COLUMN version INTEGER;',
  // NaiveMix's pooled class means (shared/training/mean-mix.ts), gathered once per model and
  // input shape by a round's secure sum, then offered to later rounds.
  `CREATE TABLE class_means (
     model TEXT NOT NULL REFERENCES models(name),
     classes INTEGER NOT NULL,
     features INTEGER NOT NULL,
     means BLOB NOT NULL,
     shares BLOB NOT NULL,
     round_id TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     PRIMARY KEY (model, classes, features)
   );`,
  // A revoked token keeps its row (who had it, since when, revoked when) and opens nothing.
  'ALTER TABLE tokens ADD COLUMN revoked_at TEXT;',
  // A client offered a round that ended before it answered is 'unanswered', not left 'offered'
  // as if the round still waited on it. SQLite cannot change a CHECK constraint in place: the
  // table is rebuilt (https://sqlite.org/lang_altertable.html#otheralter; nothing references it).
  `CREATE TABLE round_clients_new (
     round_id TEXT NOT NULL REFERENCES rounds(id),
     client_id TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('offered', 'accepted', 'declined', 'uploaded', 'dropped', 'unanswered')),
     updated_at TEXT NOT NULL,
     PRIMARY KEY (round_id, client_id)
   );
   INSERT INTO round_clients_new (round_id, client_id, status, updated_at)
     SELECT c.round_id, c.client_id,
            CASE WHEN c.status = 'offered' AND r.state IN ('published', 'failed') THEN 'unanswered' ELSE c.status END,
            c.updated_at
     FROM round_clients c JOIN rounds r ON r.id = c.round_id;
   DROP TABLE round_clients;
   ALTER TABLE round_clients_new RENAME TO round_clients;
   CREATE INDEX round_clients_by_client ON round_clients(client_id, updated_at);`,
  // A token may expire (NULL: never); last_used_at is written behind, about a minute late
  // (coordinator/store/repository.ts, noteTokenUse).
  `ALTER TABLE tokens ADD COLUMN expires_at TEXT;
   ALTER TABLE tokens ADD COLUMN last_used_at TEXT;`,
  // How many times a model's channels were set or cleared: with its latest version, the sequence
  // number of its signed channels answer (shared/ledger/channels.ts), which only grows.
  `CREATE TABLE channel_moves (
     model TEXT PRIMARY KEY REFERENCES models(name),
     moves INTEGER NOT NULL CHECK (moves >= 0)
   );`,
  // The models a token is limited to, a JSON array of names and name-* prefixes (NULL: every
  // model; review 49b: one edge token opened every model's keys).
  'ALTER TABLE tokens ADD COLUMN models TEXT;',
  // The block access levels a token reads beyond its role's, a JSON array (NULL: none; review
  // 50a M2: levels could be set nowhere).
  'ALTER TABLE tokens ADD COLUMN levels TEXT;',
  // What runtimes decided about a version on their own data (review 49f: a version every runtime
  // rejected became the next round's base unseen): one verdict per client and version.
  `CREATE TABLE version_verdicts (
     model TEXT NOT NULL,
     version INTEGER NOT NULL,
     client_id TEXT NOT NULL,
     verdict TEXT NOT NULL CHECK (verdict IN ('rejected', 'rolled-back')),
     at TEXT NOT NULL,
     PRIMARY KEY (model, version, client_id),
     FOREIGN KEY (model, version) REFERENCES versions(model, version)
   );`
]

export interface Database {
  readonly db: DatabaseSync
  /** Runs `fn` in one transaction (BEGIN IMMEDIATE), or within the one already open. */
  transaction: <T>(fn: () => T) => T
  close: () => void
}

/**
 * The schema version of `db`, refused before anything is written to it: a newer one is of a
 * newer blockfed (opened as current, its data was misread), and a file at version 0 that holds
 * tables is another program's (the whole schema was added into it).
 */
function schemaVersion (db: DatabaseSync, path: string): number {
  let current: number
  let tables: number
  try {
    current = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version
    tables = (db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table'").get() as { n: number }).n
  } catch (err) {
    throw new InvalidConfigError(`${path}: not a blockfed coordinator database (${err instanceof Error ? err.message : String(err)})`, { cause: err })
  }
  if (current > MIGRATIONS.length) {
    throw new InvalidConfigError(`${path}: written by a newer blockfed (schema ${current}; this one knows up to ${MIGRATIONS.length}): run that version, or restore a backup made by this one`)
  }
  if (current === 0 && tables > 0) throw new InvalidConfigError(`${path}: an SQLite file of another program (${tables} tables, no blockfed schema): give the coordinator a data dir of its own`)
  return current
}

/**
 * The database holds round uploads (in secure mode `none`, a client's update in the clear) and
 * secure-aggregation state: readable by its owner alone (review 49b: 0644, as SQLite creates
 * files under the usual umask). Created 0600 before SQLite opens it, whose -wal and -shm files
 * take the database's mode; older ones are narrowed.
 */
function keepPrivate (path: string): void {
  if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600))
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      if (existsSync(file)) chmodSync(file, 0o600)
    } catch (err) {
      throw new InvalidConfigError(`${file}: cannot make it readable by its owner only (${err instanceof Error ? err.message : String(err)}); it holds round uploads`, { cause: err })
    }
  }
}

export function openDatabase (path: string): Database {
  keepPrivate(path)
  const db = new DatabaseSync(path)
  let current: number
  try {
    current = schemaVersion(db, path)
  } catch (err) {
    db.close()
    throw err
  }
  // synchronous = FULL: in WAL mode NORMAL may lose the last commits in a power cut, and a
  // version's ledger leaf is signed into a checkpoint (served, sent to witnesses) right after its
  // commit; a lost leaf would be re-appended differently at the same index: a fork.
  // Not secure_delete: overwriting every freed page made deleting a round's uploads 17-20 times
  // slower, on the event loop (1.6 s for 16 uploads of 16 MiB; review 49d). A deleted upload may
  // stay in free pages and the WAL until they are reused: the files are their owner's alone.
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;')
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.exec('BEGIN')
    try {
      db.exec(MIGRATIONS[v] as string)
      db.exec(`PRAGMA user_version = ${v + 1}`)
      db.exec('COMMIT')
    } catch (err) {
      db.exec('ROLLBACK')
      throw err
    }
  }
  return {
    db,
    transaction (fn) {
      // Inside another transaction (a round's outcome written in its publish's): part of that one.
      if (db.isTransaction) return fn()
      db.exec('BEGIN IMMEDIATE')
      try {
        const result = fn()
        db.exec('COMMIT')
        return result
      } catch (err) {
        db.exec('ROLLBACK')
        throw err
      }
    },
    close: () => db.close()
  }
}
