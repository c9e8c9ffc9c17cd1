/**
 * The coordinator's DP checks and accounting, driven through the real round manager's recovery
 * over a real SQLite store, with uploads encoded as node-runtime/fl/participant.ts encodes them.
 *
 * Norm check (coordinator/rounds/rounds.ts, aggregateAndPublish): the bound on a DP round's noisy
 * mean must allow for the noise honest clients add: each adds N(0, (zC)²/m) for m = minUploads,
 * so U > m uploads carry √(U/m) × z·C per coordinate. Reaching the base model means it passed.
 *
 * Accounting: a round whose noisy sum the coordinator has seen has spent its budget, published
 * or not; one that failed before its sum has not.
 */
import { describe, it, expect, afterAll } from 'vitest'
import type { RoundStore } from '../../coordinator/rounds/store.ts'
import { plainServer } from '../../coordinator/rounds/secure/none.ts'
import { roundFixedPoint } from '../../coordinator/rounds/fixed-point.ts'
import { roundConfigSchema, minUploadsOf, type RoundConfig } from '../../shared/rounds/config.ts'
import { cryptoUniform, encodeUpdate, fixedPointParams, sampleWeight } from '../../aggregation/fixed-point.ts'
import { clientNoiseSigma } from '../../aggregation/dp/noise.ts'
import { PASSED, outcome, recoverWithoutBase, recoveryStores } from '../helpers/recovery-store.ts'

const stores = recoveryStores('blockfed-dp-')
afterAll(stores.close)
const freshStore = stores.fresh

/**
 * A DP round of `clients` uploads noised for minUploads, left `collecting` in `store` as a killed
 * coordinator would: honest ones (‖Δ‖ = 0.5), or with `norm` unclipped deltas of that norm (a
 * client that skips its clip; in a masked or encrypted round nothing but the sum's check sees it).
 */
function storeRound (store: RoundStore, n: number, clients: number, minUploads: number, uploaded = clients, d = 200_000, extra: Record<string, unknown> = {}, norm = 0.5): RoundConfig {
  const ids = Array.from({ length: clients }, (_, i) => i.toString(16).padStart(64, '0'))
  const request = {
    clip: 1, secure: { mode: 'none' as const, graph: 'sparse' as const }, dp: { noiseMultiplier: 1 + n / 10, clip: 1, delta: 1e-5 },
    selection: { fraction: 1, minClients: 2, maxClients: 1000, cooldownMs: 0, minUploads }
  }
  // The fixed point the coordinator gives such a round: the clip and the noise's headroom above it.
  const fixedPoint = roundFixedPoint(request, ids)
  const config = roundConfigSchema.parse({
    model: 'm', id: `r_${n.toString(16).padStart(16, '0')}`, baseVersion: 1, manifestCid: 'bafyexampleexample', trainable: ['x'], tensors: ['x'],
    vectorLength: d + 1, clients: ids, fixedPoint, seed: '00'.repeat(32), ...request,
    ...extra
  })
  store.create(config)
  store.transition(config.id, 'collecting')
  const sigma = clientNoiseSigma({ noiseMultiplier: config.dp?.noiseMultiplier ?? 0, clip: 1, minClients: minUploadsOf(config) })
  for (const id of ids.slice(0, uploaded)) {
    const delta = new Float32Array(d).fill(norm / Math.sqrt(d))
    const encoded = encodeUpdate(delta, { params: fixedPoint, weight: sampleWeight({ samples: 600, sampleCap: config.sampleCap }), random: cryptoUniform(), dp: { l2Clip: Math.max(norm, Math.min(1, config.normBound)), sigma, valueClip: config.clip } })
    store.putUpload(config.id, id, { payload: new Uint8Array(encoded.buffer), signature: '' })
  }
  return config
}

async function honestRound (clients: number, minUploads: number): Promise<{ state: string, reason: string | null }> {
  const store = await freshStore()
  const config = storeRound(store, 1, clients, minUploads)
  await recoverWithoutBase(store)
  return outcome(store, config.id)
}

