/**
 * Metadata a tfjs model.json shows beyond its weights: Keras layers (layers models: the
 * `modelTopology` written by tfjs-layers `Model.toJSON`, or Keras's `model_config`), graph
 * nodes (graph models: a TensorFlow GraphDef as JSON), and inputs/outputs from the Keras
 * config, the graph `signature`, or Placeholder nodes. Read defensively: only the schema'd
 * parts of model.json are guaranteed, so anything else may be missing or odd.
 */
import { InvalidModelError } from '../errors/errors.ts'
import type { LayerSummary, ModelMetadata, TensorInfo } from '../model/types.ts'
import { elementCount, MAX_TENSOR_RANK, tfDtypeName } from './_dtypes.ts'
import type { ModelJson, TfjsKind } from './_tfjs_json.ts'
import { layersOfTensors } from './metadata.ts'

type Io = ModelMetadata['inputs']

/**
 * Inputs or outputs a Keras config may name: each becomes an entry of the signed manifest. Real
 * models have a few; 100,000 names of one input copied its shape 100,000 times (review 46c).
 */
const MAX_IO = 4096

/** What `layer` optimizer state (weights of group "optimizer") is filed under. */
export const OPTIMIZER_LAYER = 'optimizer'

/**
 * The layer of a weight named `scope/…/weight`: everything before the last `/`. Optimizer state
 * (`hidden/kernel/m`, `iter`) belongs to no layer and is filed together under OPTIMIZER_LAYER.
 */
export function weightLayer (name: string, group?: string): string {
  if (group === 'optimizer') return OPTIMIZER_LAYER
  const slash = name.lastIndexOf('/')
  return slash > 0 ? name.slice(0, slash) : name
}

/** Segments of a weight's layer path a config layer's name may match from the end (nesting is at most 8 deep). */
const MAX_SUFFIX_SEGMENTS = 16

export function tfjsLayers (kind: TfjsKind, json: ModelJson, tensors: readonly TensorInfo[]): LayerSummary[] {
  if (kind === 'tfjs-graph') {
    const consumers = firstConsumerOps(json)
    const firstTensor = new Map<string, string>()
    for (const t of tensors) if (!firstTensor.has(t.layer)) firstTensor.set(t.layer, t.name)
    return layersOfTensors(tensors, layer => consumers.get(firstTensor.get(layer) ?? ''))
  }
  const params = new Map<string, number>()
  for (const t of tensors) params.set(t.layer, (params.get(t.layer) ?? 0) + elementCount(t.shape))
  // A config layer `l` claims the weight layers named `l` or ending in `/l`: index every weight
  // layer under each of its '/'-suffixes, so matching is one lookup per config layer (comparing
  // every config layer with every weight layer took 4.9 s for a 2 MB model.json of 20,000 layers).
  // Only the last MAX_SUFFIX_SEGMENTS segments count, so a name of a million '/' costs no more.
  const bySuffix = new Map<string, string[]>()
  for (const layer of params.keys()) {
    const segments = layer.split('/')
    for (let from = Math.max(0, segments.length - MAX_SUFFIX_SEGMENTS); from < segments.length; from++) {
      const suffix = from === 0 ? layer : segments.slice(from).join('/')
      const list = bySuffix.get(suffix)
      if (list === undefined) bySuffix.set(suffix, [layer])
      else list.push(layer)
    }
  }
  const layers: LayerSummary[] = []
  const claimed = new Set<string>()
  // Per name, once: layers of nested models may share a name, and N of them walking one list of
  // N weight layers each was quadratic (18 s for a 1.5 MB model.json of 20,000 layers named "d").
  const parametersOf = new Map<string, number>()
  for (const l of kerasLayers(json)) {
    let parameters = parametersOf.get(l.name)
    if (parameters === undefined) {
      parameters = 0
      for (const layer of bySuffix.get(l.name) ?? []) {
        parameters += params.get(layer) as number
        claimed.add(layer)
      }
      parametersOf.set(l.name, parameters)
    }
    layers.push({ name: l.name, ...(l.className === undefined ? {} : { kind: l.className }), parameters })
  }
  // Optimizer state, and weights no config layer claims (an unusual naming), still show up.
  const optimizer = str(obj(obj(tfjsTrainingConfig(json))?.optimizer_config)?.class_name)
  const rest = tensors.filter(t => !claimed.has(t.layer))
  return [...layers, ...layersOfTensors(rest, layer => layer === OPTIMIZER_LAYER ? optimizer : undefined)]
}

export function tfjsInputsOutputs (kind: TfjsKind, json: ModelJson, file: string): { inputs: Io, outputs: Io } {
  return kind === 'tfjs-graph' ? graphIo(json, file) : kerasIo(json, file)
}

