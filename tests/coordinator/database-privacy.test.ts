/**
 * The coordinator's database holds round uploads (in secure mode `none`, a client's update in
 * the clear) and secure-aggregation state (review 49b): its files are its owner's alone, an
 * upload deleted at its round's end does not stay in the file, and a finished round keeps no
 * secure state. Real SQLite files through the real store.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
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

  it('narrows a database an older coordinator left readable by others', async () => {
    const path = join(await tempDir(), 'c.sqlite')
    openDatabase(path).close()
    await chmod(path, 0o644)
    await writeFile(`${path}-wal`, '')
    await chmod(`${path}-wal`, 0o644)
    openDatabase(path).close()
    expect(await mode(path)).toBe(0o600)
  })

  it('overwrites an upload deleted at its round\'s end, and drops a finished round\'s secure state', async () => {
    const path = join(await tempDir(), 'c.sqlite')
    const database = openDatabase(path)
    database.db.prepare('INSERT INTO models (name, format, created_at) VALUES (\'m\', \'tfjs-layers\', ?)').run(new Date().toISOString())
    const store = roundStore(database)
    const id = 'r_00000000000000c1'
    store.create(config(id))
    store.transition(id, 'collecting')
    // A recognisable update: 16 KiB no page header or free-list could look like.
    const payload = new Uint8Array(16384).map((_, i) => (i * 131 + 7) & 0xff)
    store.putUpload(id, a, { payload, signature: 'sig' })
    store.saveSecureState(id, { shares: 'secret-share-material' })
    store.transition(id, 'failed', { reason: 'test' })
    store.deleteUploads(id)
    expect(store.get(id)?.secureState).toBeNull()
    database.close()
    const file = await readFile(path)
    expect(file.indexOf(Buffer.from(payload.subarray(8192, 8192 + 256)))).toBe(-1)
    expect(file.indexOf('secret-share-material')).toBe(-1)
  })
})
