/**
 * ONNX models (onnx/onnx.proto, IR version 3 and later) → NormalisedModel. Tensors are every
 * initializer (sparse ones as their values and indices), every Constant node's value (`value`,
 * `sparse_value` or a `value_float(s)`/`value_int(s)`/`value_string(s)` list) and every other
 * attribute tensor, in the main graph, its subgraphs, local functions and training graphs. Data that is one little-endian run of bytes (`raw_data`,
 * packed `float_data`/`double_data`, external data,
 * https://onnx.ai/onnx/repo-docs/ExternalData.html) becomes a typed tensor; values held any
 * other way (int32_data/int64_data varints, strings, unpacked floats) become an opaque tensor of
 * dtype ONNX_ENCODED_DTYPE holding their protobuf records as the file has them. Either way the
 * values leave the "skeleton" (the file with those runs cut out), which is public: only other
 * attributes stay in it. Cutting never changes a length prefix, so splicing the runs back in
 * (see onnx_splice.ts) gives the original file byte for byte.
 */
import { InvalidModelError, TooLargeError } from '../errors/errors.ts'
import { toBase64 } from '../crypto/bytes.ts'
import { MAX_MANIFEST_BYTES } from '../manifest/sign.ts'
import type { ModelFile, NormalisedModel, OnnxTopology, TensorInfo } from '../model/types.ts'
import { checkTensorCount, elementCount, ONNX_DOUBLE, ONNX_ENCODED_DTYPE, ONNX_FLOAT, onnxType, onnxTypeName, storedBytes } from './_dtypes.ts'
import { onnxPaddingBudget } from './onnx_splice.ts'
import { walkOnnx, type OnnxTensorRef, type OnnxValueInfo, type OnnxWalk } from './_onnx_proto.ts'
import { WireError, WireLimitError } from './_protobuf.ts'
import { basename, filesBeside, refuseClashingPaths, relativePath } from './_paths.ts'
import { layersOfTensors, tensorTotals } from './metadata.ts'

export { ONNX_ENCODED_DTYPE } from './_dtypes.ts'

/** A tensor chosen for extraction and where its bytes come from. */
interface Extracted {
  /** The TensorProto; absent for bytes of an external file that no tensor covers (see uncovered). */
  ref?: OnnxTensorRef
  info: TensorInfo
  /** Bytes cut out of the .onnx, or read from an external file. */
  from: { kind: 'cut', start: number, end: number } | { kind: 'external', file: ModelFile, location: string, offset: number }
}

/**
 * Reads `file` (an .onnx) with `files` holding any external-data files it names, relative to
 * its folder. Throws InvalidModelError saying what is wrong for anything that is not a readable
 * ONNX model.
 */
