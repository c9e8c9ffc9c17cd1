/**
 * After aggregation (DESIGN.md, pipeline 5): the strategy's new values for the trainable tensors
 * go into a copy of the base weights; then every block whose relative change ‖Δ‖/‖w‖ is at or
 * below the round's threshold gets its base bytes back, so it keeps its plaintext hash and is
 * reused by CID. Only blocks that really moved become new sealed blocks. BatchNorm variances are
 * floored at 0 first (`floorVariances`).
 *
 * What a block's threshold held back is not lost: it comes back as the `residual`, which the
 * next round adds to its values (error feedback, as compressed updates keep theirs: Seide et al.
 * 2014, Karimireddy et al. 2019, "Error Feedback Fixes SignSGD"). Dropped instead, a block whose
 * every round moved it by less than the threshold never moved: 500 rounds agreeing on a step of
 * 8·10⁻⁷ relative left a 512×512 kernel exactly as it was (review 48a).
 */
import type { NormalisedModel } from '../../shared/model/types.ts'
import type { BlockPlan } from '../../shared/blocks/partition.ts'
import { tensorOffsets } from '../../shared/blocks/partition.ts'
import { layerStateRanges, readTrainable, writeTrainable, type TrainableLayout } from '../../shared/rounds/trainable.ts'
import { checkFinite } from '../../aggregation/validate.ts'

export interface AppliedUpdate {
  model: NormalisedModel
  /** Indices of the blocks whose change exceeded the threshold. */
  changed: number[]
  /** Relative L2 change per block, over its trainable tensors (0 for a block with none). */
  relativeChange: number[]
  /**
   * The change the threshold held back, per trainable value (update order): the values asked
   * for minus those published, non-zero only in blocks kept as they were. Undefined when nothing was held back.
   */
  residual: Float32Array | undefined
}

/**
 * ‖Δ‖/‖w‖ over the trainable (float32) parts of one block. Only those: other tensors in the
 * block did not change, and read as float32 their bytes (int32 −1, uint8 0x7f, a misaligned
 * start) would make the change NaN, Infinity or skip it, and the trained block be thrown away.
 * Bytes are copied out (`slice`), so a part need not start at a multiple of 4.
 */
function relativeChange (base: Uint8Array, next: Uint8Array, ranges: Array<[number, number]>): number {
  let diff = 0
  let norm = 0
  for (const [start, end] of ranges) {
    const a = new Float32Array(base.slice(start, end).buffer)
    const b = new Float32Array(next.slice(start, end).buffer)
    for (let i = 0; i < a.length; i++) {
      const d = (b[i] as number) - (a[i] as number)
      diff += d * d
      norm += (a[i] as number) * (a[i] as number)
    }
  }
  if (diff === 0) return 0
  return norm === 0 ? Infinity : Math.sqrt(diff / norm)
}

/**
 * `values` with every BatchNormalization moving_variance element below 0 set to 0 (a copy when
 * one is). The layer divides by √(variance + ε) (Ioffe & Szegedy 2015, Alg. 1), so a negative
 * one outputs NaN. It comes from the mean delta (base + mean, coordinator/rounds/strategy.ts),
 * whose DP noise or fixed-point rounding can exceed the variance; every honest client's value is
 * ≥ 0, so 0 is the nearest their mean can be. Done here, where the tensors' names are known.
 */
function floorVariances (base: NormalisedModel, layout: TrainableLayout, values: Float32Array): Float32Array {
  let out = values
  for (const [start, end] of layerStateRanges(base.tensors, base.metadata.layers, layout)) {
    if (!(layout.names[layout.offsets.indexOf(start)] as string).endsWith('/moving_variance')) continue
    for (let i = start; i < end; i++) {
      if ((out[i] as number) >= 0) continue
      if (out === values) out = values.slice()
      out[i] = 0
    }
  }
  return out
}

/**
 * `values` (the new trainable values, update order) plus `carried`, the residual an earlier
 * round's threshold held back (see the header), applied to `base`.
 */
export function applyUpdate (base: NormalisedModel, plans: BlockPlan[], layout: TrainableLayout, values: Float32Array, threshold: number, carried?: Float32Array): AppliedUpdate {
  if (carried !== undefined && carried.length !== values.length) throw new RangeError(`applyUpdate: a residual of ${carried.length} values for ${values.length} trainable values`)
  const asked = carried === undefined ? values : values.map((v, i) => v + (carried[i] as number))
  // Never publish non-finite values, nor let a NaN change pass for "unchanged".
  checkFinite(asked, 'new trainable values')
  const weights = base.weights.slice()
  const target = floorVariances(base, layout, asked)
  writeTrainable(base.tensors, weights, layout, target)
  const offsets = tensorOffsets(base.tensors)
  const trainable = new Set(layout.indices)
  const range = (p: BlockPlan['parts'][number]): [number, number] => [(offsets[p.tensor] as number) + p.offset, (offsets[p.tensor] as number) + p.offset + p.length]
  const changed: number[] = []
  const changes = plans.map((plan, i) => {
    const change = relativeChange(base.weights, weights, plan.parts.filter(p => trainable.has(p.tensor)).map(range))
    if (change > threshold) changed.push(i)
    else for (const [start, end] of plan.parts.map(range)) weights.set(base.weights.subarray(start, end), start)
    return change
  })
  let residual: Float32Array | undefined
  if (changed.length < plans.length) {
    residual = readTrainable(base.tensors, weights, layout)
    for (let i = 0; i < residual.length; i++) residual[i] = (target[i] as number) - (residual[i] as number)
    if (residual.every(x => x === 0)) residual = undefined
  }
  return { model: { ...base, weights }, changed, relativeChange: changes, residual }
}
