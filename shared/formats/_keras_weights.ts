/**
 * The weights tfjs-layers creates for a Keras layer, with the config fields their sizes come
 * from: each class's `build` (layers/core.ts Dense; convolutional.ts Conv, Conv2DTranspose,
 * Conv3DTranspose, SeparableConv; convolutional_depthwise.ts; embeddings.ts; normalization.ts;
 * recurrent.ts SimpleRNNCell, GRUCell, LSTMCell; advanced_activations.ts PReLU). Sizes that come
 * from the layer's input are known only when its input shape is (see _keras_shapes.ts).
 *
 * Not covered (their weights are not checked): ConvLSTM2D, the generic RNN with a `cell` config
 * (and StackedRNNCells), the abstract SeparableConv, and custom or unknown classes.
 */
import { InvalidModelError } from '../errors/errors.ts'
import { byName, CONV_RANK, isSize, setting, sizes, TRANSPOSE_RANK, type KerasLayer } from './_keras_config.ts'
import type { Shape } from './_keras_shapes.ts'

/** A weight size and what sets it (`units 128`, `input shape [null, 784]`), for errors. */
export interface Dim { size: number, why: string }

/** A weight a layer makes: its name under the layer's scope and its sizes (null: not known here). */
export interface WantedWeight { name: string, dims: Array<Dim | null> }

const GATES = byName({ SimpleRNN: 1, GRU: 3, LSTM: 4 })

/** Shape in tfjs's notation (the batch first), e.g. `[null, 28, 28, 1]`. */
export function showShape (s: readonly unknown[]): string {
  return `[${s.map(d => d === null ? 'null' : String(d)).join(', ')}]`
}

/**
 * The weights tfjs builds for `layer` (a wrapper's inner layer is the caller's business) in the
 * order of `layer.weights`, given the layer's input shape when known; undefined if its class is
 * not covered. A size field that is not a size throws InvalidModelError starting with `where()`.
 *
 * @example layerWeights(dense, [784], () => 'model.json: layer "d" (Dense)')
 *   // [{ name: 'kernel', dims: [784, 128] }, { name: 'bias', dims: [128] }] (sizes with their reasons)
 */
