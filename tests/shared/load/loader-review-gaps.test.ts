/**
 * Three checks of the load path (shared/load/loader.ts) that a mutation review found no test
 * could fail:
 * - H13, the block-CID check after the slow path rebuilds a block from shards that each pass their
 *   own CID: a manifest whose shard CIDs are those of another block must be refused as an
 *   integrity failure of that block (not blamed on its key), and its block CID never cached, by a
 *   load or by prefetchBlocks;
 * - H14, prefetchBlocks skipping a block CID it has already taken: a block that appears twice in
 *   one manifest (equal plaintext in two places is sealed once) is fetched once;
 * - H20, an abort that lands while the last block is being written to the cache, the write then
 *   failing: the load rejects with the abort's reason instead of succeeding with the block
 *   counted as uncached.
 * - the same for a cache read that fails after an abort;
 * - a load fetches a block repeated in its manifest once;
 * - a load whose block fails starts no other block (review 38b).
 * Blocks are sealed by the real ingest stages, as in loader-checks.test.ts; caches are the real
 * memory tier.
 */
import { describe, it, expect, beforeAll } from 'vitest'
import type { ErasureCoder } from '../../../shared/blocks/erasure.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import type { CacheTier } from '../../../shared/cache/types.ts'
import { IntegrityError, NotFoundError, WrongKeyError } from '../../../shared/errors/errors.ts'
import { loadModelWeights, prefetchBlocks } from '../../../shared/load/loader.ts'
import type { BlockSource } from '../../../shared/load/source.ts'
import { manifestSchema, type Manifest } from '../../../shared/manifest/schema.ts'
import type { TensorInfo } from '../../../shared/model/types.ts'
import { sealIntoMemory } from '../../helpers/sealed-model.ts'

type Block = Manifest['blocks'][number]

const PARTITION = { targetBytes: 2048, maxBytes: 4096 }
/** One block per layer, all of one length; layers a and b hold the same bytes, so blocks 0 and 1 are one sealed block. */
const tensors: TensorInfo[] = [
  { name: 'a/kernel', dtype: 'float32', shape: [10, 50], byteLength: 2000, layer: 'a' },
  { name: 'b/kernel', dtype: 'float32', shape: [10, 50], byteLength: 2000, layer: 'b' },
  { name: 'c/kernel', dtype: 'float32', shape: [10, 50], byteLength: 2000, layer: 'c' }
]
const weights = new Uint8Array(6000).map((_, i) => i < 4000 ? ((i % 2000) * 7) & 0xff : (i * 29 + 5) & 0xff)

let coder: ErasureCoder
let manifest: Manifest
/** Sealed blocks and shards by CID, as a coordinator would serve them. */
const store = new Map<string, Uint8Array>()
const keys = new Map<string, Uint8Array>()

/** Serves `store`, recording every request's CID. */
const source = (): BlockSource & { asked: string[] } => ({
  name: 'memory',
  asked: [],
  async get (cid) {
    this.asked.push(cid)
    const bytes = store.get(cid)
    if (bytes === undefined) throw new NotFoundError(cid)
    return bytes.slice()
  }
})

beforeAll(async () => {
  const sealed = await sealIntoMemory({ tensors, weights, partition: PARTITION, erasure: { k: 2, m: 1 } }, store, keys)
  ;({ coder, manifest } = sealed)
  const [a, b, c] = manifest.blocks as [Block, Block, Block]
  expect(manifest.blocks).toHaveLength(3)
  expect(b.cid).toBe(a.cid)
  expect(c.cid).not.toBe(a.cid)
  expect(c.sealedLength).toBe(a.sealedLength)
  expect(sealed.created).toBe(2)
})

describe('a block whose shards are those of another block (H13)', () => {
  /**
   * The manifest with block 2's shard list replaced by block 0's: every shard fetched passes its
   * own CID and the rebuild succeeds, but it rebuilds block 0, not block 2. Still a valid manifest.
   */
  const crossed = (): { m: Manifest, bad: Block } => {
    const m = structuredClone(manifest)
    const [a, , c] = m.blocks as [Block, Block, Block]
    c.shards = structuredClone(a.shards)
    return { m: manifestSchema.parse(m), bad: c }
  }

  it('is refused by a load as an integrity failure naming the block and its CID, and is not cached', async () => {
    const { m, bad } = crossed()
    const cache = memoryCache()
    const error = await loadModelWeights(m, { source: source(), coder, keys, cache, concurrency: 1 }).then(() => undefined, (err: unknown) => err)
    // Not a WrongKeyError (an IntegrityError too): the key is right, the shards are another block's.
    expect(error).toBeInstanceOf(IntegrityError)
    expect(error).not.toBeInstanceOf(WrongKeyError)
    expect((error as Error).message).toBe(`block 2 ${bad.cid}: content does not hash to its CID`)
    expect(await cache.has(bad.cid)).toBe(false)
  })

  it('is not cached by prefetchBlocks, which caches the intact block beside it', async () => {
    const { m, bad } = crossed()
    const cache = memoryCache()
    await prefetchBlocks(m, { source: source(), coder, cache })
    expect(await cache.has(bad.cid)).toBe(false)
    expect(await cache.has((m.blocks[0] as Block).cid)).toBe(true)
  })
})

