/**
 * tfjs layers and graph models (the model.json + binary weight files format of tfjs-core
 * io/types.ts `ModelJSON`) ⇄ NormalisedModel, and tfjs `ModelArtifacts` for loading a
 * normalised model straight into tfjs. The weight buffer is the weight files concatenated in
 * manifest order (groups in order, each group's paths in order), which is exactly tfjs's
 * layout: weight specs in order, each occupying its (possibly quantized) byte length.
 */
import type { io } from '@tensorflow/tfjs-core'
import { InvalidInputError, InvalidModelError } from '../errors/errors.ts'
import type { ModelFile, NormalisedModel, TensorInfo, TfjsTopology } from '../model/types.ts'
import { basename, filesBeside, refuseClashingPaths, relativePath } from './_paths.ts'
import { modelJsonOf, parseJsonText, tfjsKind, weightByteLength, type ModelJson } from './_tfjs_json.ts'
import { graphWeightLayers, tfjsInputsOutputs, tfjsLayers, tfjsTrainingConfig, weightLayer } from './_tfjs_metadata.ts'
import { checkLayerWeights } from './_tfjs_weights_check.ts'
import { tensorTotals } from './metadata.ts'

/** The name writeModel gives the model.json. */
export const TFJS_MODEL_JSON = 'model.json'

/**
 * Reads a tfjs model: `jsonFile` is its model.json, `files` every file given (the weight files
 * are looked up beside the model.json), `text` and `json` the model.json's text and checked
 * contents (modelJsonText, modelJsonOf).
 */
export function readTfjs (jsonFile: ModelFile, files: readonly ModelFile[], { text, json }: { text: string, json: ModelJson }): NormalisedModel {
  const name = basename(jsonFile.path)
  const format = tfjsKind(json, name)

  const weightFiles: TfjsTopology['weightFiles'] = []
  // Each weight file once: a path named twice would have its bytes copied twice, so a small
  // upload could ask for weights many times its size (one 64 KiB file named 2,000 times: 128 MB).
  const named = new Set<string>()
  const beside = filesBeside(files, jsonFile.path)
  const chunks: Uint8Array[] = []
  const tensors: TensorInfo[] = []
  for (const [g, group] of json.weightsManifest.entries()) {
    let need = 0
    for (const w of group.weights) {
      const byteLength = weightByteLength(w, name)
      need += byteLength
      tensors.push({
        name: w.name,
        dtype: w.dtype,
        shape: w.shape,
        byteLength,
        layer: weightLayer(w.name, w.group),
        ...(w.quantization === undefined ? {} : { quantization: quantizationOf(w.quantization) })
      })
    }
    let have = 0
    const sizes: string[] = []
    for (const p of group.paths) {
      const path = relativePath(p, `${name} weight file`)
      const file = beside(path)
      if (file === undefined) throw new InvalidModelError(`${name} names weight file ${p} which was not provided`)
      if (named.has(file.path)) throw new InvalidModelError(`${name} names weight file ${p} more than once`)
      named.add(file.path)
      weightFiles.push({ path, byteLength: file.bytes.length })
      chunks.push(file.bytes)
      have += file.bytes.length
      sizes.push(`${p} is ${file.bytes.length} bytes`)
    }
    if (have !== need) {
      const where = json.weightsManifest.length > 1 ? ` (weightsManifest group ${g})` : ''
      throw new InvalidModelError(`${name}${where}: the weights need ${need} bytes but ${sizes.join(', ') || 'no file is named'}` +
        (have < need ? `: ${need - have} bytes short — a truncated or wrong weight file` : `: ${have - need} bytes too many`))
    }
  }
  refuseClashingPaths([TFJS_MODEL_JSON, ...weightFiles.map(f => f.path)], name)
  // A layer config that disagrees with the manifest would make tfjs-layers allocate what the
  // config claims before it looks at a single weight: refuse it here, before anything is kept.
  checkLayerWeights(json, name)

  if (format === 'tfjs-graph') {
    const byNode = graphWeightLayers(json, tensors.map(t => t.name))
    for (const t of tensors) t.layer = byNode.get(t.name) ?? t.layer
  }
  const weights = concat(chunks)
  const { inputs, outputs } = tfjsInputsOutputs(format, json, name)
  const trainingConfig = tfjsTrainingConfig(json)
  return {
    format,
    topology: { kind: 'tfjs', modelJson: text, weightFiles },
    tensors,
    weights,
    metadata: {
      format,
      ...tensorTotals(tensors),
      layers: tfjsLayers(format, json, tensors),
      inputs,
      outputs,
      ...(trainingConfig === undefined ? {} : { trainingConfig }),
      ...(json.generatedBy == null ? {} : { generatedBy: json.generatedBy }),
      ...(json.convertedBy == null ? {} : { convertedBy: json.convertedBy })
    }
  }
}

