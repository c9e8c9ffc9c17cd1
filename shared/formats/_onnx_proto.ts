/**
 * Walks an ONNX ModelProto on the wire (onnx/onnx.proto, IR version 3 and later) and reports
 * where its tensors' data lie, which node consumes what, the graph's inputs/outputs and the
 * opset imports. Nothing is decoded into objects: the result is byte ranges and a few strings,
 * and records the walk does not use are skipped without being kept. Subgraphs (attributes
 * `g`/`graphs` of If, Loop, Scan) are walked recursively, in file order.
 */
import { MAX_TENSOR_RANK } from './_dtypes.ts'
import {
  eachField, MAX_RECORDS, readPackedVarints, wireReader, WIRE_LEN, WIRE_VARINT, WireError, WireLimitError,
  type WireField, type WireReader
} from './_protobuf.ts'

/** ONNX `TensorProto.DataLocation.EXTERNAL`. */
const DATA_LOCATION_EXTERNAL = 1
/** Deeper nesting than this is taken as a malicious or corrupt file. */
const MAX_GRAPH_DEPTH = 32
/**
 * Opset imports and main-graph inputs/outputs are copied into the manifest's metadata: bound them
 * (a model imports a few domains and has a few inputs; 3.9 million empty opset_import records,
 * 7 MiB, made 100 MB of metadata).
 */
const MAX_OPSETS = 1_000
const MAX_GRAPH_IO = 100_000

/** A TensorProto found in a graph initializer or a node attribute. */
export interface OnnxTensorRef {
  name: string
  dataType: number
  dims: number[]
  /** Byte position of the TensorProto in the file; orders tensors. */
  at: number
  /**
   * Where the element values are (undefined when it has none):
   * - raw/float/double: one length-delimited little-endian payload (`start..end` is the payload);
   * - encoded: any other run of value records (int32_data, int64_data, string_data, unpacked
   *   floats, several payload records…) lying back to back: `start..end` spans the records,
   *   tags included, so cutting it out and back in is byte-exact;
   * - scattered: value records with other fields between them (no one range holds them);
   * - external: ONNX external data.
   */
  data?:
  | { kind: 'raw' | 'float' | 'double', start: number, end: number }
  | { kind: 'encoded', fields: string[], start: number, end: number }
  | { kind: 'scattered', fields: string[] }
  | { kind: 'external', location: string, offset: number, length?: number }
  /** Where it was found: a graph's initializer, a sparse initializer's values or indices, a Constant node's value, another attribute. */
  source:
  | { kind: 'initializer' }
  | { kind: 'sparse', initializer: string, part: 'values' | 'indices' }
  | { kind: 'constant', output: string }
  | { kind: 'attribute', node: string, attribute: string }
}

export interface OnnxNodeRef {
  /** The node's name, or `op_type:first output` when the name is empty. */
  label: string
  opType: string
  inputs: string[]
}

export interface OnnxValueInfo {
  name: string
  elemType?: number
  /** dim_value, dim_param, or -1 for a dimension with neither. */
  shape?: Array<number | string>
}

export interface OnnxWalk {
  irVersion?: number
  producerName: string
  producerVersion: string
  opsets: Array<{ domain: string, version: number }>
  /** Tensors with values: initializers (sparse ones as values and indices) and Constant values. */
  tensors: OnnxTensorRef[]
  /** Every node with inputs of the main graph and its subgraphs, depth-first in file order. */
  nodes: OnnxNodeRef[]
  inputs: OnnxValueInfo[]
  outputs: OnnxValueInfo[]
  /** Names of the main graph's initializers (graph inputs with these names are not inputs). */
  initializerNames: Set<string>
}

/** TensorProto fields that hold element values (onnx.proto), by number. */
const VALUE_FIELDS: Record<number, string> = {
  4: 'float_data', 5: 'int32_data', 6: 'string_data', 7: 'int64_data', 9: 'raw_data', 10: 'double_data', 11: 'uint64_data'
}

const utf8 = new TextDecoder()

/**
 * Reads the model; throws WireError (with the byte position) when the bytes are not one, and
 * WireLimitError past `maxRecords` records or a rank cap.
 */
