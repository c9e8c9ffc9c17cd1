/**
 * Anchors versions that a data dir recorded before it had a ledger (created by an older
 * blockfed), oldest first, in one transaction — so every version has an entry afterwards.
 */
import type { Database } from '../store/database.ts'
import type { Repository } from '../store/repository.ts'
import type { VersionLog } from './log.ts'

export function anchorExisting (database: Database, repo: Repository, log: VersionLog): number {
  const rows = repo.models().flatMap(m => repo.versions(m.name)).filter(r => r.ledger_index === null)
  rows.sort((a, b) => a.created_at.localeCompare(b.created_at) || a.model.localeCompare(b.model) || a.version - b.version)
  if (rows.length === 0) return 0
  database.transaction(() => {
    for (const r of rows) log.append({ model: r.model, version: r.version, manifestCid: r.manifest_cid, parent: r.parent, time: r.created_at })
  })
  return rows.length
}