/** model.json (the stored text) and each weight file, cut from `weights` by the recorded sizes. */
export function writeTfjs (topology: TfjsTopology, weights: Uint8Array): ModelFile[] {
  checkWeightsLength(topology, weights)
  const files: ModelFile[] = [{ path: TFJS_MODEL_JSON, bytes: new TextEncoder().encode(topology.modelJson) }]
  let offset = 0
  for (const f of topology.weightFiles) {
    files.push({ path: f.path, bytes: weights.slice(offset, offset + f.byteLength) })
    offset += f.byteLength
  }
  return files
}

/** True when `bytes` spans the whole ArrayBuffer it views, so the buffer can be handed on as the bytes. */
function ownsWholeBuffer (bytes: Uint8Array): bytes is Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
}

/**
 * tfjs `ModelArtifacts` for a normalised tfjs model, for
 * `tf.loadLayersModel(tf.io.fromMemory(artifacts))` or
 * `loadGraphModel({ load: async () => artifacts })`. The model.json is not trusted: its weights
 * must fill `weights` exactly and a layers model's configs must agree with them (InvalidModelError
 * otherwise), so tfjs never builds a layer bigger than the weights it was sent.
 *
 * @example
 *   const model = await tf.loadLayersModel(tf.io.fromMemory(tfjsArtifacts(topology, weights)))
 */
export function tfjsArtifacts (topology: TfjsTopology, weights: Uint8Array): io.ModelArtifacts {
  checkWeightsLength(topology, weights)
  const json: ModelJson = modelJsonOf(parseJsonText(topology.modelJson, TFJS_MODEL_JSON), TFJS_MODEL_JSON)
  checkManifestBytes(json, weights)
  checkLayerWeights(json, TFJS_MODEL_JSON)
  const artifacts: io.ModelArtifacts = {
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest.flatMap(g => g.weights) as io.WeightsManifestEntry[],
    // tfjs keeps the buffer (a graph model holds its artifacts): exactly the weight bytes, so a
    // view is copied; a buffer `weights` owns whole is handed over as it is (tfjs only reads it,
    // and a second 59 MB copy costs its page faults and peak memory on every load).
    weightData: ownsWholeBuffer(weights) ? weights.buffer : weights.slice().buffer
  }
  if (json.format != null) artifacts.format = json.format
  if (json.generatedBy != null) artifacts.generatedBy = json.generatedBy
  if (json.convertedBy != null) artifacts.convertedBy = json.convertedBy
  if (json.trainingConfig != null) artifacts.trainingConfig = json.trainingConfig as unknown as io.TrainingConfig
  if (json.signature != null) artifacts.signature = json.signature
  if (json.userDefinedMetadata != null) artifacts.userDefinedMetadata = json.userDefinedMetadata as Record<string, {}>
  if (json.modelInitializer != null) artifacts.modelInitializer = json.modelInitializer
  if (json.initializerSignature != null) artifacts.initializerSignature = json.initializerSignature
  return artifacts
}

function checkWeightsLength (topology: TfjsTopology, weights: Uint8Array): void {
  const total = topology.weightFiles.reduce((n, f) => n + f.byteLength, 0)
  if (weights.length !== total) {
    throw new InvalidInputError(`weights: ${weights.length} bytes, but the topology's weight files total ${total}`)
  }
}

/** The weights manifest lists exactly the bytes given (tfjs would cut its tensors from them). */
function checkManifestBytes (json: ModelJson, weights: Uint8Array): void {
  let need = 0
  for (const group of json.weightsManifest) for (const w of group.weights) need += weightByteLength(w, TFJS_MODEL_JSON)
  if (need !== weights.length) {
    throw new InvalidModelError(`${TFJS_MODEL_JSON}: the weights manifest needs ${need} bytes of weights but ${weights.length} were given`)
  }
}

function quantizationOf (q: { dtype: 'uint8' | 'uint16' | 'float16', scale?: number | undefined, min?: number | undefined }): NonNullable<TensorInfo['quantization']> {
  return {
    dtype: q.dtype,
    ...(q.scale === undefined ? {} : { scale: q.scale }),
    ...(q.min === undefined ? {} : { min: q.min })
  }
}

function concat (chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
  let offset = 0
  for (const c of chunks) {
    out.set(c, offset)
    offset += c.length
  }
  return out
}
