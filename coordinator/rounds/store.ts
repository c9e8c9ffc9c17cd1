/**
 * Rounds in the coordinator's SQLite file: the state machine's current state (every move goes
 * through `transition`, which checks it), the clients offered each round with their status, the
 * uploads accepted (kept until the round ends, then deleted: no individual update outlives its
 * round), each model's server-optimiser state, and its pooled class means for NaiveMix.
 */
import type { Database } from '../store/database.ts'
import type { RoundConfig } from '../../shared/rounds/config.ts'
import { checkTransition, type RoundState } from './state.ts'
import type { AcceptedUpload } from './secure/types.ts'
import type { ClassMeans } from '../../shared/training/mean-mix.ts'
import { bytesFloat32, float32Bytes } from '../../shared/crypto/bytes.ts'
import type { GivenUpload } from '../../shared/rounds/one-update.ts'

/** A server optimiser's state and the version its last step produced (null: kept before versions were recorded). */
export interface StoredStrategyState { state: Uint8Array, version: number | null }

export interface RoundRow {
  id: string
  model: string
  baseVersion: number
  config: RoundConfig
  state: RoundState
  reason: string | null
  version: number | null
  metrics: Record<string, number> | null
  secureState: unknown
  createdAt: string
  /** When the round last changed state (saving its secure state does not count). */
  updatedAt: string
}

/** `unanswered`: still `offered` when its round ended (set by `transition` to published or failed). */
export type ClientStatus = 'offered' | 'accepted' | 'declined' | 'uploaded' | 'dropped' | 'unanswered'

export interface RoundStore {
  /** Records a new round, `open`, with every client of `config.clients` offered: all of it or, on a failure, none. */
  create: (config: RoundConfig) => void
  get: (id: string) => RoundRow | undefined
  list: (model: string, limit: number) => RoundRow[]
  unfinished: () => RoundRow[]
  /** Moves a round to `to`; throws on an illegal move. `extra` sets the outcome fields. */
  transition: (id: string, to: RoundState, extra?: { reason?: string, version?: number, metrics?: Record<string, number> }) => void
  saveSecureState: (id: string, state: unknown) => void
  setClient: (roundId: string, clientId: string, status: ClientStatus) => void
  clients: (roundId: string) => Array<{ clientId: string, status: ClientStatus }>
  /** Last time the client was accepted into any round (ms since epoch), for the cooldown. */
  lastParticipation: (clientId: string) => number | undefined
  /**
   * The newest base version of `model` from which the client's upload was accepted, failed
   * rounds included, and whether one from that base went into a secure sum: what the client's
   * own record holds (shared/rounds/one-update.ts).
   */
  newestUpload: (clientId: string, model: string) => GivenUpload | undefined
  putUpload: (roundId: string, clientId: string, upload: AcceptedUpload) => void
  uploads: (roundId: string) => Map<string, AcceptedUpload>
  deleteUploads: (roundId: string) => void
  /** Records that the round's sum was taken (the coordinator has seen it). Idempotent. */
  markSummed: (id: string) => void
  /**
   * Noise multipliers of the model's DP rounds whose sum was taken, published or not (for the
   * privacy accountant: a round that fails after its noisy sum was seen has spent its budget).
   */
  dpNoiseMultipliers: (model: string) => number[]
  /** Server-optimiser state of a model for one trainable layout (tensor names), as bytes. */
  strategyState: (model: string, layout: string) => StoredStrategyState | undefined
  /** `version`: the version this state's step produced. */
  saveStrategyState: (model: string, layout: string, state: Uint8Array, version: number) => void
  /** Forgets a model's state for one layout (a residual fully applied). */
  deleteStrategyState: (model: string, layout: string) => void
  /** The model's pooled class means for this input shape, if a round has gathered them. */
  classMeans: (model: string, classes: number, features: number) => ClassMeans | undefined
  /** `roundId`: the round whose secure sum gave them. */
  saveClassMeans: (model: string, means: ClassMeans, roundId: string) => void
}

