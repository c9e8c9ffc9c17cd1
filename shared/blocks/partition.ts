/**
 * The semantic partitioner: cuts a model's tensor list into blocks that mean something.
 *
 * Heuristic, in three steps, deterministic for a given tensor list:
 *  1. Layer: tensors that share `TensorInfo.layer` (a Keras layer's kernel/bias/norm statistics,
 *     a TF op scope, the ONNX node consuming the initializers) always travel together.
 *  2. Unit: layers whose names share a prefix ending at the first index in the name form one
 *     unit — `encoder.layers.3.attn.q` and `encoder.layers.3.mlp.fc1` → `encoder.layers.3`;
 *     `block_2_expand` and `block_2_project_BN` → `block_2`; `MobilenetV2/expanded_conv_4/...` →
 *     `MobilenetV2/expanded_conv_4`. This is how Keras, TF-Slim and PyTorch name the repeated
 *     residual/attention units, so a unit is a residual or attention block when the graph has one.
 *     A layer without an index is a unit alone.
 *  3. Packing: units in model order fill blocks toward `targetBytes`; a unit is added to the
 *     current block while the sum stays ≤ target, or ≤ `maxBytes` when the current block is still
 *     under half the target (so small units do not make tiny blocks). A unit above `maxBytes` is
 *     packed tensor by tensor the same way; a tensor above `maxBytes` is split at row (first
 *     dimension) boundaries into pieces ≤ `maxBytes`, and each piece records its row range.
 */
import type { TensorInfo } from '../model/types.ts'
import { InvalidInputError } from '../errors/errors.ts'
import { elementCount, storedBytes, SUB_BYTE_DTYPES } from '../formats/_dtypes.ts'

export interface PartitionOptions {
  targetBytes: number
  maxBytes: number
}

export const DEFAULT_PARTITION: PartitionOptions = { targetBytes: 1 << 20, maxBytes: 2 << 20 }
/**
 * The largest block a manifest may hold. Blocks are ≈ 1 MiB by design; the bound is what lets a
 * runtime size its buffers from a signed manifest without trusting it (a 16 GiB block would be
 * allocated before its shards fail the per-object limit) and keeps a 4+2 shard within the swarm's
 * 32 MiB object limit.
 */
export const MAX_BLOCK_BYTES = 64 << 20

/** A byte range of one tensor inside a block's plaintext. */
export interface BlockPart {
  tensor: number
  /** Offset within the tensor's own bytes. */
  offset: number
  length: number
  /** Present when the tensor was split: the rows [start, end) this part holds. */
  rows?: [number, number]
}

export interface BlockPlan {
  /** The semantic unit(s) the block holds, `first..last` when several. */
  unit: string
  parts: BlockPart[]
  byteLength: number
}

const SCOPE = /[/.]/

/** Step 2: the unit a layer belongs to. Exported for tests and for the access-rule matcher. */
export function unitOf (layer: string): string {
  const segments = layer.split(SCOPE)
  let consumed = 0
  for (const segment of segments) {
    const tokens = segment.split('_')
    const at = tokens.findIndex((t, j) => /^\d+$/.test(t) && (j > 0 || consumed > 0))
    if (at >= 0) {
      const head = tokens.slice(0, at + 1).join('_')
      return layer.slice(0, consumed) + head
    }
    consumed += segment.length + 1
  }
  return layer
}

interface Unit { name: string, tensors: number[], bytes: number }

function unitsInOrder (tensors: TensorInfo[]): Unit[] {
  const byName = new Map<string, Unit>()
  const units: Unit[] = []
  tensors.forEach((t, i) => {
    const name = unitOf(t.layer || t.name)
    let unit = byName.get(name)
    if (unit === undefined) {
      unit = { name, tensors: [], bytes: 0 }
      byName.set(name, unit)
      units.push(unit)
    }
    unit.tensors.push(i)
    unit.bytes += t.byteLength
  })
  return units
}

/**
 * Row pieces of one tensor larger than `maxBytes`. A row is the tensor viewed as R × rest, R the
 * product of its fewest leading dimensions that make one row fit under `maxBytes` (shape[0] for
 * most kernels; more for [1, 1, C, C] or [3, 3, C, C] convolutions and [1, N] embeddings, whose
 * first dimension alone would leave one piece far over the cap). A rank-0/1 tensor's rows are its
 * elements. `rows` records [start, end) in those R rows; R follows from the shape and the
 * manifest's `partition.maxBytes`. Pieces start on whole bytes: 4-bit types pack two elements
 * a byte, so a row of odd length is cut only every second row. A tensor without a fixed element
 * size (tfjs strings) is cut into plain byte ranges, without `rows`.
 */
