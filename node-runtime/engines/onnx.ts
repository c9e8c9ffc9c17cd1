/**
 * onnxruntime in Node (onnxruntime-node's bundled CPU build): a session straight from the
 * reassembled model bytes; external data, if any, is handed over in memory too.
 */
import * as ort from 'onnxruntime-node'
import type { LoadedEngine } from '../../shared/runtime/lifecycle.ts'
import type { OnnxTopology, TensorInfo } from '../../shared/model/types.ts'
import { onnxExternalData, onnxModelBytes } from '../../shared/formats/index.ts'

export async function loadOnnxEngine (topology: OnnxTopology, tensors: readonly TensorInfo[], weights: Uint8Array): Promise<LoadedEngine> {
  const bytes = onnxModelBytes(topology, weights, tensors)
  const externalData = onnxExternalData(topology, weights, tensors)
  const session = await ort.InferenceSession.create(bytes, externalData.length > 0 ? { externalData } : {})
  return { kind: 'onnx', session }
}
