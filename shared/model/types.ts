/**
 * The normalised model: whatever the input format (tfjs layers, tfjs graph, ONNX), ingest turns
 * it into one ordered tensor list, the weight bytes of those tensors concatenated in that order,
 * and a format-specific topology holding everything else needed to rebuild the original files
 * byte for byte. Weights are little-endian, as tfjs and ONNX store them.
 */

export type ModelFormat = 'tfjs-layers' | 'tfjs-graph' | 'onnx'

export interface TensorInfo {
  name: string
  /** dtype as the format names it (tfjs: float32/int32/bool/…; ONNX: float32/int64/…). */
  dtype: string
  shape: number[]
  /** Bytes this tensor occupies in the weight buffer (after any tfjs quantization). */
  byteLength: number
  /**
   * The layer / graph node the tensor belongs to, as the format shows it (tfjs: layer or op
   * scope; ONNX: the first node that consumes the initializer). The partitioner groups by it.
   */
  layer: string
  /**
   * tfjs weight quantization: the stored bytes are `quantization.dtype` values (uint8/uint16
   * affine with `scale` and `min`, or float16), which tfjs turns back into `dtype` on load.
   */
  quantization?: { dtype: 'uint8' | 'uint16' | 'float16', scale?: number, min?: number }
}

export interface LayerSummary {
  name: string
  /** Keras class name, ONNX op type, or TF op, when the format records it. */
  kind?: string
  parameters: number
}

export interface ModelMetadata {
  format: ModelFormat
  /** Number of scalar parameters over all tensors. */
  parameters: number
  /** Total weight bytes. */
  weightBytes: number
  tensorCount: number
  dtypes: Record<string, number>
  layers: LayerSummary[]
  inputs: Array<{ name: string, dtype?: string, shape?: Array<number | string> }>
  outputs: Array<{ name: string, dtype?: string, shape?: Array<number | string> }>
  /** tfjs layers `trainingConfig` (loss, metrics, optimizer) when the file has one. */
  trainingConfig?: unknown
  generatedBy?: string
  convertedBy?: string
  /** ONNX: producer name/version and opset imports. */
  producer?: string
  opsets?: Array<{ domain: string, version: number }>
}

/** tfjs (layers and graph): the original model.json text and the weight files it names. */
export interface TfjsTopology {
  kind: 'tfjs'
  /** model.json exactly as ingested, so `pull` writes it back byte for byte. */
  modelJson: string
  /** Weight files in manifest order with their sizes; the weight buffer is their concatenation. */
  weightFiles: Array<{ path: string, byteLength: number }>
}

/**
 * ONNX: the model file with every extracted tensor's data cut out ("skeleton"), and where each
 * cut was, so the original file is rebuilt exactly by splicing the weight bytes back in.
 */
export interface OnnxTopology {
  kind: 'onnx'
  /** base64 of the skeleton bytes. */
  skeleton: string
  /** Byte offset into the skeleton where tensor i's bytes go; same order as `tensors`. */
  holes: Array<{ offset: number, tensor: number }>
  /** Tensors stored as ONNX external data: the file name and offset within it. */
  external: Array<{ tensor: number, location: string, offset: number }>
  /** The .onnx file's original name (writers default to `model.onnx`). */
  fileName?: string
}

export type Topology = TfjsTopology | OnnxTopology

export interface NormalisedModel {
  format: ModelFormat
  topology: Topology
  tensors: TensorInfo[]
  /** All tensors' bytes concatenated in `tensors` order. */
  weights: Uint8Array
  metadata: ModelMetadata
}

/** A file of a model as read from disk or an upload: path relative to the model's folder. */
export interface ModelFile {
  path: string
  bytes: Uint8Array
}
