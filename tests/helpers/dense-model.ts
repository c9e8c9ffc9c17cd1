/** Small tfjs layers models built in the test, as the files a coordinator ingests. */
import * as tfl from '@tensorflow/tfjs-layers'
import { modelFiles } from '../../node-runtime/examples/mnist-mlp.ts'
import type { ModelFile } from '../../shared/model/types.ts'

/**
 * A stack of dense layers over `inputs` features, each `[name, units]` or `[name, units, seed]`
 * (a seeded layer starts from the same weights on every run; an unseeded one from tfjs' default).
 */
export async function denseModelFiles (inputs: number, layers: Array<[name: string, units: number, seed?: number]>): Promise<ModelFile[]> {
  const model = tfl.sequential()
  for (const [i, [name, units, seed]] of layers.entries()) {
    model.add(tfl.layers.dense({
      ...(i === 0 ? { inputShape: [inputs] } : {}),
      units,
      name,
      ...(seed === undefined ? {} : { kernelInitializer: tfl.initializers.randomNormal({ seed }) })
    }))
  }
  const files = await modelFiles(model)
  model.dispose()
  return files
}
