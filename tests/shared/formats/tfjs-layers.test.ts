import { beforeAll, describe, expect, it } from 'vitest'
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import '@tensorflow/tfjs-backend-cpu'
import { readModel, tfjsArtifacts, writeModel } from '../../../shared/formats/index.ts'
import type { ModelFile, TfjsTopology } from '../../../shared/model/types.ts'

/**
 * A dense 784-64-10 MLP with batch normalisation (its stats set to non-trivial values), compiled
 * and trained one step so that Adam has state to save.
 */
async function buildModel (): Promise<tfl.Sequential> {
  const model = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [784], units: 64, activation: 'relu', name: 'hidden' }),
      tfl.layers.batchNormalization({ name: 'norm' }),
      tfl.layers.dense({ units: 10, activation: 'softmax', name: 'out' })
    ]
  })
  const norm = model.getLayer('norm')
  norm.setWeights(tf.tidy(() => [
    tf.randomUniform([64], 0.5, 1.5, 'float32', 1), tf.randomUniform([64], -0.5, 0.5, 'float32', 2),
    tf.randomUniform([64], -1, 1, 'float32', 3), tf.randomUniform([64], 0.5, 2, 'float32', 4)
  ]))
  model.compile({ optimizer: 'adam', loss: 'categoricalCrossentropy', metrics: ['accuracy'] })
  const [x, y] = [tf.randomUniform([8, 784], 0, 1, 'float32', 5), tf.oneHot(tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], 'int32'), 10)]
  await model.fit(x, y, { epochs: 1, batchSize: 8, verbose: 0 })
  tf.dispose([x, y])
  return model
}

/**
 * model.json + weights.bin as tfjs's file savers write them (getModelJSONForModelArtifacts),
 * saved with the optimizer so that model.json has a trainingConfig.
 */
async function saveFiles (model: tfl.LayersModel): Promise<ModelFile[]> {
  let saved: tf.io.ModelArtifacts | undefined
  await model.save(tf.io.withSaveHandler(async artifacts => {
    saved = artifacts
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
  }), { includeOptimizer: true })
  if (saved?.weightSpecs === undefined || saved.weightData === undefined) throw new Error('nothing saved')
  const weightData = new tf.io.CompositeArrayBuffer(saved.weightData).slice()
  const modelJson: tf.io.ModelJSON = {
    modelTopology: saved.modelTopology as {},
    format: 'layers-model',
    generatedBy: saved.generatedBy,
    convertedBy: saved.convertedBy ?? null,
    weightsManifest: [{ paths: ['./weights.bin'], weights: saved.weightSpecs }],
    ...(saved.trainingConfig === undefined ? {} : { trainingConfig: saved.trainingConfig })
  }
  return [
    { path: 'model.json', bytes: new TextEncoder().encode(JSON.stringify(modelJson)) },
    { path: 'weights.bin', bytes: new Uint8Array(weightData) }
  ]
}

describe('tfjs layers model', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu')
    await tf.ready()
  })

  it('writes model.json and weights.bin back byte for byte', async () => {
    const original = await buildModel()
    const files = await saveFiles(original)
    const model = await readModel(files)
    const written = writeModel(model)
    expect(written.map(f => f.path)).toEqual(['model.json', 'weights.bin'])
    for (const [i, f] of written.entries()) expect(Buffer.from(f.bytes).equals(Buffer.from(files[i]!.bytes))).toBe(true)
    original.dispose()
  })

  it('groups weights by Keras layer and summarises the model', async () => {
    const original = await buildModel()
    const model = await readModel(await saveFiles(original))
    original.dispose()
    expect(model.format).toBe('tfjs-layers')
    // tfjs saves trainable weights, then non-trainable ones, then the optimizer's state.
    expect(model.tensors.slice(0, 8).map(t => [t.name, t.shape, t.byteLength, t.layer])).toEqual([
      ['hidden/kernel', [784, 64], 784 * 64 * 4, 'hidden'],
      ['hidden/bias', [64], 256, 'hidden'],
      ['norm/gamma', [64], 256, 'norm'],
      ['norm/beta', [64], 256, 'norm'],
      ['out/kernel', [64, 10], 2560, 'out'],
      ['out/bias', [10], 40, 'out'],
      ['norm/moving_mean', [64], 256, 'norm'],
      ['norm/moving_variance', [64], 256, 'norm']
    ])
    const optimizer = model.tensors.slice(8)
    // iteration count, then Adam's two moments of the six trainable weights (tfjs numbers the
    // variables' names, e.g. `hidden/kernel_1/m`, when a process builds several models).
    expect(optimizer).toHaveLength(13)
    expect(optimizer.some(t => /^hidden\/kernel(_\d+)?\/m$/.test(t.name))).toBe(true)
    expect(optimizer.every(t => t.layer === 'optimizer')).toBe(true)
    const trainable = 784 * 64 + 64 + 2 * 64 + 64 * 10 + 10
    const adamState = 1 + 2 * trainable
    const m = model.metadata
    expect(m.parameters).toBe(trainable + 2 * 64 + adamState)
    expect(m.weightBytes).toBe(m.parameters * 4)
    expect(m.dtypes).toEqual({ float32: 20, int32: 1 })
    expect(m.layers).toEqual([
      { name: 'hidden', kind: 'Dense', parameters: 784 * 64 + 64 },
      { name: 'norm', kind: 'BatchNormalization', parameters: 256 },
      { name: 'out', kind: 'Dense', parameters: 650 },
      { name: 'optimizer', kind: 'Adam', parameters: adamState }
    ])
    expect(m.inputs).toEqual([{ name: 'hidden', dtype: 'float32', shape: [-1, 784] }])
    expect(m.outputs).toEqual([{ name: 'out' }])
    expect(m.trainingConfig).toMatchObject({ loss: 'categorical_crossentropy', metrics: ['accuracy'] })
    expect(m.generatedBy).toMatch(/^TensorFlow\.js tfjs-layers/)
  })

  it('loads through tfjsArtifacts and predicts exactly as the original model', async () => {
    const original = await buildModel()
    const model = await readModel(await saveFiles(original))
    const artifacts = tfjsArtifacts(model.topology as TfjsTopology, model.weights)
    expect(artifacts.weightSpecs).toHaveLength(21)
    expect(artifacts.format).toBe('layers-model')
    expect(artifacts.trainingConfig).toMatchObject({ loss: 'categorical_crossentropy' })

    const before = tf.memory().numTensors
    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts))
    const x = tf.randomUniform([4, 784], 0, 1, 'float32', 42)
    const a = original.predict(x) as tf.Tensor
    const b = loaded.predict(x) as tf.Tensor
    expect(b.shape).toEqual([4, 10])
    expect(Array.from(await b.data())).toEqual(Array.from(await a.data()))
    tf.dispose([x, a, b])
    // The optimizer rebuilt from trainingConfig holds Adam's state; model.dispose() leaves it.
    loaded.optimizer.dispose()
    loaded.dispose()
    expect(tf.memory().numTensors).toBe(before)
    original.dispose()
  })
})
