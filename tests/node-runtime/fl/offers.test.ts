/**
 * Offers a real coordinator would not make, from a scripted one (tests/helpers/fake-rounds-socket.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { createParticipant } from '../../../node-runtime/fl/participant.ts'
import { fixedPointParams } from '../../../aggregation/fixed-point.ts'
import { roundConfigSchema } from '../../../shared/rounds/config.ts'
import { generateSigningKey } from '../../../shared/crypto/sign.ts'
import { toHex } from '../../../shared/crypto/bytes.ts'
import { fakeRoundsSocket, type FakeRoundsSocket } from '../../helpers/fake-rounds-socket.ts'

let fake: FakeRoundsSocket
beforeAll(async () => { fake = await fakeRoundsSocket() })
afterAll(async () => { await fake.close() })

describe('offers', () => {
  it('an offer for a model named like an Object property ("constructor") is declined as a model without data', async () => {
    const identity = generateSigningKey()
    const fetched: string[] = []
    const participant = createParticipant({
      url: fake.url,
      token: 't',
      identity,
      models: { m: { data: () => { throw new Error('no training is expected here') } } },
      fetchVersion: async model => { fetched.push(model); throw new Error('no fetch is expected here') },
      reconnectMs: 100
    })
    await participant.start()
    try {
      await participant.ready()
      const fp = fixedPointParams({ clip: 1, clients: 1 })
      const config = roundConfigSchema.parse({
        id: `r_${randomBytes(8).toString('hex')}`,
        model: 'constructor',
        baseVersion: 1,
        manifestCid: 'bafkreiexampleexampleexample',
        trainable: ['dense'],
        tensors: ['dense/kernel'],
        vectorLength: 11,
        seed: randomBytes(32).toString('hex'),
        fixedPoint: { clip: fp.clip, clients: 1, scale: fp.scale, weightScale: fp.weightScale },
        secure: { mode: 'none', graph: 'sparse' },
        selection: { fraction: 1, minClients: 1, maxClients: 1000, cooldownMs: 0, minUploads: 1 },
        clients: [toHex(identity.publicKey)]
      })
      fake.send({ type: 'offer', config })
      const answer = await fake.frame(f => f.roundId === config.id)
      // Before: Object.prototype.constructor was taken for its data; accepted, then fetched.
      expect(answer).toMatchObject({ type: 'decline', reason: 'no data for model constructor' })
      expect(fetched).toEqual([])
    } finally {
      await participant.stop()
    }
  })
})
