/**
 * A tfjs layers model.json's layer configs checked against its weights manifest, before
 * tfjs-layers sees the model. tfjs-layers builds the whole model first — every layer allocates
 * and initialises each weight at the size its config and input shape imply — and only then
 * compares the weights with the manifest (models.ts `loadLayersModelFromIOHandler`), so a config
 * that lies costs whatever it claims: a Dense layer saying units 15000000 over a [784, 128]
 * kernel took 3.8 GiB and left the wasm backend broken for the next model.
 *
 * Each weight a covered layer makes (_keras_weights.ts) must be in the manifest under a name
 * tfjs would load it by (container.ts `loadWeights`: the exact scoped name, TF 2.2's
 * `layer/cell/weight`, or Keras 3's `layer/index`), have the shape the layer makes, and belong
 * to no other layer: then what tfjs allocates is what the weight files hold. Sizes that come
 * from an input shape this module cannot follow (_keras_shapes.ts) are not compared, and layers
 * of classes not covered are skipped, so no model tfjs would load is refused.
 */
import { InvalidModelError } from '../errors/errors.ts'
import { kerasLayer, type KerasLayer } from './_keras_config.ts'
import { declaredInputShape, outputShape, type Shape } from './_keras_shapes.ts'
import { layerWeights, showShape, type Dim } from './_keras_weights.ts'
import type { ModelJson, WeightEntry } from './_tfjs_json.ts'

const MODEL_CLASSES = new Set(['Sequential', 'Model', 'Functional'])

interface Context {
  file: string
  /** Model weights (not optimizer state) by each name tfjs may load them as; full names first. */
  byName: Map<string, WeightEntry[]>
  /** Keras 3 names weights `layer/0`, `layer/1`…, and tfjs then matches them by position. */
  byIndex: boolean
  /** Manifest weight → (the description of) the layer it was matched to. */
  owner: Map<WeightEntry, () => string>
  /** Per `byName` key, how many of its first candidates are owned. */
  ownedPrefix: Map<string, number>
  /** Candidates looked at so far, against MAX_MATCH_STEPS. */
  steps: number
  /** Weights the manifest lists: no layer can make more that all match. */
  weights: number
}

/**
 * Most candidate weights the whole check looks at: far above any real model (each of its weights
 * has one name), low enough that a crafted manifest of many weights sharing names is refused in
 * well under a second rather than matched in quadratic time.
 */
const MAX_MATCH_STEPS = 1_000_000

/** A weight a layer makes, under the scope tfjs names it in (`td`, `bi/forward_lstm`). */
interface Scoped { scope: string, name: string, dims: Array<Dim | null> }

/**
 * Throws InvalidModelError if a layer of the model's Keras topology makes a weight the weights
 * manifest does not have, has with another shape, or gives to another layer too. A topology
 * that is not a Keras model (a graph model's) passes: tfjs-layers would not build it.
 *
 * @example checkLayerWeights(modelJsonOf(JSON.parse(text), 'model.json'), 'model.json')
 */
export function checkLayerWeights (json: ModelJson, file: string): void {
  // tfjs-layers reads `model_config` when present (Keras's own model.json), else the topology.
  const topology = json.modelTopology.model_config != null ? json.modelTopology.model_config : json.modelTopology
  const model = kerasLayer(topology)
  if (model === undefined || !MODEL_CLASSES.has(model.className)) return
  const weights = json.weightsManifest.reduce((n, g) => n + g.weights.length, 0)
  visitModel({ file, ...manifestNames(json), owner: new Map(), ownedPrefix: new Map(), steps: 0, weights }, model)
}

function manifestNames (json: ModelJson): Pick<Context, 'byName' | 'byIndex'> {
  const specs = json.weightsManifest.flatMap(g => g.weights).filter(w => w.group !== 'optimizer')
  const byName = new Map<string, WeightEntry[]>()
  const add = (name: string, w: WeightEntry): void => {
    const list = byName.get(name)
    if (list === undefined) byName.set(name, [w])
    else list.push(w)
  }
  for (const w of specs) add(w.name, w)
  for (const w of specs) {
    // `a/cell/kernel` → `a/kernel`: tfjs's fallback for names TF 2.2 gave RNN cells' weights.
    const last = w.name.lastIndexOf('/')
    const before = last <= 0 ? -1 : w.name.lastIndexOf('/', last - 1)
    const short = last < 0 ? w.name : before < 0 ? w.name.slice(last + 1) : w.name.slice(0, before) + w.name.slice(last)
    if (short !== w.name) add(short, w)
  }
  // tfjs tests the first key of an object of the weights by name, and JavaScript puts keys that
  // are array indices first.
  const first = specs.find(w => isArrayIndex(w.name)) ?? specs[0]
  const tail = first?.name.slice(first.name.lastIndexOf('/') + 1)
  return { byName, byIndex: tail !== undefined && !Number.isNaN(Number.parseInt(tail, 10)) }
}

