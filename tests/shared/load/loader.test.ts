/**
 * The load pipeline on its own (shards → rebuild → CID → decrypt → plaintext hash → assemble),
 * over blocks sealed by the real ingest stages, against sources and caches that misbehave.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { defaultReedSolomon, erasureCoder, type ErasureCoder } from '../../../shared/blocks/erasure.ts'
import { MAX_BLOCK_BYTES, partition } from '../../../shared/blocks/partition.ts'
import { sealBlocks } from '../../../shared/blocks/seal-blocks.ts'
import { checkLayout } from '../../../shared/blocks/assemble.ts'
import { IntegrityError, InvalidInputError, NotFoundError, TimeoutError, TooLargeError, UnavailableError } from '../../../shared/errors/errors.ts'
import { loadModelWeights } from '../../../shared/load/loader.ts'
import { fetchModel } from '../../../shared/load/fetch-model.ts'
import { canonicalBytes } from '../../../shared/manifest/canonical.ts'
import { jsonCid } from '../../../shared/crypto/cid.ts'
import { toBase64 } from '../../../shared/crypto/bytes.ts'
import { generateSigningKey, keyId, sign } from '../../../shared/crypto/sign.ts'
import { SEAL_OVERHEAD } from '../../../shared/crypto/seal.ts'
import { httpBlockSource } from '../../../shared/load/http-source.ts'
import { retrying } from '../../../shared/load/retry.ts'
import type { BlockSource } from '../../../shared/load/source.ts'
import { manifestSchema, type Manifest } from '../../../shared/manifest/schema.ts'
import type { TensorInfo } from '../../../shared/model/types.ts'
import { diskCache } from '../../../node-runtime/cache/disk-tier.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import { sealIntoMemory } from '../../helpers/sealed-model.ts'
import { nodeHttpBlockSource } from '../../../node-runtime/sources/http.ts'

const PARTITION = { targetBytes: 2048, maxBytes: 4096 }
const tensors: TensorInfo[] = [
  { name: 'a/kernel', dtype: 'float32', shape: [40, 50], byteLength: 8000, layer: 'a' },
  { name: 'a/bias', dtype: 'float32', shape: [50], byteLength: 200, layer: 'a' },
  { name: 'b/kernel', dtype: 'float32', shape: [50, 10], byteLength: 2000, layer: 'b' }
]
const weights = new Uint8Array(10_200).map((_, i) => (i * 31 + 7) & 0xff)

let coder: ErasureCoder
let manifest: Manifest
const store = new Map<string, Uint8Array>()
const keys = new Map<string, Uint8Array>()
let root: string

async function sealed (k: number, m: number): Promise<{ coder: ErasureCoder, manifest: Manifest }> {
  return await sealIntoMemory({ tensors, weights, partition: PARTITION, erasure: { k, m } }, store, keys)
}

/** Serves `store`, with `tamper` deciding what one object's bytes become. */
const source = (tamper: (cid: string, bytes: Uint8Array) => Uint8Array = (_, b) => b): BlockSource => ({
  name: 'memory',
  async get (cid) {
    const bytes = store.get(cid)
    if (bytes === undefined) throw new NotFoundError(cid)
    return tamper(cid, bytes)
  }
})

beforeAll(async () => {
  ({ coder, manifest } = await sealed(4, 2))
  expect(manifest.blocks.length).toBeGreaterThan(2)
  root = await mkdtemp(join(tmpdir(), 'blockfed-loader-'))
})

afterAll(async () => { await rm(root, { recursive: true, force: true }) })

