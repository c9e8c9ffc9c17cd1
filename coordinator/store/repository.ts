/**
 * Queries over the coordinator's database: one function per question, typed rows out.
 */
import type { Database } from './database.ts'
import type { StoredBlock } from '../../shared/blocks/seal-blocks.ts'
import type { SignedManifest } from '../../shared/manifest/schema.ts'

export interface VersionRow {
  model: string
  version: number
  parent: number | null
  manifest_cid: string
  signed_manifest: string
  blocks: number
  weight_bytes: number
  round: string | null
  created_at: string
  /** The version's entry in the version ledger. */
  ledger_index: number | null
}

/** The signed manifest a version row stores (written by this coordinator, so not re-validated). */
export function signedManifestOf (row: VersionRow): SignedManifest {
  return JSON.parse(row.signed_manifest) as SignedManifest
}

export interface Repository {
  findBlock: (plaintextSha256: string) => StoredBlock | undefined
  /** True when a committed row names `cid` as a sealed block or one of its shards. */
  isStored: (cid: string) => boolean
  insertBlock: (row: { cid: string, plaintextSha256: string, keyId: string, sealedLength: number, shardSize: number, shardCids: string[] }) => void
  insertDataKey: (keyId: string, wrapped: Uint8Array) => void
  dataKeys: (keyIds: string[]) => Map<string, Uint8Array>
  /** The oldest data key stored, if any: what the master key is checked against at start. */
  firstDataKey: () => { keyId: string, wrapped: Uint8Array } | undefined
  ensureModel: (name: string, format: string) => void
  latest: (model: string) => VersionRow | undefined
  version: (model: string, version: number) => VersionRow | undefined
  insertVersion: (signed: SignedManifest, weightBytes: number) => void
  models: () => Array<{ name: string, format: string, created_at: string, latest: number, versions: number }>
  versions: (model: string) => VersionRow[]
  /** Whether a version in (from, to] was uploaded (not published by a round). */
  uploadedBetween: (model: string, from: number, to: number) => boolean
  /** The oldest stored block's shard layout: which erasure parameters the data dir was made with. */
  firstBlock: () => { cid: string, sealedLength: number, shards: { size: number, cids: string[] } } | undefined
  insertToken: (tokenHash: string, role: string, label: string | null, expiresAt?: string | null, models?: string[] | null, levels?: string[]) => void
  /**
   * The token of this hash, revoked or expired or not. `models`: what it is limited to (null:
   * every model); `levels`: the access levels it reads beyond its role's.
   */
  token: (tokenHash: string) => { role: string, revokedAt: string | null, expiresAt: string | null, models: string[] | null, levels: string[] } | undefined
  /**
   * Notes that the token of this hash was used now. Written behind, by flushTokenUses (the
   * coordinator calls it every TOKEN_USE_FLUSH_MS, before listing tokens and at stop): a write per
   * request at synchronous = FULL would cost an fsync each.
   */
  noteTokenUse: (tokenHash: string) => void
  flushTokenUses: () => void
  /** Every token, oldest first, as its hash (never the token itself). */
  tokens: () => TokenRow[]
  /** The tokens, revoked or not, whose hash starts with `hashPrefix`. */
  tokensByPrefix: (hashPrefix: string) => TokenRow[]
  /** Marks the token of this hash revoked now; returns when. */
  revokeToken: (tokenHash: string) => string
  channels: (model: string) => Array<{ channel: 'stable' | 'canary', version: number, rollout: number }>
  /** How many times the model's channels were set or cleared (each set and clear counts one). */
  channelMoves: (model: string) => number
  setChannel: (model: string, channel: 'stable' | 'canary', version: number, rollout: number) => void
  /** Removes a channel's pointer (stable then follows the latest; no canary); false when none was set. */
  clearChannel: (model: string, channel: 'stable' | 'canary') => boolean
}

export interface TokenRow {
  hash: string
  role: string
  label: string | null
  createdAt: string
  revokedAt: string | null
  /** When it stops opening anything; null: never. */
  expiresAt: string | null
  /** The last use written (flushTokenUses); null: never used, or not flushed yet. */
  lastUsedAt: string | null
  /** The models it is limited to, names and `name-*` prefixes; null: every model. */
  models: string[] | null
  /** Access levels it reads beyond its role's. */
  levels: string[]
}

const TOKEN_ROWS = 'SELECT token_hash AS hash, role, label, created_at AS createdAt, revoked_at AS revokedAt, expires_at AS expiresAt, last_used_at AS lastUsedAt, models, levels FROM tokens'

