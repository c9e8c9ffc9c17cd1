/**
 * The load pipeline (DESIGN.md, pipeline 3) for one manifest:
 *   cache? → else the k data shards in parallel from the source → any shard that fails its CID,
 *   does not arrive or straggles is replaced by a parity shard → rebuild (Reed-Solomon, any k of k+m) →
 *   verify block CID → decrypt (AES-256-GCM) → verify plaintext sha-256 → cache → place.
 * Every shard counts toward the report's bytes; every rejected or missing shard is a fault.
 * Blocks are handled in manifest (layer) order with bounded concurrency. A block that fails any
 * check is never cached or used; the load fails with the first such error, naming the block.
 */
import pLimit from 'p-limit'
import type { ErasureCoder } from '../blocks/erasure.ts'
import type { CacheTier } from '../cache/types.ts'
import type { Manifest, ManifestBlock } from '../manifest/schema.ts'
import { weightAssembler } from '../blocks/assemble.ts'
import { verifyCid } from '../crypto/cid.ts'
import { sha256Hex } from '../crypto/hash.ts'
import { open } from '../crypto/seal.ts'
import { BlockfedError, IntegrityError, UnavailableError, WrongKeyError } from '../errors/errors.ts'
import type { BlockSource } from './source.ts'
import { untilAborted } from './deadline.ts'

export interface ShardFault {
  block: number
  shard: number
  cid: string
  reason: string
}

/** A shard's fault, its reason the error's name and message (faultSummary groups by that name). */
export const shardFault = (block: number, shard: number, cid: string, err: unknown): ShardFault =>
  ({ block, shard, cid, reason: err instanceof Error ? `${err.name}: ${err.message}` : String(err) })

export interface LoadReport {
  blocks: number
  fromCache: number
  fetchedBlocks: number
  /**
   * Verified blocks used but not cached: the cache had no room left beside its pinned entries
   * (the version in use and its rollback target), or could not write (a full or failing disk).
   * The load still succeeds; the next one fetches them again.
   */
  uncached: number
  shardsFetched: number
  bytesFetched: number
  /** Shards that were missing or failed their CID; tolerated while k of k+m remained. */
  faults: ShardFault[]
  ms: number
}

export interface LoadOptions {
  source: BlockSource
  coder: ErasureCoder
  /** keyId → 32-byte data key, for every block the caller may load. */
  keys: Map<string, Uint8Array>
  cache?: CacheTier
  /** Blocks in flight at once. */
  concurrency?: number
  signal?: AbortSignal
  /** Floor of the wait before a straggling shard is hedged with a parity shard (`HEDGE_MIN_MS`). */
  hedgeMinMs?: number
  onBlock?: (done: number, total: number, block: ManifestBlock) => void
}

export interface LoadResult {
  weights: Uint8Array
  report: LoadReport
}

/**
 * A shard still missing this long after the block's first shard arrived (`HEDGE_FACTOR` × that
 * first wait, at least `hedgeMinMs`) gets a parity shard requested beside it; whichever k arrive
 * first rebuild the block. A hedged request after the expected latency bounds the tail for
 * ≈ 1/k more bytes (Dean & Barroso, "The Tail at Scale", CACM 2013), where waiting would cost the
 * straggler's whole request deadline.
 */
export const HEDGE_MIN_MS = 1_000
export const HEDGE_FACTOR = 4

/**
 * Fetches the k data shards first. Any k shards that arrive are decoded and the result checked
 * against the block CID, which proves every shard used without a hash of its own (one SHA-256
 * pass instead of two). A shard that fails or does not arrive is replaced by the next untried
 * one at once; a straggler is hedged (above). Only when the block CID fails is each shard checked
 * against its own CID, the bad ones dropped, and the block rebuilt from k intact shards.
 */
