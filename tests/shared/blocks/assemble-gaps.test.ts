/**
 * checkLayout (shared/blocks/assemble.ts) must refuse a manifest whose parts do not tile every
 * tensor to its end: the bytes no part covers would stay zero in the weight buffer and the model
 * would load silently wrong. Review 38b found that no test had a gap at the END of a tensor, so
 * weakening the final check to `end > t.byteLength` survived (mutant A2, assemble.ts:41); a gap
 * in the middle of a tensor was untested too.
 */
import { describe, it, expect } from 'vitest'
import { checkLayout, weightAssembler } from '../../../shared/blocks/assemble.ts'
import { partition } from '../../../shared/blocks/partition.ts'
import { IntegrityError } from '../../../shared/errors/errors.ts'
import type { Manifest } from '../../../shared/manifest/schema.ts'
import type { TensorInfo } from '../../../shared/model/types.ts'

type Layout = Pick<Manifest, 'tensors' | 'blocks'>
type Block = Manifest['blocks'][number]
type Part = Block['parts'][number]

const tensors: TensorInfo[] = [
  { name: 'a/kernel', dtype: 'float32', shape: [40, 50], byteLength: 8000, layer: 'a' },
  { name: 'a/bias', dtype: 'float32', shape: [50], byteLength: 200, layer: 'a' },
  { name: 'b/kernel', dtype: 'float32', shape: [50, 10], byteLength: 2000, layer: 'b' }
]

/**
 * The layout the partitioner plans for `tensors` (several blocks, tensor 0 split across some),
 * as the manifest fields checkLayout reads: each block's index, parts and plaintext length. The
 * other block fields (CIDs, keys, shards) play no part in the layout.
 */
const layout = (): Layout => ({
  tensors: structuredClone(tensors),
  blocks: partition(tensors, { targetBytes: 2048, maxBytes: 4096 })
    .map((plan, index) => ({ index, parts: plan.parts.map(p => ({ ...p })), plaintextLength: plan.byteLength }) as unknown as Block)
})

/** The block and the part that cover the last bytes of tensor `t`. */
const lastPartOf = (l: Layout, t: number): { block: Block, part: Part } => {
  const end = (l.tensors[t] as TensorInfo).byteLength
  for (const block of l.blocks) {
    for (const part of block.parts) if (part.tensor === t && part.offset + part.length === end) return { block, part }
  }
  throw new Error(`no part ends tensor ${t}`)
}

describe('checkLayout, a tensor not tiled to its end', () => {
  it('accepts the layout the partitioner plans (the baseline the cases below change)', () => {
    const l = layout()
    expect(l.blocks.filter(b => b.parts.some(p => p.tensor === 0)).length).toBeGreaterThan(1)
    expect(checkLayout(l)).toBe(10_200)
  })

  it('refuses parts that stop 4 bytes short of the end of a split tensor, block length kept consistent', () => {
    const l = layout()
    const { block, part } = lastPartOf(l, 0)
    part.length -= 4
    block.plaintextLength -= 4 // the block's own sum still agrees: only the tiling gives it away
    expect(() => checkLayout(l)).toThrow(IntegrityError)
    expect(() => checkLayout(l)).toThrow('manifest: tensor a/kernel covered to byte 7996 of 8000')
    expect(() => weightAssembler(l)).toThrow(/tensor a\/kernel covered to byte 7996 of 8000/)
  })

  it('refuses parts that stop short of the end of the last tensor (the weight buffer\'s tail)', () => {
    const l = layout()
    const { block, part } = lastPartOf(l, 2)
    part.length -= 400
    block.plaintextLength -= 400
    expect(() => checkLayout(l)).toThrow('manifest: tensor b/kernel covered to byte 1600 of 2000')
  })

  it('refuses a tensor that no part covers at all', () => {
    const l = layout()
    l.tensors.push({ name: 'c/bias', dtype: 'float32', shape: [4], byteLength: 16, layer: 'c' })
    expect(() => checkLayout(l)).toThrow('manifest: tensor c/bias covered to byte 0 of 16')
  })

  it('refuses a gap in the middle of a tensor, naming its first byte and the block after it', () => {
    const l = layout()
    const parts = l.blocks.flatMap(b => b.parts).filter(p => p.tensor === 0)
    const second = parts[1] as Part
    const at = second.offset
    // The second piece starts 4 bytes later and is 4 bytes shorter: same end, a 4-byte hole.
    second.offset += 4
    second.length -= 4
    const holder = l.blocks.find(b => b.parts.includes(second)) as Block
    holder.plaintextLength -= 4
    expect(() => checkLayout(l)).toThrow(IntegrityError)
    expect(() => checkLayout(l)).toThrow(`manifest: tensor a/kernel has a gap at byte ${at} (block ${holder.index})`)
  })
})