describe('loadModelWeights', () => {
  it('replaces a data shard of the wrong length by parity, and reports it, instead of failing the block', async () => {
    const bad = manifest.blocks[0]?.shards.cids[0] as string
    const result = await loadModelWeights(manifest, { source: source((cid, b) => cid === bad ? b.subarray(0, b.length - 1) : b), coder, keys })
    expect(Buffer.compare(result.weights, weights)).toBe(0)
    expect(result.report.faults).toEqual([expect.objectContaining({ block: 0, shard: 0, reason: expect.stringMatching(/IntegrityError: shard 0 of block 0: \d+ bytes, expected \d+/) })])
  })

  it('fetches exactly the k data shards of each block when every source answers at once', async () => {
    const result = await loadModelWeights(manifest, { source: source(), coder, keys })
    expect(Buffer.compare(result.weights, weights)).toBe(0)
    expect(result.report.shardsFetched).toBe(4 * manifest.blocks.length)
    expect(result.report.faults).toEqual([])
  })

  it('hedges a data shard that never answers with a parity shard, and cancels the straggler', async () => {
    const stuck = manifest.blocks[1]?.shards.cids[2] as string
    let cancelled = false
    const hanging: BlockSource = {
      name: 'hanging',
      async get (cid, options) {
        if (cid !== stuck) return await source().get(cid, options)
        // No deadline of its own: without a hedge the load would wait here for ever.
        return await new Promise((_resolve, reject) => {
          options.signal.addEventListener('abort', () => { cancelled = true; reject(options.signal.reason) }, { once: true })
        })
      }
    }
    const load = loadModelWeights(manifest, { source: hanging, coder, keys, hedgeMinMs: 20 })
    const outcome = await Promise.race([load, new Promise<'hung'>(resolve => setTimeout(() => resolve('hung'), 5_000).unref())])
    expect(outcome).not.toBe('hung')
    const result = await load
    expect(Buffer.compare(result.weights, weights)).toBe(0)
    expect(cancelled).toBe(true)
    // One parity shard more than the k data shards per block; a cancelled hedge loser is no fault.
    expect(result.report.shardsFetched).toBe(4 * manifest.blocks.length)
    expect(result.report.faults).toEqual([])
  })

  it('replaces a hedge request that fails at once with the next parity shard, not after the straggler\'s deadline', async () => {
    // Data shard 0 of every block answers only at its own 5 s deadline; parity shard 4 is nowhere.
    const asked: number[] = []
    const flaky: BlockSource = {
      name: 'flaky',
      async get (cid, options) {
        asked.push(options.shard ?? -1)
        if (options.shard === 0) {
          await new Promise((_resolve, reject) => {
            const timer = setTimeout(() => reject(new TimeoutError('shard 0: deadline')), 5_000)
            options.signal.addEventListener('abort', () => { clearTimeout(timer); reject(options.signal.reason) }, { once: true })
          })
        }
        if (options.shard === 4) throw new NotFoundError(`${cid}: no holder`)
        return await source().get(cid, options)
      }
    }
    const load = loadModelWeights(manifest, { source: flaky, coder, keys, hedgeMinMs: 20 })
    const outcome = await Promise.race([load, new Promise<'waited'>(resolve => setTimeout(() => resolve('waited'), 3_000).unref())])
    expect(outcome).not.toBe('waited')
    expect(Buffer.compare((await load).weights, weights)).toBe(0)
    // Per block: data shards 0–3, the hedge's parity 4 (missing), then parity 5 at once.
    expect(asked.filter(i => i === 5)).toHaveLength(manifest.blocks.length)
  })

  it('rejects with the caller\'s reason when cancelled, even with every block in the cache', async () => {
    const cache = memoryCache()
    await loadModelWeights(manifest, { source: source(), coder, keys, cache })
    const controller = new AbortController()
    const reason = new Error('released')
    controller.abort(reason)
    await expect(loadModelWeights(manifest, { source: source(), coder, keys, cache, signal: controller.signal, concurrency: 1 })).rejects.toBe(reason)
  })

  it('finds a shard with flipped bytes by its own CID once the block CID fails, and rebuilds without it', async () => {
    const bad = manifest.blocks[0]?.shards.cids[1] as string
    const flip = (cid: string, b: Uint8Array): Uint8Array => cid === bad ? b.map((x, i) => i === 0 ? x ^ 1 : x) : b
    const result = await loadModelWeights(manifest, { source: source(flip), coder, keys })
    expect(Buffer.compare(result.weights, weights)).toBe(0)
    expect(result.report.faults).toEqual([expect.objectContaining({ block: 0, shard: 1, reason: expect.stringMatching(/^IntegrityError: shard/) })])
  })

  it('checks each shard the slow pass tops up with by its own CID: a second bad shard is replaced too (review 50a L2)', async () => {
    // Data shard 1 flipped fails the block CID; the slow pass drops it and asks parity 4, flipped
    // too: caught by its own CID and replaced by parity 5, where taking it would fail the block.
    const bad = new Set([1, 4].map(i => manifest.blocks[0]?.shards.cids[i] as string))
    const flip = (cid: string, b: Uint8Array): Uint8Array => bad.has(cid) ? b.map((x, i) => i === 0 ? x ^ 1 : x) : b
    const result = await loadModelWeights(manifest, { source: source(flip), coder, keys, concurrency: 1 })
    expect(Buffer.compare(result.weights, weights)).toBe(0)
    expect(result.report.faults.map(f => [f.block, f.shard, f.reason.slice(0, 21)])).toEqual([[0, 1, 'IntegrityError: shard'], [0, 4, 'IntegrityError: shard']])
  })

  it('asks again for a straggler cancelled by the fast pass when the block CID then fails, even if the source never settles the cancel', async () => {
    // Block 0: data shard 0 flipped (right length), parity 5 nowhere, data shard 3's first request
    // answered only when this test says so (a source slow to settle a cancel). Shards 1–4 are intact.
    const cids = manifest.blocks[0]?.shards.cids as string[]
    const asked: number[] = []
    let release: () => void = () => {}
    const straggler = new Promise<void>(resolve => { release = resolve })
    const awkward: BlockSource = {
      name: 'awkward',
      async get (cid, options) {
        const shard = cids.indexOf(cid)
        if (shard < 0) return await source().get(cid, options)
        asked.push(shard)
        if (shard === 5) throw new NotFoundError(cid)
        if (shard === 3 && asked.filter(i => i === 3).length === 1) await straggler
        const bytes = await source().get(cid, options)
        return shard === 0 ? bytes.map((x, i) => i === 0 ? x ^ 1 : x) : bytes
      }
    }
    try {
      const result = await loadModelWeights(manifest, { source: awkward, coder, keys, hedgeMinMs: 1 })
      expect(Buffer.compare(result.weights, weights)).toBe(0)
      expect(asked.filter(i => i === 3)).toHaveLength(2)
      // Shard 3 goes back first among the untried, so parity 5 is not needed.
      expect(result.report.faults.map(f => [f.block, f.shard])).toEqual([[0, 0]])
    } finally {
      release()
    }
  })

  it('honours the caller\'s abort with a source that ignores its signal, bare or retried', async () => {
    for (const wrap of [(s: BlockSource) => s, (s: BlockSource) => retrying(s, 3)]) {
      let asked: () => void = () => {}
      const first = new Promise<void>(resolve => { asked = resolve })
      const deaf: BlockSource = { name: 'deaf', get: async () => { asked(); return await new Promise<Uint8Array>(() => {}) } }
      const controller = new AbortController()
      const reason = new Error('caller gave up')
      const load = loadModelWeights(manifest, { source: wrap(deaf), coder, keys, signal: controller.signal })
      await first
      controller.abort(reason)
      const outcome = await Promise.race([load.then(() => 'loaded', (err: unknown) => err), new Promise<'hung'>(resolve => setTimeout(() => resolve('hung'), 5_000).unref())])
      expect(outcome).toBe(reason)
    }
  })

  it('still loads when the disk cache cannot write, counting the blocks as uncached', async () => {
    const dir = join(root, 'cache-write')
    const cache = await diskCache({ dir, capacityBytes: 1 << 20 })
    try {
      // The cache's temporary directory becomes a file: every write fails as on a broken disk.
      await rm(join(dir, 'tmp'), { recursive: true })
      await writeFile(join(dir, 'tmp'), 'not a directory')
      const result = await loadModelWeights(manifest, { source: source(), coder, keys, cache })
      expect(Buffer.compare(result.weights, weights)).toBe(0)
      expect(result.report.uncached).toBe(manifest.blocks.length)
    } finally {
      await cache.close()
    }
  })

  it('treats a cache entry it cannot read as a miss and fetches the block again', async () => {
    const dir = join(root, 'cache-read')
    const cache = await diskCache({ dir, capacityBytes: 1 << 20 })
    try {
      await loadModelWeights(manifest, { source: source(), coder, keys, cache })
      const first = manifest.blocks[0]?.cid as string
      // The cached file becomes a directory: reading it fails (EISDIR), as on a bad sector.
      await rm(join(dir, 'blocks', first))
      await mkdir(join(dir, 'blocks', first))
      const result = await loadModelWeights(manifest, { source: source(), coder, keys, cache })
      expect(Buffer.compare(result.weights, weights)).toBe(0)
      expect(result.report.fetchedBlocks).toBe(1)
      expect(result.report.fromCache).toBe(manifest.blocks.length - 1)
    } finally {
      await cache.close()
    }
  })
})

