/**
 * tfjs layers models for the weight-check tests: built and saved by tfjs-layers itself (so their
 * model.json is what tfjs writes), one for each weighted layer class the check covers; an
 * autoencoder of two nested functional models in the layout Keras (Python) writes
 * (`model_config`); and helpers to edit a saved model.json the way a hostile upload would.
 */
import * as tfl from '@tensorflow/tfjs-layers'
import { modelFiles } from '../../../node-runtime/examples/mnist-mlp.ts'
import type { ModelFile } from '../../../shared/model/types.ts'

/** model.json + weights.bin as tfjs saves `model`, which is then disposed. */
export async function savedFiles (model: tfl.LayersModel): Promise<ModelFile[]> {
  try {
    return await modelFiles(model)
  } finally {
    model.dispose()
  }
}

type Json = Record<string, any>

const L = tfl.layers

/**
 * An autoencoder whose encoder and decoder are functional models called as layers (conv, same
 * pooling, Flatten, Dense; Dense, Reshape, UpSampling2D, conv), saved by tfjs and then laid out as
 * Keras 2 (Python) writes model.json: the topology under `model_config`.
 * The encoder is layers[1] of the outer config, the decoder layers[2].
 */
export async function nestedAutoencoderFiles (): Promise<ModelFile[]> {
  const encIn = tfl.input({ shape: [8, 8, 1], name: 'enc_in' })
  let x = L.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'enc_conv' }).apply(encIn) as tfl.SymbolicTensor
  x = L.maxPooling2d({ poolSize: 2, padding: 'same', name: 'enc_pool' }).apply(x) as tfl.SymbolicTensor
  x = L.flatten({ name: 'enc_flat' }).apply(x) as tfl.SymbolicTensor
  const encoder = tfl.model({ inputs: encIn, outputs: L.dense({ units: 64, name: 'link_flat_to_64' }).apply(x) as tfl.SymbolicTensor, name: 'encoder' })
  const decIn = tfl.input({ shape: [64], name: 'dec_in' })
  let y = L.dense({ units: 64, name: 'link_reshape_64' }).apply(decIn) as tfl.SymbolicTensor
  y = L.reshape({ targetShape: [4, 4, 4], name: 'dec_reshape' }).apply(y) as tfl.SymbolicTensor
  y = L.upSampling2d({ size: [2, 2], name: 'dec_up' }).apply(y) as tfl.SymbolicTensor
  y = L.conv2d({ filters: 1, kernelSize: 3, padding: 'same', name: 'dec_conv' }).apply(y) as tfl.SymbolicTensor
  const decoder = tfl.model({ inputs: decIn, outputs: y, name: 'decoder' })
  const image = tfl.input({ shape: [8, 8, 1], name: 'image' })
  const autoencoder = tfl.model({ inputs: image, outputs: decoder.apply(encoder.apply(image)) as tfl.SymbolicTensor, name: 'autoencoder' })
  return editModelJson(await savedFiles(autoencoder), json => { json.modelTopology = { keras_version: '2.1.6', backend: 'tensorflow', model_config: json.modelTopology } })
}

/** The files with model.json rewritten by `edit` (the weight file untouched). */
export function editModelJson (files: ModelFile[], edit: (json: Json) => void): ModelFile[] {
  const json = JSON.parse(new TextDecoder().decode(files[0]!.bytes)) as Json
  edit(json)
  return [{ path: 'model.json', bytes: new TextEncoder().encode(JSON.stringify(json)) }, ...files.slice(1)]
}

/** The config of the layer named `name` in a saved Sequential or functional model.json. */
export function layerConfig (json: Json, name: string): Json {
  const found = (json.modelTopology.config.layers as Json[]).find(l => l.config.name === name)
  if (found === undefined) throw new Error(`no layer ${name}`)
  return found.config
}

// tfjs's default orthogonal initializer needs the chained-ops build of tfjs-core.
const rnn = { recurrentInitializer: 'glorotNormal' } as const

