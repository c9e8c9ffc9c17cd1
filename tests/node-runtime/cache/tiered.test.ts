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

  it('keeps the hottest block on disk, though memory answers all its reads', async () => {
    let t = 1_700_000_000_000
    const cache = tieredCache({ memory: memoryCache({ capacityBytes: 3000 }), disk: await diskCache({ dir: await freshDir(), capacityBytes: 6000, now: () => t }) })
    await cache.put(testKey(99), testBytes(1000, 99))
    const missed: number[] = []
    for (let i = 0; i < 30; i++) {
      t += 60_000
      if (await cache.get(testKey(99)) === undefined) missed.push(i)
      await cache.put(testKey(i), testBytes(1000, i)) // blocks used once
      await cache.get(testKey(i))
    }
    expect(missed).toEqual([])
    expect(cache.tierStats().disk.evictions).toBeGreaterThan(20)
    await cache.close()
  })

  it('stores a put called before close, on disk', async () => {
    const dir = await freshDir()
    const cache = tieredCache({ memory: memoryCache(), disk: await diskCache({ dir, capacityBytes: 10_000 }) })
    const put = cache.put(testKey(1), testBytes(500, 1))
    await cache.close()
    await put
    const again = await diskCache({ dir, capacityBytes: 10_000 })
    expect(await again.get(testKey(1))).toEqual(testBytes(500, 1))
    await again.close()
  })
})