export function walkOnnx (bytes: Uint8Array, maxRecords = MAX_RECORDS): OnnxWalk {
  const r = wireReader(bytes, maxRecords)
  const walk: OnnxWalk = {
    producerName: '',
    producerVersion: '',
    opsets: [],
    tensors: [],
    nodes: [],
    inputs: [],
    outputs: [],
    initializerNames: new Set()
  }
  if (bytes.length === 0) throw new WireError('the file is empty', 0, false)
  let graph: WireField | undefined
  // Model-local functions and training graphs hold tensors too (a Constant's value, training
  // initializers): walked after the main graph, so none of their values stays public.
  const functions: WireField[] = []
  const training: WireField[] = []
  eachField(r, 0, bytes.length, f => {
    switch (f.no) {
      case 1: walk.irVersion = expect(f, WIRE_VARINT, 'ModelProto.ir_version').value; break
      case 2: walk.producerName = text(bytes, expect(f, WIRE_LEN, 'ModelProto.producer_name')); break
      case 3: walk.producerVersion = text(bytes, expect(f, WIRE_LEN, 'ModelProto.producer_version')); break
      case 7:
        if (graph !== undefined) throw new WireError(`a second ModelProto.graph at byte ${f.at}`, f.at, false)
        graph = expect(f, WIRE_LEN, 'ModelProto.graph')
        break
      case 8:
        if (walk.opsets.length === MAX_OPSETS) throw new WireLimitError(`more than ${MAX_OPSETS} opset imports (at byte ${f.at})`, f.at)
        walk.opsets.push(readOpset(r, bytes, expect(f, WIRE_LEN, 'ModelProto.opset_import')))
        break
      case 20: training.push(expect(f, WIRE_LEN, 'ModelProto.training_info')); break
      case 25: functions.push(expect(f, WIRE_LEN, 'ModelProto.functions')); break
      case 4: case 6: case 14: expect(f, WIRE_LEN, `ModelProto field ${f.no}`); break
      case 5: expect(f, WIRE_VARINT, 'ModelProto.model_version'); break
    }
  })
  if (graph === undefined) throw new WireError('no ModelProto.graph (field 7); the file may be truncated', 0, false)
  if (walk.opsets.length === 0) throw new WireError('no ModelProto.opset_import (field 8)', 0, false)
  walkGraph(r, bytes, graph, walk, 0)
  // TrainingInfoProto: initialization (1) and algorithm (2) are graphs; FunctionProto: node (7).
  for (const t of training) {
    eachField(r, t.start, t.end, f => { if (f.no === 1 || f.no === 2) walkGraph(r, bytes, expect(f, WIRE_LEN, 'TrainingInfoProto graph'), walk, 1) })
  }
  for (const fn of functions) {
    eachField(r, fn.start, fn.end, f => { if (f.no === 7) walkNode(r, bytes, expect(f, WIRE_LEN, 'FunctionProto.node'), walk, 1) })
  }
  return walk
}

function walkGraph (r: WireReader, bytes: Uint8Array, graph: WireField, walk: OnnxWalk, depth: number): void {
  if (depth > MAX_GRAPH_DEPTH) throw new WireError(`graphs nested more than ${MAX_GRAPH_DEPTH} deep at byte ${graph.at}`, graph.at, false)
  eachField(r, graph.start, graph.end, f => {
    switch (f.no) {
      case 1: walkNode(r, bytes, expect(f, WIRE_LEN, 'GraphProto.node'), walk, depth); break
      case 5: {
        const tensor = readTensor(r, bytes, expect(f, WIRE_LEN, 'GraphProto.initializer'), { kind: 'initializer' })
        keepTensor(walk, tensor)
        if (depth === 0) walk.initializerNames.add(tensor.name)
        break
      }
      case 15: {
        const name = readSparseTensor(r, bytes, expect(f, WIRE_LEN, 'GraphProto.sparse_initializer'), walk)
        if (depth === 0) walk.initializerNames.add(name)
        break
      }
      case 11: case 12: {
        const info = readValueInfo(r, bytes, expect(f, WIRE_LEN, 'GraphProto.input/output'))
        if (depth > 0) break
        const list = f.no === 11 ? walk.inputs : walk.outputs
        if (list.length === MAX_GRAPH_IO) throw new WireLimitError(`more than ${MAX_GRAPH_IO} graph ${f.no === 11 ? 'inputs' : 'outputs'} (at byte ${f.at})`, f.at)
        list.push(info)
        break
      }
      // name, doc_string, value_info, quantization_annotation (left in place)
      case 2: case 10: case 13: case 14: expect(f, WIRE_LEN, `GraphProto field ${f.no}`); break
    }
  })
}

/**
 * A SparseTensorProto (values 1, indices 2, dims 3): its values and indices are TensorProtos,
 * read like initializers. Returns the initializer's name (its values' name, per onnx.proto).
 */
