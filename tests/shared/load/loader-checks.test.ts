/**
 * Two checks of the load pipeline (shared/load/loader.ts) that review 38b found no test
 * covered:
 * - the plaintext sha-256 check in openBlock (loader.ts:223, mutant L1): a block whose sealed
 *   bytes match its CID but whose decrypted plaintext is not the one the manifest records must
 *   be refused and never cached, fetched or from the cache;
 * - the CID check of a cache hit (loader.ts:252, mutant L2): the memory tier (and a browser tier)
 *   do not verify what they hold, so the loader must drop an entry whose bytes do not hash to
 *   its CID and fetch the block again.
 * Also what a block short of shards is refused with, and the store audit (shared/load/audit.ts)
 * that finds the damage a load never asks about.
 * Blocks are sealed by the real ingest stages, as in loader.test.ts.
 */
import { describe, it, expect, beforeAll } from 'vitest'
import type { ErasureCoder } from '../../../shared/blocks/erasure.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import type { CacheTier } from '../../../shared/cache/types.ts'
import { sha256Hex } from '../../../shared/crypto/hash.ts'
import { IntegrityError, NotFoundError, UnavailableError } from '../../../shared/errors/errors.ts'
import { auditShards } from '../../../shared/load/audit.ts'
import { loadModelWeights } from '../../../shared/load/loader.ts'
import type { BlockSource } from '../../../shared/load/source.ts'
import { manifestSchema, type Manifest } from '../../../shared/manifest/schema.ts'
import type { TensorInfo } from '../../../shared/model/types.ts'
import { sealIntoMemory } from '../../helpers/sealed-model.ts'

const PARTITION = { targetBytes: 2048, maxBytes: 4096 }
const tensors: TensorInfo[] = [
  { name: 'a/kernel', dtype: 'float32', shape: [20, 50], byteLength: 4000, layer: 'a' },
  { name: 'b/kernel', dtype: 'float32', shape: [50, 10], byteLength: 2000, layer: 'b' }
]
const weights = new Uint8Array(6000).map((_, i) => (i * 29 + 5) & 0xff)

let coder: ErasureCoder
let manifest: Manifest
/** Sealed blocks and shards by CID, as a coordinator would serve them. */
const store = new Map<string, Uint8Array>()
const keys = new Map<string, Uint8Array>()

/** Serves `store`, counting the requests. */
const source = (): BlockSource & { requests: number } => ({
  name: 'memory',
  requests: 0,
  async get (cid) {
    this.requests++
    const bytes = store.get(cid)
    if (bytes === undefined) throw new NotFoundError(cid)
    return bytes.slice()
  }
})

/** A memory cache that records the keys deleted from it. */
const recordingCache = (): CacheTier & { deleted: string[] } => {
  const inner = memoryCache()
  const deleted: string[] = []
  return { ...inner, deleted, delete: async key => { deleted.push(key); return await inner.delete(key) } }
}

beforeAll(async () => {
  ;({ coder, manifest } = await sealIntoMemory({ tensors, weights, partition: PARTITION, erasure: { k: 2, m: 1 } }, store, keys))
  expect(manifest.blocks.length).toBeGreaterThan(1)
})

describe('a block whose plaintext is not the one the manifest records', () => {
  /** The manifest with block `at` recording another plaintext's sha-256; its CID, shards and key stay valid. */
  const misrecorded = async (at: number): Promise<Manifest> => {
    const m = structuredClone(manifest)
    const block = m.blocks[at] as Manifest['blocks'][number]
    block.plaintextSha256 = await sha256Hex(new TextEncoder().encode('another plaintext'))
    return manifestSchema.parse(m) // still a valid manifest: only the sealed content disagrees
  }

  it('loads the manifest as sealed (the baseline) and caches every block', async () => {
    const cache = memoryCache()
    const result = await loadModelWeights(manifest, { source: source(), coder, keys, cache })
    expect(Buffer.compare(result.weights, weights)).toBe(0)
    expect(cache.stats().entries).toBe(manifest.blocks.length)
  })

  it('is refused after fetching and decrypting, naming the block, and is not cached', async () => {
    const m = await misrecorded(1)
    const bad = m.blocks[1] as Manifest['blocks'][number]
    const cache = memoryCache()
    const error = await loadModelWeights(m, { source: source(), coder, keys, cache }).then(() => undefined, (err: unknown) => err)
    expect(error).toBeInstanceOf(IntegrityError)
    expect((error as Error).message).toBe(`block 1 (${bad.cid}): plaintext does not match its recorded sha-256`)
    expect(await cache.has(bad.cid)).toBe(false)
  })

  it('is refused when its sealed bytes come from the cache too', async () => {
    const m = await misrecorded(0)
    const bad = m.blocks[0] as Manifest['blocks'][number]
    const cache = memoryCache()
    await cache.put(bad.cid, store.get(bad.cid) as Uint8Array) // the genuine sealed block: its CID holds
    const error = await loadModelWeights(m, { source: source(), coder, keys, cache }).then(() => undefined, (err: unknown) => err)
    expect(error).toBeInstanceOf(IntegrityError)
    expect((error as Error).message).toBe(`block 0 (${bad.cid}): plaintext does not match its recorded sha-256`)
  })
})