export function readOnnx (file: ModelFile, files: readonly ModelFile[]): NormalisedModel {
  const name = basename(file.path)
  const walk = walked(file.bytes, name)
  // Counted before each is checked: 285,000 of them took 18 s to refuse (review 46c).
  checkTensorCount(walk.tensors.length, name)
  const extracted = extract(walk, file, files, name)
  const externalFiles = externalRanges(extracted)
  refuseSharedExternalBytes(externalFiles, name)
  refuseClashingPaths([name, ...externalFiles.keys()], name)
  // A loop, not push(...pieces): 150,000 gaps overflowed the stack (an HTTP 500).
  for (const piece of uncovered(externalFiles, extracted.reduce((n, e) => n + e.info.byteLength, 0))) extracted.push(piece)
  const tensors = extracted.map(e => e.info)
  uniqueNames(tensors)

  const consumers = new Map<string, string>()
  const opOf = new Map<string, string>()
  for (const node of walk.nodes) {
    opOf.set(node.label, node.opType)
    for (const input of node.inputs) if (input !== '' && !consumers.has(input)) consumers.set(input, node.label)
  }
  for (const e of extracted) {
    if (e.ref === undefined) continue // uncovered external bytes: their own layer
    const source = e.ref.source
    if (source.kind === 'attribute') {
      e.info.layer = source.node
      continue
    }
    const produced = source.kind === 'constant' ? source.output : source.kind === 'sparse' ? source.initializer : e.ref.name
    // A sparse initializer's values and indices go together, under its name when nothing reads it.
    e.info.layer = consumers.get(produced) ?? (source.kind === 'sparse' && produced !== '' ? produced : e.info.name)
  }

  const { skeleton, holes } = cutOut(file.bytes, extracted, name)
  const external: OnnxTopology['external'] = []
  const weights = new Uint8Array(tensors.reduce((n, t) => n + t.byteLength, 0))
  let offset = 0
  for (const [i, e] of extracted.entries()) {
    const bytes = e.from.kind === 'cut'
      ? file.bytes.subarray(e.from.start, e.from.end)
      : e.from.file.bytes.subarray(e.from.offset, e.from.offset + e.info.byteLength)
    if (e.from.kind === 'external') external.push({ tensor: i, location: e.from.location, offset: e.from.offset })
    weights.set(bytes, offset)
    offset += bytes.length
  }

  const producer = [walk.producerName, walk.producerVersion].filter(s => s !== '').join(' ')
  const graphIo = (list: OnnxValueInfo[]): NormalisedModel['metadata']['inputs'] => list
    .filter(v => !walk.initializerNames.has(v.name))
    .map(v => ({
      name: v.name,
      ...(v.elemType === undefined ? {} : { dtype: onnxTypeName(v.elemType) }),
      ...(v.shape === undefined ? {} : { shape: v.shape })
    }))
  return {
    format: 'onnx',
    topology: { kind: 'onnx', fileName: name, skeleton: toBase64(skeleton), holes, external },
    tensors,
    weights,
    metadata: {
      format: 'onnx',
      ...tensorTotals(tensors),
      layers: layersOfTensors(tensors, layer => opOf.get(layer)),
      inputs: graphIo(walk.inputs),
      outputs: graphIo(walk.outputs),
      ...(producer === '' ? {} : { producer }),
      opsets: walk.opsets
    }
  }
}

/**
 * The external-data files an .onnx names (relative to its folder, checked as readOnnx checks
 * them): what to read beside it. Any name: onnx.save_model's `location` is the caller's choice.
 */
export function onnxExternalFiles (file: ModelFile): string[] {
  const name = basename(file.path)
  const locations = new Set<string>()
  for (const ref of walked(file.bytes, name).tensors) {
    if (ref.data?.kind === 'external') locations.add(relativePath(ref.data.location, `${name}: tensor "${tensorLabel(ref)}": external data location`))
  }
  return [...locations]
}

function walked (bytes: Uint8Array, name: string): OnnxWalk {
  try {
    return walkOnnx(bytes)
  } catch (cause) {
    if (cause instanceof WireLimitError) throw new InvalidModelError(`${name}: ${cause.message}`, { cause })
    if (cause instanceof WireError && cause.truncated && cause.at === bytes.length) {
      throw new InvalidModelError(`${name}: truncated at byte ${bytes.length}: ${cause.message}`, { cause })
    }
    throw new InvalidModelError(`${name}: not an ONNX model: ${(cause as Error).message}`, { cause })
  }
}