async function fetchSealed (block: ManifestBlock, options: LoadOptions, report: LoadReport, signal: AbortSignal): Promise<Uint8Array> {
  const { k } = options.coder.params
  const cids = block.shards.cids
  const shards: Array<Uint8Array | undefined> = new Array(cids.length).fill(undefined)
  const size = options.coder.shardSize(block.sealedLength)
  const hedgeMinMs = options.hedgeMinMs ?? HEDGE_MIN_MS
  const fault = (index: number, err: unknown): void => {
    report.faults.push(shardFault(block.index, index, cids[index] as string, err))
  }
  /** Shard indices not fetched yet, data shards first; a request cancelled unanswered goes back. */
  const untried = cids.map((_, i) => i)
  const held = (): number => shards.filter(s => s !== undefined).length
  /** Requests not settled yet, cancelled ones included: the slow pass waits for their shards to go back. */
  const outstanding = new Set<Promise<void>>()

  /**
   * The bytes of shard `index`, or undefined when it failed (a fault) or `cancel` fired first.
   * The source is raced against `stop` (the load's signal and `cancel`): a source that ignores its
   * signal must not keep the load from its caller's abort, nor a cancelled shard from the slow pass.
   */
  const fetchOne = async (index: number, verify: boolean, cancel: AbortSignal, stop: AbortSignal): Promise<Uint8Array | undefined> => {
    try {
      const bytes = await untilAborted(stop, options.source.get(cids[index] as string, { signal: stop, block: block.cid, shard: index, size }))
      report.shardsFetched++
      report.bytesFetched += bytes.length
      // A shard of the wrong length cannot be the one its CID names; caught here, it is replaced
      // by parity like any other bad shard, where the decoder would fail the whole block.
      if (bytes.length !== size) throw new IntegrityError(`shard ${index} of block ${block.index}: ${bytes.length} bytes, expected ${size}`)
      if (verify) await verifyCid(cids[index] as string, bytes, 'shard')
      return bytes
    } catch (err) {
      if (signal.aborted) throw err
      if (cancel.aborted) {
        untried.unshift(index)
        return undefined
      }
      fault(index, err)
      return undefined
    }
  }

  /** Fetches untried shards until k are held or none is left; requests still out then are cancelled. */
  const gather = async (verify: boolean): Promise<void> => {
    const cancel = new AbortController()
    const stop = AbortSignal.any([signal, cancel.signal])
    let inFlight = 0
    // Requests kept out: k, plus one per hedge started, so a hedge that fails is replaced at once
    // instead of after the straggler's whole deadline.
    let target = k
    let hedge: ReturnType<typeof setTimeout> | undefined
    await new Promise<void>((resolve, reject) => {
      let settled = false
      const finish = (err?: unknown): void => {
        if (settled) return
        settled = true
        clearTimeout(hedge)
        cancel.abort()
        if (err === undefined) resolve()
        else reject(err)
      }
      const enough = (): boolean => held() >= k || (inFlight === 0 && untried.length === 0)
      const start = (): void => {
        const index = untried.shift() as number
        const began = performance.now()
        inFlight++
        const request: Promise<void> = fetchOne(index, verify, cancel.signal, stop).then(bytes => {
          inFlight--
          if (settled) {
            if (bytes !== undefined) untried.unshift(index) // unused: still a candidate for the slow path
            return
          }
          if (bytes === undefined) {
            topUp()
          } else {
            shards[index] = bytes
            hedge ??= setTimeout(() => {
              for (let missing = k - held(); missing > 0 && untried.length > 0; missing--) {
                target++
                start()
              }
            }, Math.max(hedgeMinMs, HEDGE_FACTOR * (performance.now() - began)))
          }
          if (enough()) finish()
        }, finish).finally(() => { outstanding.delete(request) })
        outstanding.add(request)
      }
      const topUp = (): void => {
        while (held() + inFlight < target && untried.length > 0) start()
      }
      topUp()
      if (enough()) finish()
    })
  }

  await gather(false)
  if (held() >= k) {
    const sealed = await options.coder.decode(shards, block.sealedLength)
    try {
      await verifyCid(block.cid, sealed, `block ${block.index}`)
      return sealed
    } catch (err) {
      if (!(err instanceof IntegrityError)) throw err
    }
    // Slow path: find the bad shards by their own CIDs, then top up with intact ones.
    await Promise.all(shards.map(async (bytes, i) => {
      if (bytes === undefined) return
      try {
        await verifyCid(cids[i] as string, bytes, 'shard')
      } catch (err) {
        shards[i] = undefined
        fault(i, err)
      }
    }))
    // The fast pass cancelled its stragglers without waiting for them; they settle at once (raced
    // against the cancel above), and each puts its shard back among the untried.
    await Promise.all(outstanding)
    await gather(true)
  }
  if (held() < k) {
    throw new UnavailableError(`block ${block.index} (${block.cid}): only ${held()} of ${cids.length} shards intact, need ${k}${faultSummary(report.faults.filter(f => f.block === block.index))}`)
  }
  const sealed = await options.coder.decode(shards, block.sealedLength)
  await verifyCid(block.cid, sealed, `block ${block.index}`)
  return sealed
}

