/**
 * Normalised ONNX model → the .onnx bytes and its external-data files, for writing back or for
 * an onnxruntime session. The inverse of onnx.ts: each tensor's bytes go back into the
 * skeleton's hole (or into its external file at its offset). Bytes of an external file that no
 * tensor covers (alignment padding) are written as zeros, which is what ONNX writers put there.
 */
import { base64pad } from 'multiformats/bases/base64'
import { allocateBytes } from '../crypto/bytes.ts'
import { InvalidInputError } from '../errors/errors.ts'
import type { ModelFile, OnnxTopology, TensorInfo } from '../model/types.ts'

/**
 * Zero bytes the external files may leave uncovered between tensors, in all: at most the tensors'
 * own total or this floor, whichever is larger. Alignment padding (4 KiB or 64 KiB a tensor) fits;
 * a manifest claiming a tensor at offset 2^40 does not, so the runtime never allocates for it.
 * Ingest stores longer zero runs as tensors of their own (onnx.ts `uncovered`).
 */
export const ONNX_PADDING_FLOOR = 1 << 20

/** How many uncovered zero bytes external files may leave when the tensors total `tensorBytes`. */
export function onnxPaddingBudget (tensorBytes: number): number {
  return Math.max(ONNX_PADDING_FLOOR, tensorBytes)
}

/** The name writeModel gives the .onnx when the topology does not record one. */
export const ONNX_MODEL_FILE = 'model.onnx'

/**
 * The .onnx file: the skeleton with every cut tensor spliced back. `tensors` gives each
 * tensor's length in `weights` (all tensors' bytes, concatenated in `tensors` order).
 *
 * @example
 *   const session = await ort.InferenceSession.create(onnxModelBytes(topology, weights, tensors),
 *     { externalData: onnxExternalData(topology, weights, tensors) })
 */
export function onnxModelBytes (topology: OnnxTopology, weights: Uint8Array, tensors: readonly TensorInfo[]): Uint8Array {
  const offsets = weightOffsets(weights, tensors)
  const skeleton = base64pad.baseDecode(topology.skeleton)
  const spans = topology.holes.map(h => {
    const t = tensorAt(tensors, h.tensor, 'topology.holes')
    if (!Number.isSafeInteger(h.offset) || h.offset < 0 || h.offset > skeleton.length) {
      throw new InvalidInputError(`topology.holes: offset ${h.offset} is outside the ${skeleton.length}-byte skeleton`)
    }
    return { at: h.offset, start: offsets[h.tensor]!, length: t.byteLength }
  })
  const out = new Uint8Array(skeleton.length + spans.reduce((n, s) => n + s.length, 0))
  let src = 0
  let dst = 0
  for (const s of spans) {
    if (s.at < src) throw new InvalidInputError('topology.holes: offsets are not in ascending order')
    out.set(skeleton.subarray(src, s.at), dst)
    dst += s.at - src
    out.set(weights.subarray(s.start, s.start + s.length), dst)
    dst += s.length
    src = s.at
  }
  out.set(skeleton.subarray(src), dst)
  return out
}

/**
 * The external-data files the model names, rebuilt from `weights`, in the shape onnxruntime's
 * `externalData` session option takes (`path` as the model's `location` says it).
 */
export function onnxExternalData (topology: OnnxTopology, weights: Uint8Array, tensors: readonly TensorInfo[]): Array<{ path: string, data: Uint8Array }> {
  const offsets = weightOffsets(weights, tensors)
  const sizes = new Map<string, number>()
  for (const e of topology.external) {
    const t = tensorAt(tensors, e.tensor, 'topology.external')
    sizes.set(e.location, Math.max(sizes.get(e.location) ?? 0, e.offset + t.byteLength))
  }
  const files = new Map([...sizes].map(([path, size]) => [path, allocateBytes(size, n => `topology.external: ${path}: ${n} bytes`)]))
  for (const e of topology.external) {
    const start = offsets[e.tensor]!
    files.get(e.location)!.set(weights.subarray(start, start + tensors[e.tensor]!.byteLength), e.offset)
  }
  return [...files].map(([path, data]) => ({ path, data }))
}

/** The original files: the .onnx and its external-data files. */
export function writeOnnx (topology: OnnxTopology, weights: Uint8Array, tensors: readonly TensorInfo[]): ModelFile[] {
  return [
    { path: topology.fileName ?? ONNX_MODEL_FILE, bytes: onnxModelBytes(topology, weights, tensors) },
    ...onnxExternalData(topology, weights, tensors).map(f => ({ path: f.path, bytes: f.data }))
  ]
}

/** Where each tensor starts in `weights`; the lengths must add up to exactly `weights`. */
function weightOffsets (weights: Uint8Array, tensors: readonly TensorInfo[]): number[] {
  const offsets: number[] = []
  let offset = 0
  for (const t of tensors) {
    offsets.push(offset)
    offset += t.byteLength
  }
  if (offset !== weights.length) {
    throw new InvalidInputError(`weights: ${weights.length} bytes, but the tensors' byte lengths total ${offset}`)
  }
  return offsets
}

function tensorAt (tensors: readonly TensorInfo[], index: number, what: string): TensorInfo {
  const t = tensors[index]
  if (t === undefined) throw new InvalidInputError(`${what}: tensor ${index} does not exist (there are ${tensors.length})`)
  return t
}