describe('a signed manifest that claims more than its blocks hold', () => {
  const signer = generateSigningKey()
  /** Signed as a coordinator whose key the runtime pins would sign it, without the schema check signManifest makes first. */
  const signed = async (m: Manifest): Promise<unknown> => {
    const bytes = canonicalBytes(m)
    return { manifest: m, cid: await jsonCid(bytes), signature: { alg: 'Ed25519', keyId: await keyId(signer.publicKey), value: toBase64(sign(bytes, signer.secretKey)) } }
  }
  /** fetchModel over `m`, counting what it asks of the source and the key service; the cache it filled. */
  const load = async (m: Manifest): Promise<{ error: unknown, requests: number, keyRequests: number, cached: number }> => {
    let requests = 0
    let keyRequests = 0
    const cache = memoryCache()
    const counting: BlockSource = { name: 'counting', async get (cid, options) { requests++; return await source().get(cid, options) } }
    const error = await fetchModel({
      client: {} as never,
      coordinatorKey: signer.publicKey,
      model: m.model,
      version: m.version,
      signedManifest: await signed(m),
      keys: async () => { keyRequests++; return new Map([...keys].map(([id, k]) => [id, k.slice()])) },
      source: counting,
      cache
    }).then(() => undefined, (err: unknown) => err)
    return { error, requests, keyRequests, cached: cache.stats().entries }
  }

  it('loads the honest manifest (the baseline the cases below change)', async () => {
    expect(await load(manifest)).toEqual({ error: undefined, requests: expect.any(Number), keyRequests: 1, cached: manifest.blocks.length })
  })

  it('a block whose plaintext is longer than its sealed bytes is refused, naming the field, before any key, shard or cache entry', async () => {
    // Tiled and summed consistently: only the sealed length gives it away. Before, every block was
    // fetched and cached, the weights buffer sized by the claim, and the load failed at place().
    const longer = structuredClone(manifest)
    const at = longer.blocks.findIndex(b => { const last = b.parts.at(-1); return last !== undefined && last.offset + last.length === longer.tensors[last.tensor]?.byteLength })
    const block = longer.blocks[at] as Manifest['blocks'][number]
    const last = block.parts.at(-1) as Manifest['blocks'][number]['parts'][number]
    // Consistent in every other number: the tensor's shape covers the extra float32s, and the
    // partition allows a block that long.
    const extra = 16 << 20
    const grown = longer.tensors[last.tensor] as TensorInfo
    grown.byteLength += extra
    grown.shape = [grown.byteLength / 4]
    longer.partition.maxBytes = MAX_BLOCK_BYTES
    last.length += extra
    block.plaintextLength += extra
    if (longer.topology.kind === 'tfjs') (longer.topology.weightFiles[0] as { byteLength: number }).byteLength += extra
    const result = await load(longer)
    expect(result.error).toBeInstanceOf(InvalidInputError)
    expect((result.error as Error).message).toBe(`manifest: manifest.blocks.${at}.sealedLength: block ${at}: sealed length ${block.sealedLength}, but a plaintext of ${block.plaintextLength} bytes seals to ${block.plaintextLength + SEAL_OVERHEAD}`)
    expect(result).toMatchObject({ requests: 0, keyRequests: 0, cached: 0 })
  })

  it('an ONNX topology that places one tensor many times is refused before anything is fetched (the .onnx rebuilt from it would be 2,000 tensors long)', async () => {
    const onnx = structuredClone(manifest)
    onnx.format = 'onnx'
    onnx.topology = { kind: 'onnx', skeleton: '', holes: [...tensors.map((_, tensor) => ({ offset: 0, tensor })), ...Array.from({ length: 2000 }, () => ({ offset: 0, tensor: 0 }))], external: [] }
    const result = await load(onnx)
    expect(result.error).toBeInstanceOf(InvalidInputError)
    expect((result.error as Error).message).toBe('manifest: manifest.topology.holes.3.tensor: tensor 0 (a/kernel) is placed a second time')
    expect(result).toMatchObject({ requests: 0, keyRequests: 0, cached: 0 })
  })

  it('a consistent but huge block (16 GiB) is refused by the schema, naming the bound, before anything is fetched or allocated', async () => {
    // Every number agrees (one tensor, one block, shards for its sealed length): only the size
    // gives it away. Before the bound, the runtime allocated the 16 GiB buffer and failed later
    // at the shards' per-object limit.
    const n = 16 * 2 ** 30
    const huge = structuredClone(manifest)
    const first = huge.blocks[0] as Manifest['blocks'][number]
    huge.tensors = [{ ...(huge.tensors[0] as TensorInfo), shape: [n / 4], byteLength: n }]
    huge.blocks = [{ ...first, parts: [{ tensor: 0, offset: 0, length: n }], plaintextLength: n, sealedLength: n + SEAL_OVERHEAD, shards: { size: Math.ceil((n + SEAL_OVERHEAD) / 4), cids: first.shards.cids } }]
    huge.topology = { kind: 'tfjs', modelJson: '{}', weightFiles: [{ path: 'w.bin', byteLength: n }] }
    const result = await load(huge)
    expect(result.error).toBeInstanceOf(InvalidInputError)
    expect((result.error as Error).message).toBe(`manifest: manifest.blocks.0.plaintextLength: block 0: ${n} bytes, above the partition's maxBytes ${huge.partition.maxBytes}`)
    expect(result).toMatchObject({ requests: 0, keyRequests: 0, cached: 0 })
    huge.partition.maxBytes = n
    expect((await load(huge)).error).toMatchObject({ message: expect.stringContaining(`manifest.partition.maxBytes: Too big: expected number to be <=${MAX_BLOCK_BYTES}`) })
  })

  it('a tensor whose bytes disagree with its shape and dtype is refused, naming the tensor', async () => {
    const wrong = structuredClone(manifest)
    ;(wrong.tensors[0] as TensorInfo).shape = [40, 51]
    const result = await load(wrong)
    expect(result.error).toBeInstanceOf(InvalidInputError)
    expect((result.error as Error).message).toBe('manifest: manifest.tensors.0.byteLength: tensor a/kernel: 8000 bytes, but float32 of shape [40, 51] holds 8160')
    expect(result).toMatchObject({ requests: 0, keyRequests: 0, cached: 0 })
    ;(wrong.tensors[0] as TensorInfo).shape = [40, 50]
    ;(wrong.tensors[0] as TensorInfo).dtype = 'float33'
    expect((await load(wrong)).error).toMatchObject({ message: 'manifest: manifest.tensors.0.dtype: tensor a/kernel: unknown dtype float33' })
    // Shapes past 2^53 elements never match (a product rounded to a float could).
    ;(wrong.tensors[0] as TensorInfo).dtype = 'float32'
    ;(wrong.tensors[0] as TensorInfo).shape = [2 ** 30, 2 ** 30, 2 ** 30]
    expect((await load(wrong)).error).toMatchObject({ message: 'manifest: manifest.tensors.0.byteLength: tensor a/kernel: 8000 bytes, but float32 of shape [1073741824, 1073741824, 1073741824] holds more than 2^53 elements' })
  })

})

