/**
 * Bounds the coordinator puts on what clients send, each of which review 39b could remove with
 * every test green:
 *  - mode none (coordinator/rounds/secure/none.ts): with DP, an upload's norm is held to the DP
 *    clip C, not to the round's (larger) normBound: C is the sensitivity the privacy accounting
 *    charges for, so one client past it gets less privacy protection than reported;
 *  - mode none: a client's weight is at most 1 (sampleWeight's range); a larger one is a client
 *    giving itself the say of several in the weighted mean;
 *  - every mode (coordinator/rounds/rounds.ts, aggregateAndPublish): the aggregate mean delta is
 *    held to normBound. In masking and Paillier rounds the coordinator never sees an upload alone,
 *    so this is the only check of their size; it is driven here through the round manager's
 *    recovery of a round whose uploads the store already holds (tests/helpers/recovery-store.ts).
 */
import { describe, it, expect, afterAll } from 'vitest'
import { plainServer } from '../../coordinator/rounds/secure/none.ts'
import { roundConfigSchema, minUploadsOf, type RoundConfig } from '../../shared/rounds/config.ts'
import { cryptoUniform, encodeUpdate, fixedPointParams } from '../../aggregation/fixed-point.ts'
import { clientNoiseSigma } from '../../aggregation/dp/noise.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { PASSED, outcome, recoverWithoutBase, recoveryStores } from '../helpers/recovery-store.ts'

const D = 100
const clients = ['a', 'b', 'c'].map(c => c.repeat(64))
const fixedPoint = fixedPointParams({ clip: 1, clients: clients.length })

function roundConfig (extra: Record<string, unknown>): RoundConfig {
  return roundConfigSchema.parse({
    model: 'm', id: 'r_00000000000000ee', baseVersion: 1, manifestCid: 'bafyexampleexample', trainable: ['x'], tensors: ['x'],
    vectorLength: D + 1, clients, fixedPoint, seed: '00'.repeat(32), clip: 1,
    secure: { mode: 'none', graph: 'sparse' }, selection: { fraction: 1, minClients: 2, maxClients: 1000, cooldownMs: 0 },
    ...extra
  })
}

/** A delta of L2 norm `norm`, spread evenly (each coordinate norm/√D, within the clip of 1). */
const evenDelta = (norm: number): Float32Array => new Float32Array(D).fill(norm / Math.sqrt(D))
const bytes = (v: Uint32Array): Uint8Array => new Uint8Array(v.buffer)

describe('mode none, per upload', () => {
  it('with DP, holds an upload to the DP clip, not to the larger normBound', () => {
    const dp = { noiseMultiplier: 0.1, clip: 0.5, delta: 1e-5 }
    const config = roundConfig({ normBound: 100, dp })
    const server = plainServer(config)
    const sigma = clientNoiseSigma({ noiseMultiplier: dp.noiseMultiplier, clip: dp.clip, minClients: minUploadsOf(config) })
    // An honest DP client: clipped to 0.5, then noised.
    const honest = encodeUpdate(evenDelta(3), { params: fixedPoint, weight: 1, random: mulberry32(7), dp: { l2Clip: dp.clip, sigma, valueClip: config.clip } })
    expect(() => server.checkUpload(clients[0] as string, bytes(honest))).not.toThrow()
    // Unclipped: norm 3, six times the sensitivity the accountant charges for, far under normBound 100.
    const unclipped = encodeUpdate(evenDelta(3), { params: fixedPoint, weight: 1, random: mulberry32(7) })
    expect(() => server.checkUpload(clients[1] as string, bytes(unclipped))).toThrow(/update norm 3\.\d+ exceeds the round's bound 0\.5/)
    // Unclipped at 1.5 and noised: its norm (≈ 1.54) is past the clip plus the noise's allowance
    // (0.5 + 0.58), and under three times that allowance (review 50a: only 6 × was tried).
    const over = encodeUpdate(evenDelta(1.5), { params: fixedPoint, weight: 1, random: mulberry32(8), dp: { l2Clip: 1e9, sigma, valueClip: config.clip } })
    expect(() => server.checkUpload(clients[2] as string, bytes(over))).toThrow(/update norm 1\.5\d+ exceeds the round's bound 0\.5/)
  })

  it('without DP, holds an upload to normBound itself, allowing only the rounding', () => {
    const server = plainServer(roundConfig({ normBound: 1 }))
    const within = encodeUpdate(evenDelta(0.99), { params: fixedPoint, weight: 1, random: mulberry32(9) })
    expect(() => server.checkUpload(clients[0] as string, bytes(within))).not.toThrow()
    const over = encodeUpdate(evenDelta(1.2), { params: fixedPoint, weight: 1, random: mulberry32(9) })
    expect(() => server.checkUpload(clients[1] as string, bytes(over))).toThrow(/update norm 1\.200 exceeds the round's bound 1/)
    // Weighed ½: held to half the bound (the weighted update is what the mean adds up).
    const half = encodeUpdate(evenDelta(1.2), { params: fixedPoint, weight: 0.5, random: mulberry32(9) })
    expect(() => server.checkUpload(clients[2] as string, bytes(half))).toThrow(/update norm 1\.200 exceeds the round's bound 1/)
  })

  it('refuses a client weight above 1', () => {
    const server = plainServer(roundConfig({ normBound: 100 }))
    const honest = encodeUpdate(evenDelta(0.01), { params: fixedPoint, weight: 1, random: cryptoUniform() })
    expect(() => server.checkUpload(clients[0] as string, bytes(honest))).not.toThrow()
    const heavy = honest.slice()
    heavy[D] = 2 * fixedPoint.weightScale
    expect(() => server.checkUpload(clients[1] as string, bytes(heavy))).toThrow(/client weight 2 is outside \(0, 1\]/)
  })
})

const stores = recoveryStores('blockfed-bounds-')
afterAll(stores.close)

/** Recovers a `collecting` round of two uploads of norm `norm`; its state and reason after. */
async function recovered (norm: number): Promise<{ state: string, reason: string | null }> {
  const store = await stores.fresh()
  const config = roundConfig({ normBound: 1 })
  store.create(config)
  store.transition(config.id, 'collecting')
  for (const id of clients.slice(0, 2)) {
    const encoded = encodeUpdate(evenDelta(norm), { params: fixedPoint, weight: 1, random: cryptoUniform() })
    store.putUpload(config.id, id, { payload: bytes(encoded), signature: '' })
  }
  await recoverWithoutBase(store)
  return outcome(store, config.id)
}

describe('the aggregate mean delta', () => {
  it('is refused past normBound, before the base model is read (a masked or encrypted sum is checked nowhere else)', async () => {
    expect(await recovered(0.5)).toEqual({ state: 'failed', reason: expect.stringContaining(PASSED) })
    const over = await recovered(5)
    expect(over.state).toBe('failed')
    expect(over.reason).toMatch(/aggregate delta norm 5\.\d+ exceeds the bound 1/)
  })
})
