/**
 * A store audit: every shard of every block of a manifest fetched from one source and checked
 * against its own CID. A load stops at the first k good shards of a block, so damage to the
 * other m (parity, or data shards a hedge replaced) goes unseen until it costs the block; this
 * is the check that shows how many more shards each block can lose (`blockfed verify --shards`).
 */
import pLimit from 'p-limit'
import { verifyCid } from '../crypto/cid.ts'
import type { Manifest } from '../manifest/schema.ts'
import { shardFault, type ShardFault } from './loader.ts'
import type { BlockSource } from './source.ts'

export interface BlockAudit {
  index: number
  cid: string
  /** Shards that arrived and matched their CID. */
  intact: number
  /** How many more shards the block can lose and still be rebuilt: intact − k (negative: lost). */
  spare: number
}

export interface AuditReport {
  blocks: BlockAudit[]
  /** Every shard missing, unreachable or not matching its CID. */
  faults: ShardFault[]
  shardsChecked: number
}

export interface AuditOptions {
  source: BlockSource
  /** Shard requests at once. */
  concurrency?: number
  signal?: AbortSignal
  onShard?: (done: number, total: number) => void
}

export async function auditShards (manifest: Manifest, options: AuditOptions): Promise<AuditReport> {
  const { k } = manifest.erasure
  const limit = pLimit(options.concurrency ?? 8)
  const signal = options.signal ?? new AbortController().signal
  const faults: ShardFault[] = []
  const total = manifest.blocks.reduce((n, b) => n + b.shards.cids.length, 0)
  let done = 0
  const blocks = await Promise.all(manifest.blocks.map(async block => {
    const ok = await Promise.all(block.shards.cids.map(async (cid, shard) => await limit(async () => {
      try {
        const bytes = await options.source.get(cid, { signal, block: block.cid, shard, size: block.shards.size })
        await verifyCid(cid, bytes, `shard ${shard} of block ${block.index}`)
        return true
      } catch (err) {
        // The caller's abort ends the audit; anything else is this shard's fault.
        if (signal.aborted) throw err
        faults.push(shardFault(block.index, shard, cid, err))
        return false
      } finally {
        options.onShard?.(++done, total)
      }
    })))
    const intact = ok.filter(Boolean).length
    return { index: block.index, cid: block.cid, intact, spare: intact - k }
  }))
  faults.sort((a, b) => a.block - b.block || a.shard - b.shard)
  return { blocks, faults, shardsChecked: total }
}