/** One model per covered layer class, through the shapes a check has to follow to see its input sizes. */
export function layerZoo (): Record<string, () => tfl.LayersModel> {
  return {
    conv: () => tfl.sequential({
      layers: [
        L.conv2d({ inputShape: [28, 28, 1], filters: 8, kernelSize: 3, name: 'conv' }),
        L.maxPooling2d({ poolSize: 2, name: 'pool' }),
        L.zeroPadding2d({ padding: [[1, 2], [0, 1]], name: 'pad' }),
        L.depthwiseConv2d({ kernelSize: [3, 2], depthMultiplier: 2, padding: 'same', strides: 2, name: 'depthwise' }),
        // tfjs does not save SeparableConv2D's depth_multiplier, so only 1 reloads.
        L.separableConv2d({ filters: 6, kernelSize: 3, name: 'separable' }),
        L.upSampling2d({ size: [2, 3], name: 'up' }),
        L.conv2dTranspose({ filters: 5, kernelSize: 2, strides: 2, name: 'transpose' }),
        L.prelu({ sharedAxes: [1, 2], name: 'prelu' }),
        L.batchNormalization({ name: 'norm' }),
        L.averagePooling2d({ poolSize: [2, 2], name: 'avg' }),
        L.flatten({ name: 'flat' }),
        L.reshape({ targetShape: [-1, 5], name: 'reshape' }),
        L.conv1d({ filters: 7, kernelSize: 3, dilationRate: 2, name: 'conv1d' }),
        L.maxPooling1d({ poolSize: 2, name: 'pool1d' }),
        L.globalAveragePooling1d({ name: 'gap' }),
        L.repeatVector({ n: 4, name: 'repeat' }),
        L.permute({ dims: [2, 1], name: 'permute' }),
        L.flatten({ name: 'flat2' }),
        L.dense({ units: 3, activation: 'softmax', name: 'head' })
      ]
    }),
    conv3d: () => tfl.sequential({
      layers: [
        L.conv3d({ inputShape: [4, 4, 4, 2], filters: 3, kernelSize: [2, 2, 1], useBias: false, name: 'conv3d' }),
        L.conv3dTranspose({ filters: 2, kernelSize: 2, name: 'transpose3d' }),
        L.flatten({ name: 'flat' }),
        L.dense({ units: 2, name: 'head' })
      ]
    }),
    embedding: () => tfl.sequential({
      layers: [
        L.embedding({ inputDim: 100, outputDim: 16, inputLength: 6, name: 'emb' }),
        L.lstm({ ...rnn, units: 8, returnSequences: true, name: 'lstm' }),
        L.layerNormalization({ name: 'ln' }),
        L.flatten({ name: 'flat' }),
        L.dense({ units: 2, name: 'head' })
      ]
    }),
    recurrent: () => {
      const input = tfl.input({ shape: [10, 8], name: 'seq' })
      let x = L.timeDistributed({ layer: L.dense({ units: 8, name: 'td_dense' }), name: 'td' }).apply(input) as tfl.SymbolicTensor
      x = L.bidirectional({ layer: L.lstm({ ...rnn, units: 4, returnSequences: true, name: 'bl' }) as tfl.RNN, name: 'bi' }).apply(x) as tfl.SymbolicTensor
      x = L.gru({ ...rnn, units: 3, returnSequences: true, name: 'gru' }).apply(x) as tfl.SymbolicTensor
      x = L.simpleRNN({ ...rnn, units: 8, name: 'srnn' }).apply(x) as tfl.SymbolicTensor
      // A nested model, and a branch joined by a Concatenate.
      const inner = tfl.sequential({ name: 'inner', layers: [L.dense({ inputShape: [8], units: 5, name: 'inner_dense' }), L.batchNormalization({ name: 'inner_norm' })] })
      const a = inner.apply(x) as tfl.SymbolicTensor
      const b = L.dense({ units: 5, name: 'side' }).apply(x) as tfl.SymbolicTensor
      const joined = L.concatenate({ name: 'cat' }).apply([a, b]) as tfl.SymbolicTensor
      const out = L.dense({ units: 2, name: 'head' }).apply(joined) as tfl.SymbolicTensor
      return tfl.model({ inputs: input, outputs: out, name: 'recurrent' })
    }
  }
}
