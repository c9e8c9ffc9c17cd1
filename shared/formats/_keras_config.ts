/**
 * A Keras layer's config as tfjs-layers reads it. tfjs-layers passes a model.json's topology
 * through `convertPythonicToTs` (utils/serialization_utils.ts) before building it: every key
 * becomes camelCase (a later key wins over an earlier one it collides with) and so does every
 * string value but `name`. Reading the config the same way keeps a check and tfjs in agreement:
 * `kernel_size`, `kernelSize` and `kernel__size` are one field, `Conv_2D` is class Conv2D.
 */

/**
 * A lookup table by a name from the model file (a layer's `class_name`), without a prototype:
 * as a plain object, `constructor` or `toString` found Object.prototype's and passed for a known
 * class (review 37e: a layer of class "constructor" was checked as a convolution).
 */
export function byName<T> (entries: Record<string, T>): Readonly<Record<string, T>> {
  return Object.freeze(Object.assign(Object.create(null) as Record<string, T>, entries))
}

/** Spatial dimensions of the convolution classes (Conv, and the transposed ones apart). */
export const CONV_RANK = byName({ Conv1D: 1, Conv2D: 2, Conv3D: 3 })
export const TRANSPOSE_RANK = byName({ Conv2DTranspose: 2, Conv3DTranspose: 3 })

/** Converted identifiers: every layer repeats the same few dozen keys (a bounded cache). */
const camel = new Map<string, string>()

/** tfjs-layers generic_utils `toCamelCase`. */
export function toCamelCase (identifier: string): string {
  if (identifier.length <= 1 || !identifier.includes('_')) return identifier
  let out = camel.get(identifier)
  if (out === undefined) {
    out = identifier.replace(/_+(\w|$)/g, (_, c: string) => c.toUpperCase())
    if (camel.size < 4096 && identifier.length <= 64) camel.set(identifier, out)
  }
  return out
}

/** A layer (or model) entry of a Keras topology, keys read as tfjs reads them. */
export interface KerasLayer {
  /** The class tfjs would build, e.g. `Dense`; '' when the entry names none. */
  className: string
  /** `config.name`: what tfjs names the layer and scopes its weights under. */
  name: string | undefined
  /** The entry's own `name`: what a functional model's `inbound_nodes` refer to it by. */
  entryName: string | undefined
  config: Record<string, unknown>
  /** The entry's `inbound_nodes` (functional models), as given. */
  inboundNodes: unknown
  /** The layer a wrapper (TimeDistributed, Bidirectional) holds in `config.layer`. */
  inner: KerasLayer | undefined
}

/** The entry as tfjs reads it, or undefined if it is not an object. */
export function kerasLayer (entry: unknown): KerasLayer | undefined {
  const item = camelKeys(entry)
  if (item === undefined) return undefined
  // A Sequential config may be the bare list of layers (older Keras); tfjs reads it as `layers`.
  const config = Array.isArray(item.config) ? { layers: item.config } : camelKeys(item.config) ?? {}
  const className = typeof item.className === 'string' ? toCamelCase(item.className) : ''
  return {
    className,
    name: typeof config.name === 'string' ? config.name : undefined,
    entryName: typeof item.name === 'string' ? item.name : undefined,
    config,
    inboundNodes: item.inboundNodes,
    inner: className === 'TimeDistributed' || className === 'Bidirectional' ? kerasLayer(config.layer) : undefined
  }
}

/** An object's own keys in camelCase, later keys winning, as convertPythonicToTs does. */
export function camelKeys (value: unknown): Record<string, unknown> | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) out[key === 'name' ? key : toCamelCase(key)] = v
  return out
}

/** A string setting as tfjs compares it (`channels_first` → `channelsFirst`); undefined if absent. */
export function setting (config: Record<string, unknown>, key: string): unknown {
  const v = config[key]
  return typeof v === 'string' ? toCamelCase(v) : v
}

/** A size tfjs can allocate: a non-negative safe integer. */
export function isSize (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

/**
 * `value` as `n` sizes the way tfjs-layers `normalizeArray` reads kernel sizes, strides and
 * dilation rates (one number repeated, or an array of exactly n); undefined otherwise.
 */
export function sizes (value: unknown, n: number): number[] | undefined {
  if (isSize(value)) return new Array<number>(n).fill(value)
  return Array.isArray(value) && value.length === n && value.every(isSize) ? value : undefined
}
