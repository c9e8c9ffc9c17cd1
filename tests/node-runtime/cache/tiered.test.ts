import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { diskCache } from '../../../node-runtime/cache/disk-tier.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import { tieredCache } from '../../../shared/cache/tiered.ts'
import { cacheTierContract, testBytes, testKey } from '../../shared/cache/contract.ts'

const dirs: string[] = []
async function freshDir (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'blockfed-tiered-'))
  dirs.push(d)
  return d
}
afterAll(async () => {
  await Promise.all(dirs.map(async (d) => await rm(d, { recursive: true, force: true })))
})

cacheTierContract('tieredCache (memory over disk)', async ({ capacityBytes }) => tieredCache({
  memory: memoryCache({ capacityBytes }),
  disk: await diskCache({ dir: await freshDir(), capacityBytes })
}), { statsCoverEveryKey: false })

describe('tieredCache over the disk tier', () => {
  it('serves from disk after a restart and promotes into the new memory tier', async () => {
    const dir = await freshDir()
    const first = tieredCache({ memory: memoryCache({ capacityBytes: 1000 }), disk: await diskCache({ dir, capacityBytes: 10_000 }) })
    await first.put(testKey(1), testBytes(500, 1))
    await first.close()
    const second = tieredCache({ memory: memoryCache({ capacityBytes: 1000 }), disk: await diskCache({ dir, capacityBytes: 10_000 }) })
    expect(await second.get(testKey(1))).toEqual(testBytes(500, 1))
    expect(await second.get(testKey(1))).toEqual(testBytes(500, 1))
    expect(second.tierStats().memory).toMatchObject({ hits: 1, misses: 1, entries: 1 })
    expect(second.tierStats().disk).toMatchObject({ hits: 1, misses: 0 })
    expect(second.stats()).toMatchObject({ hits: 2, misses: 0, entries: 1 })
    await second.close()
  })
})
