/**
 * A `secagg` message that the secure server says a restart must know (`'persist'`: masking's
 * report of a neighbour's shares that did not open) is saved by the round manager before the
 * next message is taken; a save that fails drops the client that sent it, since its upload
 * would otherwise be stored without the report and sum wrong after a restart (reviews 47e, 47f).
 * The real round manager over a real SQLite store; the secure server is a stand-in that counts
 * what it is asked (masking's own 'persist' answer is tested in masking-round.test.ts).
 */
import { afterAll, describe, expect, it } from 'vitest'
import { roundManager } from '../../coordinator/rounds/rounds.ts'
import type { ClientConnection } from '../../coordinator/rounds/hub.ts'
import type { SecureRoundServer } from '../../coordinator/rounds/secure/types.ts'
import type { RoundStore } from '../../coordinator/rounds/store.ts'
import { roundConfigSchema } from '../../shared/rounds/config.ts'
import { fixedPointParams } from '../../aggregation/fixed-point.ts'
import { recoveryStores } from '../helpers/recovery-store.ts'

const stores = recoveryStores('blockfed-persist-')
afterAll(stores.close)

const [a, b, c] = ['a', 'b', 'c'].map(x => x.repeat(64)) as [string, string, string]
const config = roundConfigSchema.parse({
  model: 'm', id: 'r_00000000000000ad', baseVersion: 1, manifestCid: 'bafyexampleexample', trainable: ['x'], tensors: ['x'],
  vectorLength: 9, clients: [a, b, c], fixedPoint: fixedPointParams({ clip: 1, clients: 3 }), seed: '00'.repeat(32), clip: 1,
  secure: { mode: 'masking', graph: 'complete' }, selection: { fraction: 1, minClients: 3, maxClients: 1000, cooldownMs: 0, minUploads: 3 },
  deadlines: { acceptMs: 600_000, setupMs: 600_000, trainMs: 600_000, unmaskMs: 600_000 }
})

/** A masking round's server as far as the manager sees it: each message asks to be persisted, and the snapshot counts them. */
function reportingServer (): SecureRoundServer & { dropped: string[] } {
  let reports = 0
  const dropped: string[] = []
  return {
    mode: 'masking',
    uploadBytes: 36,
    dropped,
    setup: async accepted => accepted,
    message: async () => { reports++; return 'persist' as const },
    checkUpload: () => {},
    sum: async () => new Uint32Array(9),
    drop: id => { dropped.push(id) },
    snapshot: () => ({ reports }),
    needsClients: () => true
  }
}

/** A masking round left collecting by a kill, its three clients still training, resumed by a new manager over `store`. */
async function resumed (store: RoundStore, secure: SecureRoundServer): Promise<{ message: (from: string) => Promise<void>, stop: () => void }> {
  store.create(config)
  store.transition(config.id, 'collecting')
  for (const id of [a, b, c]) store.setClient(config.id, id, 'accepted')
  const connected = new Map<string, ClientConnection>()
  const manager = roundManager({
    store,
    repo: {} as never,
    hub: () => ({ get: (id: string) => connected.get(id) }) as never,
    publish: async () => { throw new Error('unreached') },
    readBase: async () => { throw new Error('unreached') },
    secureServer: async () => secure
  })
  await manager.resumeInterrupted()
  expect(manager.active()).toEqual([config.id])
  for (const id of [a, b, c]) {
    const client: ClientConnection = { id, models: ['m'], given: new Map(), send: () => {}, close: () => {} } as never
    connected.set(id, client)
    expect(manager.handlers.connected(client, [config.id]).rounds).toEqual([config.id])
  }
  return {
    message: async from => { await manager.handlers.message(connected.get(from) as ClientConnection, { type: 'secagg', roundId: config.id, payload: { type: 'secagg/skipped' } } as never) },
    // Ends the round's waits (the store is closed by afterAll).
    stop: () => { void manager.recover().catch(() => undefined) }
  }
}

describe('a secagg message the secure server asks to persist', () => {
  it('is in the stored secure state as soon as the message is taken, each one', async () => {
    const store = await stores.fresh()
    const round = await resumed(store, reportingServer())
    expect(store.get(config.id)?.secureState).toBeNull()
    await round.message(a)
    expect(store.get(config.id)?.secureState).toEqual({ reports: 1 })
    await round.message(b)
    expect(store.get(config.id)?.secureState).toEqual({ reports: 2 })
    round.stop()
  })

  it('drops the client whose message could not be saved; the others go on', async () => {
    const store = await stores.fresh()
    const secure = reportingServer()
    const round = await resumed(store, secure)
    const save = store.saveSecureState
    store.saveSecureState = () => { throw new Error('database or disk is full') }
    try {
      await expect(round.message(a)).rejects.toThrow('database or disk is full')
    } finally {
      store.saveSecureState = save
    }
    expect(secure.dropped).toEqual([a])
    expect(store.clients(config.id)).toContainEqual({ clientId: a, status: 'dropped' })
    // Out of the round: its next message is refused as from a client no longer in it.
    await expect(round.message(a)).rejects.toThrow(/only from clients that accepted the round and are still in it/)
    // The others are not touched (a's unsaved message was the server's first).
    await round.message(b)
    expect(store.get(config.id)?.secureState).toEqual({ reports: 2 })
    round.stop()
  })
})
