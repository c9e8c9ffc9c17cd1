/** The benchmarks' large model: a 59 MB tfjs layers MLP (dense 1024-4096-2048-1024, random weights), as files to ingest. */
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import type { ModelFile } from '../../shared/model/types.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { modelFiles } from '../../node-runtime/examples/mnist-mlp.ts'

export async function wideModelFiles (): Promise<ModelFile[]> {
  await tfjsBackend()
  const model = tfl.sequential()
  model.add(tfl.layers.dense({ inputShape: [1024], units: 4096, name: 'wide_1' }))
  model.add(tfl.layers.dense({ units: 2048, name: 'wide_2' }))
  model.add(tfl.layers.dense({ units: 1024, name: 'wide_3' }))
  const files = await modelFiles(model)
  model.dispose()
  tf.disposeVariables()
  return files
}