function isArrayIndex (name: string): boolean {
  return /^(0|[1-9]\d{0,9})$/.test(name) && Number(name) < 2 ** 32 - 1
}

/**
 * Layers of one model, and layer inputs over all its calls, this check follows at most: far
 * above real models (the largest @vladmandic/human one has a few hundred layers), low enough that
 * a 15 MB model.json of a million calls is refused before it takes gigabytes (review 46c).
 */
const MAX_LAYERS = 100_000
const MAX_CALL_INPUTS = 200_000

/** Checks a model's layers; returns its output shape when known. */
function visitModel (ctx: Context, model: KerasLayer): Shape | undefined {
  const entries = Array.isArray(model.config.layers) ? model.config.layers : []
  if (entries.length > MAX_LAYERS) throw new InvalidModelError(`${ctx.file}: a model of ${entries.length} layers, more than this check follows (limit ${MAX_LAYERS})`)
  uniqueNames(ctx, entries)
  return model.className === 'Sequential' ? sequential(ctx, model) : functional(ctx, model)
}

/**
 * tfjs-layers refuses a model whose layers share a name (container.ts: "All layer names should
 * be unique"), but only once it has built every layer; refused here first. Layers of two nested
 * models may share a name: each model is its own container.
 */
function uniqueNames (ctx: Context, entries: readonly unknown[]): void {
  const seen = new Set<string>()
  for (const entry of entries) {
    const name = kerasLayer(entry)?.name
    if (name === undefined) continue
    if (seen.has(name)) throw new InvalidModelError(`${ctx.file}: two layers of one model are named ${JSON.stringify(name.slice(0, 200))}; tfjs-layers needs unique layer names and would refuse to build it`)
    seen.add(name)
  }
}

/** Sequential: the first layer takes its declared input shape, each other the previous output. */
function sequential (ctx: Context, model: KerasLayer): Shape | undefined {
  const entries = Array.isArray(model.config.layers) ? model.config.layers : []
  let shape: Shape | undefined
  for (const [i, entry] of entries.entries()) {
    const layer = kerasLayer(entry)
    if (layer === undefined) shape = undefined
    else if (MODEL_CLASSES.has(layer.className)) shape = visitModel(ctx, layer) // built on its own input
    else if (layer.className === 'InputLayer') shape = i === 0 ? declaredInputShape(layer) : undefined
    else shape = build(ctx, layer, [i === 0 ? declaredInputShape(layer) : shape])
  }
  return shape
}

interface Ref { layer: number, node: number, tensor: number }

/**
 * Functional: layers are called as `inbound_nodes` say, each once its inputs exist, as tfjs's
 * `Container.fromConfig` does. A layer is built on its first call. Input layers and nested
 * models have a node 0 of their own, so calls to them count from 1.
 */
