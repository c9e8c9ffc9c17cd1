/**
 * The inverse of partitioning: places each verified block plaintext back at its tensors'
 * offsets in the weight buffer. Checks the manifest's layout first (parts inside their tensor,
 * every weight byte covered exactly once) so a bad layout can never produce a silently wrong model.
 */
import type { Manifest } from '../manifest/schema.ts'
import { IntegrityError } from '../errors/errors.ts'
import { tensorOffsets } from './partition.ts'

export function checkLayout (manifest: Pick<Manifest, 'tensors' | 'blocks'>): number {
  const total = manifest.tensors.reduce((n, t) => n + t.byteLength, 0)
  const covered = new Uint32Array(manifest.tensors.length)
  for (const block of manifest.blocks) {
    let sum = 0
    for (const part of block.parts) {
      const t = manifest.tensors[part.tensor]
      if (t === undefined || part.offset + part.length > t.byteLength) {
        throw new IntegrityError(`manifest block ${block.index}: part outside tensor ${part.tensor}`)
      }
      covered[part.tensor] = (covered[part.tensor] as number) + part.length
      sum += part.length
    }
    if (sum !== block.plaintextLength) throw new IntegrityError(`manifest block ${block.index}: parts sum to ${sum}, plaintext is ${block.plaintextLength}`)
  }
  manifest.tensors.forEach((t, i) => {
    if (covered[i] !== t.byteLength) throw new IntegrityError(`manifest: tensor ${t.name} covered by ${covered[i]} of ${t.byteLength} bytes`)
  })
  return total
}

export interface WeightAssembler {
  readonly weights: Uint8Array
  place: (blockIndex: number, plaintext: Uint8Array) => void
}

export function weightAssembler (manifest: Pick<Manifest, 'tensors' | 'blocks'>): WeightAssembler {
  const weights = new Uint8Array(checkLayout(manifest))
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