interface Raw { id: string, model: string, base_version: number, config: string, state: RoundState, reason: string | null, version: number | null, metrics: string | null, secure_state: string | null, created_at: string, updated_at: string }

function fromRaw (r: Raw): RoundRow {
  return {
    id: r.id,
    model: r.model,
    baseVersion: r.base_version,
    config: JSON.parse(r.config) as RoundConfig,
    state: r.state,
    reason: r.reason,
    version: r.version,
    metrics: r.metrics === null ? null : JSON.parse(r.metrics) as Record<string, number>,
    secureState: r.secure_state === null ? null : JSON.parse(r.secure_state) as unknown,
    createdAt: r.created_at,
    updatedAt: r.updated_at
  }
}

export function roundStore (database: Database): RoundStore {
  const { db } = database
  const now = (): string => new Date().toISOString()
  const q = {
    create: db.prepare('INSERT INTO rounds (id, model, base_version, config, state, created_at, updated_at) VALUES (?, ?, ?, ?, \'open\', ?, ?)'),
    get: db.prepare('SELECT * FROM rounds WHERE id = ?'),
    list: db.prepare('SELECT * FROM rounds WHERE model = ? ORDER BY created_at DESC, id DESC LIMIT ?'),
    unfinished: db.prepare('SELECT * FROM rounds WHERE state NOT IN (\'published\', \'failed\') ORDER BY created_at'),
    transition: db.prepare('UPDATE rounds SET state = ?, reason = COALESCE(?, reason), version = COALESCE(?, version), metrics = COALESCE(?, metrics), updated_at = ? WHERE id = ? AND state = ?'),
    // Not updated_at: that is when the round last changed state (a resumed round's training
    // deadline counts from its collecting start, rounds.ts `resume`).
    secure: db.prepare('UPDATE rounds SET secure_state = ? WHERE id = ?'),
    unanswered: db.prepare('UPDATE round_clients SET status = \'unanswered\', updated_at = ? WHERE round_id = ? AND status = \'offered\''),
    setClient: db.prepare('INSERT INTO round_clients (round_id, client_id, status, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (round_id, client_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at'),
    clients: db.prepare('SELECT client_id, status FROM round_clients WHERE round_id = ? ORDER BY client_id'),
    last: db.prepare('SELECT MAX(updated_at) AS at FROM round_clients WHERE client_id = ? AND status IN (\'accepted\', \'uploaded\', \'dropped\')'),
    newestUpload: db.prepare('SELECT r.base_version AS base, MAX(json_extract(r.config, \'$.secure.mode\') <> \'none\') AS secure FROM round_clients c JOIN rounds r ON r.id = c.round_id WHERE c.client_id = ? AND r.model = ? AND c.status = \'uploaded\' GROUP BY r.base_version ORDER BY r.base_version DESC LIMIT 1'),
    putUpload: db.prepare('INSERT INTO round_uploads (round_id, client_id, payload, signature, received_at) VALUES (?, ?, ?, ?, ?)'),
    uploads: db.prepare('SELECT client_id, payload, signature FROM round_uploads WHERE round_id = ? ORDER BY client_id'),
    deleteUploads: db.prepare('DELETE FROM round_uploads WHERE round_id = ?'),
    dp: db.prepare('SELECT json_extract(config, \'$.dp.noiseMultiplier\') AS z FROM rounds WHERE model = ? AND summed_at IS NOT NULL AND json_extract(config, \'$.dp\') IS NOT NULL'),
    summed: db.prepare('UPDATE rounds SET summed_at = COALESCE(summed_at, ?) WHERE id = ?'),
    strategy: db.prepare('SELECT state, version FROM strategy_state WHERE model = ? AND layout = ?'),
    deleteStrategy: db.prepare('DELETE FROM strategy_state WHERE model = ? AND layout = ?'),
    saveStrategy: db.prepare('INSERT INTO strategy_state (model, layout, state, version, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, layout) DO UPDATE SET state = excluded.state, version = excluded.version, updated_at = excluded.updated_at'),
    classMeans: db.prepare('SELECT means, shares FROM class_means WHERE model = ? AND classes = ? AND features = ?'),
    saveClassMeans: db.prepare('INSERT INTO class_means (model, classes, features, means, shares, round_id, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model, classes, features) DO UPDATE SET means = excluded.means, shares = excluded.shares, round_id = excluded.round_id, updated_at = excluded.updated_at')
  }
  const get = (id: string): RoundRow | undefined => {
    const raw = q.get.get(id) as Raw | undefined
    return raw === undefined ? undefined : fromRaw(raw)
  }
  return {
    create (config) {
      const t = now()
      // One transaction: a round row without its offers would be recovered at the next start
      // as a round no client was offered, and fail there.
      database.transaction(() => {
        q.create.run(config.id, config.model, config.baseVersion, JSON.stringify(config), t, t)
        for (const id of config.clients) q.setClient.run(config.id, id, 'offered', t)
      })
    },
    get,
    list: (model, limit) => (q.list.all(model, limit) as unknown as Raw[]).map(fromRaw),
    unfinished: () => (q.unfinished.all() as unknown as Raw[]).map(fromRaw),
    transition (id, to, extra = {}) {
      const row = get(id)
      if (row === undefined) throw new Error(`round ${id} does not exist`)
      checkTransition(row.state, to)
      const t = now()
      database.transaction(() => {
        const changed = q.transition.run(to, extra.reason ?? null, extra.version ?? null, extra.metrics === undefined ? null : JSON.stringify(extra.metrics), t, id, row.state)
        if (changed.changes !== 1) throw new Error(`round ${id} moved while moving it to ${to}`)
        if (to === 'published' || to === 'failed') {
          q.unanswered.run(t, id)
          // Its shares and revealed seeds serve no later step (review 49b).
          q.secure.run(null, id)
        }
      })
    },
    saveSecureState: (id, state) => { q.secure.run(JSON.stringify(state), id) },
    setClient: (roundId, clientId, status) => { q.setClient.run(roundId, clientId, status, now()) },
    clients: roundId => (q.clients.all(roundId) as Array<{ client_id: string, status: ClientStatus }>).map(r => ({ clientId: r.client_id, status: r.status })),
    lastParticipation (clientId) {
      const at = (q.last.get(clientId) as { at: string | null }).at
      return at === null ? undefined : Date.parse(at)
    },
    newestUpload (clientId, model) {
      const row = q.newestUpload.get(clientId, model) as { base: number, secure: number } | undefined
      return row === undefined ? undefined : { base: row.base, secure: row.secure === 1 }
    },
    putUpload: (roundId, clientId, upload) => { q.putUpload.run(roundId, clientId, upload.payload, upload.signature, now()) },
    // A row from before signatures were kept has none: a Paillier decryptor refuses it, other modes do not need it.
    uploads: roundId => new Map((q.uploads.all(roundId) as Array<{ client_id: string, payload: Uint8Array, signature: string | null }>).map(r => [r.client_id, { payload: r.payload, signature: r.signature ?? '' }])),
    deleteUploads: roundId => { q.deleteUploads.run(roundId) },
    markSummed: id => { q.summed.run(now(), id) },
    dpNoiseMultipliers: model => (q.dp.all(model) as Array<{ z: number }>).map(r => r.z),
    strategyState: (model, layout) => q.strategy.get(model, layout) as StoredStrategyState | undefined,
    saveStrategyState: (model, layout, state, version) => { q.saveStrategy.run(model, layout, state, version, now()) },
    deleteStrategyState: (model, layout) => { q.deleteStrategy.run(model, layout) },
    classMeans (model, classes, features) {
      const row = q.classMeans.get(model, classes, features) as { means: Uint8Array, shares: Uint8Array } | undefined
      return row === undefined ? undefined : { classes, features, means: bytesFloat32(row.means), shares: bytesFloat32(row.shares) }
    },
    saveClassMeans: (model, m, roundId) => { q.saveClassMeans.run(model, m.classes, m.features, float32Bytes(m.means), float32Bytes(m.shares), roundId, now()) }
  }
}
