/**
 * Element types and their stored sizes: ONNX `TensorProto.DataType` (onnx/onnx.proto) and the
 * dtypes a tfjs weights manifest uses (tfjs-core io/types.ts: DataType and quantization).
 */
import { InvalidModelError, TooLargeError } from '../errors/errors.ts'

/** ONNX data_type number → [dtype name, bits per element]. Strings (8) have no fixed size. */
const ONNX_TYPES: Record<number, readonly [string, number]> = {
  1: ['float32', 32],
  2: ['uint8', 8],
  3: ['int8', 8],
  4: ['uint16', 16],
  5: ['int16', 16],
  6: ['int32', 32],
  7: ['int64', 64],
  9: ['bool', 8],
  10: ['float16', 16],
  11: ['float64', 64],
  12: ['uint32', 32],
  13: ['uint64', 64],
  14: ['complex64', 64],
  15: ['complex128', 128],
  16: ['bfloat16', 16],
  17: ['float8e4m3fn', 8],
  18: ['float8e4m3fnuz', 8],
  19: ['float8e5m2', 8],
  20: ['float8e5m2fnuz', 8],
  21: ['uint4', 4],
  22: ['int4', 4],
  23: ['float4e2m1', 4],
  24: ['float8e8m0', 8]
}

/** dtype names of fewer than 8 bits (ONNX's 4-bit types), packed two to a byte. */
export const SUB_BYTE_DTYPES: ReadonlyMap<string, number> = new Map(Object.values(ONNX_TYPES).filter(([, bits]) => bits < 8))

export const ONNX_FLOAT = 1
export const ONNX_DOUBLE = 11

/** The ONNX dtype's name and size, or undefined for strings, undefined and unknown types. */
export function onnxType (dataType: number): { dtype: string, bits: number } | undefined {
  const t = ONNX_TYPES[dataType]
  return t === undefined ? undefined : { dtype: t[0], bits: t[1] }
}

/** The name of an ONNX data type, `onnx-type-N` when unknown (for metadata only). */
export function onnxTypeName (dataType: number): string {
  return dataType === 8 ? 'string' : (ONNX_TYPES[dataType]?.[0] ?? `onnx-type-${dataType}`)
}

/** Bytes that `count` elements of `bits` bits each occupy (4-bit types pack two per byte). */
export function storedBytes (count: number, bits: number): number {
  return Math.ceil(count * bits / 8)
}

/** Bytes per element of a tfjs weight, by dtype (`string` has no fixed size). */
export const TFJS_DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8 }

/** Bytes per element of a quantized tfjs weight, by quantization dtype. */
export const TFJS_QUANTIZED_BYTES: Record<'uint8' | 'uint16' | 'float16', number> = { uint8: 1, uint16: 2, float16: 2 }

/**
 * The dtype of a tensor whose values the file holds as protobuf records other than one packed
 * little-endian payload (e.g. `int32_data` varints): its bytes are those records exactly as the
 * file has them (tags included, except for a lone mistyped raw/float/double payload), its shape
 * is [byteLength]. Opaque to training and aggregation; sealed like every tensor.
 */
export const ONNX_ENCODED_DTYPE = 'onnx-encoded'

/** Bits per element of every dtype a manifest may name: ONNX's, tfjs's, and opaque ONNX bytes. */
const MANIFEST_DTYPE_BITS: ReadonlyMap<string, number> = new Map([
  ...Object.values(ONNX_TYPES),
  ...Object.entries(TFJS_DTYPE_BYTES).map(([dtype, bytes]) => [dtype, bytes * 8] as const),
  [ONNX_ENCODED_DTYPE, 8]
])

/**
 * Bytes a manifest tensor must hold: its elements at its dtype's size, or at its quantized
 * size. Undefined for a dtype no ingest produces. A shape whose elements exceed 2^53 gives
 * Infinity, so it never matches a byte length.
 */
export function manifestTensorBytes (t: { dtype: string, shape: readonly number[], quantization?: { dtype: 'uint8' | 'uint16' | 'float16' } | undefined }): number | undefined {
  const bits = t.quantization === undefined ? MANIFEST_DTYPE_BITS.get(t.dtype) : TFJS_QUANTIZED_BYTES[t.quantization.dtype] * 8
  if (bits === undefined) return undefined
  const count = shapeProduct(t.shape)
  return Number.isSafeInteger(count) ? storedBytes(count, bits) : Infinity
}

/** TensorFlow `DT_*` enum names (as a graph model's signature writes them) → tfjs-style dtype. */
export function tfDtypeName (dt: string): string {
  const names: Record<string, string> = {
    DT_FLOAT: 'float32', DT_DOUBLE: 'float64', DT_HALF: 'float16', DT_BFLOAT16: 'bfloat16', DT_INT32: 'int32',
    DT_INT64: 'int64', DT_INT16: 'int16', DT_INT8: 'int8', DT_UINT8: 'uint8', DT_UINT16: 'uint16',
    DT_BOOL: 'bool', DT_STRING: 'string', DT_COMPLEX64: 'complex64'
  }
  return names[dt] ?? dt
}

/**
 * Number of elements of a shape (1 for a scalar, 0 when any dim is 0); InvalidModelError naming
 * `what` when it is 2^53 or more, past which no byte size computed from it is exact.
 */
export function elementCount (shape: readonly number[], what = 'a tensor'): number {
  const n = shapeProduct(shape)
  if (!Number.isSafeInteger(n)) {
    throw new InvalidModelError(`${what} has shape [${shape.join(', ')}]: 2^53 or more elements, more than any tensor can hold`)
  }
  return n
}

/** The product of the dims, 0 when one is 0 even beside dims whose product is Infinity (Infinity × 0 is NaN). */
function shapeProduct (shape: readonly number[]): number {
  if (shape.includes(0)) return 0
  let n = 1
  for (const d of shape) n *= d
  return n
}

/**
 * The highest tensor rank a model may use. ONNX and tfjs set none, but runtimes do (numpy 2
 * stops at 64, TensorFlow at 254); without one a 4 MB file of 1-dims makes a 4-million-entry
 * shape that is copied into every manifest.
 */
export const MAX_TENSOR_RANK = 64

/**
 * The most tensors a model may have. Each is listed in the signed manifest every runtime
 * fetches (about 270 bytes each), so without a cap an 800 KB file of 200,000 empty initializers
 * made a 54 MB manifest; 100,000 keeps it under half of MAX_MANIFEST_BYTES. Real models are far
 * below: silero VAD has 345 tensors, the largest @vladmandic/human model 619.
 */
export const MAX_TENSORS = 100_000

/** TooLargeError naming `file` when it has more than MAX_TENSORS tensors (`count`), checked as soon as they are counted. */
export function checkTensorCount (count: number, file: string): void {
  if (count > MAX_TENSORS) {
    throw new TooLargeError(`${file} has ${count} tensors, more than the ${MAX_TENSORS} a model may have (each is listed in the signed manifest); merge small tensors into fewer, larger ones`)
  }
}
