/**
 * A round resumed at a start has its secure server built offline (a Paillier server does not ask
 * the decryptor then); once it runs, the server checks what it could not (`ready`): a refusal
 * fails the round at once, before the runtimes still training upload for nothing (review 48f: a
 * key the decryptor no longer held was found only at the sum); a service out of reach is left
 * to the sum. The real round manager over a real SQLite store; the secure server is a stand-in.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { roundManager } from '../../coordinator/rounds/rounds.ts'
import type { SecureRoundServer } from '../../coordinator/rounds/secure/types.ts'
import { roundConfigSchema } from '../../shared/rounds/config.ts'
import type { RoundStore } from '../../coordinator/rounds/store.ts'
import { InvalidInputError, UnavailableError } from '../../shared/errors/errors.ts'
import { fixedPointParams } from '../../aggregation/fixed-point.ts'
import { recoveryStores } from '../helpers/recovery-store.ts'

const stores = recoveryStores('blockfed-resumed-offline-')
afterAll(stores.close)

const [a, b] = ['a', 'b'].map(x => x.repeat(64)) as [string, string]
const config = (id: string): ReturnType<typeof roundConfigSchema.parse> => roundConfigSchema.parse({
  model: 'm', id, baseVersion: 1, manifestCid: 'bafyexampleexample', trainable: ['x'], tensors: ['x'],
  vectorLength: 9, clients: [a, b], fixedPoint: fixedPointParams({ clip: 1, clients: 2 }), seed: '00'.repeat(32), clip: 1,
  secure: { mode: 'none', graph: 'sparse' }, selection: { fraction: 1, minClients: 2, maxClients: 1000, cooldownMs: 0, minUploads: 2 },
  deadlines: { acceptMs: 600_000, setupMs: 600_000, trainMs: 600_000, unmaskMs: 600_000 }
})

/** A server that takes uploads and whose `ready` answers `check`. */
const server = (check: () => Promise<void>): SecureRoundServer => ({
  mode: 'none', uploadBytes: 36, setup: async ids => ids, message: () => {}, checkUpload: () => {},
  sum: async () => new Uint32Array(9), drop: () => {}, snapshot: () => null, needsClients: () => false, ready: check
})

async function resume (id: string, check: () => Promise<void>, storeOf: (store: RoundStore) => RoundStore = store => store): Promise<{ state: () => string | undefined, reason: () => string | null | undefined, stop: () => Promise<void>, manager: ReturnType<typeof roundManager> }> {
  const real = await stores.fresh()
  const store = storeOf(real)
  store.create(config(id))
  store.transition(id, 'collecting')
  for (const c of [a, b]) store.setClient(id, c, 'accepted')
  const manager = roundManager({
    store,
    repo: {} as never,
    hub: () => ({ get: () => undefined }) as never,
    publish: async () => { throw new Error('unreached') },
    readBase: async () => { throw new Error('unreached') },
    secureServer: async () => server(check)
  })
  await manager.resumeInterrupted()
  expect(manager.active()).toEqual([id])
  return { state: () => real.get(id)?.state, reason: () => real.get(id)?.reason, stop: manager.stop, manager }
}

describe('a round resumed with a server built offline', () => {
  it('fails at once, saying why, when the server refuses what it checks once the round runs', async () => {
    const round = await resume('r_00000000000000a1', async () => { throw new InvalidInputError('round r_00000000000000a1 was offered under Paillier key 11…, the decryptor now holds 22…') })
    // Its deadlines are ten minutes away: only the check ends it.
    await expect.poll(round.state, { timeout: 5_000 }).toBe('failed')
    expect(round.reason()).toBe('resumed after a restart: round r_00000000000000a1 was offered under Paillier key 11…, the decryptor now holds 22…')
  })

  it('goes on when the service it asks is out of reach (the sum meets it, with its retries)', async () => {
    let asked = false
    const round = await resume('r_00000000000000a2', async () => { asked = true; throw new UnavailableError('decryptor unreachable') })
    await expect.poll(() => asked, { timeout: 5_000 }).toBe(true)
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(round.state()).toBe('collecting')
    await round.stop()
  })
})

describe('a coordinator stopping while a round collects', () => {
  it('tells a client whose message arrives after the round left memory that it goes on at the next start, not that it was left out (review 52a)', async () => {
    const id = 'r_00000000000000a3'
    const round = await resume(id, async () => {})
    await round.stop()
    // Kept for the next start, not failed.
    expect(round.state()).toBe('collecting')
    const client = { id: a, models: ['m'], given: new Map(), send: () => {}, close: () => {} }
    // A runtime still training sends its progress in the window before the hub closes its connection.
    const err = await Promise.resolve(round.manager.handlers.message(client, { type: 'progress', roundId: id, epoch: 3, epochs: 40, loss: 0.5 })).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(UnavailableError)
    expect((err as Error).message).toBe(`the coordinator is stopping; round ${id} goes on at its next start`)
    // Before, `left: true`: the runtime gave up its part, and a masking round resumed without it failed.
    expect(err).toMatchObject({ roundId: id })
    expect((err as { left?: unknown }).left).toBeUndefined()
  })
})

describe('a resumed round whose store fails as it lets clients go (the disk full)', () => {
  it('stops waiting for them all the same: the round ends at once, not at its deadlines (review 53c)', async () => {
    const id = 'r_00000000000000a4'
    let full = false
    // Every status write fails once the round runs: as SQLite says it with the disk full.
    const failing = (store: RoundStore): RoundStore => Object.assign(Object.create(store) as RoundStore, {
      setClient: (...args: Parameters<RoundStore['setClient']>) => { if (full) throw new Error('database or disk is full'); store.setClient(...args) }
    })
    const round = await resume(id, async () => {}, failing)
    full = true
    // Both clients come back without the round (their runtimes restarted): each is let go, the
    // failed write said to it (the hello is refused), and the round stops waiting for it.
    for (const c of [a, b]) {
      const client = { id: c, models: ['m'], given: new Map(), send: () => {}, close: () => {} }
      expect(() => round.manager.handlers.connected(client, [])).toThrow('database or disk is full')
    }
    // Its deadlines are ten minutes away: only the settled waits end it.
    await expect.poll(round.state, { timeout: 5_000 }).toBe('failed')
    expect(round.reason()).toMatch(/^resumed after a restart with 0 upload\(s\)/)
  })
})
