/**
 * Output shapes of Keras layers, as tfjs-layers' `computeOutputShape` of each class works them
 * out (layers/core.ts, convolutional.ts, convolutional_depthwise.ts, pooling.ts, padding.ts,
 * embeddings.ts, recurrent.ts, wrappers.ts, merge.ts). tfjs builds a layer's weights from the
 * shape of its input, and that shape is not in the layer's config: it follows from the model's
 * input shape through the layers before. Following it lets a check see the weights tfjs will
 * allocate. A shape here has no batch dimension; null is a size tfjs leaves open or one this
 * module does not follow. Any layer class not listed gives `undefined` (shape unknown), so the
 * layers after it are checked without their input size.
 */
import { byName, CONV_RANK, isSize, setting, sizes, TRANSPOSE_RANK, type KerasLayer } from './_keras_config.ts'

export type Shape = Array<number | null>

/** Layers whose output has their input's shape. */
const SAME_SHAPE = new Set([
  'Activation', 'Dropout', 'SpatialDropout1D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout',
  'BatchNormalization', 'LayerNormalization', 'ReLU', 'LeakyReLU', 'PReLU', 'ELU', 'ThresholdedReLU',
  'Softmax', 'Masking'
])

/** SeparableConv2D's output shape is a Conv2D's (its computeOutputShape is Conv's). */
const OUTPUT_CONV_RANK = byName({ ...CONV_RANK, SeparableConv2D: 2 })
const POOL_RANK = byName({
  MaxPooling1D: 1, AveragePooling1D: 1, MaxPooling2D: 2, AveragePooling2D: 2, MaxPooling3D: 3, AveragePooling3D: 3
})
const RNN_CLASSES = new Set(['SimpleRNN', 'GRU', 'LSTM'])

/**
 * The input shape a layer declares (`batch_input_shape`, or `input_shape` after a batch size),
 * batch dimension dropped, as tfjs-layers' Layer constructor reads it; an Embedding without one
 * takes `[input_length]`.
 */
export function declaredInputShape (layer: KerasLayer): Shape | undefined {
  const c = layer.config
  const batch = dims(c.batchInputShape)
  if (batch !== undefined) return batch.length > 0 ? batch.slice(1) : undefined
  const input = dims(c.inputShape)
  if (input !== undefined) return input
  if (layer.className === 'Embedding' && layer.config.batchInputShape == null && layer.config.inputShape == null) {
    const length = c.inputLength
    return length == null ? [null] : dims(Array.isArray(length) ? length : [length])
  }
  return undefined
}

/** The shape of the layer's first output for these inputs; undefined when not known. */
export function outputShape (layer: KerasLayer, inputs: ReadonlyArray<Shape | undefined>): Shape | undefined {
  const cls = layer.className
  if (cls === 'Concatenate') return concatenated(layer.config, inputs)
  if (['Add', 'Multiply', 'Average', 'Maximum', 'Minimum'].includes(cls)) return elementwise(inputs)
  const s = inputs.length === 1 ? inputs[0] : undefined
  if (s === undefined) return undefined
  const c = layer.config
  if (SAME_SHAPE.has(cls)) return s
  if (OUTPUT_CONV_RANK[cls] !== undefined) return conv(c, s, OUTPUT_CONV_RANK[cls])
  if (TRANSPOSE_RANK[cls] !== undefined) return convTranspose(c, s, TRANSPOSE_RANK[cls])
  if (POOL_RANK[cls] !== undefined) return pool(c, s, POOL_RANK[cls])
  if (RNN_CLASSES.has(cls)) return isSize(c.units) && s.length === 2 ? (Boolean(c.returnSequences) ? [s[0] ?? null, c.units] : [c.units]) : undefined
  switch (cls) {
    case 'Dense': return isSize(c.units) && s.length > 0 ? [...s.slice(0, -1), c.units] : undefined
    case 'DepthwiseConv2D': return depthwise(c, s)
    case 'Embedding': return embedding(c, s)
    case 'Flatten': return s.every(isSize) ? [s.reduce((n: number, d) => n * (d as number), 1)] : undefined
    // With the batch size open (the usual case) tfjs skips `fixUnknownDimension` and keeps the
    // target as given; a -1 in it stays unknown here either way.
    case 'Reshape': return dims(c.targetShape)
    case 'RepeatVector': return isSize(c.n) && s.length === 1 ? [c.n, s[0] ?? null] : undefined
    case 'Permute': return permuted(c.dims, s)
    case 'GlobalAveragePooling1D': case 'GlobalMaxPooling1D': return s.length === 2 ? [s[1] ?? null] : undefined
    case 'GlobalAveragePooling2D': case 'GlobalMaxPooling2D':
      return s.length === 3 ? [setting(c, 'dataFormat') === 'channelsFirst' ? s[0] ?? null : s[2] ?? null] : undefined
    case 'ZeroPadding2D': return zeroPadded(c, s)
    case 'UpSampling2D': return upSampled(c, s)
    case 'TimeDistributed': return timeDistributed(layer, s)
    case 'Bidirectional': return bidirectional(layer, s)
    default: return undefined
  }
}