function readSparseTensor (r: WireReader, bytes: Uint8Array, sparse: WireField, walk: OnnxWalk): string {
  const refs: Array<{ part: 'values' | 'indices', ref: OnnxTensorRef }> = []
  eachField(r, sparse.start, sparse.end, f => {
    if (f.no !== 1 && f.no !== 2) return
    const part = f.no === 1 ? 'values' : 'indices'
    refs.push({ part, ref: readTensor(r, bytes, expect(f, WIRE_LEN, `SparseTensorProto.${part}`), { kind: 'initializer' }) })
  })
  const name = refs.find(p => p.part === 'values')?.ref.name ?? ''
  for (const { part, ref } of refs) {
    ref.source = { kind: 'sparse', initializer: name, part }
    keepTensor(walk, ref)
  }
  return name
}

function walkNode (r: WireReader, bytes: Uint8Array, node: WireField, walk: OnnxWalk, depth: number): void {
  const inputs: string[] = []
  const outputs: string[] = []
  const attributes: WireField[] = []
  let name = ''
  let opType = ''
  let domain = ''
  eachField(r, node.start, node.end, f => {
    switch (f.no) {
      case 1: inputs.push(text(bytes, expect(f, WIRE_LEN, 'NodeProto.input'))); break
      case 2: outputs.push(text(bytes, expect(f, WIRE_LEN, 'NodeProto.output'))); break
      case 3: name = text(bytes, expect(f, WIRE_LEN, 'NodeProto.name')); break
      case 4: opType = text(bytes, expect(f, WIRE_LEN, 'NodeProto.op_type')); break
      case 5: attributes.push(expect(f, WIRE_LEN, 'NodeProto.attribute')); break
      case 7: domain = text(bytes, expect(f, WIRE_LEN, 'NodeProto.domain')); break
    }
  })
  const label = name !== '' ? name : `${opType}:${outputs[0] ?? ''}`
  // The node goes first, so its inputs are seen before those of nodes inside its subgraphs.
  // A node without inputs consumes no tensor, so nothing needs it (and empty records stay cheap).
  if (inputs.length > 0) walk.nodes.push({ label, opType, inputs })
  for (const a of attributes) walkAttribute(r, bytes, a, walk, depth, { label, opType, domain, output: outputs[0] ?? '' })
}

function walkAttribute (
  r: WireReader, bytes: Uint8Array, attribute: WireField, walk: OnnxWalk, depth: number,
  node: { label: string, opType: string, domain: string, output: string }
): void {
  // The name may come after the values it names: keep the tensor and graph records, then read them.
  const fields: WireField[] = []
  const values: WireField[] = []
  const lists: WireField[] = []
  let name = ''
  eachField(r, attribute.start, attribute.end, f => {
    if (f.no === 1) name = text(bytes, expect(f, WIRE_LEN, 'AttributeProto.name'))
    if (f.no === 5 || f.no === 10 || f.no === 6 || f.no === 11 || f.no === 22 || f.no === 23) fields.push(f)
    if (node.opType === 'Constant' && f.no in CONSTANT_VALUE_FIELDS) values.push(f)
    else if (node.domain === ML_DOMAIN && f.no in ML_LIST_FIELDS) lists.push(f)
  })
  // A Constant's value_float(s), value_int(s) and value_string(s) are its output's values, as
  // much as a `value` tensor is (onnx/defs/generator/defs.cc): they leave the skeleton too.
  if (values.length > 0) keepTensor(walk, attributeValues(values, CONSTANT_VALUE_FIELDS, { kind: 'constant', output: node.output }))
  // ONNX-ML operators hold their weights in list attributes, not tensors (LinearClassifier's
  // coefficients, a TreeEnsemble's nodes and leaf values, SVM support vectors; onnx/defs/traditionalml/defs.cc):
  // left in the skeleton, every skl2onnx model's weights were public in its manifest (review, stop 34).
  if (lists.length > 0) keepTensor(walk, attributeValues(lists, ML_LIST_FIELDS, { kind: 'attribute', node: node.label, attribute: name }))
  for (const f of fields) {
    switch (f.no) {
      case 5: case 10: {
        const source = node.opType === 'Constant'
          ? { kind: 'constant' as const, output: node.output }
          : { kind: 'attribute' as const, node: node.label, attribute: name }
        keepTensor(walk, readTensor(r, bytes, expect(f, WIRE_LEN, 'AttributeProto.t'), source))
        break
      }
      case 6: case 11:
        walkGraph(r, bytes, expect(f, WIRE_LEN, 'AttributeProto.g'), walk, depth + 1)
        break
      case 22: case 23: // sparse_tensor(s): a Constant's sparse_value, for one
        readSparseTensor(r, bytes, expect(f, WIRE_LEN, 'AttributeProto.sparse_tensor'), walk)
        break
    }
  }
}