function splitRows (t: TensorInfo, index: number, maxBytes: number): BlockPart[] {
  const bits = elementBits(t)
  if (bits === undefined) return splitBytes(t, index, maxBytes)
  const count = elementCount(t.shape, `tensor ${t.name}`)
  let rows = 1
  let rowBits = count * bits
  let step = 1
  for (let d = 0; d < Math.max(1, t.shape.length); d++) {
    rows *= Math.max(1, t.shape[d] ?? 1)
    rowBits = count / rows * bits
    for (step = 1; (step * rowBits) % 8 !== 0; step++);
    if (step * rowBits / 8 <= maxBytes) break
  }
  const perPiece = Math.max(step, Math.floor(maxBytes * 8 / rowBits / step) * step)
  const byteAt = (row: number): number => row === rows ? t.byteLength : row * rowBits / 8
  const parts: BlockPart[] = []
  for (let r = 0; r < rows; r += perPiece) {
    const end = Math.min(rows, r + perPiece)
    parts.push({ tensor: index, offset: byteAt(r), length: byteAt(end) - byteAt(r), rows: [r, end] })
  }
  return parts
}

function splitBytes (t: TensorInfo, index: number, maxBytes: number): BlockPart[] {
  const parts: BlockPart[] = []
  for (let at = 0; at < t.byteLength; at += maxBytes) parts.push({ tensor: index, offset: at, length: Math.min(maxBytes, t.byteLength - at) })
  return parts
}

/** Bits per stored element; undefined for strings. InvalidInputError when the bytes do not fit the shape. */
function elementBits (t: TensorInfo): number | undefined {
  if (t.dtype === 'string') return undefined
  const count = elementCount(t.shape, `tensor ${t.name}`)
  const bits = SUB_BYTE_DTYPES.get(t.dtype) ?? t.byteLength * 8 / count
  if (!Number.isInteger(bits) || bits <= 0 || storedBytes(count, bits) !== t.byteLength) {
    throw new InvalidInputError(`tensor ${t.name}: ${t.byteLength} bytes do not hold ${count} ${t.dtype} elements of shape [${t.shape.join(', ')}]`)
  }
  return bits
}

/** The options themselves, or InvalidInputError naming what is out of range. */
export function checkPartitionOptions (options: PartitionOptions): PartitionOptions {
  const { targetBytes, maxBytes } = options
  if (!(targetBytes > 0) || !(maxBytes >= targetBytes) || !(maxBytes <= MAX_BLOCK_BYTES)) {
    throw new InvalidInputError(`partition: need 0 < targetBytes <= maxBytes <= ${MAX_BLOCK_BYTES} (got ${targetBytes}, ${maxBytes})`)
  }
  return options
}

export function partition (tensors: TensorInfo[], options: PartitionOptions = DEFAULT_PARTITION): BlockPlan[] {
  const { targetBytes, maxBytes } = checkPartitionOptions(options)
  const plans: BlockPlan[] = []
  let open: { units: string[], parts: BlockPart[], bytes: number } = { units: [], parts: [], bytes: 0 }
  const flush = (): void => {
    if (open.parts.length === 0) return
    const first = open.units[0] as string
    const last = open.units[open.units.length - 1] as string
    plans.push({ unit: first === last ? first : `${first}..${last}`, parts: open.parts, byteLength: open.bytes })
    open = { units: [], parts: [], bytes: 0 }
  }
  const fits = (bytes: number): boolean =>
    open.bytes + bytes <= targetBytes || (open.bytes < targetBytes / 2 && open.bytes + bytes <= maxBytes)
  const add = (unit: string, parts: BlockPart[], bytes: number): void => {
    if (open.parts.length > 0 && !fits(bytes)) flush()
    if (open.units[open.units.length - 1] !== unit) open.units.push(unit)
    // A loop, not push(...parts): one unit of 150,000 tensors overflowed the stack (an HTTP 500).
    for (const part of parts) open.parts.push(part)
    open.bytes += bytes
  }

  for (const unit of unitsInOrder(tensors)) {
    if (unit.bytes <= maxBytes) {
      add(unit.name, unit.tensors.map(i => ({ tensor: i, offset: 0, length: (tensors[i] as TensorInfo).byteLength })), unit.bytes)
      continue
    }
    for (const i of unit.tensors) {
      const t = tensors[i] as TensorInfo
      if (t.byteLength <= maxBytes) {
        add(unit.name, [{ tensor: i, offset: 0, length: t.byteLength }], t.byteLength)
      } else {
        flush()
        for (const piece of splitRows(t, i, maxBytes)) {
          add(unit.name, [piece], piece.length)
          flush()
        }
      }
    }
  }
  flush()
  return plans
}

/** Byte offset of every tensor inside the concatenated weight buffer. */
export function tensorOffsets (tensors: TensorInfo[]): number[] {
  const offsets: number[] = []
  let at = 0
  for (const t of tensors) {
    offsets.push(at)
    at += t.byteLength
  }
  return offsets
}
