/**
 * Rounds driven through the real round manager's recovery (coordinator/rounds/rounds.ts) over a
 * real SQLite store, as a killed coordinator leaves them. No base model is ever there, so a round
 * that passes the checks on its sum fails right after, with PASSED as its reason.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { roundManager } from '../../coordinator/rounds/rounds.ts'
import { plainServer } from '../../coordinator/rounds/secure/none.ts'
import { roundStore, type RoundStore } from '../../coordinator/rounds/store.ts'
import { openDatabase, type Database } from '../../coordinator/store/database.ts'

export const PASSED = 'the norm check passed: the base model was asked for'

/** Fresh coordinator databases holding model `m`, under one temporary folder; `close` removes them. */
export function recoveryStores (prefix: string): { fresh: () => Promise<RoundStore>, close: () => Promise<void> } {
  const databases: Database[] = []
  let root: string | undefined
  return {
    async fresh () {
      root ??= await mkdtemp(join(tmpdir(), prefix))
      const database = openDatabase(join(root, `${databases.length}.sqlite`))
      databases.push(database)
      database.db.prepare('INSERT INTO models (name, format, created_at) VALUES (\'m\', \'tfjs-layers\', ?)').run(new Date().toISOString())
      return roundStore(database)
    },
    async close () {
      for (const d of databases) d.close()
      if (root !== undefined) await rm(root, { recursive: true, force: true })
    }
  }
}

/** Recovers every unfinished round of `store` (mode none). */
export async function recoverWithoutBase (store: RoundStore): Promise<void> {
  const manager = roundManager({
    store,
    repo: {} as never,
    hub: () => ({ get: () => undefined }) as never,
    publish: async () => { throw new Error('unreached') },
    readBase: async () => { throw new Error(PASSED) },
    secureServer: async c => plainServer(c)
  })
  await manager.recover()
}

/** How round `id` of `store` ended. */
export function outcome (store: RoundStore, id: string): { state: string, reason: string | null } {
  const row = store.get(id)
  return { state: row?.state ?? 'missing', reason: row?.reason ?? null }
}
