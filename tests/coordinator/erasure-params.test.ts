/** A data dir keeps the erasure parameters it was created with: its blocks are reused across versions. */
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { existsSync } from 'node:fs'
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

  it('refuses partition options that would make blocks larger than a manifest may hold, before it touches the data dir', async () => {
    root ??= await mkdtemp(join(tmpdir(), 'blockfed-erasure-'))
    const dataDir = join(root, 'partition')
    await expect(createCoordinator({ dataDir, port: 0, partition: { targetBytes: 1 << 20, maxBytes: 128 << 20 } }))
      .rejects.toThrow('partition: need 0 < targetBytes <= maxBytes <= 67108864 (got 1048576, 134217728)')
    expect(existsSync(dataDir)).toBe(false)
  })
})