describe('checkLayout', () => {
  it('refuses parts that overlap inside a tensor, even when the byte count adds up', () => {
    const overlapping = structuredClone(manifest)
    const parts = overlapping.blocks.flatMap(b => b.parts).filter(p => p.tensor === 0)
    expect(parts.length).toBeGreaterThan(1)
    // Move the second piece of tensor 0 back by 4 bytes: same lengths, one 4-byte overlap, one gap.
    ;(parts[1] as { offset: number }).offset -= 4
    expect(() => checkLayout(overlapping)).toThrow(IntegrityError)
    expect(() => checkLayout(overlapping)).toThrow(/tensor a\/kernel overlaps itself at byte/)
  })

  it('refuses a block whose index is not its position (two blocks would write one region)', () => {
    const duplicated = structuredClone(manifest)
    ;(duplicated.blocks[1] as { index: number }).index = 0
    expect(() => checkLayout(duplicated)).toThrow(/block at position 1 claims index 0/)
  })
})

describe('erasure parameters', () => {
  it('a manifest whose blocks carry another k+m than it declares is refused by the schema', () => {
    const other = structuredClone(manifest)
    other.erasure.k = 6
    other.erasure.m = 3
    const parsed = manifestSchema.safeParse(other)
    expect(parsed.success).toBe(false)
    expect(parsed.error?.issues[0]?.message).toMatch(/block 0: 6 shards, erasure 6\+3 makes 9/)
  })

  it('sealing refuses to reuse a stored block sharded under other parameters', async () => {
    const six = await erasureCoder(defaultReedSolomon, { k: 6, m: 3 })
    const stored = new Map(manifest.blocks.map(b => [b.plaintextSha256, { cid: b.cid, keyId: b.keyId, sealedLength: b.sealedLength, shards: b.shards }]))
    const reseal = sealBlocks({ tensors, weights }, partition(tensors, PARTITION), { coder: six, findStored: async sha => stored.get(sha), access: () => 'public' })
    await expect(reseal).rejects.toThrow(InvalidInputError)
    await expect(reseal).rejects.toThrow(/has 6 shards, erasure 6\+3 makes 9; a data dir keeps the erasure parameters/)
  })
})

