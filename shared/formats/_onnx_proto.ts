/**
 * Walks an ONNX ModelProto on the wire (onnx/onnx.proto, IR version 3 and later) and reports
 * where its tensors' data lie, which node consumes what, the graph's inputs/outputs and the
 * opset imports. Nothing is decoded into objects: the result is byte ranges and a few strings.
 * Subgraphs (attributes `g`/`graphs` of If, Loop, Scan) are walked recursively, in file order.
 */
import {
  readFields, readPackedVarints, wireReader, WIRE_LEN, WIRE_VARINT, WireError, type WireField,
  type WireReader
} from './_protobuf.ts'

/** ONNX `TensorProto.DataLocation.EXTERNAL`. */
const DATA_LOCATION_EXTERNAL = 1
/** Deeper nesting than this is taken as a malicious or corrupt file. */
const MAX_GRAPH_DEPTH = 32

/** A TensorProto found in a graph initializer or a node attribute. */
export interface OnnxTensorRef {
  name: string
  dataType: number
  dims: number[]
  /** Byte position of the TensorProto in the file; orders tensors. */
  at: number
  /** Where the element bytes are, if in one place the walker recognises (else undefined). */
  data?:
  | { kind: 'raw' | 'float' | 'double', start: number, end: number }
  | { kind: 'external', location: string, offset: number, length?: number }
  /** Where it was found: a graph's initializer, a Constant node's value, another attribute. */
  source:
  | { kind: 'initializer' }
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
  tensors: OnnxTensorRef[]
  /** Every node of the main graph and its subgraphs, depth-first in file order. */
  nodes: OnnxNodeRef[]
  inputs: OnnxValueInfo[]
  outputs: OnnxValueInfo[]
  /** Names of the main graph's initializers (graph inputs with these names are not inputs). */
  initializerNames: Set<string>
}

const utf8 = new TextDecoder()

/** Reads the model; throws WireError (with the byte position) when the bytes are not one. */
export function walkOnnx (bytes: Uint8Array): OnnxWalk {
  const r = wireReader(bytes)
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
  const top = readFields(r, 0, bytes.length)
  if (top.length === 0) throw new WireError('the file is empty', 0, false)
  let graph: WireField | undefined
  for (const f of top) {
    switch (f.no) {
      case 1: walk.irVersion = expect(f, WIRE_VARINT, 'ModelProto.ir_version').value; break
      case 2: walk.producerName = text(bytes, expect(f, WIRE_LEN, 'ModelProto.producer_name')); break
      case 3: walk.producerVersion = text(bytes, expect(f, WIRE_LEN, 'ModelProto.producer_version')); break
      case 7:
        if (graph !== undefined) throw new WireError(`a second ModelProto.graph at byte ${f.at}`, f.at, false)
        graph = expect(f, WIRE_LEN, 'ModelProto.graph')
        break
      case 8: walk.opsets.push(readOpset(r, bytes, expect(f, WIRE_LEN, 'ModelProto.opset_import'))); break
      case 4: case 6: case 14: case 20: case 25: expect(f, WIRE_LEN, `ModelProto field ${f.no}`); break
      case 5: expect(f, WIRE_VARINT, 'ModelProto.model_version'); break
    }
  }
  if (graph === undefined) throw new WireError('no ModelProto.graph (field 7); the file may be truncated', 0, false)
  if (walk.opsets.length === 0) throw new WireError('no ModelProto.opset_import (field 8)', 0, false)
  walkGraph(r, bytes, graph, walk, 0)
  return walk
}

function walkGraph (r: WireReader, bytes: Uint8Array, graph: WireField, walk: OnnxWalk, depth: number): void {
  if (depth > MAX_GRAPH_DEPTH) throw new WireError(`graphs nested more than ${MAX_GRAPH_DEPTH} deep at byte ${graph.at}`, graph.at, false)
  for (const f of readFields(r, graph.start, graph.end)) {
    switch (f.no) {
      case 1: walkNode(r, bytes, expect(f, WIRE_LEN, 'GraphProto.node'), walk, depth); break
      case 5: {
        const tensor = readTensor(r, bytes, expect(f, WIRE_LEN, 'GraphProto.initializer'), { kind: 'initializer' })
        walk.tensors.push(tensor)
        if (depth === 0) walk.initializerNames.add(tensor.name)
        break
      }
      case 11: case 12: {
        const info = readValueInfo(r, bytes, expect(f, WIRE_LEN, 'GraphProto.input/output'))
        if (depth === 0) (f.no === 11 ? walk.inputs : walk.outputs).push(info)
        break
      }
      // name, doc_string, value_info, quantization_annotation, sparse_initializer (left in place)
      case 2: case 10: case 13: case 14: case 15: expect(f, WIRE_LEN, `GraphProto field ${f.no}`); break
    }
  }
}

function walkNode (r: WireReader, bytes: Uint8Array, node: WireField, walk: OnnxWalk, depth: number): void {
  const inputs: string[] = []
  const outputs: string[] = []
  const attributes: WireField[] = []
  let name = ''
  let opType = ''
  for (const f of readFields(r, node.start, node.end)) {
    switch (f.no) {
      case 1: inputs.push(text(bytes, expect(f, WIRE_LEN, 'NodeProto.input'))); break
      case 2: outputs.push(text(bytes, expect(f, WIRE_LEN, 'NodeProto.output'))); break
      case 3: name = text(bytes, expect(f, WIRE_LEN, 'NodeProto.name')); break
      case 4: opType = text(bytes, expect(f, WIRE_LEN, 'NodeProto.op_type')); break
      case 5: attributes.push(expect(f, WIRE_LEN, 'NodeProto.attribute')); break
    }
  }
  const label = name !== '' ? name : `${opType}:${outputs[0] ?? ''}`
  // The node goes first, so its inputs are seen before those of nodes inside its subgraphs.
  walk.nodes.push({ label, opType, inputs })
  for (const a of attributes) walkAttribute(r, bytes, a, walk, depth, { label, opType, output: outputs[0] ?? '' })
}