/** AttributeProto fields that hold a Constant's values, and the element type they stand for. */
const CONSTANT_VALUE_FIELDS: Record<number, { field: string, dataType: number }> = {
  2: { field: 'value_float', dataType: 1 },
  3: { field: 'value_int', dataType: 7 },
  4: { field: 'value_string', dataType: 8 },
  7: { field: 'value_floats', dataType: 1 },
  8: { field: 'value_ints', dataType: 7 },
  9: { field: 'value_strings', dataType: 8 }
}

/** The ONNX-ML operator set's domain, and the AttributeProto list fields whose values are its operators' weights. */
const ML_DOMAIN = 'ai.onnx.ml'
const ML_LIST_FIELDS: Record<number, { field: string, dataType: number }> = {
  7: { field: 'floats', dataType: 1 },
  8: { field: 'ints', dataType: 7 },
  9: { field: 'strings', dataType: 8 }
}

/**
 * An attribute's values as a tensor: packed `floats` are a float32 run like float_data (a typed
 * [n] tensor); anything else (varints, strings, a fixed32 scalar, unpacked records) is cut out
 * with its tags, opaque, as `OnnxTensorRef.data` describes. It is placed by its first value
 * record, not by its attribute: a `t` before the list in the same attribute is cut first
 * (holes must come in file order; found by review).
 */
function attributeValues (values: readonly WireField[], kinds: Record<number, { field: string, dataType: number }>, source: OnnxTensorRef['source']): OnnxTensorRef {
  const first = values[0]!
  const kind = kinds[first.no]!
  const fields = [...new Set(values.map(f => kinds[f.no]!.field))]
  for (let i = 1; i < values.length; i++) {
    if (values[i]!.at !== values[i - 1]!.end) return { name: '', dataType: kind.dataType, dims: [], at: first.at, source, data: { kind: 'scattered', fields } }
  }
  if (values.length === 1 && first.no === 7 && first.wire === WIRE_LEN && (first.end - first.start) % 4 === 0) {
    return { name: '', dataType: kind.dataType, dims: [(first.end - first.start) / 4], at: first.at, source, data: { kind: 'float', start: first.start, end: first.end } }
  }
  return { name: '', dataType: kind.dataType, dims: [], at: first.at, source, data: { kind: 'encoded', fields, start: first.at, end: values[values.length - 1]!.end } }
}

/**
 * Keeps the tensors whose values become weights: every one with values, other nodes' attribute
 * tensors (such as ConstantOfShape's `value`) included, so none stays in the public skeleton.
 * Holding every TensorProto read would let empty records cost ~170 bytes of heap each.
 */
function keepTensor (walk: OnnxWalk, ref: OnnxTensorRef): void {
  if (ref.data !== undefined) walk.tensors.push(ref)
}

function readTensor (r: WireReader, bytes: Uint8Array, tensor: WireField, source: OnnxTensorRef['source']): OnnxTensorRef {
  const ref: OnnxTensorRef = { name: '', dataType: 0, dims: [], at: tensor.at, source }
  const payloads: WireField[] = []
  // No prototype: a key such as `__proto__` or `constructor` is only a key.
  const external: Record<string, string> = Object.create(null) as Record<string, string>
  let location = 0
  let segmented = false
  eachField(r, tensor.start, tensor.end, f => {
    switch (f.no) {
      case 1:
        // No spread: a hostile file could pack more dims than a call's argument limit.
        if (f.wire === WIRE_LEN) for (const d of readPackedVarints(r, f.start, f.end, MAX_TENSOR_RANK)) ref.dims.push(d)
        else ref.dims.push(expect(f, WIRE_VARINT, 'TensorProto.dims').value)
        if (ref.dims.length > MAX_TENSOR_RANK) {
          throw new WireLimitError(`tensor at byte ${tensor.at} has more than ${MAX_TENSOR_RANK} dims`, f.at)
        }
        break
      case 2: ref.dataType = expect(f, WIRE_VARINT, 'TensorProto.data_type').value; break
      case 3: segmented = true; break
      case 8: ref.name = text(bytes, expect(f, WIRE_LEN, 'TensorProto.name')); break
      case 4: case 5: case 6: case 7: case 9: case 10: case 11: payloads.push(f); break
      case 13: {
        let key = ''
        let value = ''
        eachField(r, expect(f, WIRE_LEN, 'TensorProto.external_data').start, f.end, e => {
          if (e.no === 1) key = text(bytes, expect(e, WIRE_LEN, 'StringStringEntryProto.key'))
          if (e.no === 2) value = text(bytes, expect(e, WIRE_LEN, 'StringStringEntryProto.value'))
        })
        external[key] = value
        break
      }
      case 14: location = expect(f, WIRE_VARINT, 'TensorProto.data_location').value; break
    }
  })
  if (location === DATA_LOCATION_EXTERNAL) {
    ref.data = {
      kind: 'external',
      location: external.location ?? '',
      offset: external.offset === undefined ? 0 : byteCount(external.offset),
      ...(external.length === undefined ? {} : { length: byteCount(external.length) })
    }
  } else if (payloads.length > 0) {
    ref.data = valueData(payloads, segmented)
  }
  return ref
}