export function tfjsTrainingConfig (json: ModelJson): unknown {
  return json.trainingConfig ?? json.modelTopology.training_config ?? undefined
}

interface KerasLayer { name: string, className?: string, config: Record<string, unknown> }

function kerasModel (json: ModelJson): Record<string, unknown> | undefined {
  return obj(json.modelTopology.model_config) ?? json.modelTopology
}

/** Leaf layers in config order; layers of nested models are listed in place of the model. */
function kerasLayers (json: ModelJson): KerasLayer[] {
  const out: KerasLayer[] = []
  const visit = (model: Record<string, unknown> | undefined, depth: number): void => {
    const config = model?.config
    const list = Array.isArray(config) ? config : arr(obj(config)?.layers) ?? []
    for (const item of list) {
      const layer = obj(item)
      const layerConfig = obj(layer?.config) ?? {}
      const nested = arr(layerConfig.layers)
      if (nested !== undefined && depth < 8) {
        visit(layer, depth + 1)
        continue
      }
      const name = str(layerConfig.name) ?? str(layer?.name)
      if (name === undefined) continue
      const className = str(layer?.class_name)
      out.push({ name, ...(className === undefined ? {} : { className }), config: layerConfig })
    }
  }
  visit(kerasModel(json), 0)
  return out
}

function kerasIo (json: ModelJson, file: string): { inputs: Io, outputs: Io } {
  const model = kerasModel(json)
  const config = obj(model?.config)
  const layers = kerasLayers(json)
  // By name, first wins as `find` did: a model.json may list tens of thousands of inputs.
  const byName = new Map<string, typeof layers[number]>()
  for (const l of layers) if (!byName.has(l.name)) byName.set(l.name, l)
  const describe = (name: string): Io[number] => {
    const c = byName.get(name)?.config
    const shape = arr(c?.batch_input_shape) ?? arr(c?.batch_shape)
    const dtype = str(c?.dtype)
    return {
      name,
      ...(dtype === undefined ? {} : { dtype }),
      ...(shape === undefined ? {} : { shape: dims(shape, file, `input layer ${JSON.stringify(name)}`, () => `input layer ${JSON.stringify(name)} has a batch input shape`, d => d === null ? -1 : d) })
    }
  }
  const named = (list: unknown, what: string): string[] | undefined => {
    const entries = arr(list)
    if (entries !== undefined && entries.length > MAX_IO) throw new InvalidModelError(`${file}: the model config names ${entries.length} ${what}, more than a model has (limit ${MAX_IO})`)
    return entries?.map(entry => str(arr(entry)?.[0])).filter((n): n is string => n !== undefined)
  }
  const inputs = named(config?.input_layers, 'input layers')
  const outputs = named(config?.output_layers, 'output layers')
  if (inputs !== undefined && outputs !== undefined) {
    return { inputs: inputs.map(describe), outputs: outputs.map(name => ({ name })) }
  }
  // Sequential: the first layer carries the input shape; the last layer is the output.
  const first = layers[0]
  const last = layers[layers.length - 1]
  return {
    inputs: first === undefined ? [] : [describe(first.name)],
    outputs: last === undefined ? [] : [{ name: last.name }]
  }
}

function graphIo (json: ModelJson, file: string): { inputs: Io, outputs: Io } {
  const signature = json.signature
  if (signature != null && obj(signature.inputs) !== undefined) {
    const entries = (side: unknown): Io => Object.entries(obj(side) ?? {}).map(([key, value]) => {
      const v = obj(value)
      const shape = arr(obj(v?.tensorShape)?.dim)
      const dtype = str(v?.dtype)
      return {
        name: str(v?.name) ?? key,
        ...(dtype === undefined ? {} : { dtype: tfDtypeName(dtype) }),
        ...(shape === undefined ? {} : { shape: dims(shape, file, `signature tensor ${JSON.stringify(key)}`, () => `signature tensor ${JSON.stringify(key)} has a dim`, d => obj(d)?.size ?? -1) })
      }
    })
    return { inputs: entries(signature.inputs), outputs: entries(signature.outputs) }
  }
  const nodes = graphNodes(json)
  const consumed = new Set(nodes.flatMap(n => [...n.inputs, ...n.controls]))
  const inputs: Io = nodes.filter(n => n.op === 'Placeholder').map(n => {
    const dtype = str(obj(obj(n.attr)?.dtype)?.type)
    const shape = arr(obj(obj(obj(n.attr)?.shape)?.shape)?.dim)
    return {
      name: n.name,
      ...(dtype === undefined ? {} : { dtype: tfDtypeName(dtype) }),
      ...(shape === undefined ? {} : { shape: dims(shape, file, `Placeholder ${JSON.stringify(n.name)}`, () => `Placeholder ${JSON.stringify(n.name)} has a dim`, d => obj(d)?.size ?? -1) })
    }
  })
  const outputs: Io = nodes
    .filter(n => !consumed.has(n.name) && n.op !== 'Const' && n.op !== 'NoOp' && n.op !== 'Placeholder')
    .map(n => ({ name: n.name }))
  return { inputs, outputs }
}

