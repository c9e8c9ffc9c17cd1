/**
 * The semantic partitioner: cuts a model's tensor list into blocks that mean something.
 *
 * Heuristic, in three steps, deterministic for a given tensor list:
 *  1. Layer: tensors that share `TensorInfo.layer` (a Keras layer's kernel/bias/norm statistics,
 *     a TF op scope, the ONNX node consuming the initializers) always travel together.
 *  2. Unit: layers whose names share a prefix ending at an index, where other layers show the
 *     same prefix with other indices, form one unit — `encoder.layers.3.attn.q` and
 *     `encoder.layers.3.mlp.fc1` → `encoder.layers.3`; `model_1/model/block_2_expand` and
 *     `…/block_2_project_BN` → `model_1/model/block_2` (not `model_1`, which has no siblings);
 *     `MobilenetV2/expanded_conv_4/...` → `MobilenetV2/expanded_conv_4`. This is how Keras, TF-Slim
 *     and PyTorch name the repeated residual/attention units, so a unit is a residual or attention
 *     block when the graph has one (`unitNames`). A layer without such a prefix is a unit alone.
 *  3. Packing: units in model order fill blocks toward `targetBytes`; a unit is added to the
 *     current block while the sum stays ≤ target, or ≤ `maxBytes` when the current block is still
 *     under half the target (so small units do not make tiny blocks). A unit above `maxBytes` is
 *     packed layer by layer the same way, a layer above it tensor by tensor; a tensor above
 *     `maxBytes` is split at row (first dimension) boundaries into pieces ≤ `maxBytes`, and each
 *     piece records its row range.
 *  With access levels (`levelOf`), a block never holds units of two levels (a block has one data
 *  key, handed out by level): the blocks packed without levels are cut where the level changes,
 *  so setting one unit's level leaves every other block as it was (review 51b: closing a block
 *  at a change shifted every later boundary, and the whole model was sealed and fetched again).
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
  /** The access level its units were given (absent: the coordinator's default). */
  access?: string
}

const SCOPE = /[/.]/

/**
 * Index cuts read from one layer name, and the characters they are looked for in: each cut keys
 * a prefix, so a model of hostile names (50 of 1 MiB took 2.8 s; review 48e) costs no more than
 * this per layer. Real names are far shorter.
 */
const MAX_CUTS = 32
const MAX_CUT_CHARS = 1024

/** A prefix of a layer name that ends at an index: `stem` + index (`encoder.layers.` + `3`). */
interface Cut { stem: string, index: string, end: number }

/**
 * The prefixes of `layer` that end at an index token: a segment (split at `/` and `.`) or a
 * `_`-separated token of one that is all digits, outermost first. The name's very first token is
 * never an index (a layer named `1072` is not the 1072nd of anything).
 */
function cutsOf (layer: string): Cut[] {
  const cuts: Cut[] = []
  let at = 0
  for (const segment of layer.slice(0, MAX_CUT_CHARS).split(SCOPE)) {
    let inSegment = 0
    for (const token of segment.split('_')) {
      const start = at + inSegment
      if (/^\d+$/.test(token) && start > 0) {
        cuts.push({ stem: layer.slice(0, start), index: token, end: start + token.length })
        if (cuts.length === MAX_CUTS) return cuts
      }
      inSegment += token.length + 1
    }
    at += segment.length + 1
  }
  return cuts
}

/**
 * Step 2: the unit of every layer of a model, which its other layers decide. A unit is the
 * outermost prefix ending at an index that has siblings — another layer under the same stem with
 * another index (`block_3` beside `block_4`, `encoder.layers.3` beside `.4`): the repeated units
 * Keras, TF-Slim and PyTorch name so, a residual or attention block when the graph has one.
 * Wrappers that occur once (`model_1`, `sequential_1`, ONNX's `If_0_then_branch__Inline_0__`)
 * are not units: they held a whole backbone as one before (review 48c). A layer under such a
 * wrapper outside the repeated units (a stem convolution) is a unit alone; a layer with no
 * repeated prefix at all keeps its first indexed prefix (`block_2_expand` → `block_2`, as its
 * `block_2_project` beside it), or is a unit alone without one.
 */
export function unitNames (layers: Iterable<string>): Map<string, string> {
  const cuts = new Map<string, Cut[]>()
  const indices = new Map<string, Set<string>>()
  for (const layer of layers) {
    if (cuts.has(layer)) continue
    const own = cutsOf(layer)
    cuts.set(layer, own)
    for (const c of own) {
      const seen = indices.get(c.stem)
      if (seen === undefined) indices.set(c.stem, new Set([c.index]))
      else seen.add(c.index)
    }
  }
  const repeated = (c: Cut): boolean => (indices.get(c.stem)?.size ?? 0) >= 2
  const units = new Map<string, string>()
  // The prefixes that hold repeated units: containers, not units themselves.
  const containers = new Set<string>()
  for (const [layer, own] of cuts) {
    const cut = own.find(repeated)
    if (cut === undefined) continue
    units.set(layer, layer.slice(0, cut.end))
    for (const c of own) if (c.end < cut.end) containers.add(layer.slice(0, c.end))
  }
  for (const [layer, own] of cuts) {
    if (units.has(layer)) continue
    const first = own[0]
    const prefix = first === undefined ? undefined : layer.slice(0, first.end)
    units.set(layer, prefix === undefined || containers.has(prefix) ? layer : prefix)
  }
  return units
}

