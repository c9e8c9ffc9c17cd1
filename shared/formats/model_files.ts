/**
 * ModelFile[] ⇄ NormalisedModel, whatever the format: one `.onnx` (plus external-data files)
 * is ONNX; otherwise the `.json` that has `modelTopology` and `weightsManifest` is a tfjs
 * model.json, read with the weight files it names.
 */
import { InvalidModelError, TooLargeError } from '../errors/errors.ts'
import type { ModelFile, NormalisedModel } from '../model/types.ts'
import { readOnnx } from './onnx.ts'
import { writeOnnx } from './onnx_splice.ts'
import { basename } from './_paths.ts'
import { checkTensorCount, MAX_TENSORS } from './_dtypes.ts'
import { modelJsonOf, modelJsonText, parseJsonText, type ModelJson } from './_tfjs_json.ts'
import { readTfjs, writeTfjs } from './tfjs.ts'

export { MAX_TENSORS }


/**
 * Reads a model from its files (paths relative to the model's folder).
 *
 * @example
 *   const model = await readModel([{ path: 'model.onnx', bytes }])
 *   model.tensors[0] // { name, dtype, shape, byteLength, layer }
 */
export async function readModel (files: ModelFile[]): Promise<NormalisedModel> {
  if (files.length === 0) throw new InvalidModelError('no model files were given')
  const onnx = files.filter(f => f.path.toLowerCase().endsWith('.onnx'))
  if (onnx.length > 1) throw new InvalidModelError(`several .onnx files were given (${onnx.map(f => f.path).join(', ')}); give one model at a time`)
  if (onnx[0] !== undefined) return checkedCount(readOnnx(onnx[0], files), onnx[0].path)

  const jsons = files.filter(f => f.path.toLowerCase().endsWith('.json'))
  if (jsons.length === 0) {
    throw new InvalidModelError(`no .onnx file and no model.json among ${files.map(f => f.path).join(', ')}`)
  }
  // A lone .json, or one named model.json, must be the model: its own problem is the error.
  const only = jsons.length === 1 ? jsons[0] : jsons.find(f => basename(f.path) === 'model.json')
  const candidates: Array<{ file: ModelFile, text: string, json: ModelJson }> = []
  let tooLarge: TooLargeError | undefined
  for (const file of jsons) {
    try {
      const text = modelJsonText(file)
      const value = parseJsonText(text, basename(file.path))
      if (file === only || (isObject(value) && 'modelTopology' in value && 'weightsManifest' in value)) {
        candidates.push({ file, text, json: modelJsonOf(value, basename(file.path)) })
      }
    } catch (e) {
      if (file === only) throw e
      if (e instanceof TooLargeError) tooLarge = e
    }
  }
  const model = candidates.length === 1 ? candidates[0] : undefined
  // A model.json too large to read is likelier the model than "none of these is a model".
  if (candidates.length === 0 && tooLarge !== undefined) throw tooLarge
  if (model === undefined) {
    throw new InvalidModelError(candidates.length === 0
      ? `none of ${jsons.map(f => f.path).join(', ')} is a tfjs model.json (one with modelTopology and weightsManifest)`
      : `several tfjs model.json files were given (${candidates.map(c => c.file.path).join(', ')}); give one model at a time`)
  }
  return checkedCount(readTfjs(model.file, files, model), model.file.path)
}

/**
 * The model's original files: tfjs → model.json and its weight files; ONNX → the .onnx and
 * its external-data files. What readModel read comes back byte for byte (a tfjs model.json
 * is named `model.json` whatever its original name).
 *
 * @example
 *   for (const f of writeModel(model)) await writeFile(join(dir, f.path), f.bytes)
 */
export function writeModel (model: Pick<NormalisedModel, 'topology' | 'tensors' | 'weights'>): ModelFile[] {
  return model.topology.kind === 'tfjs'
    ? writeTfjs(model.topology, model.weights)
    : writeOnnx(model.topology, model.weights, model.tensors)
}

/** `model`, or TooLargeError naming `file` when it has more than MAX_TENSORS tensors. */
function checkedCount (model: NormalisedModel, file: string): NormalisedModel {
  checkTensorCount(model.tensors.length, file)
  return model
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
