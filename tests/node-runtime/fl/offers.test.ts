/**
 * Offers a real coordinator would not make, from a scripted one (tests/helpers/fake-rounds-socket.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createParticipant, type Participant, type ParticipantOptions } from '../../../node-runtime/fl/participant.ts'
import type { RoundConfig } from '../../../shared/rounds/config.ts'
import { generateSigningKey, type SigningKeyPair } from '../../../shared/crypto/sign.ts'
import { toHex } from '../../../shared/crypto/bytes.ts'
import { fakeRoundsSocket, type FakeRoundsSocket } from '../../helpers/fake-rounds-socket.ts'
import { roundOffer } from '../../helpers/round-offer.ts'

/** A round offer from the scripted coordinator to `identity` alone. */
const offer = (identity: { publicKey: Uint8Array }, overrides: Record<string, unknown>): RoundConfig => roundOffer({ clients: [toHex(identity.publicKey)], ...overrides })

let fake: FakeRoundsSocket
beforeAll(async () => { fake = await fakeRoundsSocket() })
afterAll(async () => { await fake.close() })

/** A participant of `identity` holding model m whose data and fetch must go unused: what it fetched anyway goes to `fetched`. */
const untouched = (identity: SigningKeyPair, fetched: string[], extra: Partial<ParticipantOptions> = {}): Participant => createParticipant({
  url: fake.url,
  token: 't',
  identity,
  models: { m: { data: () => { throw new Error('no training is expected here') } } },
  fetchVersion: async model => { fetched.push(model); throw new Error('no fetch is expected here') },
  reconnectMs: 100,
  ...extra
})

describe('offers', () => {
  it('an offer for a model named like an Object property ("constructor") is declined as a model without data', async () => {
    const identity = generateSigningKey()
    const fetched: string[] = []
    const participant = untouched(identity, fetched)
    await participant.start()
    try {
      await participant.ready()
      const config = offer(identity, { model: 'constructor' })
      fake.send({ type: 'offer', config })
      const answer = await fake.frame(f => f.roundId === config.id)
      // Before: Object.prototype.constructor was taken for its data; accepted, then fetched.
      expect(answer).toMatchObject({ type: 'decline', reason: 'no data for model constructor' })
      expect(fetched).toEqual([])
    } finally {
      await participant.stop()
    }
  })

  it('an offer whose vectorLength does not fit its tensors in the base manifest is declined before training', async () => {
    const identity = generateSigningKey()
    const config = offer(identity, {})
    const participant = createParticipant({
      url: fake.url,
      token: 't',
      identity,
      models: { m: { data: () => ({ count: 0 }) as never } },
      // The base as the runtime verified it: dense/kernel holds 4 × 3 = 12 values, the offer says 10.
      fetchVersion: async () => ({
        signed: { cid: config.manifestCid },
        manifest: { format: 'tfjs-layers', topology: { kind: 'tfjs' }, tensors: [{ name: 'dense/kernel', dtype: 'float32', shape: [4, 3], byteLength: 48, layer: 'dense' }] },
        weights: new Map(),
        report: { bytesFetched: 0 }
      }) as never,
      reconnectMs: 100
    })
    await participant.start()
    try {
      await participant.ready()
      fake.send({ type: 'offer', config })
      await fake.frame(f => f.type === 'accept' && f.roundId === config.id)
      const answer = await fake.frame(f => f.type === 'decline' && f.roundId === config.id)
      // Before: found only after the epochs (or, here, as a model that does not load).
      expect(answer.reason).toMatch(/the offer's tensors \(1\) and vectorLength 11 are not those of units dense in m@1: 1 tensors, 12 values \+ 0 class statistics \+ 1$/)
    } finally {
      await participant.stop()
    }
  })

  it('a runtime\'s policy declines a plain round, or a sum that may count one upload, before fetching anything; a bad policy is refused at creation', async () => {
    const identity = generateSigningKey()
    const fetched: string[] = []
    const participant = untouched(identity, fetched, { policy: { secureModes: ['masking', 'paillier'], minUploads: 3 } })
    await participant.start()
    try {
      await participant.ready()
      const plain = offer(identity, {})
      fake.send({ type: 'offer', config: plain })
      expect(await fake.frame(f => f.roundId === plain.id)).toMatchObject({ type: 'decline', reason: 'secure mode none is not accepted here (policy.secureModes: masking, paillier)' })
      const small = offer(identity, { clients: [toHex(identity.publicKey), 'ab'.repeat(32)], secure: { mode: 'masking', graph: 'sparse' }, selection: { fraction: 1, minClients: 2, maxClients: 1000, cooldownMs: 0, minUploads: 2 } })
      fake.send({ type: 'offer', config: small })
      expect(await fake.frame(f => f.roundId === small.id)).toMatchObject({ type: 'decline', reason: 'the offer\'s sum may count 2 upload(s); this runtime asks for at least 3 (policy.minUploads)' })
      expect(fetched).toEqual([])
    } finally {
      await participant.stop()
    }
    const make = (policy: unknown): unknown => createParticipant({ url: fake.url, token: 't', identity, models: {}, fetchVersion: async () => { throw new Error('unused') }, policy: policy as never })
    expect(() => make({ secureModes: ['plain'] })).toThrow(/^createParticipant policy: secureModes\.0: /)
    expect(() => make({ secureModes: [] })).toThrow(/^createParticipant policy: secureModes: /)
    expect(() => make({ minUploads: 0 })).toThrow(/^createParticipant policy: minUploads: /)
    expect(() => make({ requireSecure: true })).toThrow(/^createParticipant policy: .*requireSecure/)
  })
})
