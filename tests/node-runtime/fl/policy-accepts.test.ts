/**
 * A runtime's policy (participant.ts `policy`) declines only what asks for less than it allows:
 * an offer whose sum counts exactly policy.minUploads uploads is accepted, and so is one that
 * leaves minUploads to its default (at least 2, at least half the clients) when that default
 * meets the policy; a minUploads no round could meet is refused at creation. A scripted coordinator (tests/helpers/fake-rounds-socket.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createParticipant } from '../../../node-runtime/fl/participant.ts'
import { generateSigningKey } from '../../../shared/crypto/sign.ts'
import { toHex } from '../../../shared/crypto/bytes.ts'
import { fakeRoundsSocket, type FakeRoundsSocket } from '../../helpers/fake-rounds-socket.ts'
import { roundOffer } from '../../helpers/round-offer.ts'

let fake: FakeRoundsSocket
beforeAll(async () => { fake = await fakeRoundsSocket() })
afterAll(async () => { await fake.close() })

/** The first answer (accept or decline) of a participant with `policy` to an offer with `selection`, to it and two other clients. */
async function answer (policy: { minUploads: number }, selection: Record<string, unknown>): Promise<Record<string, unknown>> {
  const identity = generateSigningKey()
  const participant = createParticipant({
    url: fake.url,
    token: 't',
    identity,
    models: { m: { data: () => { throw new Error('no training is expected here') } } },
    fetchVersion: async () => { throw new Error('the test stops here') },
    policy: { secureModes: ['none'], ...policy },
    reconnectMs: 100
  })
  await participant.start()
  try {
    await participant.ready()
    const config = roundOffer({ clients: [toHex(identity.publicKey), 'ab'.repeat(32), 'cd'.repeat(32)], selection: { fraction: 1, minClients: 3, maxClients: 1000, cooldownMs: 0, ...selection } }, 3)
    fake.send({ type: 'offer', config })
    return await fake.frame(f => f.roundId === config.id && (f.type === 'accept' || f.type === 'decline'))
  } finally {
    await participant.stop()
  }
}

describe('a runtime\'s policy', () => {
  it('accepts a sum of exactly policy.minUploads uploads', async () => {
    expect(await answer({ minUploads: 2 }, { minUploads: 2 })).toMatchObject({ type: 'accept' })
    expect(await answer({ minUploads: 3 }, { minUploads: 3 })).toMatchObject({ type: 'accept' })
  })

  it('reads an offer without minUploads as its default (3 clients: 2), not as 1', async () => {
    expect(await answer({ minUploads: 2 }, {})).toMatchObject({ type: 'accept' })
    expect(await answer({ minUploads: 3 }, {})).toMatchObject({ type: 'decline', reason: 'the offer\'s sum may count 2 upload(s); this runtime asks for at least 3 (policy.minUploads)' })
  })

  it('refuses at creation a minUploads above 10,000, which no round could meet', () => {
    const make = (minUploads: number): unknown => createParticipant({ url: fake.url, token: 't', identity: generateSigningKey(), models: {}, fetchVersion: async () => { throw new Error('unused') }, policy: { minUploads } })
    expect(() => make(10_001)).toThrow(/^createParticipant policy: minUploads: /)
    expect(make(10_000)).toBeDefined()
  })
})
