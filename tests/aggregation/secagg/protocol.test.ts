import { describe, it, expect } from 'vitest'
import { ROUND, check, client, input, mask, newRound, runRound, setUp, shuffled, toUnmask, unmask, wire } from './harness.ts'
import { ringSum } from '../../../aggregation/ring.ts'
import type { GraphConfig } from '../../../aggregation/secagg/params.ts'
import { clientMessageSchema, serverMessageSchema } from '../../../aggregation/secagg/messages.ts'
import { restoreMaskingServer } from '../../../aggregation/secagg/server.ts'

describe('the unmasked sum equals the plaintext ring sum exactly', () => {
  const graphs: Array<{ name: string, n: number, graph: GraphConfig }> = [
    { name: 'sparse (SecAgg+, sized for 30% dropout)', n: 50, graph: { kind: 'harary', adversarialRate: 0.05, dropoutRate: 0.3 } },
    { name: 'complete (Bonawitz 2017)', n: 30, graph: { kind: 'complete', adversarialRate: 0.05, dropoutRate: 0.3 } }
  ]
  for (const { name, n, graph } of graphs) {
    for (const rate of [0, 0.1, 0.3]) {
      it(`${name}, n = ${n}, ${rate * 100}% drop after ShareKeys`, async () => {
        const round = newRound(n, graph, { seed: n + rate * 100 })
        const dropped = new Set(shuffled(round.ids, 7 + rate * 100).slice(0, Math.round(rate * n)))
        const { sum, expected } = await runRound(round, dropped)
        expect(sum).toEqual(expected)
        expect(round.server.stage).toBe('done')
        expect(round.server.survivors()).toEqual(round.ids.filter(id => !dropped.has(id)))
        const params = round.server.parameters
        expect(params?.kind).toBe(graph.kind)
        if (graph.kind === 'harary') expect(params?.degree).toBeLessThan(n - 1)
      })
    }
  }

  it('takes an answer that comes once the sum is under way, or done, without complaint: a slower honest answerer (review 47b)', async () => {
    const round = newRound(12, { kind: 'harary', degree: 6, threshold: 4 })
    await toUnmask(round)
    const answerers = round.server.answerers()
    const answers = new Map(await Promise.all(answerers.map(async id => [id, wire(await client(round, id).unmask(wire(round.server.unmaskRequestFor(id))))] as const)))
    let given = 0
    for (const id of answerers) {
      if (round.server.ready()) break
      round.server.receiveUnmask(id, answers.get(id))
      given++
    }
    expect(given).toBeLessThan(answerers.length)
    const late = answerers.slice(given)
    const finishing = round.server.finish()
    // While summing, then once done: neither throws (it told the client "the server is finishing the round").
    round.server.receiveUnmask(late[0] as string, answers.get(late[0] as string))
    const sum = await finishing
    for (const id of late.slice(1)) round.server.receiveUnmask(id, answers.get(id))
    expect(sum).toEqual(ringSum(round.ids.map(id => input(round, id)), round.vectorLength))
    // Someone never asked is still refused.
    expect(() => round.server.receiveUnmask('client-x', answers.get(late[0] as string))).toThrow(/at stage done/)
  })

  it('a low-degree sparse graph (n = 12, k = 4, t = 3) with one dropped, and a vector over a PRG chunk boundary', async () => {
    const round = newRound(12, { kind: 'harary', degree: 4, threshold: 3 }, { vectorLength: (1 << 18) + 3 })
    const { sum, expected } = await runRound(round, new Set(shuffled(round.ids, 3).slice(0, 1)))
    expect(sum).toEqual(expected)
  })

  it('clients that advertised but never shared keys are left out of every mask', async () => {
    const round = newRound(24, { kind: 'harary', degree: 10, threshold: 6 })
    const absent = shuffled(round.ids, 11).slice(0, 2)
    await setUp(round, round.ids.filter(id => !absent.includes(id)))
    expect(() => round.server.inboxFor(absent[0] as string)).toThrow(/did not share keys/)
    const sharing = round.ids.filter(id => !absent.includes(id))
    const dropped = sharing.slice(0, 2)
    const survivors = sharing.filter(id => !dropped.includes(id))
    await mask(round, survivors)
    round.server.closeMasked()
    await check(round, survivors)
    await unmask(round, survivors)
    expect(await round.server.finish()).toEqual(ringSum(survivors.map(id => input(round, id)), round.vectorLength))
  })

  it('a masked vector looks nothing like its input', async () => {
    const round = newRound(10, { kind: 'complete' }, { vectorLength: 4096 })
    await setUp(round)
    const id = round.ids[0] as string
    const y = await client(round, id).maskedInput(input(round, id), wire(round.server.inboxFor(id)))
    const x = input(round, id)
    let same = 0
    let ones = 0
    for (let i = 0; i < x.length; i++) {
      if (y[i] === x[i]) same++
      ones += popcount(((y[i] as number) - (x[i] as number)) >>> 0)
    }
    expect(same).toBeLessThan(3)
    // The mask's bits are balanced: 4096 · 32 bits, mean 65536, σ = 128.
    expect(Math.abs(ones - 4096 * 16)).toBeLessThan(1000)
  })
})