/** A shape list from model.json: sizes and nulls (negative sizes count as unknown, as in tfjs). */
function dims (v: unknown): Shape | undefined {
  if (!Array.isArray(v) || v.length > 64) return undefined
  if (!v.every(d => d === null || typeof d === 'number')) return undefined
  return v.map(d => isSize(d) ? d : null)
}

type Config = Record<string, unknown>

/** tfjs conv_utils `convOutputLength`. */
function convLength (length: number | null, filter: number, padding: unknown, stride: number, dilation = 1): number | null {
  if (length === null) return null
  const dilated = filter + (filter - 1) * (dilation - 1)
  const out = padding === 'same' ? length : length - dilated + 1
  const n = Math.floor((out + stride - 1) / stride)
  return n >= 0 ? n : null
}

/** tfjs conv_utils `deconvLength`. */
function deconvLength (length: number | null, stride: number, kernel: number, padding: unknown): number | null {
  if (length === null) return null
  return padding === 'valid' ? length * stride + Math.max(kernel - stride, 0) : length * stride
}

/** [spatial dims, channels] of `s` for `rank` spatial dims, or undefined. */
function split (c: Config, s: Shape, rank: number): { space: Shape, channels: number | null, first: boolean } | undefined {
  if (s.length !== rank + 1) return undefined
  const first = setting(c, 'dataFormat') === 'channelsFirst'
  return first ? { space: s.slice(1), channels: s[0] ?? null, first } : { space: s.slice(0, rank), channels: s[rank] ?? null, first }
}

function join (space: Shape, channels: number | null, first: boolean): Shape {
  return first ? [channels, ...space] : [...space, channels]
}

/** Conv1D/2D/3D and SeparableConv2D (whose computeOutputShape is Conv's, dilation included). */
function conv (c: Config, s: Shape, rank: number): Shape | undefined {
  const parts = split(c, s, rank)
  const kernel = sizes(c.kernelSize, rank)
  const strides = sizes(c.strides ?? 1, rank)
  const dilation = sizes(c.dilationRate ?? 1, rank)
  if (parts === undefined || kernel === undefined || strides === undefined || dilation === undefined || !isSize(c.filters)) return undefined
  const padding = setting(c, 'padding') ?? 'valid'
  const space = parts.space.map((d, i) => convLength(d, kernel[i]!, padding, strides[i]!, dilation[i]))
  return join(space, c.filters, parts.first)
}

function convTranspose (c: Config, s: Shape, rank: number): Shape | undefined {
  const parts = split(c, s, rank)
  const kernel = sizes(c.kernelSize, rank)
  const strides = sizes(c.strides ?? 1, rank)
  const padding = setting(c, 'padding') ?? 'valid'
  if (parts === undefined || kernel === undefined || strides === undefined || !isSize(c.filters)) return undefined
  if (padding !== 'valid' && padding !== 'same') return undefined
  return join(parts.space.map((d, i) => deconvLength(d, strides[i]!, kernel[i]!, padding)), c.filters, parts.first)
}

function depthwise (c: Config, s: Shape): Shape | undefined {
  const parts = split(c, s, 2)
  const kernel = sizes(c.kernelSize, 2)
  const strides = sizes(c.strides ?? 1, 2)
  const multiplier = c.depthMultiplier ?? 1
  if (parts === undefined || kernel === undefined || strides === undefined || !isSize(multiplier)) return undefined
  const padding = setting(c, 'padding') ?? 'valid'
  // tfjs passes no dilation here (computeOutputShape of DepthwiseConv2D).
  const space = parts.space.map((d, i) => convLength(d, kernel[i]!, padding, strides[i]!))
  return join(space, parts.channels === null ? null : parts.channels * multiplier, parts.first)
}