/** The unit of one layer seen alone (no siblings to tell units from wrappers): its first indexed prefix, or itself. */
export function unitOf (layer: string): string {
  return unitNames([layer]).get(layer) as string
}

/** Each tensor's unit (by its layer, or its name when it has none), named across the whole model. */
export function unitsOfTensors (tensors: readonly TensorInfo[]): string[] {
  const layerOf = (t: TensorInfo): string => t.layer || t.name
  const names = unitNames(tensors.map(layerOf))
  return tensors.map(t => names.get(layerOf(t)) as string)
}

interface Layer { tensors: number[], bytes: number }
interface Unit { name: string, layers: Layer[], bytes: number }

function unitsInOrder (tensors: TensorInfo[]): Unit[] {
  const unitOfTensor = unitsOfTensors(tensors)
  const byName = new Map<string, { unit: Unit, layers: Map<string, Layer> }>()
  const units: Unit[] = []
  tensors.forEach((t, i) => {
    const name = unitOfTensor[i] as string
    let entry = byName.get(name)
    if (entry === undefined) {
      entry = { unit: { name, layers: [], bytes: 0 }, layers: new Map() }
      byName.set(name, entry)
      units.push(entry.unit)
    }
    const layerName = t.layer || t.name
    let layer = entry.layers.get(layerName)
    if (layer === undefined) {
      layer = { tensors: [], bytes: 0 }
      entry.layers.set(layerName, layer)
      entry.unit.layers.push(layer)
    }
    layer.tensors.push(i)
    layer.bytes += t.byteLength
    entry.unit.bytes += t.byteLength
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

/**
 * The model's blocks. `levelOf` gives a unit's access level (undefined: the default); plans
 * then carry it, and units of different levels never share a block.
 */
export function partition (tensors: TensorInfo[], options: PartitionOptions = DEFAULT_PARTITION, levelOf?: (unit: string) => string | undefined): BlockPlan[] {
  const plans = pack(tensors, options)
  if (levelOf === undefined) return plans
  const unitOfTensor = unitsOfTensors(tensors)
  return plans.flatMap(plan => cutAtLevels(plan, unitOfTensor, levelOf))
}

/** A plan cut into runs of parts whose units share a level, each run a plan with that level. */
function cutAtLevels (plan: BlockPlan, unitOfTensor: readonly string[], levelOf: (unit: string) => string | undefined): BlockPlan[] {
  const runs: Array<{ units: string[], parts: BlockPart[], bytes: number, access: string | undefined }> = []
  for (const part of plan.parts) {
    const unit = unitOfTensor[part.tensor] as string
    const access = levelOf(unit)
    let run = runs.at(-1)
    if (run === undefined || run.access !== access) {
      run = { units: [], parts: [], bytes: 0, access }
      runs.push(run)
    }
    if (run.units.at(-1) !== unit) run.units.push(unit)
    run.parts.push(part)
    run.bytes += part.length
  }
  if (runs.length === 1) return [{ ...plan, ...(runs[0]?.access === undefined ? {} : { access: runs[0].access }) }]
  return runs.map(run => ({ unit: spanName(run.units), parts: run.parts, byteLength: run.bytes, ...(run.access === undefined ? {} : { access: run.access }) }))
}

/** `first..last` of a block's units, or the one unit. */
function spanName (units: readonly string[]): string {
  const first = units[0] as string
  const last = units[units.length - 1] as string
  return first === last ? first : `${first}..${last}`
}

/** Step 3, the packing (see the module comment). */
function pack (tensors: TensorInfo[], options: PartitionOptions): BlockPlan[] {
  const { targetBytes, maxBytes } = checkPartitionOptions(options)
  const plans: BlockPlan[] = []
  let open: { units: string[], parts: BlockPart[], bytes: number } = { units: [], parts: [], bytes: 0 }
  const flush = (): void => {
    if (open.parts.length === 0) return
    plans.push({ unit: spanName(open.units), parts: open.parts, byteLength: open.bytes })
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

  const whole = (ids: number[]): BlockPart[] => ids.map(i => ({ tensor: i, offset: 0, length: (tensors[i] as TensorInfo).byteLength }))
  for (const unit of unitsInOrder(tensors)) {
    if (unit.bytes <= maxBytes) {
      add(unit.name, whole(unit.layers.flatMap(l => l.tensors)), unit.bytes)
      continue
    }
    // A unit over the cap is packed layer by layer, so a layer's tensors still travel together
    // (review 48c: an LSTM's weights were split from their biases); only a layer over the cap is
    // packed tensor by tensor, and only a tensor over it is cut at rows.
    for (const layer of unit.layers) {
      if (layer.bytes <= maxBytes) {
        add(unit.name, whole(layer.tensors), layer.bytes)
        continue
      }
      for (const i of layer.tensors) {
        const t = tensors[i] as TensorInfo
        if (t.byteLength <= maxBytes) {
          add(unit.name, whole([i]), t.byteLength)
        } else {
          flush()
          for (const piece of splitRows(t, i, maxBytes)) {
            add(unit.name, [piece], piece.length)
            flush()
          }
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