/** `inputs`: the nodes whose values it takes; `controls`: those it only runs after ("^name"). */
interface GraphNode { name: string, op: string, inputs: string[], controls: string[], attr: unknown }

function graphNodes (json: ModelJson): GraphNode[] {
  return (arr(json.modelTopology.node) ?? []).flatMap(item => {
    const n = obj(item)
    const name = str(n?.name)
    if (n === undefined || name === undefined) return []
    // "^name" is a control input (an ordering, no value) and "name:1" the second output of node "name".
    const all = (arr(n.input) ?? []).map(String)
    const inputs = all.filter(i => !i.startsWith('^')).map(i => i.replace(/:\d+$/, ''))
    const controls = all.filter(i => i.startsWith('^')).map(i => i.slice(1))
    return [{ name, op: str(n.op) ?? '', inputs, controls, attr: n.attr }]
  })
}

/** Ops that pass a weight on unchanged in kind: its layer is the node after them. */
const PASS_THROUGH = new Set(['Identity', 'Cast', 'Reshape', 'Transpose', 'ExpandDims', 'Squeeze', 'Neg'])
/** Pass-through nodes followed from a weight at most. */
const MAX_HOPS = 4
/** Ops that hand a weight to a function body (control flow, calls): not a layer of their own. */
const CALLS = /^(Stateless|Stateful)?(If|While|PartitionedCall)$/

/**
 * Graph models: the layer of each weight is the scope of the node that computes with it (the
 * first that takes it as an input, past pass-through ops): `…/conv2d/BiasAdd` (a _FusedConv2D)
 * → `…/conv2d`. Names alone do not say it: the converter names a fused op's constants `unknown`,
 * `unknown_0`, and a fused conv + batch norm + PReLU reads weights named under three scopes, which
 * then went to different blocks (review 48c). Weights no node takes, or that go into a function
 * (a While, an If, a call), keep the layer their name gives (`weightLayer`).
 */
export function graphWeightLayers (json: ModelJson, weights: Iterable<string>): Map<string, string> {
  const consumer = new Map<string, GraphNode>()
  for (const n of graphNodes(json)) for (const i of n.inputs) if (!consumer.has(i)) consumer.set(i, n)
  const layers = new Map<string, string>()
  for (const w of weights) {
    let node = consumer.get(w)
    for (let hop = 0; node !== undefined && PASS_THROUGH.has(node.op) && hop < MAX_HOPS; hop++) node = consumer.get(node.name) ?? node
    if (node === undefined || CALLS.test(node.op)) continue
    const slash = node.name.lastIndexOf('/')
    layers.set(w, slash > 0 ? node.name.slice(0, slash) : node.name)
  }
  return layers
}

/** Weight (Const node) name → op of the first node that takes it as an input. */
function firstConsumerOps (json: ModelJson): Map<string, string> {
  const ops = new Map<string, string>()
  for (const n of graphNodes(json)) for (const i of n.inputs) if (!ops.has(i)) ops.set(i, n.op)
  return ops
}

function obj (v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : undefined
}

function arr (v: unknown): unknown[] | undefined {
  return Array.isArray(v) ? v : undefined
}

/** A shape as the manifest records it, each dim read by `dim`; more than MAX_TENSOR_RANK dims are refused. */
function dims (list: unknown[], file: string, owner: string, where: () => string, dim: (d: unknown) => unknown): number[] {
  if (list.length > MAX_TENSOR_RANK) throw new InvalidModelError(`${file}: ${owner} has a shape of ${list.length} dims, more than a tensor has (limit ${MAX_TENSOR_RANK})`)
  return list.map(d => size(dim(d), file, where))
}

/**
 * A dimension as the manifest records it: -1 for unknown, else a size. Graph models write sizes
 * as decimal strings (TensorShapeProto's int64 in proto3 JSON), Keras as numbers or null.
 */
function size (v: unknown, file: string, where: () => string): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d{1,16}$/.test(v) ? Number(v) : NaN
  if (!Number.isSafeInteger(n) || n < -1) throw new InvalidModelError(`${file}: ${where()} of ${JSON.stringify(v)?.slice(0, 40) ?? String(v)}, which is not a size (an integer from -1 up)`)
  return n
}

function str (v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}