describe('a cache entry whose bytes do not hash to its CID', () => {
  it('is dropped, the block fetched again from the source, and the cache then holds the genuine bytes', async () => {
    const block = manifest.blocks[0] as Manifest['blocks'][number]
    const genuine = store.get(block.cid) as Uint8Array
    const corrupt = genuine.slice()
    corrupt[corrupt.length >> 1] = (corrupt[corrupt.length >> 1] as number) ^ 0x40
    const cache = recordingCache()
    await cache.put(block.cid, corrupt)
    const result = await loadModelWeights(manifest, { source: source(), coder, keys, cache })
    expect(Buffer.compare(result.weights, weights)).toBe(0)
    expect(result.report.fromCache).toBe(0)
    expect(result.report.fetchedBlocks).toBe(manifest.blocks.length)
    expect(cache.deleted).toEqual([block.cid])
    expect(Buffer.compare(await cache.get(block.cid) as Uint8Array, genuine)).toBe(0)
  })

  it('is dropped when truncated, while intact entries of the other blocks are used', async () => {
    const cache = recordingCache()
    for (const b of manifest.blocks) await cache.put(b.cid, store.get(b.cid) as Uint8Array)
    const last = manifest.blocks.at(-1) as Manifest['blocks'][number]
    const genuine = store.get(last.cid) as Uint8Array
    await cache.put(last.cid, genuine.subarray(0, genuine.length - 1))
    const src = source()
    const result = await loadModelWeights(manifest, { source: src, coder, keys, cache })
    expect(Buffer.compare(result.weights, weights)).toBe(0)
    expect(result.report.fromCache).toBe(manifest.blocks.length - 1)
    expect(result.report.fetchedBlocks).toBe(1)
    expect(src.requests).toBeGreaterThanOrEqual(coder.params.k)
    expect(cache.deleted).toEqual([last.cid])
    expect(Buffer.compare(await cache.get(last.cid) as Uint8Array, genuine)).toBe(0)
  })
})

describe('a block whose shards cannot be had', () => {
  it('is refused with the causes by kind, so an unreachable source does not read as a damaged store', async () => {
    const unreachable: BlockSource = { name: 'down', get: async cid => { throw new UnavailableError(`GET /v1/blocks/${cid}: connect ECONNREFUSED`) } }
    const err = await loadModelWeights(manifest, { source: unreachable, coder, keys, concurrency: 1 }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(UnavailableError)
    expect((err as Error).message).toMatch(/^block 0 \(\w+\): only 0 of 3 shards intact, need 2; shards failed: 3 UnavailableError \(first: GET \/v1\/blocks\/\w+: connect ECONNREFUSED\)$/)
  })
})

describe('a store audit (auditShards)', () => {
  it('checks every shard, parity too, and says how many more each block can lose', async () => {
    const [first, second] = manifest.blocks as [Manifest['blocks'][number], Manifest['blocks'][number]]
    const parity = first.shards.cids[2] as string
    const data = second.shards.cids[0] as string
    const damaged = (store.get(parity) as Uint8Array).slice()
    damaged[0] = (damaged[0] as number) ^ 1
    const audited = await auditShards(manifest, {
      source: { name: 'damaged', get: async cid => cid === data ? await Promise.reject(new NotFoundError(cid)) : cid === parity ? damaged : store.get(cid) as Uint8Array }
    })
    const total = manifest.blocks.length * 3
    expect(audited.shardsChecked).toBe(total)
    expect(audited.blocks.map(b => [b.index, b.intact, b.spare])).toEqual(manifest.blocks.map(b => [b.index, b === first || b === second ? 2 : 3, b === first || b === second ? 0 : 1]))
    expect(audited.faults.map(f => [f.block, f.shard, f.cid, f.reason.split(':')[0]])).toEqual([[first.index, 2, parity, 'IntegrityError'], [second.index, 0, data, 'NotFoundError']])
    // A load of the same store passes without a fault: it never asks for the damaged parity shard.
    const loaded = await loadModelWeights(manifest, { source: { name: 'damaged', get: async cid => cid === parity ? damaged : store.get(cid) as Uint8Array }, coder, keys })
    expect(loaded.report.faults).toEqual([])
  })
})
