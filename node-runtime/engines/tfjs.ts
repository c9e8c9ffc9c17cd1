/**
 * tfjs in Node: `@tensorflow/tfjs-node` when it is installed (it is optional: its install
 * downloads libtensorflow), else the wasm backend, with the cpu backend registered for kernels
 * wasm lacks. Models are built from verified weights through an in-memory IOHandler, so no
 * plaintext weight ever touches the disk.
 */
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import { loadGraphModel } from '@tensorflow/tfjs-converter'
import { loadLayersModel } from '@tensorflow/tfjs-layers'
import type { LoadedEngine } from '../../shared/runtime/lifecycle.ts'
import type { TfjsTopology } from '../../shared/model/types.ts'
import { tfjsArtifacts } from '../../shared/formats/index.ts'

let backend: Promise<string> | undefined

/** Picks and initialises the fastest available backend once per process. */
export async function tfjsBackend (): Promise<string> {
  backend ??= (async () => {
    try {
      await import('@tensorflow/tfjs-node' as string)
      if (await tf.setBackend('tensorflow')) return 'tensorflow'
    } catch { /* optional dependency absent: fall through to wasm */ }
    await import('@tensorflow/tfjs-backend-wasm')
    if (await tf.setBackend('wasm')) return 'wasm'
    await tf.setBackend('cpu')
    return 'cpu'
  })()
  const name = await backend
  if (tf.getBackend() !== name) await tf.setBackend(name)
  return name
}

export async function loadTfjsEngine (format: 'tfjs-layers' | 'tfjs-graph', topology: TfjsTopology, weights: Uint8Array): Promise<LoadedEngine> {
  await tfjsBackend()
  // tfjsArtifacts refuses a model.json whose layer configs disagree with its weights: tfjs-layers
  // would build those layers at the claimed size before comparing anything (GiBs, and a wasm
  // backend left broken for the next model).
  const artifacts = tfjsArtifacts(topology, weights)
  const handler: tf.io.IOHandler = { load: async () => artifacts }
  if (format === 'tfjs-layers') return { kind: 'tfjs-layers', model: await loadLayersModel(handler) }
  return { kind: 'tfjs-graph', model: await loadGraphModel(handler) }
}

export function disposeTfjsEngine (engine: LoadedEngine): void {
  if (engine.kind === 'tfjs-layers' || engine.kind === 'tfjs-graph') engine.model.dispose()
}
