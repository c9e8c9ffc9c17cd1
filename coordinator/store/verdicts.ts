/**
 * Runtimes' verdicts on versions (what their own data said: rejected by validation, or rolled back
 * from), one per client and version, a later one replacing its client's earlier. Advisory: a
 * client id is a key its runtime made, so a token holder can add verdicts under ids of its own.
 * Bounded (review 51c: one edge token could grow the database without end): only a model's
 * VERDICT_VERSIONS latest versions take verdicts, and keep them, each at most MAX_VERDICTS.
 */
import type { Database } from './database.ts'

export type Verdict = 'rejected' | 'rolled-back'

/** Most verdicts one version keeps. */
export const MAX_VERDICTS = 20_000
/** How many of a model's latest versions take and keep verdicts (older ones are dropped). */
export const VERDICT_VERSIONS = 32

export interface VerdictStore {
  /**
   * Records a client's verdict on a version of `model` whose latest is `latest`: 'old' when the
   * version is not among the VERDICT_VERSIONS latest, 'full' when it holds MAX_VERDICTS from other
   * clients. Drops the verdicts of versions that fell out of the window.
   */
  record: (model: string, version: number, latest: number, clientId: string, verdict: Verdict) => 'recorded' | 'old' | 'full'
  /** Counts per version of `model` that has any, oldest first. */
  counts: (model: string) => Array<{ version: number, rejected: number, rolledBack: number }>
}

export function verdictStore ({ db, transaction }: Database): VerdictStore {
  const q = {
    has: db.prepare('SELECT 1 FROM version_verdicts WHERE model = ? AND version = ? AND client_id = ?'),
    count: db.prepare('SELECT count(*) AS n FROM version_verdicts WHERE model = ? AND version = ?'),
    upsert: db.prepare('INSERT INTO version_verdicts (model, version, client_id, verdict, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, version, client_id) DO UPDATE SET verdict = excluded.verdict, at = excluded.at WHERE verdict <> excluded.verdict'),
    prune: db.prepare('DELETE FROM version_verdicts WHERE model = ? AND version <= ?'),
    counts: db.prepare(`SELECT version, sum(verdict = 'rejected') AS rejected, sum(verdict = 'rolled-back') AS rolledBack
                        FROM version_verdicts WHERE model = ? GROUP BY version ORDER BY version`)
  }
  return {
    record: (model, version, latest, clientId, verdict) => transaction(() => {
      const oldest = latest - VERDICT_VERSIONS + 1
      q.prune.run(model, oldest - 1)
      if (version < oldest) return 'old'
      const known = q.has.get(model, version, clientId) !== undefined
      if (!known && (q.count.get(model, version) as { n: number }).n >= MAX_VERDICTS) return 'full'
      q.upsert.run(model, version, clientId, verdict, new Date().toISOString())
      return 'recorded'
    }),
    counts: model => (q.counts.all(model) as Array<{ version: number, rejected: number, rolledBack: number }>).map(r => ({ version: r.version, rejected: r.rejected, rolledBack: r.rolledBack }))
  }
}