/** Where a tensor's value records are: see `OnnxTensorRef.data`. */
function valueData (payloads: readonly WireField[], segmented: boolean): NonNullable<OnnxTensorRef['data']> {
  const p = payloads[0]!
  if (payloads.length === 1 && !segmented && p.wire === WIRE_LEN) {
    // One contiguous little-endian payload, which may become a typed tensor.
    if (p.no === 9) return { kind: 'raw', start: p.start, end: p.end }
    if (p.no === 4) return { kind: 'float', start: p.start, end: p.end }
    if (p.no === 10) return { kind: 'double', start: p.start, end: p.end }
  }
  const fields = [...new Set(payloads.map(f => VALUE_FIELDS[f.no] ?? String(f.no)))]
  for (let i = 1; i < payloads.length; i++) {
    if (payloads[i]!.at !== payloads[i - 1]!.end) return { kind: 'scattered', fields }
  }
  return { kind: 'encoded', fields, start: p.at, end: payloads[payloads.length - 1]!.end }
}

function readValueInfo (r: WireReader, bytes: Uint8Array, info: WireField): OnnxValueInfo {
  const out: OnnxValueInfo = { name: '' }
  eachField(r, info.start, info.end, f => {
    if (f.no === 1) out.name = text(bytes, expect(f, WIRE_LEN, 'ValueInfoProto.name'))
    if (f.no !== 2) return
    // TypeProto.tensor_type (1) → elem_type (1), shape (2) → dim (1) → dim_value (1) | dim_param (2)
    eachField(r, expect(f, WIRE_LEN, 'ValueInfoProto.type').start, f.end, t => {
      if (t.no !== 1 || t.wire !== WIRE_LEN) return
      eachField(r, t.start, t.end, tt => {
        if (tt.no === 1 && tt.wire === WIRE_VARINT) out.elemType = tt.value
        if (tt.no !== 2 || tt.wire !== WIRE_LEN) return
        const shape: Array<number | string> = out.shape = []
        eachField(r, tt.start, tt.end, d => {
          if (d.no !== 1 || d.wire !== WIRE_LEN) return
          if (shape.length === MAX_TENSOR_RANK) {
            throw new WireLimitError(`graph input/output at byte ${info.at} has more than ${MAX_TENSOR_RANK} dims`, d.at)
          }
          let dim: number | string = -1
          eachField(r, d.start, d.end, v => {
            if (v.no === 1 && v.wire === WIRE_VARINT) dim = v.value
            if (v.no === 2 && v.wire === WIRE_LEN) dim = text(bytes, v)
          })
          shape.push(dim)
        })
      })
    })
  })
  return out
}

function readOpset (r: WireReader, bytes: Uint8Array, opset: WireField): { domain: string, version: number } {
  const out = { domain: '', version: 0 }
  eachField(r, opset.start, opset.end, f => {
    if (f.no === 1) out.domain = text(bytes, expect(f, WIRE_LEN, 'OperatorSetIdProto.domain'))
    if (f.no === 2) out.version = expect(f, WIRE_VARINT, 'OperatorSetIdProto.version').value
  })
  return out
}

function expect (f: WireField, wire: number, what: string): WireField {
  if (f.wire !== wire) {
    throw new WireError(`${what} at byte ${f.at} has wire type ${f.wire}, expected ${wire}`, f.at, false)
  }
  return f
}

function text (bytes: Uint8Array, f: WireField): string {
  return utf8.decode(bytes.subarray(f.start, f.end))
}

/**
 * An external data `offset` or `length`: decimal digits, as onnx writes them and reads them
 * (Python's int()). Number() took "", "0x10" and "1e3" too; anything else is NaN here, which
 * the caller refuses as a bad offset or length.
 */
function byteCount (text: string): number {
  return /^\d{1,16}$/.test(text) ? Number(text) : NaN
}
