/**
 * Named access to a tfjs LayersModel's weights as one flat Float32Array — the form a round's
 * update travels in (DESIGN.md, "Update": a delta per trainable block, tensors concatenated).
 * Names are the ones the model is saved under (`hidden_1/kernel`), i.e. `LayerVariable.originalName`:
 * the runtime `name` gets a `_1` suffix when a second model with the same layer names exists.
 */
import * as tf from '@tensorflow/tfjs-core'
import type { LayersModel, LayerVariable } from '@tensorflow/tfjs-layers'
import { InvalidInputError } from '../errors/errors.ts'

/** The names of every weight of `model`, in model order. */
export function weightNames (model: LayersModel): string[] {
  return model.weights.map(w => w.originalName)
}

/**
 * The model's weights called `names`, in that order. Throws InvalidInputError naming the
 * `what` argument when a name is unknown, repeated, or the list is empty.
 */
export function findWeights (model: LayersModel, names: readonly string[], what = 'names'): LayerVariable[] {
  if (!Array.isArray(names) || names.length === 0) throw new InvalidInputError(`${what} must be a non-empty list of tensor names`)
  const byName = new Map(model.weights.map(w => [w.originalName, w]))
  const unknown = names.filter(n => !byName.has(n))
  if (unknown.length > 0) {
    throw new InvalidInputError(`${what}: no tensor named ${unknown.map(n => JSON.stringify(n)).join(', ')} in the model (it has ${[...byName.keys()].join(', ')})`)
  }
  const repeated = names.filter((n, i) => names.indexOf(n) !== i)
  if (repeated.length > 0) throw new InvalidInputError(`${what}: ${repeated.map(n => JSON.stringify(n)).join(', ')} named more than once`)
  return names.map(n => byName.get(n) as LayerVariable)
}

/** Total number of values in the weights called `names`. */
export function weightSize (model: LayersModel, names: readonly string[]): number {
  return findWeights(model, names).reduce((n, w) => n + w.read().size, 0)
}

/**
 * The weights called `names` concatenated in that order. Reads synchronously (a stall on a GPU
 * backend; free on cpu and wasm).
 */
export function readWeights (model: LayersModel, names: readonly string[]): Float32Array {
  const weights = findWeights(model, names)
  const out = new Float32Array(weights.reduce((n, w) => n + w.read().size, 0))
  let offset = 0
  for (const w of weights) {
    const values = w.read().dataSync()
    out.set(values, offset)
    offset += values.length
  }
  return out
}

/**
 * Writes `values` (the weights called `trainable` concatenated in that order, as readWeights
 * returns them) into the model. Writes exactly: layer constraints are not applied.
 */
export function setTrainableWeights (model: LayersModel, trainable: readonly string[], values: Float32Array): void {
  const weights = findWeights(model, trainable, 'trainable')
  if (!(values instanceof Float32Array)) throw new InvalidInputError('values must be a Float32Array')
  const expected = weights.reduce((n, w) => n + w.read().size, 0)
  if (values.length !== expected) throw new InvalidInputError(`values has ${values.length} entries, the tensors named in trainable hold ${expected}`)
  let offset = 0
  for (const w of weights) {
    const v = w.read() as tf.Variable
    const t = tf.tensor(values.subarray(offset, offset + v.size), v.shape, 'float32')
    v.assign(t)
    t.dispose()
    offset += v.size
  }
}
