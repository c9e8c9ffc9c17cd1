/**
 * What a round that fails for want of acceptances says (coordinator/rounds/rounds.ts, `declined`):
 * to the operator, the first five distinct decline reasons (a client's words, bounded), repeats
 * counted and control characters shown as '?'; to the round's clients, only how many declined;
 * and nothing of declines when nobody declined; the round's counts tell declines from drops. A real coordinator, clients on raw WebSockets;
 * each decline is seen by the coordinator before the next is sent, so the order is fixed.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { rm } from 'node:fs/promises'
import type { Coordinator } from '../../coordinator/coordinator.ts'
import type { RoundEvent } from '../../coordinator/rounds/rounds.ts'
import { mnistRoundCoordinator } from '../helpers/mnist-round-coordinator.ts'
import { rawClient, type RawClient } from '../helpers/raw-round-client.ts'

let root: string
let c: Coordinator
let at: string
let token: string
const events: RoundEvent[] = []
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
/** Waits (polling, at most 10 s) until `done` holds. */
async function until (done: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await sleep(20)
  expect(done()).toBe(true)
}
const resultOf = async (client: RawClient, roundId: string): Promise<unknown> => {
  await until(() => client.messages.some(m => m.type === 'result' && m.roundId === roundId))
  return client.messages.find(m => m.type === 'result' && m.roundId === roundId)
}

beforeAll(async () => {
  ({ root, c, at, token } = await mnistRoundCoordinator('decline-words', events))
}, 60_000)

afterAll(async () => {
  await c.stop()
  await rm(root, { recursive: true, force: true })
})

describe('a round that fails for want of acceptances', () => {
  it('says nothing of declines when nobody declined', async () => {
    const [stays, leaves] = [await rawClient(at, token, ['mnist'], { autoAccept: false }), await rawClient(at, token, ['mnist'], { autoAccept: false })]
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 2, minUploads: 2 }, deadlines: { acceptMs: 30_000 } })
      await until(() => [stays, leaves].every(client => client.offers.some(o => o.id === started.id)))
      stays.sendJson({ type: 'accept', roundId: started.id })
      // Disconnected: dropped, so the accept window closes once the accept is in, not at its deadline.
      leaves.close()
      const summary = await started.done
      expect(summary).toMatchObject({ state: 'failed', reason: '1 client(s) accepted, at least 2 needed' })
      expect(summary.participants).toEqual({ offered: 2, accepted: 1, declined: 0, uploaded: 0, dropped: 2 })
      expect(await resultOf(stays, started.id)).toMatchObject({ state: 'failed', reason: '1 client(s) accepted, at least 2 needed' })
    } finally {
      for (const client of [stays, leaves]) client.close()
      await Promise.all([stays.closed, leaves.closed])
    }
  })

  it('does not count a decline that comes after the offer\'s window, from a client that never answered (review 51a)', async () => {
    const clients: RawClient[] = []
    for (let i = 0; i < 3; i++) clients.push(await rawClient(at, token, ['mnist'], { autoAccept: i < 2 }))
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 2, minUploads: 2 }, deadlines: { acceptMs: 1000, trainMs: 2000 } })
      await until(() => events.some(e => e.type === 'state' && e.roundId === started.id && e.state === 'collecting'))
      clients[2]?.sendJson({ type: 'decline', roundId: started.id, reason: 'late' })
      const summary = await started.done
      expect(summary).toMatchObject({ state: 'failed', reason: '0 upload(s) before the deadline, at least 2 needed' })
      expect(summary.participants).toEqual({ offered: 3, accepted: 2, declined: 0, uploaded: 0, dropped: 3 })
      expect(events.some(e => e.type === 'declined' && e.roundId === started.id)).toBe(false)
    } finally {
      for (const client of clients) client.close()
    }
  })

  it('keeps the first five distinct reasons for the operator, repeats counted and control characters as "?"; its clients hear only the count', async () => {
    const clients: RawClient[] = []
    for (let i = 0; i < 7; i++) clients.push(await rawClient(at, token, ['mnist'], { autoAccept: false }))
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 7, minUploads: 2 }, deadlines: { acceptMs: 30_000 } })
      await until(() => clients.every(client => client.offers.some(o => o.id === started.id)))
      const reasons = ['low\u0007battery "now"', 'r1', 'r2', 'r3', 'r4', 'r5', 'low\u0007battery "now"']
      for (const [i, client] of clients.entries()) {
        client.sendJson({ type: 'decline', roundId: started.id, reason: reasons[i] })
        await until(() => events.some(e => e.type === 'declined' && e.roundId === started.id && e.clientId === client.id))
      }
      const summary = await started.done
      expect(summary).toMatchObject({ state: 'failed', reason: '0 client(s) accepted, at least 2 needed; 7 declined: "low?battery ?now?" (× 2), "r1", "r2", "r3", "r4"' })
      // Declines are not drops (review 49f: they were counted as dropped).
      expect(summary.participants).toEqual({ offered: 7, accepted: 0, declined: 7, uploaded: 0, dropped: 0 })
      for (const client of clients) {
        expect(await resultOf(client, started.id)).toMatchObject({ state: 'failed', reason: '0 client(s) accepted, at least 2 needed; 7 declined' })
      }
    } finally {
      for (const client of clients) client.close()
    }
  })
})
