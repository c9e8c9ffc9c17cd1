/**
 * A round's result becomes the next version on top of the version it trained. A version
 * published in between (an ingest during the round) or an older base asked for would otherwise
 * be reverted silently, under a parent claim that is not true (found by review).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { signedManifestOf } from '../../coordinator/store/repository.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { modelFiles, mnistMlp } from '../../node-runtime/examples/mnist-mlp.ts'
import { ConflictError } from '../../shared/errors/errors.ts'
import type { RoundEvent } from '../../coordinator/rounds/rounds.ts'
import { rawClient } from '../helpers/raw-round-client.ts'

let root: string
let c: Coordinator
let at: string
let token: string
const events: RoundEvent[] = []

async function ingest (seed: number): Promise<number> {
  const model = mnistMlp({ hidden: [16], seed })
  try {
    return (await c.ingest('mnist', await modelFiles(model))).version
  } finally {
    model.dispose()
  }
}

beforeAll(async () => {
  await tfjsBackend()
  root = await mkdtemp(join(tmpdir(), 'blockfed-stale-base-'))
  c = await createCoordinator({ dataDir: join(root, 'c'), port: 0, partition: { targetBytes: 16 << 10, maxBytes: 1 << 20 }, onRoundEvent: e => events.push(e) })
  at = await c.start()
  token = await c.createToken('edge')
  expect(await ingest(1)).toBe(1)
})

afterAll(async () => {
  await c.stop()
  await rm(root, { recursive: true, force: true })
})

describe('a round publishes only on top of the version it trained', () => {
  it('fails, publishing nothing, when another version was published while it ran', async () => {
    const clients = [await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist'])]
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 2 }, deadlines: { trainMs: 60_000 } })
      for (let i = 0; i < 500 && !events.some(e => e.type === 'state' && e.roundId === started.id && e.state === 'collecting'); i++) await new Promise(resolve => setTimeout(resolve, 20))
      expect(await ingest(2)).toBe(2) // while the round on version 1 collects
      const config = clients[0]?.offers.find(o => o.id === started.id)
      if (config === undefined) throw new Error('no offer arrived')
      for (const client of clients) {
        const update = new Uint32Array(config.vectorLength) // a zero delta with weight 0.02
        update[update.length - 1] = Math.round(0.02 * config.fixedPoint.weightScale)
        await client.upload({ roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' }, new Uint8Array(update.buffer))
      }
      const summary = await started.done
      expect(summary.state).toBe('failed')
      expect(summary.reason).toMatch(/trained version 1, but version 2 is the latest now/)
      expect(c.repo.latest('mnist')?.version).toBe(2)
      expect(signedManifestOf(c.repo.latest('mnist') as NonNullable<ReturnType<Coordinator['repo']['latest']>>).manifest.parent).toBe(1)
    } finally {
      for (const client of clients) client.close()
    }
  })

  it('refuses to start a round on a version that is not the latest', async () => {
    await expect(c.rounds.start({ model: 'mnist', baseVersion: 1, trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 2 } })).rejects.toThrow(ConflictError)
    await expect(c.rounds.start({ model: 'mnist', baseVersion: 1, trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 2 } })).rejects.toThrow(/trains the latest version \(2\), not version 1/)
  })
})