function pool (c: Config, s: Shape, rank: number): Shape | undefined {
  const parts = split(rank === 1 ? {} : c, s, rank) // 1D pooling is channels-last only
  const size = sizes(c.poolSize ?? 2, rank)
  const strides = c.strides == null ? size : sizes(c.strides, rank)
  if (parts === undefined || size === undefined || strides === undefined) return undefined
  const padding = setting(c, 'padding') ?? 'valid'
  return join(parts.space.map((d, i) => convLength(d, size[i]!, padding, strides[i]!)), parts.channels, parts.first)
}

function embedding (c: Config, s: Shape): Shape | undefined {
  if (!isSize(c.outputDim)) return undefined
  if (c.inputLength == null) return [...s, c.outputDim]
  const lengths = Array.isArray(c.inputLength) ? c.inputLength : [c.inputLength]
  if (lengths.length !== s.length) return undefined
  return [...lengths.map((l, k) => isSize(l) ? l : s[k] ?? null), c.outputDim]
}

function permuted (order: unknown, s: Shape): Shape | undefined {
  if (!Array.isArray(order) || order.length !== s.length) return undefined
  const out: Shape = []
  for (const d of order) {
    if (!isSize(d) || d < 1 || d > s.length) return undefined
    out.push(s[d - 1] ?? null)
  }
  return out
}

function zeroPadded (c: Config, s: Shape): Shape | undefined {
  const parts = split(c, s, 2)
  const p = c.padding ?? 1
  const pairs = isSize(p)
    ? [[p, p], [p, p]]
    : Array.isArray(p) && p.length === 2
      ? p.every(isSize) ? [[p[0], p[0]], [p[1], p[1]]] : p.every(q => Array.isArray(q) && q.length === 2 && q.every(isSize)) ? p as number[][] : undefined
      : undefined
  if (parts === undefined || pairs === undefined) return undefined
  const space = parts.space.map((d, i) => d === null ? null : d + pairs[i]![0]! + pairs[i]![1]!)
  return join(space, parts.channels, parts.first)
}

function upSampled (c: Config, s: Shape): Shape | undefined {
  const parts = split(c, s, 2)
  const size = c.size == null ? [2, 2] : Array.isArray(c.size) && c.size.length === 2 && c.size.every(isSize) ? c.size as number[] : undefined
  if (parts === undefined || size === undefined) return undefined
  return join(parts.space.map((d, i) => d === null ? null : d * size[i]!), parts.channels, parts.first)
}

function timeDistributed (layer: KerasLayer, s: Shape): Shape | undefined {
  if (layer.inner === undefined || s.length < 2) return undefined
  const child = outputShape(layer.inner, [s.slice(1)])
  return child === undefined ? undefined : [s[0] ?? null, ...child]
}

function bidirectional (layer: KerasLayer, s: Shape): Shape | undefined {
  const out = layer.inner === undefined ? undefined : outputShape(layer.inner, [s])
  if (out === undefined || out.length === 0) return undefined
  const merge = layer.config.mergeMode === undefined ? 'concat' : setting(layer.config, 'mergeMode')
  if (merge !== 'concat') return out
  const last = out[out.length - 1] ?? null
  return [...out.slice(0, -1), last === null ? null : last * 2]
}

function elementwise (inputs: ReadonlyArray<Shape | undefined>): Shape | undefined {
  const first = inputs[0]
  if (first === undefined) return undefined
  // Broadcasting between different shapes is not followed.
  for (const s of inputs) {
    if (s === undefined || s.length !== first.length || s.some((d, i) => d !== first[i])) return undefined
  }
  return first
}

function concatenated (c: Config, inputs: ReadonlyArray<Shape | undefined>): Shape | undefined {
  const first = inputs[0]
  if (first === undefined || inputs.length < 2) return undefined
  const axisOfFull = c.axis == null ? -1 : c.axis
  if (typeof axisOfFull !== 'number' || !Number.isInteger(axisOfFull)) return undefined
  // `axis` counts the batch dimension.
  const axis = (axisOfFull < 0 ? axisOfFull + first.length + 1 : axisOfFull) - 1
  if (axis < 0 || axis >= first.length) return undefined
  let along: number | null = 0
  for (const s of inputs) {
    if (s === undefined || s.length !== first.length) return undefined
    if (s.some((d, i) => i !== axis && d !== first[i])) return undefined
    const d = s[axis] ?? null
    along = along === null || d === null ? null : along + d
  }
  return first.map((d, i) => i === axis ? along : d)
}