function functional (ctx: Context, model: KerasLayer): Shape | undefined {
  const entries = Array.isArray(model.config.layers) ? model.config.layers : []
  const layers = entries.map(kerasLayer)
  let inputs = 0
  for (const l of layers) {
    for (const call of Array.isArray(l?.inboundNodes) ? l.inboundNodes : []) inputs += Array.isArray(call) ? Math.max(1, call.length) : 1
  }
  if (inputs > MAX_CALL_INPUTS) throw new InvalidModelError(`${ctx.file}: its layers are called with ${inputs} inputs in all, more than this check follows (limit ${MAX_CALL_INPUTS})`)
  const position = new Map<string, number>()
  for (const [j, l] of layers.entries()) if (l?.entryName !== undefined) position.set(l.entryName, j)

  const outputs: Array<Array<Shape | undefined>> = layers.map(() => [])
  for (const [j, l] of layers.entries()) {
    if (l === undefined) continue
    if (MODEL_CLASSES.has(l.className)) outputs[j]!.push(visitModel(ctx, l))
    else if (l.className === 'InputLayer') outputs[j]!.push(declaredInputShape(l))
  }
  const calls = layers.map(l => l === undefined ? [] : callsOf(ctx, l, position))

  const nextCall = layers.map(() => 0)
  const nextRef = layers.map(() => 0)
  const waiting = new Map<string, number[]>()
  const built = new Set<number>()
  const work = layers.map((_, j) => layers.length - 1 - j) // popped in config order
  while (work.length > 0) {
    const j = work.pop() as number
    const layer = layers[j] as KerasLayer
    for (;;) {
      const refs = calls[j]![nextCall[j]!]
      if (refs === undefined) break
      // Wait on the first input that does not exist yet (inputs only ever appear).
      while (nextRef[j]! < refs.length && outputs[refs[nextRef[j]!]!.layer]!.length > refs[nextRef[j]!]!.node) nextRef[j]!++
      const missing = refs[nextRef[j]!]
      if (missing !== undefined) {
        const key = `${missing.layer}:${missing.node}`
        const list = waiting.get(key)
        if (list === undefined) waiting.set(key, [j])
        else list.push(j)
        break
      }
      const inputs = refs.map(r => r.tensor === 0 ? outputs[r.layer]![r.node] : undefined)
      let out: Shape | undefined
      if (MODEL_CLASSES.has(layer.className)) out = outputs[j]![0]
      else if (built.has(j)) out = outputShape(layer, inputs)
      else {
        built.add(j)
        out = build(ctx, layer, inputs)
      }
      outputs[j]!.push(out)
      nextCall[j]!++
      nextRef[j] = 0
      const woken = waiting.get(`${j}:${outputs[j]!.length - 1}`)
      for (const w of woken ?? []) work.push(w)
    }
  }
  for (const [j, l] of layers.entries()) {
    const refs = calls[j]![nextCall[j]!]
    const missing = refs?.[nextRef[j]!]
    if (l === undefined || missing === undefined) continue
    throw new InvalidModelError(`${ctx.file}: layer "${l.entryName ?? ''}" takes node ${missing.node} of layer ` +
      `"${layers[missing.layer]?.entryName ?? ''}", which the model never makes, so tfjs would wait for it forever`)
  }
  const out = Array.isArray(model.config.outputLayers) && model.config.outputLayers.length === 1 ? model.config.outputLayers[0] : undefined
  const j = Array.isArray(out) && out[2] === 0 ? position.get(String(out[0])) : undefined
  return j === undefined || typeof out[1] !== 'number' ? undefined : outputs[j]![out[1]]
}

/**
 * A functional layer's calls, each the list of its inputs. tfjs waits forever for an input from
 * a layer the model does not have, and fails on a node number that is not a count.
 */
function callsOf (ctx: Context, layer: KerasLayer, position: ReadonlyMap<string, number>): Ref[][] {
  if (!Array.isArray(layer.inboundNodes)) return []
  return layer.inboundNodes.filter(Array.isArray).map((call: unknown[]) => call.map(input => {
    const [name, node, tensor] = Array.isArray(input) ? input : []
    const at = position.get(String(name))
    if (at === undefined) {
      throw new InvalidModelError(`${ctx.file}: layer "${layer.entryName ?? ''}" takes an input from layer ` +
        `${JSON.stringify(name) ?? 'undefined'}, which is not in the model, so tfjs would wait for it forever`)
    }
    if (!Number.isSafeInteger(node) || (node as number) < 0) {
      throw new InvalidModelError(`${ctx.file}: layer "${layer.entryName ?? ''}" takes node ${JSON.stringify(node) ?? 'undefined'} of layer "${String(name)}", which is not a node number`)
    }
    return { layer: at, node: node as number, tensor: tensor === 0 ? 0 : 1 }
  }))
}

/** Builds a layer on its inputs, as tfjs does on a layer's first call: checks its weights, returns its output shape. */
function build (ctx: Context, layer: KerasLayer, inputs: ReadonlyArray<Shape | undefined>): Shape | undefined {
  const where = (): string => {
    const kind = layer.inner === undefined ? layer.className : `${layer.className}(${layer.inner.className})`
    return `${ctx.file}: layer ${JSON.stringify(layer.name ?? layer.entryName ?? '')} (${kind})`
  }
  const wanted = scopedWeights(layer, inputs.length === 1 ? inputs[0] : undefined, layer.name, where, ctx.weights)
  for (const [i, w] of (wanted ?? []).entries()) match(ctx, w, i, layer.name ?? '', where)
  return outputShape(layer, inputs)
}

/**
 * The weights tfjs makes for a layer, under the scopes it names them in: a TimeDistributed
 * layer builds its inner layer in its own scope (`td/kernel`), a Bidirectional one builds a
 * forward and a backward copy (`bi/forward_lstm/kernel`, wrappers.ts). Undefined when the
 * class is not covered. More than `limit` (the manifest's weights) is refused: they could not all
 * match.
 */