describe('prefetchBlocks over a manifest that holds one block twice (H14)', () => {
  it('fetches the repeated block once, even with both copies started together', async () => {
    const [a, , c] = manifest.blocks as [Block, Block, Block]
    const inner = source()
    // Block 0's shard requests are held until the prefetch asks for another block's shard (its
    // second copy was skipped, so block 2 took the free slot) or asks block 0 more than k times
    // (the second copy fetched it too). Either way the order is fixed, without timers.
    let asksOfA = 0
    let open: () => void = () => {}
    const opened = new Promise<void>(resolve => { open = resolve })
    const gated: BlockSource = {
      name: 'gated',
      async get (cid, options) {
        if (options.block === a.cid) {
          if (++asksOfA > coder.params.k) open()
          else await opened
        } else {
          open()
        }
        return await inner.get(cid, options)
      }
    }
    const cache = memoryCache()
    const prefetched = await prefetchBlocks(manifest, { source: gated, coder, cache, concurrency: 2 })
    expect(inner.asked.filter(cid => a.shards.cids.includes(cid))).toHaveLength(coder.params.k)
    expect(prefetched.blocks).toBe(2)
    expect(await cache.has(a.cid)).toBe(true)
    expect(await cache.has(c.cid)).toBe(true)
  })
})

describe('a load of a manifest that holds one block twice', () => {
  it('fetches the repeated block once, both copies under way together, and places it at both', async () => {
    const [a] = manifest.blocks as [Block, Block, Block]
    const inner = source()
    // Block 0's shard requests are held until block 2's are asked (all three places start at
    // once): by then a second fetch of block 0, if any, has asked its shards too.
    let open: () => void = () => {}
    const opened = new Promise<void>(resolve => { open = resolve })
    const gated: BlockSource = {
      name: 'gated',
      async get (cid, options) {
        if (options.block === a.cid) await opened
        else open()
        return await inner.get(cid, options)
      }
    }
    const cache = memoryCache()
    const { weights: loaded, report } = await loadModelWeights(manifest, { source: gated, coder, keys, cache, concurrency: 3 })
    expect(inner.asked.filter(cid => a.shards.cids.includes(cid))).toHaveLength(coder.params.k)
    expect(Buffer.compare(Buffer.from(loaded), Buffer.from(weights))).toBe(0)
    expect(report).toMatchObject({ blocks: 3, fetchedBlocks: 3, fromCache: 0, uncached: 0 })
    expect(await cache.has(a.cid)).toBe(true)
  })
})

describe('a load whose block cannot be had (review 38b)', () => {
  it('starts no other block: nothing more is read from the cache or asked of the source', async () => {
    const [a] = manifest.blocks as [Block, Block, Block]
    const inner = source()
    const failing: BlockSource = {
      name: 'failing',
      async get (cid, options) {
        if (a.shards.cids.includes(cid)) throw new NotFoundError(cid)
        return await inner.get(cid, options)
      }
    }
    const read: string[] = []
    const memory = memoryCache()
    const cache: CacheTier = { ...memory, get: async (key, options) => { read.push(key); return await memory.get(key, options) } }
    const outcome = await loadModelWeights(manifest, { source: failing, coder, keys, cache, concurrency: 1 }).then(() => 'loaded', (err: unknown) => err)
    expect(outcome).toBeInstanceOf(Error)
    expect(read).toEqual([a.cid])
    expect(inner.asked).toEqual([])
  })
})

/**
 * Loads one block at a time over the memory tier, whose `op` of block `cid` is held, the load
 * aborted meanwhile, then the op rejected as by a failing disk: what the load ended with.
 */
async function abortDuringFailingCache (op: 'get' | 'put', cid: string): Promise<{ outcome: unknown, reason: Error, inner: CacheTier }> {
  let reached: () => void = () => {}
  const underway = new Promise<void>(resolve => { reached = resolve })
  let fail: () => void = () => {}
  const failed = new Promise<void>(resolve => { fail = resolve })
  const inner = memoryCache()
  const held = async (): Promise<never> => {
    reached()
    await failed
    throw new Error(`EIO: i/o error, ${op === 'get' ? 'read' : 'write'}`)
  }
  const cache: CacheTier = {
    ...inner,
    get: async key => key === cid && op === 'get' ? await held() : await inner.get(key),
    put: async (key, bytes) => key === cid && op === 'put' ? await held() : await inner.put(key, bytes)
  }
  const controller = new AbortController()
  const reason = new Error('the caller gave up')
  // One block at a time: the held op is the only step under way when the abort comes.
  const load = loadModelWeights(manifest, { source: source(), coder, keys, cache, concurrency: 1, signal: controller.signal })
  await underway
  controller.abort(reason)
  fail()
  return { outcome: await load.then(result => result.report, (err: unknown) => err), reason, inner }
}

describe('an abort while the last block is written to the cache, the write then failing (H20)', () => {
  it('rejects the load with the abort\'s reason instead of loading with the block uncached', async () => {
    const last = manifest.blocks.at(-1) as Block
    // The last block's write is the load's last step: nothing after it sees the abort.
    const { outcome, reason, inner } = await abortDuringFailingCache('put', last.cid)
    expect(outcome).toBe(reason)
    expect(await inner.has(last.cid)).toBe(false)
  })
})

describe('an abort while a block is read from the cache, the read then failing', () => {
  it('rejects the load with the abort\'s reason, not the read\'s failure', async () => {
    const { outcome, reason } = await abortDuringFailingCache('get', (manifest.blocks[0] as Block).cid)
    expect(outcome).toBe(reason)
  })
})
