/**
 * The coordinator's sanity bound on a DP round's noisy mean (coordinator/rounds/rounds.ts,
 * aggregateAndPublish) must allow for the noise honest clients add: each adds N(0, (zC)²/m) for
 * m = minUploads, so U > m uploads carry √(U/m) × z·C per coordinate. Driven through the real
 * round manager's recovery over an in-memory store, with uploads encoded as
 * node-runtime/fl/participant.ts encodes them; reaching the base model means the check passed.
 */
import { describe, it, expect } from 'vitest'
import { roundManager } from '../../coordinator/rounds/rounds.ts'
import { plainServer } from '../../coordinator/rounds/secure/none.ts'
import type { RoundStore } from '../../coordinator/rounds/store.ts'
import { roundConfigSchema, minUploadsOf } from '../../shared/rounds/config.ts'
import { cryptoUniform, encodeUpdate, fixedPointParams, sampleWeight } from '../../aggregation/fixed-point.ts'
import { clientNoiseSigma } from '../../aggregation/dp/noise.ts'

const PASSED = 'the norm check passed: the base model was asked for'

async function honestRound (clients: number, minUploads: number): Promise<{ state: string, reason: string | null }> {
  const d = 200_000
  const ids = Array.from({ length: clients }, (_, i) => i.toString(16).padStart(64, '0'))
  const fixedPoint = fixedPointParams({ clip: 1, clients })
  const config = roundConfigSchema.parse({
    model: 'm', id: 'r_0123456789abcdef', baseVersion: 1, manifestCid: 'bafyexampleexample', trainable: ['x'], tensors: ['x'],
    vectorLength: d + 1, clients: ids, fixedPoint, seed: '00'.repeat(32),
    secure: { mode: 'none', graph: 'sparse' }, dp: { noiseMultiplier: 1, clip: 1, delta: 1e-5 },
    selection: { fraction: 1, minClients: 2, maxClients: 1000, cooldownMs: 0, minUploads }
  })
  const sigma = clientNoiseSigma({ noiseMultiplier: 1, clip: 1, minClients: minUploadsOf(config) })
  const uploads = new Map<string, Uint8Array>()
  for (const id of ids) {
    // ‖Δ‖ = 0.5, well inside every bound: only the noise can break the check.
    const delta = new Float32Array(d).fill(0.5 / Math.sqrt(d))
    const encoded = encodeUpdate(delta, { params: fixedPoint, weight: sampleWeight({ samples: 600, sampleCap: config.sampleCap }), random: cryptoUniform(), dp: { l2Clip: Math.min(1, config.normBound), sigma } })
    uploads.set(id, new Uint8Array(encoded.buffer))
  }
  const row = { id: config.id, model: 'm', baseVersion: 1, config, state: 'collecting', reason: null as string | null, version: null, metrics: null, secureState: null }
  const store = {
    unfinished: () => [row],
    uploads: () => uploads,
    get: () => row,
    deleteUploads: () => {},
    dpNoiseMultipliers: () => [],
    strategyState: () => undefined,
    transition: (_id: string, to: string, extra: { reason?: string } = {}) => { row.state = to; row.reason = extra.reason ?? row.reason }
  } as unknown as RoundStore
  const manager = roundManager({
    store,
    repo: {} as never,
    hub: () => ({ get: () => undefined }) as never,
    publish: async () => { throw new Error('unreached') },
    readBase: async () => { throw new Error(PASSED) },
    secureServer: async c => plainServer(c)
  })
  await manager.recover()
  return { state: row.state, reason: row.reason }
}

describe('DP round: the norm check on the noisy mean', () => {
  it('passes honest rounds with twice (and ten times) as many uploads as minUploads', async () => {
    expect((await honestRound(10, 5)).reason).toContain(PASSED)
    expect((await honestRound(20, 2)).reason).toContain(PASSED)
  })
})
