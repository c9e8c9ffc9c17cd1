/**
 * `<data>/admin.token` (coordinator/coordinator.ts). It used to be written in place after its
 * row was committed and read back with only a trim: a crash between the two left an empty file,
 * and the coordinator started with the admin token "" (every `--data` command then got 403).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { mintToken, tokenHash, tokenIdOf } from '../../coordinator/http/auth.ts'

let root: string
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'blockfed-admin-token-')) })
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

/** The admin token a coordinator on `dataDir` starts with, and whether its database knows it as admin. */
async function start (dataDir: string): Promise<{ token: string, role: string | undefined }> {
  const coordinator = await createCoordinator({ dataDir, port: 0 })
  try {
    return { token: coordinator.adminToken, role: coordinator.repo.token(await tokenHash(coordinator.adminToken))?.role }
  } finally {
    await coordinator.stop()
  }
}

describe('admin.token', () => {
  it('is created on first start with mode 0600 and kept across restarts', async () => {
    const dataDir = join(root, 'kept')
    const first = await start(dataDir)
    expect(first.token).toMatch(/^bf_[0-9a-f]{64}$/)
    expect(first.role).toBe('admin')
    const path = join(dataDir, 'admin.token')
    expect(await readFile(path, 'utf8')).toBe(`${first.token}\n`)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    expect((await start(dataDir)).token).toBe(first.token)
  })

  it.each([['empty', ''], ['truncated', 'bf_0123abc'], ['blank', ' \n']])('one torn (%s) is replaced by a new admin token at start', async (name, torn) => {
    const dataDir = join(root, name)
    const first = await start(dataDir)
    const path = join(dataDir, 'admin.token')
    await writeFile(path, torn)
    const next = await start(dataDir)
    expect(next.token).toMatch(/^bf_[0-9a-f]{64}$/)
    expect(next.token).not.toBe(first.token)
    expect(next.role).toBe('admin')
    expect(await readFile(path, 'utf8')).toBe(`${next.token}\n`)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })

  it('one gone missing is replaced, and labelled so: not as the first start\'s, which stays active (review 46a)', async () => {
    const dataDir = join(root, 'missing')
    const first = await start(dataDir)
    await rm(join(dataDir, 'admin.token'))
    const next = await start(dataDir)
    expect(next.token).not.toBe(first.token)
    const db = new DatabaseSync(join(dataDir, 'coordinator.sqlite'))
    const rows = db.prepare('SELECT token_hash AS hash, label, revoked_at AS revoked FROM tokens ORDER BY rowid').all()
    db.close()
    expect(rows).toEqual([
      { hash: await tokenHash(first.token), label: 'created on first start', revoked: null },
      { hash: await tokenHash(next.token), label: 'replaced a missing admin.token', revoked: null }
    ])
  })

  it('one revoked by a revoke killed before its successor was renamed into place: the successor is taken, not a third token made (review 46f)', async () => {
    for (const withFile of [true, false]) {
      const dataDir = join(root, `successor-${String(withFile)}`)
      const first = await start(dataDir)
      // What the revoke committed: the old token revoked, its successor's row; the successor's
      // temporary file beside admin.token (gone when removed as stale), never renamed.
      const successor = await mintToken()
      const db = new DatabaseSync(join(dataDir, 'coordinator.sqlite'))
      db.prepare('UPDATE tokens SET revoked_at = ? WHERE token_hash = ?').run(new Date().toISOString(), await tokenHash(first.token))
      db.prepare('INSERT INTO tokens (token_hash, role, label, created_at) VALUES (?, ?, ?, ?)').run(successor.hash, 'admin', `replaced revoked admin token ${tokenIdOf(await tokenHash(first.token))}`, new Date().toISOString())
      db.close()
      if (withFile) await writeFile(join(dataDir, 'admin.token.0123456789ab.tmp'), `${successor.token}\n`, { mode: 0o600 })
      await writeFile(join(dataDir, 'admin.token.ba9876543210.tmp'), 'bf_minted-never-stored\n', { mode: 0o600 })
      const next = await start(dataDir)
      if (withFile) expect(next.token).toBe(successor.token)
      else expect(next.token).not.toBe(successor.token)
      expect(await readFile(join(dataDir, 'admin.token'), 'utf8')).toBe(`${next.token}\n`)
      expect((await readdir(dataDir)).filter(name => name.endsWith('.tmp'))).toEqual([])
      const check = new DatabaseSync(join(dataDir, 'coordinator.sqlite'))
      const active = check.prepare('SELECT token_hash AS hash FROM tokens WHERE role = ? AND revoked_at IS NULL').all('admin')
      check.close()
      // One active admin token, the one admin.token holds: none that nobody holds.
      expect(active).toEqual([{ hash: await tokenHash(next.token) }])
    }
  })

  it('one whose token was revoked (a stop before the file was renewed) is replaced at start', async () => {
    const dataDir = join(root, 'revoked')
    const first = await start(dataDir)
    // The revoke committed, the renewal never ran: the database alone says it.
    const db = new DatabaseSync(join(dataDir, 'coordinator.sqlite'))
    db.prepare('UPDATE tokens SET revoked_at = ? WHERE token_hash = ?').run('2026-01-01T00:00:00.000Z', await tokenHash(first.token))
    db.close()
    const next = await start(dataDir)
    expect(next.token).not.toBe(first.token)
    expect(next.role).toBe('admin')
    expect(await readFile(join(dataDir, 'admin.token'), 'utf8')).toBe(`${next.token}\n`)
  })
})