describe('DP round: the norm check on the noisy mean', () => {
  it('passes honest rounds with twice (and ten times) as many uploads as minUploads', async () => {
    expect((await honestRound(10, 5)).reason).toContain(PASSED)
    expect((await honestRound(20, 2)).reason).toContain(PASSED)
  })

  it('refuses a mean over the bound by more than the noise allows, and by less than twice its allowance (review 50a: only honest rounds were tested)', async () => {
    // 10 uploads for minUploads 5 at z = 1.1, C = 1, d = 200,000: the mean carries noise of norm
    // ≈ 69.6, allowed up to ≈ 70.6 above normBound (100). Deltas of norm 200 put the mean at
    // ≈ √(200² + 69.6²) ≈ 212, over 170.6, and under 241, what twice the allowance would pass.
    const store = await freshStore()
    // Every client weighs 1, as DP rounds are started (sampleCapOf): Σw = 10.
    const config = storeRound(store, 1, 10, 5, 10, 200_000, { sampleCap: 1 }, 200)
    expect(config.normBound).toBe(100)
    await recoverWithoutBase(store)
    const { state, reason } = outcome(store, config.id)
    expect(state).toBe('failed')
    expect(reason).toMatch(/aggregate delta norm 2[01]\d\.\d exceeds the bound 100/)
  })
})

describe('DP accounting', () => {
  it('charges a round that failed after its sum was taken, not one that failed before', async () => {
    const store = await freshStore()
    const summed = storeRound(store, 2, 4, 2, 4, 1000)
    // Short of its uploads, it is resumed (review 47b), waits for its uploaders to reconnect (half
    // the unmask deadline: none do here) and fails without a sum.
    const short = storeRound(store, 3, 4, 3, 2, 1000, { deadlines: { acceptMs: 1000, setupMs: 1000, trainMs: 1000, unmaskMs: 400 } })
    await recoverWithoutBase(store)
    expect(store.get(summed.id)).toMatchObject({ state: 'failed', reason: expect.stringContaining(PASSED) })
    await expect.poll(() => store.get(short.id)?.state, { timeout: 10_000 }).toBe('failed')
    expect(store.get(short.id)?.reason).toContain('resumed after a restart with 2 upload(s) by the training deadline, at least 3 needed')
    expect(store.dpNoiseMultipliers('m')).toEqual([summed.dp?.noiseMultiplier])
  })
})

describe('mode none checks every coordinate', () => {
  it('refuses an update with one coordinate past the clip, though its norm is within the bound', () => {
    const clients = ['a', 'b', 'c'].map(c => c.repeat(64))
    const fixedPoint = fixedPointParams({ clip: 1, clients: clients.length })
    const config = roundConfigSchema.parse({
      model: 'm', id: 'r_00000000000000ff', baseVersion: 1, manifestCid: 'bafyexampleexample', trainable: ['x'], tensors: ['x'],
      vectorLength: 101, clients, fixedPoint, seed: '00'.repeat(32), clip: 1, normBound: 1000,
      secure: { mode: 'none', graph: 'sparse' }, selection: { fraction: 1, minClients: 2, maxClients: 1000, cooldownMs: 0 }
    })
    const server = plainServer(config)
    const honest = encodeUpdate(new Float32Array(100).fill(0.9), { params: fixedPoint, weight: 1, random: cryptoUniform() })
    expect(() => server.checkUpload(clients[0] as string, new Uint8Array(honest.buffer))).not.toThrow()
    // Three clients' worth of room in one coordinate: norm 3, far under the bound of 1000, but
    // two such uploads would wrap the ring sum.
    const crafted = honest.slice()
    crafted[7] = Math.ceil(3 * fixedPoint.scale)
    expect(() => server.checkUpload(clients[1] as string, new Uint8Array(crafted.buffer))).toThrow(/coordinate 7 is 3\.000, outside the round's clip ±1/)
  })
})
