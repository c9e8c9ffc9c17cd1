/**
 * Default model code for a model that registers none: inputs go to the engine as they are
 * (tfjs tensors, or onnxruntime feeds) and outputs come back as the engine returns them, as
 * plain typed arrays for tfjs. Lets `blockfed pull`, tests and benchmarks run any model.
 */
import * as tf from '@tensorflow/tfjs-core'
import type { LoadedEngine, ModelCode } from './lifecycle.ts'

export interface TensorData {
  data: Float32Array | Int32Array | Uint8Array
  shape: number[]
}

/** tfjs: a named or positional map of tensors in; every output's data and shape out. */
export function tfjsPassthrough (): ModelCode<tf.Tensor | tf.Tensor[] | Record<string, tf.Tensor>, tf.Tensor | tf.Tensor[] | Record<string, tf.Tensor>, tf.Tensor[], TensorData[]> {
  let engine: LoadedEngine | undefined
  return {
    init: context => { engine = context.engine },
    preProcess: input => input,
    async run (input) {
      if (engine?.kind === 'tfjs-layers') {
        const out = engine.model.predict(input as tf.Tensor | tf.Tensor[])
        return Array.isArray(out) ? out : [out]
      }
      if (engine?.kind === 'tfjs-graph') {
        const out = await engine.model.executeAsync(input)
        return Array.isArray(out) ? out : [out]
      }
      throw new Error('tfjs passthrough used without a tfjs engine')
    },
    async postProcess (outputs) {
      const result = await Promise.all(outputs.map(async t => ({ data: await t.data() as TensorData['data'], shape: t.shape })))
      tf.dispose(outputs)
      return result
    },
    release: () => { engine = undefined }
  }
}

/** onnxruntime: feeds in, the session's output map out. */
export function onnxPassthrough (): ModelCode<Record<string, unknown>, Record<string, unknown>, Record<string, unknown>, Record<string, unknown>> {
  let engine: LoadedEngine | undefined
  return {
    init: context => { engine = context.engine },
    preProcess: feeds => feeds,
    async run (feeds) {
      if (engine?.kind !== 'onnx') throw new Error('onnx passthrough used without an onnx engine')
      return await engine.session.run(feeds)
    },
    postProcess: outputs => outputs,
    release: () => { engine = undefined }
  }
}
