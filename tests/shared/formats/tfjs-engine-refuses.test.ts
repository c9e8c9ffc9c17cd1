/**
 * The reviewer's crash, end to end on a runtime's engine path: a model.json saying units
 * 15000000 for a Dense layer whose kernel is [784, 128] used to make tfjs-layers allocate
 * 3.8 GiB, then fail inside the wasm backend so that the next model loaded in the process
 * crashed it. loadTfjsEngine must refuse it before tfjs allocates anything, with an error that
 * says what is wrong, and keep loading good models afterwards.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import * as tf from '@tensorflow/tfjs-core'
import type { LayersModel } from '@tensorflow/tfjs-layers'
import { disposeTfjsEngine, loadTfjsEngine, tfjsBackend } from '../../../node-runtime/engines/tfjs.ts'
import { mnistMlp, modelFiles } from '../../../node-runtime/examples/mnist-mlp.ts'
import { InvalidModelError } from '../../../shared/errors/errors.ts'
import { readModel } from '../../../shared/formats/index.ts'
import type { TfjsTopology } from '../../../shared/model/types.ts'

let backend = ''
beforeAll(async () => { backend = await tfjsBackend() })

/** The model.json with the Dense layer `layer`'s units replaced. */
function withUnits (topology: TfjsTopology, layer: string, units: number): TfjsTopology {
  const json = JSON.parse(topology.modelJson)
  const found = json.modelTopology.config.layers.find((l: { config: { name: string } }) => l.config.name === layer)
  found.config.units = units
  return { ...topology, modelJson: JSON.stringify(json) }
}

describe('loadTfjsEngine and a model.json whose layers disagree with its weights', () => {
  it('refuses units 15000000 over a [784, 128] kernel, then loads and runs a good model in the same process', async () => {
    const original = mnistMlp({ seed: 3 })
    const x = tf.randomUniform([4, 784], 0, 1, 'float32', 11)
    const want = Array.from(await (original.predict(x) as tf.Tensor).data())
    const good = await readModel(await modelFiles(original))
    original.dispose()
    const topology = good.topology as TfjsTopology
    const bad = withUnits(topology, 'hidden_1', 15_000_000)

    // Twice: the crash the reviewer saw came on the load after the failed one.
    for (let round = 0; round < 2; round++) {
      const rss = process.memoryUsage().rss
      const refused = await loadTfjsEngine('tfjs-layers', bad, good.weights).then(() => undefined, (e: unknown) => e)
      expect(refused).toBeInstanceOf(InvalidModelError)
      expect((refused as Error).message)
        .toBe('model.json: layer "hidden_1" (Dense) has units 15000000 but its kernel in the weights manifest is [784, 128]')
      // Refused before tfjs built the layer (a 47 GB kernel; the wasm backend reached 3.8 GiB trying).
      expect(process.memoryUsage().rss - rss).toBeLessThan(256 * 2 ** 20)

      const engine = await loadTfjsEngine('tfjs-layers', topology, good.weights)
      const got = Array.from(await ((engine as { model: LayersModel }).model.predict(x) as tf.Tensor).data())
      expect(got).toHaveLength(40)
      for (const [i, v] of got.entries()) expect(v).toBeCloseTo(want[i]!, 6)
      disposeTfjsEngine(engine)
    }
    x.dispose()
    console.log(`tfjs backend: ${backend}`)
  })
})
