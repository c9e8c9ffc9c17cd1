/**
 * Anchors versions that a data dir recorded before it had a ledger (created by an older
 * blockfed), oldest first, in one transaction — so every version has an entry afterwards.
 * Each model's versions go in version order whatever their times say (a clock set back between
 * two of them), since runtimes refuse entries off a model's chain (shared/ledger/monitor.ts).
 */
import type { Database } from '../store/database.ts'
import type { Repository } from '../store/repository.ts'
import type { VersionLog } from './log.ts'

export function anchorExisting (database: Database, repo: Repository, log: VersionLog): number {
  const byModel = repo.models()
    .map(m => repo.versions(m.name).filter(r => r.ledger_index === null).sort((a, b) => b.version - a.version))
    .filter(rows => rows.length > 0)
  const count = byModel.reduce((n, rows) => n + rows.length, 0)
  if (count === 0) return 0
  database.transaction(() => {
    // A merge of the models' queues by the time of each one's next version. Each queue is newest
    // first, so its next is its last and taking it is a pop (Array.shift made the merge quadratic).
    for (;;) {
      let next: typeof byModel[number] | undefined
      for (const rows of byModel) {
        const [r, best] = [rows.at(-1), next?.at(-1)]
        if (r !== undefined && (best === undefined || r.created_at.localeCompare(best.created_at) < 0 || (r.created_at === best.created_at && r.model < best.model))) next = rows
      }
      const r = next?.pop()
      if (r === undefined) break
      log.append({ model: r.model, version: r.version, manifestCid: r.manifest_cid, parent: r.parent, time: r.created_at })
    }
  })
  return count
}
