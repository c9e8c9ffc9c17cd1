/**
 * The temporaries writeTemporary leaves when a crash comes between a write and its rename or link
 * (node-runtime/atomic-file.ts): each is a whole copy of what it was written for, a key or
 * keys.json's data keys among them. Nothing removed them before; now each owner of a folder does
 * at its start, stale ones only: other processes may be writing there (a runtime's dir is shared
 * with `blockfed verify`; a coordinator's with a decryptor, whose lock is its own).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { removeStaleTemporaries, STALE_TEMPORARY_MS } from '../../node-runtime/atomic-file.ts'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { createNodeRuntime } from '../../node-runtime/runtime.ts'

let root: string
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'stale-tmp-')) })
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

/** Writes `path`, its times set `ageMs` in the past. */
async function leave (path: string, ageMs: number): Promise<void> {
  await writeFile(path, 'x', { mode: 0o600 })
  const then = new Date(Date.now() - ageMs)
  await utimes(path, then, then)
}

describe('removeStaleTemporaries', () => {
  it('removes writeTemporary names older than asked, and nothing else', async () => {
    const dir = join(root, 'unit')
    await mkdir(join(dir, 'sub'), { recursive: true })
    const old = STALE_TEMPORARY_MS + 60_000
    await leave(join(dir, 'keys.json.0123456789ab.tmp'), old)
    await leave(join(dir, 'keys.json.a1b2c3d4e5f6.tmp'), 1000) // a write in progress
    await leave(join(dir, 'notes.tmp'), old) // not one of writeTemporary's names
    await leave(join(dir, 'keys.json.0123456789AB.tmp'), old) // idem: its hex is lowercase
    await leave(join(dir, 'sub', 'x.0123456789ab.tmp'), old) // subfolders are not walked
    await mkdir(join(dir, 'dir.0123456789ab.tmp')) // only files
    const removed = await removeStaleTemporaries([dir, join(root, 'missing')], STALE_TEMPORARY_MS)
    expect(removed).toEqual([join(dir, 'keys.json.0123456789ab.tmp')])
    expect((await readdir(dir)).sort()).toEqual(['dir.0123456789ab.tmp', 'keys.json.0123456789AB.tmp', 'keys.json.a1b2c3d4e5f6.tmp', 'notes.tmp', 'sub'])
    expect(await removeStaleTemporaries([dir], 0)).toEqual([join(dir, 'keys.json.a1b2c3d4e5f6.tmp')])
  })
})

describe('at start', () => {
  it('the coordinator removes stale temporaries in its data dir and keys/, and keeps a fresh one (a decryptor on the dir may be writing it)', async () => {
    const dataDir = join(root, 'coordinator')
    await mkdir(join(dataDir, 'keys'), { recursive: true, mode: 0o700 })
    // A first start cut short after its claim (node-runtime/dir-lock.ts), before its database.
    await writeFile(join(dataDir, 'role'), 'coordinator\n')
    const stale = STALE_TEMPORARY_MS + 60_000
    await leave(join(dataDir, 'keys', 'master.key.0123456789ab.tmp'), stale)
    await leave(join(dataDir, 'admin.token.0123456789ab.tmp'), stale)
    await leave(join(dataDir, 'paillier.key.a1b2c3d4e5f6.tmp'), 1000)
    const coordinator = await createCoordinator({ dataDir, port: 0 })
    try {
      expect((await readdir(join(dataDir, 'keys'))).sort()).toEqual(['coordinator.ed25519', 'master.key'])
      expect((await readdir(dataDir)).filter(n => n.endsWith('.tmp'))).toEqual(['paillier.key.a1b2c3d4e5f6.tmp'])
    } finally {
      await coordinator.stop()
    }
  })

  it('a runtime removes stale temporaries in its state folders and keeps fresh ones', async () => {
    const dataDir = join(root, 'runtime')
    for (const dir of ['keys', 'trust', 'ledger', 'p2p']) await mkdir(join(dataDir, dir), { recursive: true })
    const stale = STALE_TEMPORARY_MS + 60_000
    await leave(join(dataDir, 'keys', 'client.ed25519.0123456789ab.tmp'), stale)
    await leave(join(dataDir, 'trust', 'x.0123456789ab.tmp'), stale)
    await leave(join(dataDir, 'ledger', 'x.0123456789ab.tmp'), stale)
    await leave(join(dataDir, 'p2p', 'x.0123456789ab.tmp'), stale)
    await leave(join(dataDir, 'access-history.json.0123456789ab.tmp'), stale)
    await leave(join(dataDir, 'access-history.json.a1b2c3d4e5f6.tmp'), 1000)
    const runtime = await createNodeRuntime({ dataDir })
    try {
      for (const dir of ['keys', 'trust', 'ledger', 'p2p']) expect(await readdir(join(dataDir, dir)), dir).toEqual([])
      expect((await readdir(dataDir)).filter(n => n.endsWith('.tmp'))).toEqual(['access-history.json.a1b2c3d4e5f6.tmp'])
    } finally {
      await runtime.stop()
    }
  })
})