/** The tensors whose bytes become weights, in file order, checked against their dims. */
function extract (walk: OnnxWalk, file: ModelFile, files: readonly ModelFile[], name: string): Extracted[] {
  const out: Extracted[] = []
  const beside = filesBeside(files, file.path)
  const itself = filesBeside([file], file.path)
  const refs = [...walk.tensors].sort((a, b) => a.at - b.at)
  for (const ref of refs) {
    const data = ref.data
    if (data === undefined) continue
    const type = onnxType(ref.dataType)
    const label = tensorLabel(ref)
    const what = (): string => `${name}: tensor "${label}" (${onnxTypeName(ref.dataType)} [${ref.dims.join(', ')}])`
    if (ref.dims.some(d => !Number.isSafeInteger(d) || d < 0)) throw new InvalidModelError(`${what()} has an invalid dimension`)
    const count = elementCount(ref.dims, `${name}: tensor "${label}"`)
    let from: Extracted['from']
    let byteLength: number
    let dtype: string
    let shape = ref.dims
    if (data.kind === 'scattered') {
      // Left in the skeleton its values would be public; cut in pieces they would need a hole each.
      throw new InvalidModelError(`${what()} holds its values in ${data.fields.join(', ')} records with other fields between them, ` +
        'which cannot be kept out of the public manifest; re-save the model with raw_data (onnx.numpy_helper.from_array)')
    } else if (data.kind === 'external') {
      if (type === undefined) throw new InvalidModelError(`${what()}: external data of an unsupported data_type ${ref.dataType}`)
      byteLength = storedBytes(count, type.bits)
      const location = relativePath(data.location, `${what()}: external data location`)
      // `pull` writes the model and its data files side by side: one name cannot be both.
      if (itself(location) !== undefined) throw new InvalidModelError(`${what()}: external data location ${location} is the model file itself`)
      if (!Number.isSafeInteger(data.offset) || data.offset < 0) throw new InvalidModelError(`${what()}: bad external data offset (decimal digits expected)`)
      if (data.length !== undefined && !Number.isSafeInteger(data.length)) throw new InvalidModelError(`${what()}: bad external data length (decimal digits expected)`)
      if (data.length !== undefined && data.length !== byteLength) {
        throw new InvalidModelError(`${what()}: external data length is ${data.length} bytes; its dims need ${byteLength}`)
      }
      const source = beside(location)
      if (source === undefined) throw new InvalidModelError(`${what()} is stored in external data file ${location} which was not provided`)
      if (data.offset + byteLength > source.bytes.length) {
        throw new InvalidModelError(`${what()} needs bytes ${data.offset}..${data.offset + byteLength} of ${location}, which is ${source.bytes.length} bytes`)
      }
      dtype = type.dtype
      from = { kind: 'external', file: source, location, offset: data.offset }
    } else if (data.kind === 'encoded' || type === undefined ||
        (data.kind === 'float' && ref.dataType !== ONNX_FLOAT) ||
        (data.kind === 'double' && ref.dataType !== ONNX_DOUBLE)) {
      // float_data / double_data hold exactly float32 / float64 values; other element types that
      // use them (complex), raw_data of unknown types and varint/string records are cut out opaque.
      byteLength = data.end - data.start
      dtype = ONNX_ENCODED_DTYPE
      shape = [byteLength]
      from = { kind: 'cut', start: data.start, end: data.end }
    } else {
      byteLength = storedBytes(count, type.bits)
      const actual = data.end - data.start
      if (actual !== byteLength) {
        const field = { raw: 'raw_data', float: 'float_data', double: 'double_data' }[data.kind]
        throw new InvalidModelError(`${what()} has ${actual} bytes of ${field}; its dims need ${byteLength}`)
      }
      dtype = type.dtype
      from = { kind: 'cut', start: data.start, end: data.end }
    }
    out.push({ ref, info: { name: label, dtype, shape, byteLength, layer: '' }, from })
  }
  return out
}

/** The tensor's name, else what produces it, else its position. */
function tensorLabel (ref: OnnxTensorRef): string {
  if (ref.name !== '') return ref.name
  if (ref.source.kind === 'constant' && ref.source.output !== '') return ref.source.output
  if (ref.source.kind === 'sparse' && ref.source.initializer !== '') return `${ref.source.initializer}:${ref.source.part}`
  if (ref.source.kind === 'attribute') return `${ref.source.node}.${ref.source.attribute}`
  return `tensor at byte ${ref.at}`
}

/** Each external data file and the ranges its tensors take, in offset order. */
type ExternalRanges = Map<string, { file: ModelFile, ranges: Array<{ start: number, end: number, tensor: string }> }>

function externalRanges (extracted: readonly Extracted[]): ExternalRanges {
  const byFile: ExternalRanges = new Map()
  for (const e of extracted) {
    if (e.from.kind !== 'external') continue
    const entry = byFile.get(e.from.location) ?? { file: e.from.file, ranges: [] }
    entry.ranges.push({ start: e.from.offset, end: e.from.offset + e.info.byteLength, tensor: e.info.name })
    byFile.set(e.from.location, entry)
  }
  for (const { ranges } of byFile.values()) ranges.sort((a, b) => a.start - b.start)
  return byFile
}

/**
 * External data ranges must not overlap: every tensor pointing at offset 0 of one file would
 * make the weights many times the upload (a 119 KB upload asked for 65 MB), and no exporter
 * writes two tensors over the same bytes.
 */
function refuseSharedExternalBytes (external: ExternalRanges, name: string): void {
  for (const [location, { ranges }] of external) {
    const nonEmpty = ranges.filter(r => r.end > r.start)
    for (let i = 1; i < nonEmpty.length; i++) {
      const [a, b] = [nonEmpty[i - 1], nonEmpty[i]] as [typeof nonEmpty[number], typeof nonEmpty[number]]
      if (b.start < a.end) {
        throw new InvalidModelError(`${name}: tensors "${a.tensor}" and "${b.tensor}" share bytes ${b.start}..${Math.min(a.end, b.end)} of external data file ${location}`)
      }
    }
  }
}