function walkAttribute (
  r: WireReader, bytes: Uint8Array, attribute: WireField, walk: OnnxWalk, depth: number,
  node: { label: string, opType: string, output: string }
): void {
  const fields = readFields(r, attribute.start, attribute.end)
  let name = ''
  for (const f of fields) if (f.no === 1) name = text(bytes, expect(f, WIRE_LEN, 'AttributeProto.name'))
  for (const f of fields) {
    switch (f.no) {
      case 5: case 10: {
        const source = node.opType === 'Constant'
          ? { kind: 'constant' as const, output: node.output }
          : { kind: 'attribute' as const, node: node.label, attribute: name }
        walk.tensors.push(readTensor(r, bytes, expect(f, WIRE_LEN, 'AttributeProto.t'), source))
        break
      }
      case 6: case 11:
        walkGraph(r, bytes, expect(f, WIRE_LEN, 'AttributeProto.g'), walk, depth + 1)
        break
    }
  }
}

function readTensor (r: WireReader, bytes: Uint8Array, tensor: WireField, source: OnnxTensorRef['source']): OnnxTensorRef {
  const ref: OnnxTensorRef = { name: '', dataType: 0, dims: [], at: tensor.at, source }
  const payloads: WireField[] = []
  const external: Record<string, string> = {}
  let location = 0
  let segmented = false
  for (const f of readFields(r, tensor.start, tensor.end)) {
    switch (f.no) {
      case 1:
        // No spread: a hostile file could pack more dims than a call's argument limit.
        if (f.wire === WIRE_LEN) for (const d of readPackedVarints(r, f.start, f.end)) ref.dims.push(d)
        else ref.dims.push(expect(f, WIRE_VARINT, 'TensorProto.dims').value)
        break
      case 2: ref.dataType = expect(f, WIRE_VARINT, 'TensorProto.data_type').value; break
      case 3: segmented = true; break
      case 8: ref.name = text(bytes, expect(f, WIRE_LEN, 'TensorProto.name')); break
      case 4: case 5: case 6: case 7: case 9: case 10: case 11: payloads.push(f); break
      case 13: {
        const entry = readFields(r, expect(f, WIRE_LEN, 'TensorProto.external_data').start, f.end)
        let key = ''
        let value = ''
        for (const e of entry) {
          if (e.no === 1) key = text(bytes, expect(e, WIRE_LEN, 'StringStringEntryProto.key'))
          if (e.no === 2) value = text(bytes, expect(e, WIRE_LEN, 'StringStringEntryProto.value'))
        }
        external[key] = value
        break
      }
      case 14: location = expect(f, WIRE_VARINT, 'TensorProto.data_location').value; break
    }
  }
  if (location === DATA_LOCATION_EXTERNAL) {
    ref.data = {
      kind: 'external',
      location: external.location ?? '',
      offset: external.offset === undefined ? 0 : Number(external.offset),
      ...(external.length === undefined ? {} : { length: Number(external.length) })
    }
  } else if (!segmented && payloads.length === 1) {
    // One contiguous little-endian payload. Unpacked repeated floats, varint int32/int64 data and
    // strings stay in the skeleton.
    const p = payloads[0]!
    if (p.no === 9 && p.wire === WIRE_LEN) ref.data = { kind: 'raw', start: p.start, end: p.end }
    if (p.no === 4 && p.wire === WIRE_LEN) ref.data = { kind: 'float', start: p.start, end: p.end }
    if (p.no === 10 && p.wire === WIRE_LEN) ref.data = { kind: 'double', start: p.start, end: p.end }
  }
  return ref
}

function readValueInfo (r: WireReader, bytes: Uint8Array, info: WireField): OnnxValueInfo {
  const out: OnnxValueInfo = { name: '' }
  for (const f of readFields(r, info.start, info.end)) {
    if (f.no === 1) out.name = text(bytes, expect(f, WIRE_LEN, 'ValueInfoProto.name'))
    if (f.no !== 2) continue
    // TypeProto.tensor_type (1) → elem_type (1), shape (2) → dim (1) → dim_value (1) | dim_param (2)
    for (const t of readFields(r, expect(f, WIRE_LEN, 'ValueInfoProto.type').start, f.end)) {
      if (t.no !== 1 || t.wire !== WIRE_LEN) continue
      for (const tt of readFields(r, t.start, t.end)) {
        if (tt.no === 1 && tt.wire === WIRE_VARINT) out.elemType = tt.value
        if (tt.no !== 2 || tt.wire !== WIRE_LEN) continue
        out.shape = []
        for (const d of readFields(r, tt.start, tt.end)) {
          if (d.no !== 1 || d.wire !== WIRE_LEN) continue
          let dim: number | string = -1
          for (const v of readFields(r, d.start, d.end)) {
            if (v.no === 1 && v.wire === WIRE_VARINT) dim = v.value
            if (v.no === 2 && v.wire === WIRE_LEN) dim = text(bytes, v)
          }
          out.shape.push(dim)
        }
      }
    }
  }
  return out
}

function readOpset (r: WireReader, bytes: Uint8Array, opset: WireField): { domain: string, version: number } {
  const out = { domain: '', version: 0 }
  for (const f of readFields(r, opset.start, opset.end)) {
    if (f.no === 1) out.domain = text(bytes, expect(f, WIRE_LEN, 'OperatorSetIdProto.domain'))
    if (f.no === 2) out.version = expect(f, WIRE_VARINT, 'OperatorSetIdProto.version').value
  }
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
