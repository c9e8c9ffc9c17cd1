/**
 * The coordinator's database holds round uploads (in secure mode `none`, a client's update in
 * the clear) and secure-aggregation state (review 49b): its files are its owner's alone, older
 * ones narrowed, and a finished round keeps no secure state. Real SQLite files through the real
 * store.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { spawnSync } from 'node:child_process'
import { chmod, mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openDatabase } from '../../coordinator/store/database.ts'
import { roundStore } from '../../coordinator/rounds/store.ts'
import { roundConfigSchema } from '../../shared/rounds/config.ts'
import { fixedPointParams } from '../../aggregation/fixed-point.ts'
import { createCoordinator } from '../../coordinator/coordinator.ts'

const roots: string[] = []
const tempDir = async (): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), 'blockfed-db-privacy-'))
  roots.push(dir)
  return dir
}
afterAll(async () => { for (const r of roots) await rm(r, { recursive: true, force: true }) })

const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777
const [a, b] = ['a', 'b'].map(x => x.repeat(64)) as [string, string]
const config = (id: string): ReturnType<typeof roundConfigSchema.parse> => roundConfigSchema.parse({
  model: 'm', id, baseVersion: 1, manifestCid: 'bafyexampleexample', trainable: ['x'], tensors: ['x'],
  vectorLength: 4096, clients: [a, b], fixedPoint: fixedPointParams({ clip: 1, clients: 2 }), seed: '00'.repeat(32), clip: 1,
  secure: { mode: 'none', graph: 'sparse' }, selection: { fraction: 1, minClients: 2, maxClients: 1000, cooldownMs: 0, minUploads: 2 },
  deadlines: { acceptMs: 600_000, setupMs: 600_000, trainMs: 600_000, unmaskMs: 600_000 }
})

describe('the coordinator database', () => {
  it('is created readable by its owner only, with its WAL, in a data dir of its own', async () => {
    const dataDir = join(await tempDir(), 'coordinator')
    const coordinator = await createCoordinator({ dataDir, port: 0 })
    try {
      expect(await mode(dataDir)).toBe(0o700)
      for (const file of ['coordinator.sqlite', 'coordinator.sqlite-wal', 'coordinator.sqlite-shm']) expect(await mode(join(dataDir, file)), file).toBe(0o600)
    } finally {
      await coordinator.stop()
    }
  })

  it('narrows a database an older coordinator left readable by others, its WAL of a killed process too', async () => {
    const path = join(await tempDir(), 'c.sqlite')
    openDatabase(path).close()
    // A process killed with writes in its WAL (not checkpointed, not removed), its files 0644.
    const killed = spawnSync(process.execPath, ['-e', `const { DatabaseSync } = require('node:sqlite'); const db = new DatabaseSync(${JSON.stringify(path)}); db.exec('PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(20000))'); process.kill(process.pid, 'SIGKILL')`])
    expect(killed.signal).toBe('SIGKILL')
    for (const file of [path, `${path}-wal`, `${path}-shm`]) await chmod(file, 0o644)
    expect((await stat(`${path}-wal`)).size).toBeGreaterThan(0)
    const database = openDatabase(path)
    try {
      for (const file of [path, `${path}-wal`, `${path}-shm`]) expect(await mode(file), file).toBe(0o600)
    } finally {
      database.close()
    }
  })

  it('drops a finished round\'s secure state (shares, revealed seeds)', async () => {
    const path = join(await tempDir(), 'c.sqlite')
    const database = openDatabase(path)
    database.db.prepare('INSERT INTO models (name, format, created_at) VALUES (\'m\', \'tfjs-layers\', ?)').run(new Date().toISOString())
    const store = roundStore(database)
    const id = 'r_00000000000000c1'
    store.create(config(id))
    store.transition(id, 'collecting')
    const payload = new Uint8Array(16384).map((_, i) => (i * 131 + 7) & 0xff)
    store.putUpload(id, a, { payload, signature: 'sig' })
    store.saveSecureState(id, { shares: 'secret-share-material' })
    store.transition(id, 'failed', { reason: 'test' })
    store.deleteUploads(id)
    expect(store.get(id)?.secureState).toBeNull()
    expect(store.uploads(id).size).toBe(0)
    database.close()
  })
})
