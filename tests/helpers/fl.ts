/** Node runtimes taking part in rounds, each with its own slice of the mnist package's digits. */
import { join } from 'node:path'
import { createNodeRuntime, type NodeRuntime } from '../../node-runtime/runtime.ts'
import { createParticipant, type Participant, type ParticipantEvent, type ParticipantOptions } from '../../node-runtime/fl/participant.ts'
import { clientIdentity } from '../../node-runtime/fl/identity.ts'
import { mnistSplit, IMAGE_SIZE } from '../../node-runtime/data/mnist.ts'
import type { TrainingData } from '../../shared/training/data.ts'

export interface TestParticipant {
  participant: Participant
  runtime: NodeRuntime
  events: ParticipantEvent[]
}

export function mnistSlice (index: number, size: number): TrainingData {
  const { train } = mnistSplit()
  return {
    xs: train.images.slice(index * size * IMAGE_SIZE, (index + 1) * size * IMAGE_SIZE),
    ys: train.labels.slice(index * size, (index + 1) * size),
    count: size,
    featureShape: [IMAGE_SIZE]
  }
}

export async function startParticipants (url: string, token: string, root: string, count: number, options: {
  model?: string
  size?: number
  extra?: (i: number) => Partial<ParticipantOptions>
  /** Index of the first runtime (its folder `runtime-<i>`, hence its key and its data slice). */
  from?: number
} = {}): Promise<TestParticipant[]> {
  const model = options.model ?? 'mnist'
  const out: TestParticipant[] = []
  for (let i = options.from ?? 0; i < (options.from ?? 0) + count; i++) {
    const dir = join(root, `runtime-${i}`)
    const runtime = await createNodeRuntime({ dataDir: dir, token })
    const config = { version: '1.0.0', tag: 'fl', runtime: 'tensorflow', source: 'blockfed', modelDir: model, modelName: model, updateURL: url }
    const data = mnistSlice(i, options.size ?? 200)
    const events: ParticipantEvent[] = []
    const participant = createParticipant({
      url,
      token,
      identity: await clientIdentity(dir),
      stateDir: dir,
      models: { [model]: { data: () => data } },
      fetchVersion: async (_m, v, signal) => await runtime.fetch(config, v, signal),
      onEvent: e => events.push(e),
      reconnectMs: 200,
      ...options.extra?.(i)
    })
    await participant.start()
    await participant.ready()
    out.push({ participant, runtime, events })
  }
  return out
}

export async function stopParticipants (ps: TestParticipant[]): Promise<void> {
  for (const p of ps) { await p.participant.stop(); await p.runtime.stop() }
}
