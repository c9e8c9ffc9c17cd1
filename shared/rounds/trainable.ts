/**
 * Which tensors a round trains, and how their values line up in an update vector. The round
 * names semantic units (the partitioner's `unitNames`, e.g. "head"); every float32 tensor
 * of those units is trained, whole, in manifest order. The same function runs on both sides, so
 * coordinator and runtime agree on the layout byte for byte.
 */
import type { LayerSummary, TensorInfo } from '../model/types.ts'
import { unitsOfTensors, tensorOffsets } from '../blocks/partition.ts'
import { InvalidInputError } from '../errors/errors.ts'
import { float32Bytes } from '../crypto/bytes.ts'

export interface TrainableLayout {
  /** Indices into the manifest's tensors, in update order. */
  indices: number[]
  names: string[]
  /** Element offset of each trainable tensor inside the update vector. */
  offsets: number[]
  /** Σ elements of the trainable tensors (the update carries one more: the client's weight). */
  parameters: number
}

const NO_FLOAT32 = 'no tensor of it is plain float32 (quantised or integer weights take no float updates)'

function elements (t: TensorInfo): number {
  return t.shape.reduce((a, b) => a * b, 1)
}

function trainableTensor (t: TensorInfo): boolean {
  return t.dtype === 'float32' && t.quantization === undefined && t.byteLength === elements(t) * 4
}

/**
 * Why a model of this format cannot train, or undefined when it can: local training runs on
 * tfjs-layers (shared/training), so graph and ONNX models are served and loaded, not trained
 * (review 40a: their rounds were offered, fetched whole by every runtime, and failed as "dropped").
 */
export function untrainableFormat (format: string): string | undefined {
  return format === 'tfjs-layers' ? undefined : `this model is ${format}; only tfjs layers models train (local training runs on tfjs-layers)`
}

/** The units a model offers for training: those with at least one plain float32 tensor. */
export function trainableUnits (tensors: TensorInfo[]): string[] {
  const units = unitsOfTensors(tensors)
  return [...new Set(tensors.flatMap((t, i) => trainableTensor(t) ? [units[i] as string] : []))]
}

export function trainableLayout (tensors: TensorInfo[], units: string[] | undefined): TrainableLayout {
  const available = trainableUnits(tensors)
  // Asked for nothing in particular, a model with nothing to train says so (review 38c: a round
  // on a quantised model was refused for "0 eligible clients", whoever was connected).
  if (units === undefined && available.length === 0) throw new InvalidInputError(`trainable: this model has no trainable unit: ${NO_FLOAT32}`)
  const wanted = units ?? available
  const unknown = wanted.filter(u => !available.includes(u))
  if (unknown.length > 0) {
    const has = available.length === 0
      ? `this model has none: ${NO_FLOAT32}`
      : `this model has ${available.slice(0, 40).join(', ')}${available.length > 40 ? `, … (${available.length} in all; \`blockfed versions\` lists them)` : ''}`
    throw new InvalidInputError(`trainable: unknown or non-float32 unit(s) ${unknown.slice(0, 10).join(', ')}${unknown.length > 10 ? ', …' : ''}; ${has}`)
  }
  const indices: number[] = []
  const offsets: number[] = []
  let parameters = 0
  const unitOfTensor = unitsOfTensors(tensors)
  tensors.forEach((t, i) => {
    if (!trainableTensor(t) || !wanted.includes(unitOfTensor[i] as string)) return
    indices.push(i)
    offsets.push(parameters)
    parameters += elements(t)
  })
  return { indices, names: indices.map(i => (tensors[i] as TensorInfo).name), offsets, parameters }
}

/** The trainable tensors' values, concatenated (a copy). */
export function readTrainable (tensors: TensorInfo[], weights: Uint8Array, layout: TrainableLayout): Float32Array {
  const byteOffsets = tensorOffsets(tensors)
  const out = new Float32Array(layout.parameters)
  layout.indices.forEach((ti, k) => {
    const t = tensors[ti] as TensorInfo
    const start = byteOffsets[ti] as number
    const bytes = weights.slice(start, start + t.byteLength)
    out.set(new Float32Array(bytes.buffer, 0, t.byteLength / 4), layout.offsets[k])
  })
  return out
}

/** Writes `values` (concatenated, update order) over the trainable tensors of `weights`, in place. */
export function writeTrainable (tensors: TensorInfo[], weights: Uint8Array, layout: TrainableLayout, values: Float32Array): void {
  if (values.length !== layout.parameters) throw new InvalidInputError(`values: ${values.length} elements, the layout has ${layout.parameters}`)
  const byteOffsets = tensorOffsets(tensors)
  layout.indices.forEach((ti, k) => {
    const t = tensors[ti] as TensorInfo
    const from = layout.offsets[k] as number
    const src = values.subarray(from, from + t.byteLength / 4)
    weights.set(float32Bytes(src), byteOffsets[ti] as number)
  })
}

/** Keras BatchNormalization's statistics: updated by the layer's own forward pass, not by gradients. */
const LAYER_STATE = /\/(moving_mean|moving_variance)$/

/**
 * Element ranges [start, end) of the layout's layer-state tensors: a BatchNormalization layer's
 * moving mean and variance (the layer kind as the model file records it, so a tensor merely
 * named so in another layer is a parameter). Server optimisers step parameters only; a
 * statistic takes the plain mean of the clients' values, as local training leaves it to the layer.
 */
export function layerStateRanges (tensors: TensorInfo[], layers: LayerSummary[], layout: TrainableLayout): Array<[number, number]> {
  const batchNorm = new Set(layers.filter(l => /^BatchNormalization/.test(l.kind ?? '')).map(l => l.name))
  const ranges: Array<[number, number]> = []
  layout.indices.forEach((ti, k) => {
    const t = tensors[ti] as TensorInfo
    if (!batchNorm.has(t.layer) || !LAYER_STATE.test(t.name)) return
    const start = layout.offsets[k] as number
    ranges.push([start, start + elements(t)])
  })
  return ranges
}
