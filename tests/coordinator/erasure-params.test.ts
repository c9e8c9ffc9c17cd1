/** A data dir keeps the erasure parameters it was created with: its blocks are reused across versions. */
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

let root: string | undefined

afterAll(async () => { if (root !== undefined) await rm(root, { recursive: true, force: true }) })

describe('coordinator erasure parameters', () => {
  it('refuses to start on a data dir whose blocks were sharded otherwise, and starts again with the right ones', async () => {
    root = await mkdtemp(join(tmpdir(), 'blockfed-erasure-'))
    const dataDir = join(root, 'coordinator')
    const first = await createCoordinator({ dataDir, port: 0, erasure: { k: 4, m: 2 } })
    const url = await first.start()
    await coordinatorClient({ baseUrl: url, token: first.adminToken }).ingest('m', await denseModelFiles(16, [['a', 8, 1]]))
    await first.stop()

    const other = createCoordinator({ dataDir, port: 0, erasure: { k: 6, m: 3 } })
    await expect(other).rejects.toThrow(InvalidInputError)
    await expect(other).rejects.toThrow(/erasure 6\+3 was asked for, but .* keeps blocks sharded otherwise \(block \S+: 6 shards, erasure 6\+3 makes 9\)/)

    // The refusal left the data dir as it was (and its database closed): the old parameters still open it.
    const again = await createCoordinator({ dataDir, port: 0, erasure: { k: 4, m: 2 } })
    expect((await again.start()).startsWith('http://')).toBe(true)
    await again.stop()
  })
})