/**
 * Why a block's shards were short, by kind: "6 of 6 unreachable" reads as a damaged store
 * unless the causes are said (an offline rollback of a block never cached fails this way).
 */
function faultSummary (faults: ShardFault[]): string {
  if (faults.length === 0) return ''
  const byKind = new Map<string, ShardFault[]>()
  for (const f of faults) {
    const kind = f.reason.slice(0, Math.max(0, f.reason.indexOf(':'))) || 'Error'
    byKind.set(kind, [...byKind.get(kind) ?? [], f])
  }
  return `; shards failed: ${[...byKind].map(([kind, list]) => `${list.length} ${kind} (first: ${(list[0] as ShardFault).reason.slice(kind.length + 2)})`).join(', ')}`
}

/**
 * Decrypts a sealed block (its bytes already checked against its CID) with its granted key and
 * checks the plaintext against its recorded sha-256; WrongKeyError when the key does not open it.
 */
export async function openBlock (block: ManifestBlock, sealed: Uint8Array, keys: Map<string, Uint8Array>): Promise<Uint8Array> {
  const key = keys.get(block.keyId)
  if (key === undefined) throw new BlockfedError(`block ${block.index}: no data key ${block.keyId} granted to this client`)
  let plaintext: Uint8Array
  try {
    plaintext = await open(sealed, key, `block ${block.index} (${block.cid})`)
  } catch (err) {
    // Callers pass bytes already checked against the block's CID: only the key can be wrong.
    if (err instanceof IntegrityError) throw new WrongKeyError(err.message, block.keyId, { cause: err })
    throw err
  }
  if (await sha256Hex(plaintext) !== block.plaintextSha256) {
    throw new IntegrityError(`block ${block.index} (${block.cid}): plaintext does not match its recorded sha-256`)
  }
  return plaintext
}

const emptyReport = (manifest: Manifest): LoadReport =>
  ({ blocks: manifest.blocks.length, fromCache: 0, fetchedBlocks: 0, uncached: 0, shardsFetched: 0, bytesFetched: 0, faults: [], ms: 0 })