describe('HTTP sources', () => {
  let server: http.Server
  let base: string
  let resets = 0
  const big = new Uint8Array(3 << 20)

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url?.endsWith('/chunked') === true) {
        res.writeHead(200) // no Content-Length: chunked transfer
        for (let i = 0; i < 3; i++) res.write(big.subarray(i << 20, (i + 1) << 20))
        res.end()
      } else if (req.url?.endsWith('/gzip') === true) {
        const body = gzipSync(big)
        res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': body.length })
        res.end(body)
      } else if (req.url?.endsWith('/reset-once') === true) {
        res.writeHead(200, { 'content-length': 100 })
        if (resets++ === 0) {
          res.write(new Uint8Array(10))
          setTimeout(() => req.socket.destroy(), 20)
          return
        }
        res.end(new Uint8Array(100).fill(9))
      } else if (req.url?.endsWith('/stall') === true) {
        res.writeHead(200, { 'content-length': 100 })
        res.write(new Uint8Array(10)) // and nothing more
      }
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  })

  afterAll(async () => { server.closeAllConnections(); await new Promise(resolve => server.close(resolve)) })

  it('the fetch source bounds the body it reads, not the Content-Length it is told (chunked, gzip)', async () => {
    const src = httpBlockSource({ baseUrl: base, maxBytes: 1 << 20 })
    const signal = new AbortController().signal
    await expect(src.get('chunked', { signal })).rejects.toThrow(TooLargeError)
    await expect(src.get('gzip', { signal })).rejects.toThrow(/the body passed the 1048576-byte bound/)
  })

  it('the Node and fetch sources make a connection reset mid-body an UnavailableError, so it is retried', async () => {
    const node = nodeHttpBlockSource({ baseUrl: base })
    try {
      for (const src of [node, httpBlockSource({ baseUrl: base })]) {
        resets = 0
        const bytes = await retrying(src, 2, 10).get('reset-once', { signal: new AbortController().signal })
        expect(bytes).toEqual(new Uint8Array(100).fill(9))
        expect(resets).toBe(2)
        resets = 0
        await expect(src.get('reset-once', { signal: new AbortController().signal })).rejects.toThrow(UnavailableError)
      }
    } finally {
      node.close()
    }
  })

  it('the fetch source makes a body that stalls past its deadline a TimeoutError, and a caller\'s abort the caller\'s reason', async () => {
    const src = httpBlockSource({ baseUrl: base, timeoutMs: 200 })
    await expect(src.get('stall', { signal: new AbortController().signal })).rejects.toThrow(TimeoutError)
    const caller = new AbortController()
    const reason = new Error('the load was cancelled')
    setTimeout(() => caller.abort(reason), 50)
    await expect(src.get('stall', { signal: caller.signal })).rejects.toBe(reason)
  })
})
