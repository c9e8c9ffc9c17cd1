/**
 * NaiveMix rounds end to end (shared/training/mean-mix.ts): a real coordinator and three real
 * runtimes over loopback, masking on. The first round with `meanMix` gathers the class statistics
 * through its secure sum and the coordinator keeps the pooled class means, which equal the means
 * of the three runtimes' pooled digits; the next round offers them, gathers nothing, and its
 * runtimes train with them; runtimes refuse to give their statistics to a second sum. Requests
 * NaiveMix cannot serve are refused with their reason.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { modelFiles, mnistMlp } from '../../node-runtime/examples/mnist-mlp.ts'
import { fromBase64 } from '../../shared/crypto/bytes.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { classStatsLength } from '../../shared/training/mean-mix.ts'
import type { RoundConfig } from '../../shared/rounds/config.ts'
import { secureClients } from '../../node-runtime/fl/secure-client.ts'
import { STATISTICS_GIVEN_FILE } from '../../node-runtime/fl/given.ts'
import { mnistSlice, startParticipants, stopParticipants, type TestParticipant } from '../helpers/fl.ts'

const SIZE = 100
const MIX = { lambda: 0.05, classes: 10, features: 784 }

let root: string
let c: Coordinator
let url: string
let participants: TestParticipant[]

function query<T> (sql: string, ...params: string[]): T | undefined {
  const db = new DatabaseSync(join(root, 'c', 'coordinator.sqlite'), { readOnly: true })
  try {
    return db.prepare(sql).get(...params) as T | undefined
  } finally {
    db.close()
  }
}
const configOf = (id: string): RoundConfig => JSON.parse((query<{ config: string }>('SELECT config FROM rounds WHERE id = ?', id) as { config: string }).config) as RoundConfig

beforeAll(async () => {
  await tfjsBackend()
  root = await mkdtemp(join(tmpdir(), 'blockfed-mean-mix-'))
  c = await createCoordinator({ dataDir: join(root, 'c'), port: 0 })
  url = await c.start()
  const edge = await c.createToken('edge')
  const model = mnistMlp({ hidden: [16] })
  await c.ingest('mnist', await modelFiles(model))
  model.dispose()
  participants = await startParticipants(url, edge, root, 3, { size: SIZE, extra: () => ({ secureClient: secureClients() }) })
}, 60_000)

afterAll(async () => {
  await stopParticipants(participants ?? [])
  await c?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('NaiveMix rounds', () => {
  it('gathers the pooled class means through the first round\'s secure sum, then offers them', async () => {
    const request = { model: 'mnist', meanMix: MIX, secure: { mode: 'masking' as const }, selection: { minClients: 3 } }
    const first = await c.rounds.run(request)
    expect(first).toMatchObject({ state: 'published', participants: expect.objectContaining({ uploaded: 3 }) })
    const gathering = configOf(first.id)
    expect(gathering.statsLength).toBe(classStatsLength(10, 784))
    expect(gathering.classMeans).toBeNull()
    // Each runtime wrote down, before its upload left, that it gave them.
    for (let i = 0; i < 3; i++) expect(JSON.parse(await readFile(join(root, `runtime-${i}`, STATISTICS_GIVEN_FILE), 'utf8'))).toEqual(['mnist\n784'])

    // The means kept are those of the three runtimes' 300 digits together, to fixed-point precision.
    const stored = query<{ means: Uint8Array, shares: Uint8Array, round_id: string }>('SELECT means, shares, round_id FROM class_means WHERE model = ?', 'mnist')
    expect(stored?.round_id).toBe(first.id)
    const means = new Float32Array(stored!.means.slice().buffer)
    const shares = new Float32Array(stored!.shares.slice().buffer)
    const sums = new Float64Array(10 * 784)
    const counts = new Float64Array(10)
    for (let i = 0; i < 3; i++) {
      const d = mnistSlice(i, SIZE)
      for (let r = 0; r < d.count; r++) {
        const y = d.ys[r] as number
        counts[y]!++
        for (let f = 0; f < 784; f++) sums[y * 784 + f]! += d.xs[r * 784 + f] as number
      }
    }
    let worst = 0
    for (let y = 0; y < 10; y++) {
      expect(Math.abs((shares[y] as number) - (counts[y] as number) / 300)).toBeLessThan(1e-6)
      for (let f = 0; f < 784; f++) worst = Math.max(worst, Math.abs((means[y * 784 + f] as number) - (sums[y * 784 + f] as number) / (counts[y] as number)))
    }
    expect(worst).toBeLessThan(1e-4)
    expect(Math.max(...means)).toBeGreaterThan(0.3) // digits, not zeros

    const second = await c.rounds.run(request)
    expect(second).toMatchObject({ state: 'published', participants: expect.objectContaining({ uploaded: 3 }) })
    const mixing = configOf(second.id)
    expect(mixing.statsLength).toBe(0)
    expect(mixing.vectorLength).toBe(gathering.vectorLength - classStatsLength(10, 784))
    expect(new Float32Array(fromBase64(mixing.classMeans!.means).slice().buffer)).toEqual(means)
    // Each runtime trained with them: none declined.
    for (const p of participants) expect(p.events).toContainEqual(expect.objectContaining({ type: 'uploaded', roundId: second.id }))

    // A coordinator that asks again (here: its means deleted behind its back) gets no statistics
    // from runtimes that gave theirs to a published round: a second sum over another set of
    // clients could be subtracted from the first. They decline, saying why, and the round fails.
    const db = new DatabaseSync(join(root, 'c', 'coordinator.sqlite'))
    try {
      db.prepare('DELETE FROM class_means WHERE model = ?').run('mnist')
    } finally {
      db.close()
    }
    const third = await c.rounds.run(request)
    expect(configOf(third.id).statsLength).toBe(classStatsLength(10, 784))
    expect(third).toMatchObject({ state: 'failed', participants: expect.objectContaining({ uploaded: 0 }) })
    for (const p of participants) expect(p.events).toContainEqual(expect.objectContaining({ type: 'error', roundId: third.id, message: expect.stringMatching(/already gave its class statistics for mnist to a round/) }))
  }, 120_000)

  it('fails a gathering round whose sum holds made-up statistics, and keeps no means from it', async () => {
    const dir = join(root, 'poisoned')
    const c2 = await createCoordinator({ dataDir: dir, port: 0 })
    const at = await c2.start()
    const model = mnistMlp({ hidden: [16] })
    await c2.ingest('mnist', await modelFiles(model))
    model.dispose()
    // Runtime 2 puts a share of −0.5 for class 0 in its (weighted) update: within the clip, so the
    // masked sum cannot show it, but no data gives it.
    const ps = await startParticipants(at, await c2.createToken('edge'), dir, 3, {
      size: SIZE,
      extra: i => ({
        secureClient: secureClients(),
        ...(i === 2 ? { tamper: (encoded: Uint32Array, config: RoundConfig) => { encoded[config.vectorLength - 1 - config.statsLength + 10 * 784] = (-Math.round(0.5 * config.fixedPoint.scale)) >>> 0; return encoded } } : {})
      })
    })
    try {
      const round = await c2.rounds.run({ model: 'mnist', meanMix: MIX, selection: { minClients: 3 } })
      expect(round.state).toBe('failed')
      expect(round.reason).toMatch(/the class shares sum to .*, not 1: a client sent statistics no data gives; nothing is kept/)
      const db = new DatabaseSync(join(dir, 'coordinator.sqlite'), { readOnly: true })
      try {
        expect(db.prepare('SELECT COUNT(*) AS n FROM class_means').get()).toEqual({ n: 0 })
      } finally {
        db.close()
      }
    } finally {
      await stopParticipants(ps)
      await c2.stop()
    }
  }, 120_000)

  it('refuses NaiveMix with DP, a label-skew loss, a regression loss or means too large to offer', async () => {
    const base = { model: 'mnist', meanMix: MIX, selection: { minClients: 3 } }
    await expect(c.rounds.run({ ...base, dp: { noiseMultiplier: 1, clip: 1 } })).rejects.toThrow(/meanMix cannot be combined with dp/)
    await expect(c.rounds.run({ ...base, labelSkew: { method: 'fedrs' } })).rejects.toThrow(InvalidInputError)
    await expect(c.rounds.run({ ...base, loss: 'meanSquaredError' })).rejects.toThrow(/needs loss sparseCategoricalCrossentropy/)
    // Each client's statistics may reach the coordinator only inside a sum of several, unclipped.
    await expect(c.rounds.run({ ...base, secure: { mode: 'none' } })).rejects.toThrow(/meanMix needs secure aggregation/)
    await expect(c.rounds.run({ ...base, selection: { minClients: 3, minUploads: 1 } })).rejects.toThrow(/minUploads ≥ 2/)
    await expect(c.rounds.run({ ...base, clip: 0.5 })).rejects.toThrow(/meanMix needs clip ≥ 1/)
    const post = await fetch(`${url}/v1/rounds`, {
      method: 'POST',
      headers: { authorization: `Bearer ${c.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...base, meanMix: { lambda: 0.05, classes: 1000, features: 784 } })
    })
    expect(post.status).toBe(400)
    expect((await post.json() as { message: string }).message).toMatch(/classes × features must be at most 262144/)
    // The coordinator still runs rounds.
    expect(await c.rounds.run({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 3 } })).toMatchObject({ state: 'published' })
  }, 120_000)
})
