/**
 * The inverse of partitioning: places each verified block plaintext back at its tensors'
 * offsets in the weight buffer. Checks the manifest's layout first (parts inside their tensor,
 * blocks at their own index, each tensor tiled by its parts with no gap or overlap) so a bad layout can never produce a silently wrong model.
 */
import type { Manifest } from '../manifest/schema.ts'
import { allocateBytes } from '../crypto/bytes.ts'
import { IntegrityError } from '../errors/errors.ts'
import { tensorOffsets } from './partition.ts'

/** One part of a tensor, with the block that holds it (for the error message). */
interface Piece { offset: number, length: number, block: number }

export function checkLayout (manifest: Pick<Manifest, 'tensors' | 'blocks'>): number {
  const total = manifest.tensors.reduce((n, t) => n + t.byteLength, 0)
  // Every tensor's parts, to check that they tile it: a byte count alone would pass two parts
  // over the same range and leave another range zero.
  const parts: Piece[][] = manifest.tensors.map(() => [])
  manifest.blocks.forEach((block, i) => {
    // place() finds a block by its index: two blocks claiming one index would overwrite each other.
    if (block.index !== i) throw new IntegrityError(`manifest block at position ${i} claims index ${block.index}`)
    let sum = 0
    for (const part of block.parts) {
      const t = manifest.tensors[part.tensor]
      if (t === undefined || part.offset + part.length > t.byteLength) {
        throw new IntegrityError(`manifest block ${block.index}: part outside tensor ${part.tensor}`)
      }
      ;(parts[part.tensor] as Piece[]).push({ offset: part.offset, length: part.length, block: i })
      sum += part.length
    }
    if (sum !== block.plaintextLength) throw new IntegrityError(`manifest block ${block.index}: parts sum to ${sum}, plaintext is ${block.plaintextLength}`)
  })
  manifest.tensors.forEach((t, i) => {
    let end = 0
    for (const part of (parts[i] as Piece[]).sort((a, b) => a.offset - b.offset)) {
      if (part.offset !== end) {
        throw new IntegrityError(`manifest: tensor ${t.name} ${part.offset < end ? 'overlaps itself' : 'has a gap'} at byte ${Math.min(part.offset, end)} (block ${part.block})`)
      }
      end += part.length
    }
    if (end !== t.byteLength) throw new IntegrityError(`manifest: tensor ${t.name} covered to byte ${end} of ${t.byteLength}`)
  })
  return total
}

export interface WeightAssembler {
  readonly weights: Uint8Array
  place: (blockIndex: number, plaintext: Uint8Array) => void
}

export function weightAssembler (manifest: Pick<Manifest, 'tensors' | 'blocks'>): WeightAssembler {
  // The schema bounds each number, not their sum: a total no buffer here can take is refused
  // before any block is fetched.
  const weights = allocateBytes(checkLayout(manifest), total => `manifest: the tensors total ${total} bytes`)
  const offsets = tensorOffsets(manifest.tensors)
  return {
    weights,
    place (blockIndex, plaintext) {
      const block = manifest.blocks[blockIndex]
      if (block === undefined || plaintext.length !== block.plaintextLength) {
        throw new IntegrityError(`block ${blockIndex}: plaintext length ${plaintext.length} does not match the manifest`)
      }
      let at = 0
      for (const part of block.parts) {
        weights.set(plaintext.subarray(at, at + part.length), (offsets[part.tensor] as number) + part.offset)
        at += part.length
      }
    }
  }
}
