import { beforeAll, describe, expect, it } from 'vitest'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import { loadGraphModel } from '@tensorflow/tfjs-converter'
import { readModel, tfjsArtifacts, writeModel } from '../../../shared/formats/index.ts'
import type { TfjsTopology } from '../../../shared/model/types.ts'
import { movenetFiles } from './fixtures.ts'

/** Artifacts built the way tfjs's own loaders build them from model.json + weight bytes. */
async function originalArtifacts (): Promise<tf.io.ModelArtifacts> {
  const [json, bin] = movenetFiles()
  const modelJson = JSON.parse(new TextDecoder().decode(json!.bytes)) as tf.io.ModelJSON
  return await tf.io.getModelArtifactsForJSON(modelJson, async manifest =>
    [manifest.flatMap(g => g.weights), bin!.bytes.slice().buffer])
}

describe('tfjs graph model (movenet-lightning)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu')
    await tf.ready()
  })

  it('writes model.json and the .bin back byte for byte', async () => {
    const [json, bin] = movenetFiles()
    const model = await readModel(movenetFiles())
    const files = writeModel(model)
    expect(files.map(f => f.path)).toEqual(['model.json', 'movenet-lightning.bin'])
    expect(Buffer.from(files[0]!.bytes).equals(Buffer.from(json!.bytes))).toBe(true)
    expect(Buffer.from(files[1]!.bytes).equals(Buffer.from(bin!.bytes))).toBe(true)
  })

  it('lists 180 weights with their stored sizes, float16 quantization and op scopes', async () => {
    const model = await readModel(movenetFiles())
    expect(model.format).toBe('tfjs-graph')
    expect(model.tensors).toHaveLength(180)
    const quantized = model.tensors.filter(t => t.quantization !== undefined)
    expect(quantized).toHaveLength(149)
    for (const t of model.tensors) {
      const count = t.shape.reduce((n, d) => n * d, 1)
      expect(t.byteLength).toBe(count * (t.quantization?.dtype === 'float16' ? 2 : 4))
    }
    expect(model.weights.length).toBe(4_650_216)
    const kernel = model.tensors.find(t => t.name === 'StatefulPartitionedCall/kpt_offset_0/conv2d_7/Conv2D/ReadVariableOp')
    expect(kernel).toMatchObject({ dtype: 'float32', shape: [1, 1, 96, 34], byteLength: 96 * 34 * 2, quantization: { dtype: 'float16' } })
    // The layer is the scope of the node computing with the weight (review 48c): the fused conv
    // reads its kernel and bias, named under two scopes, as one layer.
    expect(kernel?.layer).toBe('StatefulPartitionedCall/kpt_offset_0/conv2d_7')
    expect(model.tensors.find(t => t.name === 'StatefulPartitionedCall/kpt_offset_0/conv2d_7/BiasAdd/ReadVariableOp')?.layer).toBe(kernel?.layer)
    // So for every weight a fused op reads first (pass-through ops such as ExpandDims are looked past).
    const nodes = (JSON.parse(new TextDecoder().decode(movenetFiles()[0]!.bytes)) as { modelTopology: { node: Array<{ name: string, op: string, input?: string[] }> } }).modelTopology.node
    const fused = model.tensors.flatMap(t => {
      const reader = nodes.find(n => n.input?.includes(t.name))
      return reader !== undefined && /^_?Fused/.test(reader.op) ? [{ t, reader }] : []
    })
    expect(fused.length).toBeGreaterThan(100)
    for (const { t, reader } of fused) expect(reader.name.startsWith(`${t.layer}/`), t.name).toBe(true)

    const m = model.metadata
    expect(m).toMatchObject({ format: 'tfjs-graph', tensorCount: 180, weightBytes: 4_650_216, dtypes: { float32: 149, int32: 31 } })
    expect(m.parameters).toBe(model.tensors.reduce((n, t) => n + t.shape.reduce((a, d) => a * d, 1), 0))
    expect(m.inputs).toEqual([{ name: 'input:0', dtype: 'int32', shape: [1, 192, 192, 3] }])
    expect(m.outputs).toEqual([{ name: 'Identity:0', dtype: 'float32', shape: [1, 1, 17, 3] }])
    expect(m.generatedBy).toBe('https://tfhub.dev/google/movenet/singlepose/lightning/4')
    expect(m.convertedBy).toBe('https://github.com/vladmandic')
    expect(m.layers.find(l => l.name === 'StatefulPartitionedCall/kpt_offset_0/conv2d_7')).toMatchObject({ kind: '_FusedConv2D', parameters: 96 * 34 + 34 })
    expect(m.layers.reduce((n, l) => n + l.parameters, 0)).toBe(m.parameters)
  })

  it('loads through tfjsArtifacts and predicts exactly as the original files do', async () => {
    const model = await readModel(movenetFiles())
    const artifacts = tfjsArtifacts(model.topology as TfjsTopology, model.weights)
    expect(artifacts.weightData).toBeInstanceOf(ArrayBuffer)
    expect((artifacts.weightData as ArrayBuffer).byteLength).toBe(model.weights.length)
    expect(artifacts.weightSpecs).toHaveLength(180)
    expect(artifacts.format).toBe('graph-model')

    const before = tf.memory().numTensors
    const ours = await loadGraphModel({ load: async () => artifacts })
    const theirs = await loadGraphModel(tf.io.fromMemory(await originalArtifacts()))
    const input = tf.tensor4d(Int32Array.from({ length: 192 * 192 * 3 }, (_, i) => (i * 31 + (i >> 7)) % 256), [1, 192, 192, 3], 'int32')
    const a = ours.execute(input) as tf.Tensor
    const b = theirs.execute(input) as tf.Tensor
    expect(a.shape).toEqual([1, 1, 17, 3])
    const got = Array.from(await a.data())
    expect(got).toEqual(Array.from(await b.data()))
    expect(got.every(Number.isFinite)).toBe(true)
    tf.dispose([input, a, b])
    ours.dispose()
    theirs.dispose()
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe('tfjs graph model layers (review 48c)', () => {
  /** A graph model.json of float32 weights `names` (4 bytes each) and `nodes`, with its weight file. */
  function graphFiles (names: string[], nodes: Array<{ name: string, op: string, input?: string[] }>): Array<{ path: string, bytes: Uint8Array }> {
    const json = { format: 'graph-model', modelTopology: { node: [...names.map(name => ({ name, op: 'Const' })), ...nodes] }, weightsManifest: [{ paths: ['w.bin'], weights: names.map(name => ({ name, shape: [1], dtype: 'float32' })) }] }
    return [{ path: 'model.json', bytes: new TextEncoder().encode(JSON.stringify(json)) }, { path: 'w.bin', bytes: new Uint8Array(4 * names.length) }]
  }

  it('files each weight under the scope of the node that computes with it (control inputs aside), past pass-through ops, and a weight handed to a function under its own name', async () => {
    const model = await readModel(graphFiles(
      ['unknown', 'unknown_0', 'm/conv2d_33/Conv2D_weights', 'm/conv2d_33/Conv2D_bn_offset', 'm/p_re_lu_33/Neg', 'm/while/w', 'm/unused/w'],
      [
        { name: 'input', op: 'Placeholder' },
        // A control input ("^name") is an ordering, not a use: this node is not where `unknown` is computed with.
        { name: 'm/init/Assert', op: 'Assert', input: ['^unknown', '^unknown_0'] },
        // The converter's names for a fused conv's kernel and bias say nothing of it.
        { name: 'm/conv2d/BiasAdd', op: '_FusedConv2D', input: ['input', 'unknown', 'unknown_0'] },
        // A conv + batch norm + PReLU fused into one node reads weights named under three scopes;
        // the alpha reaches it through an Identity.
        { name: 'm/p_re_lu_33/Neg/read', op: 'Identity', input: ['m/p_re_lu_33/Neg'] },
        { name: 'm/batch_normalization_33/FusedBatchNormV3', op: '_FusedConv2D', input: ['m/conv2d/BiasAdd', 'm/conv2d_33/Conv2D_weights', 'm/conv2d_33/Conv2D_bn_offset', 'm/p_re_lu_33/Neg/read'] },
        { name: 'm/loop/While', op: 'StatelessWhile', input: ['m/batch_normalization_33/FusedBatchNormV3', 'm/while/w'] }
      ]))
    expect(Object.fromEntries(model.tensors.map(t => [t.name, t.layer]))).toEqual({
      unknown: 'm/conv2d',
      unknown_0: 'm/conv2d',
      'm/conv2d_33/Conv2D_weights': 'm/batch_normalization_33',
      'm/conv2d_33/Conv2D_bn_offset': 'm/batch_normalization_33',
      'm/p_re_lu_33/Neg': 'm/batch_normalization_33',
      'm/while/w': 'm/while',
      'm/unused/w': 'm/unused'
    })
  })
})