function popcount (v: number): number {
  let c = 0
  for (; v !== 0; v &= v - 1) c++
  return c
}

describe('below the threshold the server fails cleanly, never with a wrong sum', () => {
  it('too many dropouts: closeMasked fails with a reason and the round stays failed', async () => {
    const round = newRound(20, { kind: 'complete', dropoutRate: 0.1 })
    await setUp(round)
    const survivors = round.ids.slice(0, 10)
    await mask(round, survivors)
    expect(() => round.server.closeMasked()).toThrow(/round r_00000000000000aa failed: survivor client-000 has 9 surviving neighbours, fewer than the threshold 11/)
    expect(round.server.stage).toBe('failed')
    expect(round.server.failure).toMatch(/fewer than the threshold 11/)
    await expect(round.server.finish()).rejects.toThrow(/has failed/)
    expect(() => round.server.receiveMasked(round.ids[15] as string, new Uint32Array(round.vectorLength))).toThrow(expect.objectContaining({ name: 'UnavailableError' }))
  })

  it('too few unmask responses: finish fails naming whose seed could not be rebuilt', async () => {
    const round = newRound(12, { kind: 'complete', dropoutRate: 0.1, adversarialRate: 0 })
    await toUnmask(round)
    const t = round.server.parameters?.threshold as number
    await unmask(round, round.ids.slice(0, t - 1))
    expect(round.server.ready()).toBe(false)
    await expect(round.server.finish()).rejects.toThrow(/failed: \d+ shares of survivor client-\d+'s self-mask seed arrived, the threshold is/)
    expect(round.server.stage).toBe('failed')
  })

  it('ready() turns true exactly when every seed has t shares (a client holds no share of its own)', async () => {
    const round = newRound(12, { kind: 'complete', dropoutRate: 0.1, adversarialRate: 0 })
    await toUnmask(round)
    const t = round.server.parameters?.threshold as number
    await unmask(round, round.ids.slice(0, t))
    // The t responders' own seeds have only t − 1 shares so far.
    expect(round.server.ready()).toBe(false)
    await unmask(round, round.ids.slice(t, t + 1))
    expect(round.server.ready()).toBe(true)
    expect(await round.server.finish()).toEqual(ringSum(round.ids.map(id => input(round, id)), round.vectorLength))
  })

  it('fewer than 3 advertisers: the round fails at closeAdvertise', async () => {
    const round = newRound(5, { kind: 'complete' })
    for (const id of round.ids.slice(0, 2)) await round.server.receiveAdvertise(id, wire(await client(round, id).advertise()))
    expect(() => round.server.closeAdvertise()).toThrow(/only 2 clients advertised keys/)
  })
})

describe('messages cross the wire through their schemas', () => {
  it('every message of a round round-trips through JSON and its union schema', async () => {
    const round = newRound(6, { kind: 'complete' })
    const [a, b] = round.ids as [string, string]
    const advertise = await client(round, a).advertise()
    expect(clientMessageSchema.parse(wire(advertise))).toEqual(advertise)
    await round.server.receiveAdvertise(a, wire(advertise))
    for (const id of round.ids.slice(1)) await round.server.receiveAdvertise(id, wire(await client(round, id).advertise()))
    round.server.closeAdvertise()
    const roster = round.server.rosterFor(a)
    expect(serverMessageSchema.parse(wire(roster))).toEqual(roster)
    for (const id of round.ids) {
      const shares = await client(round, id).shareKeys(wire(round.server.rosterFor(id)))
      expect(clientMessageSchema.parse(wire(shares))).toEqual(shares)
      round.server.receiveShares(id, wire(shares))
    }
    round.server.closeShares()
    const inbox = round.server.inboxFor(a)
    expect(serverMessageSchema.parse(wire(inbox))).toEqual(inbox)
    await mask(round, round.ids)
    round.server.closeMasked()
    for (const id of round.ids) {
      const consistency = round.server.consistencyRequestFor(id)
      expect(serverMessageSchema.parse(wire(consistency))).toEqual(consistency)
      const signature = client(round, id).consistencyCheck(wire(consistency))
      expect(clientMessageSchema.parse(wire(signature))).toEqual(signature)
      await round.server.receiveSignature(id, wire(signature))
    }
    round.server.closeConsistency()
    const request = round.server.unmaskRequestFor(b)
    expect(serverMessageSchema.parse(wire(request))).toEqual(request)
    const response = await client(round, b).unmask(wire(request))
    expect(clientMessageSchema.parse(wire(response))).toEqual(response)
  })

  it('schemas are strict and bounded: extra keys, wrong byte lengths and non-base64 are refused', () => {
    const good = { type: 'secagg/advertise', roundId: ROUND, from: 'a', cPublicKey: 'A'.repeat(43) + '=', sPublicKey: 'A'.repeat(43) + '=', signature: 'A'.repeat(86) + '==' }
    expect(clientMessageSchema.safeParse(good).success).toBe(true)
    expect(clientMessageSchema.safeParse({ ...good, extra: 1 }).success).toBe(false)
    expect(clientMessageSchema.safeParse({ ...good, cPublicKey: 'A'.repeat(40) + '=' }).success).toBe(false)
    expect(clientMessageSchema.safeParse({ ...good, cPublicKey: '*'.repeat(43) + '=' }).success).toBe(false)
    expect(clientMessageSchema.safeParse({ ...good, from: 'has space' }).success).toBe(false)
    expect(clientMessageSchema.safeParse({ ...good, from: 'x'.repeat(129) }).success).toBe(false)
    expect(clientMessageSchema.safeParse({ ...good, type: 'secagg/other' }).success).toBe(false)
    const request = { type: 'secagg/consistency', roundId: ROUND, to: 'a', survivors: Array.from({ length: 10_001 }, (_, i) => `c${i}`) }
    expect(serverMessageSchema.safeParse(request).success).toBe(false)
    expect(serverMessageSchema.safeParse({ ...request, survivors: ['a'] }).success).toBe(true)
  })
})

describe('a server restarted mid-round finishes it', () => {
  const restart = async (server: ReturnType<typeof newRound>['server']): Promise<ReturnType<typeof newRound>['server']> => {
    const { state, maskedSum } = server.snapshot()
    return await restoreMaskingServer({ state: JSON.parse(JSON.stringify(state)), maskedSum: maskedSum.slice() })
  }

  it('restored at every stage, with 20% dropped, the sum is still exact', async () => {
    const round = newRound(20, { kind: 'harary', degree: 8, threshold: 5 })
    const dropped = new Set(shuffled(round.ids, 5).slice(0, 4))
    const survivors = round.ids.filter(id => !dropped.has(id))
    const half = Math.floor(round.ids.length / 2)
    for (const id of round.ids.slice(0, half)) await round.server.receiveAdvertise(id, wire(await client(round, id).advertise()))
    round.server = await restart(round.server)
    for (const id of round.ids.slice(half)) await round.server.receiveAdvertise(id, wire(await client(round, id).advertise()))
    round.server.closeAdvertise()
    const roster = round.server.rosterFor(round.ids[0] as string)
    round.server = await restart(round.server)
    expect(round.server.roster()).toEqual(round.ids)
    expect(round.server.rosterFor(round.ids[0] as string)).toEqual(roster)
    for (const id of round.ids) round.server.receiveShares(id, wire(await client(round, id).shareKeys(wire(round.server.rosterFor(id)))))
    round.server = await restart(round.server)
    round.server.closeShares()
    await mask(round, survivors.slice(0, 5))
    round.server = await restart(round.server)
    expect(round.server.stage).toBe('mask')
    await mask(round, survivors.slice(5))
    round.server.closeMasked()
    for (const id of survivors.slice(0, 6)) await round.server.receiveSignature(id, wire(client(round, id).consistencyCheck(wire(round.server.consistencyRequestFor(id)))))
    round.server = await restart(round.server)
    expect(round.server.stage).toBe('check')
    expect(round.server.signedBy()).toEqual(survivors.slice(0, 6))
    await check(round, survivors.slice(6))
    await unmask(round, survivors.slice(0, 3))
    round.server = await restart(round.server)
    expect(round.server.stage).toBe('unmask')
    await unmask(round, survivors.slice(3))
    const sum = await round.server.finish()
    expect(sum).toEqual(ringSum(survivors.map(id => input(round, id)), round.vectorLength))
    const done = await restart(round.server)
    expect(done.stage).toBe('done')
    expect(await done.finish()).toEqual(sum)
  })

  it('a replayed snapshot still rejects duplicates, and a corrupted one is refused', async () => {
    const round = newRound(8, { kind: 'complete' })
    await setUp(round)
    await mask(round, round.ids.slice(0, 2))
    const restored = await restart(round.server)
    expect(() => restored.receiveMasked(round.ids[0] as string, new Uint32Array(round.vectorLength))).toThrow(/already received/)
    const { state, maskedSum } = round.server.snapshot()
    await expect(restoreMaskingServer({ state: { ...state, stage: 'sideways' as 'mask' }, maskedSum })).rejects.toThrow(/server snapshot: stage/)
    await expect(restoreMaskingServer({ state, maskedSum: maskedSum.subarray(4) })).rejects.toThrow(/maskedSum: expected 256 bytes/)
    await expect(restoreMaskingServer({ state: { ...state, masked: ['nobody'] }, maskedSum })).rejects.toThrow(/masked input from nobody, who did not share keys/)
  })
})