/** A stored token's models column: null for every model. */
function modelsOf (column: string | null): string[] | null {
  return column === null ? null : JSON.parse(column) as string[]
}

type StoredToken<T> = Omit<T, 'models' | 'levels'> & { models: string | null, levels: string | null }

/** A token row as read, its JSON columns parsed. */
function parsedToken<T> (row: StoredToken<T>): Omit<T, 'models' | 'levels'> & { models: string[] | null, levels: string[] } {
  return { ...row, models: modelsOf(row.models), levels: row.levels === null ? [] : JSON.parse(row.levels) as string[] }
}

const VERSION_ROWS = 'SELECT v.*, l.idx AS ledger_index FROM versions v LEFT JOIN ledger_leaves l ON l.model = v.model AND l.version = v.version'

export function repository (database: Database): Repository {
  const { db } = database
  const now = (): string => new Date().toISOString()
  /** Token hash → its latest use not yet written. */
  const uses = new Map<string, string>()
  const q = {
    firstBlock: db.prepare('SELECT cid, sealed_length, shard_size, shard_cids FROM blocks ORDER BY rowid LIMIT 1'),
    findBlock: db.prepare('SELECT cid, key_id, sealed_length, shard_size, shard_cids FROM blocks WHERE plaintext_sha256 = ?'),
    isStored: db.prepare('SELECT 1 AS hit FROM blocks WHERE cid = ? UNION ALL SELECT 1 FROM shards WHERE cid = ? LIMIT 1'),
    insertBlock: db.prepare('INSERT INTO blocks (cid, plaintext_sha256, key_id, sealed_length, shard_size, shard_cids, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    insertShard: db.prepare('INSERT OR IGNORE INTO shards (cid, block_cid, idx) VALUES (?, ?, ?)'),
    insertKey: db.prepare('INSERT INTO data_keys (key_id, wrapped, created_at) VALUES (?, ?, ?)'),
    key: db.prepare('SELECT wrapped FROM data_keys WHERE key_id = ?'),
    firstKey: db.prepare('SELECT key_id, wrapped FROM data_keys ORDER BY rowid LIMIT 1'),
    // A name keeps its format (ingest.ts refuses another).
    ensureModel: db.prepare('INSERT INTO models (name, format, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING'),
    latest: db.prepare(`${VERSION_ROWS} WHERE v.model = ? ORDER BY v.version DESC LIMIT 1`),
    version: db.prepare(`${VERSION_ROWS} WHERE v.model = ? AND v.version = ?`),
    insertVersion: db.prepare('INSERT INTO versions (model, version, parent, manifest_cid, signed_manifest, blocks, weight_bytes, round, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)'),
    models: db.prepare('SELECT m.name, m.format, m.created_at, MAX(v.version) AS latest, COUNT(v.version) AS versions FROM models m JOIN versions v ON v.model = m.name GROUP BY m.name ORDER BY m.name'),
    versions: db.prepare(`${VERSION_ROWS} WHERE v.model = ? ORDER BY v.version`),
    uploadedBetween: db.prepare('SELECT 1 FROM versions WHERE model = ? AND version > ? AND version <= ? AND round IS NULL LIMIT 1'),
    insertToken: db.prepare('INSERT INTO tokens (token_hash, role, label, created_at, expires_at, models, levels) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    token: db.prepare('SELECT role, revoked_at AS revokedAt, expires_at AS expiresAt, models, levels FROM tokens WHERE token_hash = ?'),
    touchToken: db.prepare('UPDATE tokens SET last_used_at = ? WHERE token_hash = ?'),
    tokens: db.prepare(`${TOKEN_ROWS} ORDER BY rowid`),
    tokensByPrefix: db.prepare(`${TOKEN_ROWS} WHERE substr(token_hash, 1, ?) = ? ORDER BY rowid`),
    revokeToken: db.prepare('UPDATE tokens SET revoked_at = ? WHERE token_hash = ?'),
    channels: db.prepare('SELECT channel, version, rollout FROM channels WHERE model = ? ORDER BY channel'),
    clearChannel: db.prepare('DELETE FROM channels WHERE model = ? AND channel = ?'),
    channelMoves: db.prepare('SELECT moves FROM channel_moves WHERE model = ?'),
    countMove: db.prepare('INSERT INTO channel_moves (model, moves) VALUES (?, 1) ON CONFLICT (model) DO UPDATE SET moves = moves + 1'),
    setChannel: db.prepare('INSERT INTO channels (model, channel, version, rollout, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, channel) DO UPDATE SET version = excluded.version, rollout = excluded.rollout, updated_at = excluded.updated_at')
  }
  return {
    isStored (cid) {
      return q.isStored.get(cid, cid) !== undefined
    },
    firstBlock () {
      const row = q.firstBlock.get() as { cid: string, sealed_length: number, shard_size: number, shard_cids: string } | undefined
      return row === undefined ? undefined : { cid: row.cid, sealedLength: row.sealed_length, shards: { size: row.shard_size, cids: JSON.parse(row.shard_cids) as string[] } }
    },
    findBlock (plaintextSha256) {
      const row = q.findBlock.get(plaintextSha256) as { cid: string, key_id: string, sealed_length: number, shard_size: number, shard_cids: string } | undefined
      if (row === undefined) return undefined
      return { cid: row.cid, keyId: row.key_id, sealedLength: row.sealed_length, shards: { size: row.shard_size, cids: JSON.parse(row.shard_cids) as string[] } }
    },
    insertBlock (row) {
      q.insertBlock.run(row.cid, row.plaintextSha256, row.keyId, row.sealedLength, row.shardSize, JSON.stringify(row.shardCids), now())
      row.shardCids.forEach((cid, i) => q.insertShard.run(cid, row.cid, i))
    },
    insertDataKey: (keyId, wrapped) => { q.insertKey.run(keyId, wrapped, now()) },
    firstDataKey: () => {
      const row = q.firstKey.get() as { key_id: string, wrapped: Uint8Array } | undefined
      return row === undefined ? undefined : { keyId: row.key_id, wrapped: row.wrapped }
    },
    dataKeys (keyIds) {
      const out = new Map<string, Uint8Array>()
      for (const id of new Set(keyIds)) {
        const row = q.key.get(id) as { wrapped: Uint8Array } | undefined
        if (row !== undefined) out.set(id, row.wrapped)
      }
      return out
    },
    ensureModel: (name, format) => { q.ensureModel.run(name, format, now()) },
    latest: model => q.latest.get(model) as VersionRow | undefined,
    version: (model, version) => q.version.get(model, version) as VersionRow | undefined,
    insertVersion (signed, weightBytes) {
      const m = signed.manifest
      q.insertVersion.run(m.model, m.version, m.parent, signed.cid, JSON.stringify(signed), m.blocks.length, weightBytes, m.round, m.createdAt)
    },
    models: () => q.models.all() as Array<{ name: string, format: string, created_at: string, latest: number, versions: number }>,
    versions: model => q.versions.all(model) as unknown as VersionRow[],
    uploadedBetween: (model, from, to) => q.uploadedBetween.get(model, from, to) !== undefined,
    insertToken: (hash, role, label, expiresAt = null, models = null, levels = []) => { q.insertToken.run(hash, role, label, now(), expiresAt, models === null ? null : JSON.stringify(models), levels.length === 0 ? null : JSON.stringify(levels)) },
    token (hash) {
      const row = q.token.get(hash) as StoredToken<{ role: string, revokedAt: string | null, expiresAt: string | null }> | undefined
      return row === undefined ? undefined : parsedToken(row)
    },
    noteTokenUse: hash => { uses.set(hash, now()) },
    flushTokenUses () {
      if (uses.size === 0) return
      const batch = [...uses]
      uses.clear()
      try {
        database.transaction(() => { for (const [hash, at] of batch) q.touchToken.run(at, hash) })
      } catch (err) {
        // Kept for the next flush (a newer use noted meanwhile wins).
        for (const [hash, at] of batch) if (!uses.has(hash)) uses.set(hash, at)
        throw err
      }
    },
    tokens: () => (q.tokens.all() as unknown as Array<StoredToken<TokenRow>>).map(parsedToken),
    tokensByPrefix: prefix => (q.tokensByPrefix.all(prefix.length, prefix) as unknown as Array<StoredToken<TokenRow>>).map(parsedToken),
    revokeToken (hash) {
      const at = now()
      q.revokeToken.run(at, hash)
      return at
    },
    channels: model => q.channels.all(model) as Array<{ channel: 'stable' | 'canary', version: number, rollout: number }>,
    channelMoves: model => (q.channelMoves.get(model) as { moves: number } | undefined)?.moves ?? 0,
    setChannel (model, channel, version, rollout) {
      database.transaction(() => {
        q.setChannel.run(model, channel, version, rollout, now())
        q.countMove.run(model)
      })
    },
    clearChannel (model, channel) {
      return database.transaction(() => {
        const cleared = Number(q.clearChannel.run(model, channel).changes) > 0
        if (cleared) q.countMove.run(model)
        return cleared
      })
    }
  }
}