export async function loadModelWeights (manifest: Manifest, options: LoadOptions): Promise<LoadResult> {
  const started = performance.now()
  const report = emptyReport(manifest)
  const assembler = weightAssembler(manifest)
  const controller = new AbortController()
  const signal = options.signal === undefined ? controller.signal : AbortSignal.any([options.signal, controller.signal])
  const limit = pLimit(options.concurrency ?? 8)
  let done = 0
  /**
   * Sealed blocks fetched, by CID, kept while a place of the same CID may still wait for them:
   * kept to the end of the load, every sealed block stayed in memory beside the weights (review
   * 46b: the peak was about twice the model).
   */
  const underway = new Map<string, Promise<Uint8Array>>()
  const placesLeft = new Map<string, number>()
  for (const block of manifest.blocks) placesLeft.set(block.cid, (placesLeft.get(block.cid) ?? 0) + 1)
  const placed = (cid: string): void => {
    const left = (placesLeft.get(cid) ?? 1) - 1
    placesLeft.set(cid, left)
    if (left === 0) underway.delete(cid)
  }

  const loadOne = async (block: ManifestBlock): Promise<void> => {
    // Queued behind the concurrency limit: a load cancelled meanwhile must not go on from cache.
    signal.throwIfAborted()
    // A cache that cannot be read is a miss: the block is fetched again.
    // An abort meanwhile ends the load with its own reason, not the read's failure.
    const cached = await options.cache?.get(block.cid).catch((err: unknown) => { if (signal.aborted) throw signal.reason })
    if (cached !== undefined) {
      // The cache is local disk: still verify, and on a CID mismatch drop the entry and refetch.
      // Bytes that match their CID are the block itself: if they then fail to open, the key is
      // wrong, not the cache, and refetching the same bytes would not help.
      let intact = true
      try {
        await verifyCid(block.cid, cached, `cached block ${block.index}`)
      } catch (err) {
        if (!(err instanceof IntegrityError)) throw err
        intact = false
        await options.cache?.delete(block.cid).catch(() => {}) // a failed delete leaves a bad entry the next load also refetches
      }
      if (intact) {
        assembler.place(block.index, await openBlock(block, cached, options.keys))
        report.fromCache++
        options.onBlock?.(++done, manifest.blocks.length, block)
        return
      }
    }
    // A block at two places of one manifest (equal layers are sealed once) is fetched once: the
    // second place waits for the first's bytes (it missed the cache while they were under way).
    let fetching = underway.get(block.cid)
    const first = fetching === undefined
    if (fetching === undefined) {
      fetching = fetchSealed(block, options, report, signal)
      underway.set(block.cid, fetching)
    }
    const sealed = await fetching
    const plaintext = await openBlock(block, sealed, options.keys)
    try {
      // A cache that skips the block (larger than it) holds it no more than one that failed.
      if (first && await options.cache?.put(block.cid, sealed) === false) report.uncached++
    } catch (err) {
      // Pins outrank this load, and a full or failing disk is the cache's problem: neither must
      // keep a verified model from running. An abort still stops the load, with its own reason:
      // the write's failure is not why the load ended.
      if (signal.aborted) throw signal.reason
      report.uncached++
    }
    assembler.place(block.index, plaintext)
    report.fetchedBlocks++
    options.onBlock?.(++done, manifest.blocks.length, block)
  }

  try {
    await Promise.all(manifest.blocks.map(async block => await limit(async () => {
      try {
        await loadOne(block)
      } catch (err) {
        // At once: p-limit starts the next queued block as soon as this one settles, before the
        // load's rejection reaches the catch below (review 38b: one more block was read and fetched).
        controller.abort(err)
        throw err
      } finally {
        placed(block.cid)
      }
    })))
  } catch (err) {
    controller.abort()
    limit.clearQueue()
    throw err
  }
  report.ms = performance.now() - started
  return { weights: assembler.weights, report }
}

export interface PrefetchOptions {
  source: BlockSource
  coder: ErasureCoder
  cache: CacheTier
  concurrency?: number
  signal?: AbortSignal
}

/**
 * Fetches the sealed blocks of `manifest` that `cache` lacks, verifies each by its CID and
 * caches it — no keys needed, nothing decrypted (e.g. the blocks of a version just announced,
 * so that the upgrade later reads them locally). Returns the bytes fetched. A block that cannot
 * be fetched or verified is skipped: prefetching is an optimisation, the load will try again.
 */
export async function prefetchBlocks (manifest: Manifest, options: PrefetchOptions): Promise<{ blocks: number, bytesFetched: number }> {
  const report = emptyReport(manifest)
  const signal = options.signal ?? new AbortController().signal
  const limit = pLimit(options.concurrency ?? 2)
  const loadOptions: LoadOptions = { source: options.source, coder: options.coder, keys: new Map(), signal }
  const seen = new Set<string>()
  await Promise.all(manifest.blocks.map(async block => await limit(async () => {
    if (seen.has(block.cid) || signal.aborted) return
    seen.add(block.cid)
    if (await options.cache.has(block.cid)) return
    try {
      await options.cache.put(block.cid, await fetchSealed(block, loadOptions, report, signal))
      report.fetchedBlocks++
    } catch (err) {
      if (signal.aborted) throw err
    }
  })))
  return { blocks: report.fetchedBlocks, bytesFetched: report.bytesFetched }
}