function scopedWeights (layer: KerasLayer, input: Shape | undefined, scope: string | undefined, where: () => string, limit: number): Scoped[] | undefined {
  const inner = layer.inner
  if (layer.className === 'TimeDistributed') {
    return inner === undefined ? undefined : scopedWeights(inner, input?.slice(1), scope, where, limit)
  }
  if (layer.className === 'Bidirectional') {
    if (inner === undefined) return undefined
    const scoped = (direction: string): string | undefined => scope === undefined || inner.name === undefined ? undefined : `${scope}/${direction}_${inner.name}`
    const forward = scopedWeights(inner, input, scoped('forward'), where, limit)
    if (forward === undefined) return undefined
    // The backward copy is the forward one in its own scope, not built again: built again, each
    // level of Bidirectional wrappers nested in one another doubled the work, and a 2 KB
    // model.json of 30 levels took the coordinator's whole heap (review 46c).
    if (2 * forward.length > limit) throw new InvalidModelError(`${where()} makes more weights than the ${limit} of the weights manifest (a Bidirectional wrapper in it makes ${2 * forward.length})`)
    const from = scoped('forward')
    const to = scoped('backward')
    // Without a scope nothing is made (a layer with weights and no name is refused above).
    const backward = from === undefined || to === undefined ? [] : forward.map(w => ({ ...w, scope: to + w.scope.slice(from.length) }))
    return [...forward, ...backward]
  }
  const weights = layerWeights(layer, input, where)
  if (weights === undefined || weights.length === 0) return weights === undefined ? undefined : []
  if (scope === undefined) {
    throw new InvalidModelError(`${where()} has no name (or wraps a layer with none), so tfjs would make up the names of its weights and none in the weights manifest could be them`)
  }
  return weights.map(w => ({ scope, name: w.name, dims: w.dims }))
}

/** Finds the manifest weight for `w` (the `index`th weight of layer `top`), or throws. */
function match (ctx: Context, w: Scoped, index: number, top: string, where: () => string): void {
  const key = `${w.scope}/${ctx.byIndex ? index : w.name}`
  const candidates = ctx.byName.get(key)
  // Owned candidates stay owned: start past the run of them at the front, so N layers of nested
  // models sharing a weight name do not each rescan the ones before them.
  let from = ctx.ownedPrefix.get(key) ?? 0
  while (candidates !== undefined && from < candidates.length && ctx.owner.has(candidates[from]!)) from++
  ctx.ownedPrefix.set(key, from)
  for (let i = from; i < (candidates?.length ?? 0); i++) {
    const c = candidates![i]!
    // Candidates no layer takes (other shapes) stay in front of the owned ones, and each match
    // walks past them again: the walks together are bounded, not each one.
    if (++ctx.steps > MAX_MATCH_STEPS) {
      throw new InvalidModelError(`${ctx.file}: too many weights in the manifest share names (${JSON.stringify(key.slice(0, 200))} among them) to match them to layers; tfjs loads weights by name, so each name should be given once`)
    }
    if (!ctx.owner.has(c) && fits(c.shape, w.dims)) {
      ctx.owner.set(c, where)
      return
    }
  }
  const fitting = candidates?.filter(c => fits(c.shape, w.dims)) ?? []
  // What the layer calls the weight: `kernel`, or `forward_lstm/kernel` under a wrapper.
  const own = `${w.scope === top ? '' : `${w.scope.slice(top.length + 1)}/`}${w.name}`
  const wanted = `[${w.dims.map(d => d === null ? '?' : d.size).join(', ')}]`
  if (candidates === undefined) {
    throw new InvalidModelError(`${where()} makes a weight "${key}" of shape ${wanted}, which the weights manifest does not have`)
  }
  if (fitting.length > 0) {
    const other = ctx.owner.get(fitting[0]!)?.().slice(ctx.file.length + 2) ?? 'another layer'
    throw new InvalidModelError(`${where()}: its ${own} in the weights manifest ("${fitting[0]!.name}") is already the weight of ${other}`)
  }
  const got = candidates[0]!.shape
  const differs = got.length === w.dims.length ? w.dims.find((d, i) => d !== null && d.size !== got[i]) : undefined
  if (differs != null) {
    throw new InvalidModelError(`${where()} has ${differs.why} but its ${own} in the weights manifest is ${showShape(got)}`)
  }
  const reasons = [...new Set(w.dims.flatMap(d => d === null ? [] : [d.why]))].join(' and ')
  throw new InvalidModelError(`${where()} has ${reasons || 'a config'}, so its ${own} is ${wanted}, but in the weights manifest it is ${showShape(got)}`)
}

function fits (shape: readonly number[], dims: ReadonlyArray<Dim | null>): boolean {
  if (shape.length !== dims.length) return false
  for (let i = 0; i < dims.length; i++) if (dims[i] != null && dims[i]!.size !== shape[i]) return false
  return true
}