/**
 * Bytes of the external files that no tensor covers, as opaque pieces, so `pull` gives the files
 * back byte for byte: every run after a file's last tensor, and runs between tensors that are
 * not all zeros (alignment padding is zeros, and onnx_splice.ts writes zeros there). Whatever
 * else a file holds is sealed like a tensor, never left out or made public. Zero runs are left
 * out only up to the padding budget the manifest schema allows (onnxPaddingBudget); beyond it the
 * longest become pieces too.
 */
function uncovered (external: ExternalRanges, tensorBytes: number): Extracted[] {
  const pieces: Extracted[] = []
  const zeros: Array<{ file: ModelFile, location: string, start: number, end: number }> = []
  const piece = (file: ModelFile, location: string, start: number, end: number): void => {
    const byteLength = end - start
    const name = `${location}@${start}`
    pieces.push({ info: { name, dtype: ONNX_ENCODED_DTYPE, shape: [byteLength], byteLength, layer: name }, from: { kind: 'external', file, location, offset: start } })
  }
  for (const [location, { file, ranges }] of external) {
    let at = 0
    const gap = (start: number, end: number, trailing: boolean): void => {
      if (end <= start) return
      if (!trailing && file.bytes.subarray(start, end).every(b => b === 0)) zeros.push({ file, location, start, end })
      else piece(file, location, start, end)
    }
    for (const { start, end } of ranges) {
      gap(at, start, false)
      at = Math.max(at, end)
    }
    gap(at, file.bytes.length, true)
  }
  let covered = tensorBytes + pieces.reduce((n, p) => n + p.info.byteLength, 0)
  let left = zeros.reduce((n, z) => n + z.end - z.start, 0)
  for (const z of zeros.sort((a, b) => (b.end - b.start) - (a.end - a.start))) {
    if (left <= onnxPaddingBudget(covered)) break
    piece(z.file, z.location, z.start, z.end)
    covered += z.end - z.start
    left -= z.end - z.start
  }
  return pieces
}

/**
 * The file without the cut tensors' bytes, and where each cut was in it. TooLargeError when the
 * manifest could not carry it in base64: a 450 MB file of doc strings made a string past V8's
 * limit (a RangeError, an HTTP 500).
 */
function cutOut (bytes: Uint8Array, extracted: readonly Extracted[], name: string): { skeleton: Uint8Array, holes: OnnxTopology['holes'] } {
  const cuts = extracted.flatMap((e, tensor) => e.from.kind === 'cut' ? [{ tensor, start: e.from.start, end: e.from.end }] : [])
  const length = bytes.length - cuts.reduce((n, c) => n + c.end - c.start, 0)
  const base64 = 4 * Math.ceil(length / 3)
  if (base64 > MAX_MANIFEST_BYTES) {
    throw new TooLargeError(`${name}: the model without its tensor data (graph, attributes, doc strings) is ${length} bytes, ` +
      `${base64} in base64, more than the ${MAX_MANIFEST_BYTES} a manifest may hold`)
  }
  const skeleton = new Uint8Array(length)
  const holes: OnnxTopology['holes'] = []
  let src = 0
  let dst = 0
  for (const c of cuts) {
    skeleton.set(bytes.subarray(src, c.start), dst)
    dst += c.start - src
    holes.push({ offset: dst, tensor: c.tensor })
    src = c.end
  }
  skeleton.set(bytes.subarray(src), dst)
  return { skeleton, holes }
}

/** Names stay as the file has them; a repeated name (a subgraph reusing one) gets `#2`, `#3`…. */
function uniqueNames (tensors: TensorInfo[]): void {
  const used = new Set<string>()
  // The next suffix to try per name: without it n tensors of one name cost n² probes (16,000
  // initializers named "a" in a 160 KB file held the event loop for 12 s).
  const next = new Map<string, number>()
  for (const t of tensors) {
    let name = t.name
    let k = next.get(t.name) ?? 2
    while (used.has(name)) name = `${t.name}#${k++}`
    next.set(t.name, k)
    used.add(name)
    t.name = name
  }
}
