/**
 * Runtimes' verdicts on versions (what their own data said: rejected by validation, or rolled back
 * from), one per client and version, a later one replacing its client's earlier. Advisory: a
 * client id is a key its runtime made, so a token holder can add verdicts under ids of its own;
 * each version takes at most MAX_VERDICTS.
 */
import type { Database } from './database.ts'

export type Verdict = 'rejected' | 'rolled-back'

/** Most verdicts one version keeps: a token cannot fill the database through it. */
export const MAX_VERDICTS = 100_000

export interface VerdictStore {
  /** Records a client's verdict; false when the version holds MAX_VERDICTS from other clients. */
  record: (model: string, version: number, clientId: string, verdict: Verdict) => boolean
  /** Counts per version of `model` that has any, oldest first. */
  counts: (model: string) => Array<{ version: number, rejected: number, rolledBack: number }>
}

export function verdictStore ({ db, transaction }: Database): VerdictStore {
  const q = {
    has: db.prepare('SELECT 1 FROM version_verdicts WHERE model = ? AND version = ? AND client_id = ?'),
    count: db.prepare('SELECT count(*) AS n FROM version_verdicts WHERE model = ? AND version = ?'),
    upsert: db.prepare('INSERT INTO version_verdicts (model, version, client_id, verdict, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, version, client_id) DO UPDATE SET verdict = excluded.verdict, at = excluded.at WHERE verdict <> excluded.verdict'),
    counts: db.prepare(`SELECT version, sum(verdict = 'rejected') AS rejected, sum(verdict = 'rolled-back') AS rolledBack
                        FROM version_verdicts WHERE model = ? GROUP BY version ORDER BY version`)
  }
  return {
    record: (model, version, clientId, verdict) => transaction(() => {
      const known = q.has.get(model, version, clientId) !== undefined
      if (!known && (q.count.get(model, version) as { n: number }).n >= MAX_VERDICTS) return false
      q.upsert.run(model, version, clientId, verdict, new Date().toISOString())
      return true
    }),
    counts: model => (q.counts.all(model) as Array<{ version: number, rejected: number, rolledBack: number }>).map(r => ({ version: r.version, rejected: r.rejected, rolledBack: r.rolledBack }))
  }
}
