/**
 * The coordinator the round-protocol tests run against: a fresh data dir, small blocks, every
 * round event pushed to `events`, an edge token, and a 784-16-10 mnist model ingested as `mnist`.
 */
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import type { RoundEvent } from '../../coordinator/rounds/rounds.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { modelFiles, mnistMlp } from '../../node-runtime/examples/mnist-mlp.ts'

export async function mnistRoundCoordinator (name: string, events: RoundEvent[]): Promise<{ root: string, c: Coordinator, at: string, token: string }> {
  await tfjsBackend()
  const root = await mkdtemp(join(tmpdir(), `blockfed-${name}-`))
  const c = await createCoordinator({ dataDir: join(root, 'c'), port: 0, partition: { targetBytes: 16 << 10, maxBytes: 1 << 20 }, onRoundEvent: e => events.push(e) })
  const at = await c.start()
  const token = await c.createToken('edge')
  const model = mnistMlp({ hidden: [16] })
  await c.ingest('mnist', await modelFiles(model))
  model.dispose()
  return { root, c, at, token }
}
