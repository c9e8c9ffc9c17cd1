/**
 * Model formats: tfjs layers, tfjs graph and ONNX files ⇄ the NormalisedModel of
 * shared/model/types.ts, and the in-memory forms tfjs and onnxruntime load.
 */
export { readModel, writeModel } from './model_files.ts'
export { tfjsArtifacts } from './tfjs.ts'
export { onnxModelBytes, onnxExternalData } from './onnx_splice.ts'
