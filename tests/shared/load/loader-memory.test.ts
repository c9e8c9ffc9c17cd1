/**
 * What a load keeps (shared/load/loader.ts), review 46b:
 * - the sealed blocks it fetched are let go once placed: all kept to the end of the load, a
 *   load's peak was the weights plus a second, sealed copy of the model; a block that appears at
 *   two places of one manifest is kept until its last place took it;
 * - a block the cache skips (larger than the cache) counts as uncached, like one whose write failed.
 * Blocks are sealed by the real ingest stages; garbage collection is forced (V8's `gc`, exposed
 * at run time) and sealed blocks are followed by weak references to the bytes the cache was given.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { beforeAll, describe, expect, it } from 'vitest'
import type { ErasureCoder } from '../../../shared/blocks/erasure.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import type { CacheTier } from '../../../shared/cache/types.ts'
import { NotFoundError } from '../../../shared/errors/errors.ts'
import { loadModelWeights } from '../../../shared/load/loader.ts'
import type { BlockSource } from '../../../shared/load/source.ts'
import type { Manifest } from '../../../shared/manifest/schema.ts'
import type { TensorInfo } from '../../../shared/model/types.ts'
import { sealIntoMemory } from '../../helpers/sealed-model.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** A full collection, twice across a macrotask: weak references are cleared only between jobs. */
async function collect (): Promise<void> {
  for (let i = 0; i < 2; i++) {
    await new Promise(resolve => setImmediate(resolve))
    gc()
  }
}

const PARTITION = { targetBytes: 16_384, maxBytes: 32_768 }
const LAYERS = 8
/** One block per layer; layers 1 and 6 hold the same bytes, so blocks 1 and 6 are one sealed block. */
const tensors: TensorInfo[] = Array.from({ length: LAYERS }, (_, i) => ({ name: `l${i}/kernel`, dtype: 'float32', shape: [64, 64], byteLength: 16_384, layer: `l${i}` }))
const weights = new Uint8Array(LAYERS * 16_384).map((_, i) => {
  const layer = Math.floor(i / 16_384)
  return (((layer === 6 ? 1 : layer) * 16_384 + (i % 16_384)) * 2654435761) >>> 24
})

let coder: ErasureCoder
let manifest: Manifest
const store = new Map<string, Uint8Array>()
const keys = new Map<string, Uint8Array>()

beforeAll(async () => {
  ;({ coder, manifest } = await sealIntoMemory({ tensors, weights, partition: PARTITION, erasure: { k: 2, m: 1 } }, store, keys))
  expect(manifest.blocks).toHaveLength(LAYERS)
  expect(manifest.blocks[6]?.cid).toBe(manifest.blocks[1]?.cid)
  expect(new Set(manifest.blocks.map(b => b.cid)).size).toBe(LAYERS - 1)
})

describe('a load lets go of the sealed blocks it has placed', () => {
  it('keeps none of the blocks before the one under way, but the repeated one until its second place', async () => {
    /** Weak references to the sealed blocks the loader handed the cache, by CID. */
    const sealed = new Map<string, WeakRef<Uint8Array>>()
    // Skips every block (capacity 0), so only the loader can hold them.
    const skipping = memoryCache({ capacityBytes: 0, name: 'skipping' })
    const cache: CacheTier = {
      ...skipping,
      put: async (key, bytes) => {
        sealed.set(key, new WeakRef(bytes))
        return await skipping.put(key, bytes)
      }
    }
    // Blocks 1 and 6 share their shards: a shard names its first block.
    const blockOf = new Map(manifest.blocks.toReversed().flatMap(b => b.shards.cids.map(cid => [cid, b.index])))
    /** For each block the source is first asked about, the earlier blocks' sealed bytes still alive. */
    const alive = new Map<number, number[]>()
    const source: BlockSource = {
      name: 'memory',
      async get (cid) {
        const index = blockOf.get(cid) as number
        if (!alive.has(index)) {
          await collect()
          alive.set(index, manifest.blocks.slice(0, index).flatMap(b => sealed.get(b.cid)?.deref() === undefined ? [] : [b.index]))
        }
        const bytes = store.get(cid)
        if (bytes === undefined) throw new NotFoundError(cid)
        return bytes.slice()
      }
    }
    const { weights: loaded, report } = await loadModelWeights(manifest, { source, coder, keys, cache, concurrency: 1 })
    expect(loaded).toEqual(weights)
    // Block 6 is block 1's bytes: it waited for no fetch of its own (block 1's was done).
    expect(report).toMatchObject({ fetchedBlocks: LAYERS, uncached: LAYERS - 1 })
    expect([...alive.keys()]).toEqual([0, 1, 2, 3, 4, 5, 7])
    // Block 1's bytes stay for block 6 (the cache did not take them); every other placed block is gone.
    expect(alive.get(1)).toEqual([])
    for (const index of [2, 3, 4, 5]) expect(alive.get(index), `before block ${index}`).toEqual([1])
    expect(alive.get(7)).toEqual([])
  })
})

describe('a block the cache skips', () => {
  it('counts as uncached: the cache does not hold it and the next load fetches it again', async () => {
    // Room for every block but the first (each is a little over 16 KiB sealed).
    const big = manifest.blocks[0]?.sealedLength as number
    const cache = memoryCache({ capacityBytes: big - 1 })
    const source: BlockSource = {
      name: 'memory',
      async get (cid) {
        const bytes = store.get(cid)
        if (bytes === undefined) throw new NotFoundError(cid)
        return bytes.slice()
      }
    }
    const small = structuredClone(manifest)
    // A block only: the cache skips it as larger than itself.
    small.blocks = small.blocks.slice(0, 1)
    small.tensors = small.tensors.slice(0, 1)
    const first = await loadModelWeights(small, { source, coder, keys, cache })
    expect(first.report).toMatchObject({ fetchedBlocks: 1, uncached: 1 })
    expect(cache.stats()).toMatchObject({ entries: 0, rejected: 1 })
    const again = await loadModelWeights(small, { source, coder, keys, cache })
    expect(again.report).toMatchObject({ fromCache: 0, fetchedBlocks: 1, uncached: 1 })
  })
})
