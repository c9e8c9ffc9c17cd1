/**
 * loadModelWeights (shared/load/loader.ts) ends the requests of the other blocks when one block
 * fails: a failed load must not go on fetching (and caching) blocks nobody will use. Blocks
 * sealed by the real ingest stages; a source that fails one block only once another block's
 * requests are out, and holds those until their signal aborts, so the order is fixed.
 */
import { describe, it, expect } from 'vitest'
import { defaultReedSolomon, erasureCoder } from '../../../shared/blocks/erasure.ts'
import { partition } from '../../../shared/blocks/partition.ts'
import { sealBlocks } from '../../../shared/blocks/seal-blocks.ts'
import { loadModelWeights } from '../../../shared/load/loader.ts'
import { NotFoundError, UnavailableError } from '../../../shared/errors/errors.ts'
import type { BlockSource } from '../../../shared/load/source.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import { manifestSchema } from '../../../shared/manifest/schema.ts'
import type { TensorInfo } from '../../../shared/model/types.ts'
import { testManifest } from '../../helpers/manifest.ts'

const PARTITION = { targetBytes: 2048, maxBytes: 4096 }
const tensors: TensorInfo[] = [
  { name: 'a/kernel', dtype: 'float32', shape: [40, 50], byteLength: 8000, layer: 'a' },
  { name: 'b/kernel', dtype: 'float32', shape: [50, 10], byteLength: 2000, layer: 'b' }
]
const weights = new Uint8Array(10_000).map((_, i) => (i * 13 + 5) & 0xff)

describe('a load one of whose blocks fails', () => {
  it('aborts the requests still out for the other blocks, and caches none of them', async () => {
    const coder = await erasureCoder(defaultReedSolomon, { k: 2, m: 1 })
    const { blocks, created } = await sealBlocks({ tensors, weights }, partition(tensors, PARTITION), { coder, findStored: async () => undefined, access: () => 'public' })
    const keys = new Map(created.map(c => [c.keyId, c.key]))
    const store = new Map(created.flatMap(c => c.shards.map(s => [s.cid, s.bytes] as const)))
    const manifest = manifestSchema.parse(testManifest({ tensors, erasure: { scheme: 'reed-solomon-gf8', k: 2, m: 1 }, partition: PARTITION, blocks }))
    expect(manifest.blocks.length).toBeGreaterThan(1)
    const failing = manifest.blocks[0]?.cid as string
    /** The requests of the other blocks, each with its signal; `out` resolves at the first. */
    const held: AbortSignal[] = []
    let first: () => void = () => {}
    const out = new Promise<void>(resolve => { first = resolve })
    const source: BlockSource = {
      name: 'one block gone',
      async get (cid, options) {
        if (options.block === failing) {
          await out
          throw new NotFoundError(`${cid}: nowhere`)
        }
        held.push(options.signal)
        first()
        // Answers only if the load gives up on it: then with the shard's bytes, too late.
        return await new Promise<Uint8Array>(resolve => {
          options.signal.addEventListener('abort', () => { resolve(store.get(cid) as Uint8Array) }, { once: true })
        })
      }
    }
    const cache = memoryCache()
    await expect(loadModelWeights(manifest, { source, coder, keys, cache, concurrency: 2 })).rejects.toThrow(UnavailableError)
    expect(held.length).toBeGreaterThan(0)
    expect(held.every(signal => signal.aborted)).toBe(true)
    await new Promise(resolve => setImmediate(resolve))
    expect(cache.stats().entries).toBe(0)
  })
})