export function layerWeights (layer: KerasLayer, input: Shape | undefined, where: () => string): WantedWeight[] | undefined {
  const c = layer.config
  const cls = layer.className
  const field = (key: string, snake: string, fallback?: number): Dim => {
    const v = c[key] ?? fallback
    if (!isSize(v)) {
      throw new InvalidModelError(v === undefined
        ? `${where()} has no ${snake}`
        : `${where()} has ${snake} ${show(v)}, which is not a size (a non-negative integer)`)
    }
    return { size: v, why: c[key] == null ? `${snake} ${v} (by default)` : `${snake} ${v}` }
  }
  const kernelSize = (rank: number): Dim[] => {
    const ks = sizes(c.kernelSize, rank)
    if (ks === undefined) {
      throw new InvalidModelError(c.kernelSize === undefined
        ? `${where()} has no kernel_size`
        : `${where()} has kernel_size ${show(c.kernelSize)}, which is not ${rank === 1 ? 'a size' : `${rank} sizes`}`)
    }
    const why = `kernel_size ${show(c.kernelSize)}`
    return ks.map(size => ({ size, why }))
  }
  // A size of the input (axis counted without the batch dimension), when known.
  const inputDim = (axis: number): Dim | null => {
    const d = input?.[axis]
    if (input === undefined || d === null || d === undefined) return null
    // Described only when an error needs it: the shape string is the costliest part of a check.
    return { size: d, get why () { return `input size ${d} (input shape ${showShape([null, ...input])})` } }
  }
  const last = (): Dim | null => input === undefined ? null : inputDim(input.length - 1)
  // Conv input channels: last unless data_format is channels_first.
  const channels = (rank: number): Dim | null =>
    input?.length !== rank + 1 ? null : inputDim(setting(c, 'dataFormat') === 'channelsFirst' ? 0 : rank)
  const times = (d: Dim | null, by: Dim): Dim | null =>
    d === null ? null : by.size === 1 ? d : { size: d.size * by.size, get why () { return `${d.why} and ${by.why}` } }
  // tfjs: `args.useBias == null ? true : args.useBias`, then a truthiness test (same for scale, center).
  const flag = (key: string): boolean => c[key] == null || Boolean(c[key])
  const bias = (dims: Array<Dim | null>): WantedWeight[] => flag('useBias') ? [{ name: 'bias', dims }] : []

  if (cls === 'Dense') {
    const units = field('units', 'units')
    return [{ name: 'kernel', dims: [last(), units] }, ...bias([units])]
  }
  if (CONV_RANK[cls] !== undefined) {
    const rank = CONV_RANK[cls]
    const ks = kernelSize(rank)
    const filters = field('filters', 'filters')
    return [{ name: 'kernel', dims: [...ks, channels(rank), filters] }, ...bias([filters])]
  }
  if (TRANSPOSE_RANK[cls] !== undefined) {
    const rank = TRANSPOSE_RANK[cls]
    const ks = kernelSize(rank)
    const filters = field('filters', 'filters')
    return [{ name: 'kernel', dims: [...ks, filters, channels(rank)] }, ...bias([filters])]
  }
  if (cls === 'DepthwiseConv2D') {
    const ks = kernelSize(2)
    const multiplier = field('depthMultiplier', 'depth_multiplier', 1)
    const inC = channels(2)
    return [{ name: 'depthwise_kernel', dims: [...ks, inC, multiplier] }, ...bias([times(inC, multiplier)])]
  }
  if (cls === 'SeparableConv2D') {
    const ks = kernelSize(2)
    const filters = field('filters', 'filters')
    const multiplier = field('depthMultiplier', 'depth_multiplier', 1)
    const inC = channels(2)
    const one = { size: 1, why: 'a 1×1 pointwise kernel' }
    return [
      { name: 'depthwise_kernel', dims: [...ks, inC, multiplier] },
      { name: 'pointwise_kernel', dims: [one, one, times(inC, multiplier), filters] },
      ...bias([filters])
    ]
  }
  if (cls === 'Embedding') {
    return [{ name: 'embeddings', dims: [field('inputDim', 'input_dim'), field('outputDim', 'output_dim')] }]
  }
  if (cls === 'BatchNormalization') {
    const axis = c.axis ?? -1
    // `axis` counts the batch dimension (tfjs reads inputShape[axis]).
    const d = typeof axis !== 'number' || input === undefined ? null : inputDim(axis < 0 ? axis + input.length : axis - 1)
    return [
      ...flag('scale') ? [{ name: 'gamma', dims: [d] }] : [],
      ...flag('center') ? [{ name: 'beta', dims: [d] }] : [],
      { name: 'moving_mean', dims: [d] },
      { name: 'moving_variance', dims: [d] }
    ]
  }
  if (cls === 'LayerNormalization') {
    const axes = Array.isArray(c.axis) ? c.axis : [c.axis ?? -1]
    const dims = axes.map(a => typeof a !== 'number' || input === undefined ? null : inputDim(a < 0 ? a + input.length : a - 1))
    return [
      ...flag('scale') ? [{ name: 'gamma', dims }] : [],
      ...flag('center') ? [{ name: 'beta', dims }] : []
    ]
  }
  if (GATES[cls] !== undefined) {
    const gates = GATES[cls]
    const units = field('units', 'units')
    const wide = gates === 1 ? units : { size: units.size * gates, why: `${units.why} (${gates} gates: ${units.size * gates})` }
    return [
      { name: 'kernel', dims: [last(), wide] },
      { name: 'recurrent_kernel', dims: [units, wide] },
      ...bias([wide])
    ]
  }
  if (cls === 'PReLU') {
    // alpha has the input's shape with the shared axes set to 1: only checkable with the shape.
    if (input === undefined || !input.every(isSize)) return undefined
    const shared = c.sharedAxes == null ? [] : Array.isArray(c.sharedAxes) ? c.sharedAxes : [c.sharedAxes]
    const why = `shared_axes ${show(c.sharedAxes)}`
    return [{ name: 'alpha', dims: input.map((_, i) => shared.includes(i + 1) ? { size: 1, why } : inputDim(i)) }]
  }
  return undefined
}

function show (v: unknown): string {
  const text = Array.isArray(v) ? showShape(v) : JSON.stringify(v) ?? String(v)
  return text.length > 40 ? `${text.slice(0, 40)}…` : text
}
