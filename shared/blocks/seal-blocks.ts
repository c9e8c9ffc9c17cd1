/**
 * Ingest's sealing stage: plaintext of every planned block → sha-256 → (reuse an identical
 * block already stored, or) fresh data key → AES-256-GCM seal → CIDv1(raw) → Reed-Solomon
 * shards, each with its CID. Reuse by plaintext hash is what makes re-ingesting an unchanged
 * model, or publishing a version where only the head changed, store nothing new for the rest.
 */
import type { NormalisedModel } from '../model/types.ts'
import type { ManifestBlock } from '../manifest/schema.ts'
import { toHex } from '../crypto/bytes.ts'
import { rawCid } from '../crypto/cid.ts'
import { sha256Hex } from '../crypto/hash.ts'
import { generateDataKey, seal } from '../crypto/seal.ts'
import { InvalidInputError } from '../errors/errors.ts'
import { shardLayoutError, type ErasureCoder } from './erasure.ts'
import { tensorOffsets, type BlockPlan } from './partition.ts'

/** A block already stored under the same plaintext: its sealed form is reused as is. */
export type StoredBlock = Pick<ManifestBlock, 'cid' | 'keyId' | 'sealedLength' | 'shards'>

export interface NewBlockData {
  cid: string
  plaintextSha256: string
  keyId: string
  key: Uint8Array
  sealed: Uint8Array
  shards: Array<{ cid: string, bytes: Uint8Array }>
}

export interface SealedBlocks {
  blocks: ManifestBlock[]
  /** Only the blocks that were not stored before; what the store must write. Empty when `options.write` took them. */
  created: NewBlockData[]
}

export interface SealOptions {
  coder: ErasureCoder
  /** Finds a stored block with this plaintext sha-256 (hex). */
  findStored: (plaintextSha256: string) => Promise<StoredBlock | undefined>
  access: (plan: BlockPlan) => string
  onBlock?: (done: number, total: number) => void
  /**
   * Takes each new block as soon as it is sealed, instead of `created` holding them all: a
   * model's sealed blocks and shards are 2.5 × its size, which need not all be in memory at once.
   */
  write?: (block: NewBlockData) => Promise<void>
}

/** The plaintext of a planned block: its parts' bytes, concatenated in order. */
export function blockPlaintext (weights: Uint8Array, offsets: number[], plan: BlockPlan): Uint8Array {
  const out = new Uint8Array(plan.byteLength)
  let at = 0
  for (const part of plan.parts) {
    const start = (offsets[part.tensor] as number) + part.offset
    out.set(weights.subarray(start, start + part.length), at)
    at += part.length
  }
  return out
}

export async function sealBlocks (model: Pick<NormalisedModel, 'tensors' | 'weights'>, plans: BlockPlan[], options: SealOptions): Promise<SealedBlocks> {
  const offsets = tensorOffsets(model.tensors)
  const blocks: ManifestBlock[] = []
  const created: NewBlockData[] = []
  // Blocks with equal plaintext inside this one model share one sealed block too.
  const sealedHere = new Map<string, StoredBlock>()
  for (const [index, plan] of plans.entries()) {
    const plaintext = blockPlaintext(model.weights, offsets, plan)
    const plaintextSha256 = await sha256Hex(plaintext)
    let stored = sealedHere.get(plaintextSha256) ?? await options.findStored(plaintextSha256)
    const mismatch = stored === undefined ? undefined : shardLayoutError(options.coder.params, stored.sealedLength, stored.shards)
    if (mismatch !== undefined) {
      // Reused as is, it would sit in a manifest whose k+m no client could rebuild it with.
      throw new InvalidInputError(`block ${index}: the stored block with this plaintext (${stored?.cid ?? ''}) has ${mismatch}; a data dir keeps the erasure parameters it was created with`)
    }
    if (stored === undefined) {
      const key = generateDataKey()
      let sealed: Uint8Array
      let cid: string
      let shards: Array<{ cid: string, bytes: Uint8Array }>
      try {
        sealed = await seal(plaintext, key)
        cid = await rawCid(sealed)
        shards = await Promise.all(options.coder.encode(sealed).map(async bytes => ({ cid: await rawCid(bytes), bytes })))
      } catch (err) {
        key.fill(0) // never handed on: nobody else would zero it
        throw err
      }
      const keyId = toHex(globalThis.crypto.getRandomValues(new Uint8Array(16)))
      const block = { cid, plaintextSha256, keyId, key, sealed, shards }
      if (options.write === undefined) created.push(block)
      else await options.write(block)
      stored = { cid, keyId, sealedLength: sealed.length, shards: { size: options.coder.shardSize(sealed.length), cids: shards.map(s => s.cid) } }
    }
    sealedHere.set(plaintextSha256, stored)
    blocks.push({
      index,
      unit: plan.unit,
      parts: plan.parts,
      plaintextLength: plaintext.length,
      plaintextSha256,
      cid: stored.cid,
      sealedLength: stored.sealedLength,
      keyId: stored.keyId,
      access: options.access(plan),
      shards: stored.shards
    })
    options.onBlock?.(index + 1, plans.length)
  }
  return { blocks, created }
}
