/**
 * A coordinator stopped while a version is being stored lets it finish before it closes its
 * database (49e): the ingest is recorded whole, where it failed at the closed database (its
 * files removed, as any failed ingest's). A real coordinator and a real 16 MB tfjs model.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

let root: string
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'blockfed-stop-ingest-')) })
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

describe('a coordinator stopped during an ingest', () => {
  it('stores the version before it closes, and it is there at the next start', async () => {
    const dir = join(root, 'coordinator')
    const files = await denseModelFiles(1024, [['a', 2048, 1], ['b', 1024, 2]])
    const coordinator = await createCoordinator({ dataDir: dir, port: 0 })
    await coordinator.start()
    // The stop begins while the model is being read and sealed (tens of blocks).
    const ingest = coordinator.ingest('big', files)
    const outcome = ingest.then(r => r, (err: Error) => err)
    await new Promise(resolve => setTimeout(resolve, 20))
    await coordinator.stop()
    const result = await outcome
    expect(result).toMatchObject({ model: 'big', version: 1, created: true })
    const again = await createCoordinator({ dataDir: dir, port: 0 })
    try {
      await again.start()
      expect(again.repo.latest('big')?.version).toBe(1)
    } finally {
      await again.stop()
    }
  }, 120_000)
})
