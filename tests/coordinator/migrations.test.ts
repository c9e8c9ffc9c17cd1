/**
 * Schema migrations on a database written by an older blockfed (coordinator/store/database.ts):
 * the ninth migration (schema 8 → 9), which rebuilt round_clients to admit 'unanswered', keeps every
 * row, turns the never-answered clients of finished rounds into 'unanswered', and leaves those of a
 * round still running 'offered'; the tenth gives every token an expiry (none) and a last use (none yet).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { MIGRATIONS, openDatabase } from '../../coordinator/store/database.ts'
import { repository } from '../../coordinator/store/repository.ts'

let root: string
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'blockfed-migrations-')) })
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

/** A database file at schema version `version`, as that blockfed left it. */
function databaseAt (path: string, version: number): DatabaseSync {
  const db = new DatabaseSync(path)
  for (const sql of MIGRATIONS.slice(0, version)) db.exec(sql)
  db.exec(`PRAGMA user_version = ${version}`)
  return db
}

describe('migrations', () => {
  it('rebuilds round_clients: every row kept, finished rounds\' "offered" clients become "unanswered"', () => {
    const path = join(root, 'rounds.sqlite')
    const old = databaseAt(path, 8)
    const t = '2026-01-01T00:00:00.000Z'
    old.prepare('INSERT INTO models (name, format, created_at) VALUES (?, ?, ?)').run('m', 'tfjs-layers', t)
    const round = old.prepare('INSERT INTO rounds (id, model, base_version, config, state, created_at, updated_at) VALUES (?, \'m\', 1, \'{}\', ?, ?, ?)')
    const client = old.prepare('INSERT INTO round_clients (round_id, client_id, status, updated_at) VALUES (?, ?, ?, ?)')
    for (const [id, state] of [['r_published', 'published'], ['r_failed', 'failed'], ['r_running', 'collecting']] as const) {
      round.run(id, state, t, t)
      for (const status of ['offered', 'accepted', 'declined', 'uploaded', 'dropped']) client.run(id, `${status}-client`, status, t)
    }
    expect(() => client.run('r_failed', 'x', 'unanswered', t)).toThrow(/CHECK constraint failed/)
    old.close()

    const database = openDatabase(path)
    try {
      const { db } = database
      expect((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version).toBe(MIGRATIONS.length)
      const rows = db.prepare('SELECT round_id, client_id, status, updated_at FROM round_clients ORDER BY round_id, client_id').all() as Array<{ round_id: string, client_id: string, status: string, updated_at: string }>
      expect(rows).toHaveLength(15)
      const status = (roundId: string, clientId: string): string | undefined => rows.find(r => r.round_id === roundId && r.client_id === clientId)?.status
      expect(status('r_published', 'offered-client')).toBe('unanswered')
      expect(status('r_failed', 'offered-client')).toBe('unanswered')
      expect(status('r_running', 'offered-client')).toBe('offered')
      for (const id of ['r_published', 'r_failed', 'r_running']) {
        for (const s of ['accepted', 'declined', 'uploaded', 'dropped']) expect(status(id, `${s}-client`)).toBe(s)
      }
      expect(new Set(rows.map(r => r.updated_at))).toEqual(new Set([t]))
      // The constraint admits the new status and still refuses others; the index is back.
      db.prepare('INSERT INTO round_clients (round_id, client_id, status, updated_at) VALUES (?, ?, ?, ?)').run('r_failed', 'late', 'unanswered', t)
      expect(() => db.prepare('INSERT INTO round_clients (round_id, client_id, status, updated_at) VALUES (?, ?, ?, ?)').run('r_failed', 'bad', 'bogus', t)).toThrow(/CHECK constraint failed/)
      expect(db.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'round_clients' AND name = 'round_clients_by_client'").get()).toBeDefined()
      expect(db.prepare('PRAGMA foreign_key_check').all()).toEqual([])
    } finally {
      database.close()
    }
  })
  it('gives tokens an expiry, a last use, models and levels: every token kept, none expiring, none used yet, none limited, none given a level', () => {
    const path = join(root, 'tokens.sqlite')
    const old = databaseAt(path, 9)
    const insert = old.prepare('INSERT INTO tokens (token_hash, role, label, created_at, revoked_at) VALUES (?, ?, ?, ?, ?)')
    insert.run('aa'.repeat(32), 'admin', 'created on first start', '2026-01-01T00:00:00.000Z', null)
    insert.run('bb'.repeat(32), 'edge', null, '2026-01-02T00:00:00.000Z', '2026-01-03T00:00:00.000Z')
    old.close()
    const database = openDatabase(path)
    try {
      const repo = repository(database)
      expect(repo.tokens()).toEqual([
        { hash: 'aa'.repeat(32), role: 'admin', label: 'created on first start', createdAt: '2026-01-01T00:00:00.000Z', revokedAt: null, expiresAt: null, lastUsedAt: null, models: null, levels: [] },
        { hash: 'bb'.repeat(32), role: 'edge', label: null, createdAt: '2026-01-02T00:00:00.000Z', revokedAt: '2026-01-03T00:00:00.000Z', expiresAt: null, lastUsedAt: null, models: null, levels: [] }
      ])
      repo.noteTokenUse('aa'.repeat(32))
      expect(repo.tokens()[0]?.lastUsedAt).toBeNull()
      // A write that fails (a full disk, stood for by a trigger) throws to the caller and keeps the use for the next flush.
      database.db.exec("CREATE TEMP TRIGGER no_writes BEFORE UPDATE OF last_used_at ON tokens BEGIN SELECT RAISE(ABORT, 'disk full'); END")
      expect(() => { repo.flushTokenUses() }).toThrow(/disk full/)
      expect(repo.tokens()[0]?.lastUsedAt).toBeNull()
      database.db.exec('DROP TRIGGER no_writes')
      repo.flushTokenUses()
      expect(repo.tokens()[0]?.lastUsedAt).toEqual(expect.stringMatching(/^\d{4}-\d\d-\d\dT/))
    } finally {
      database.close()
    }
  })
})
