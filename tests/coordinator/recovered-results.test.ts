/**
 * A round that the restart's recover() ends (review 47b): its uploaders that reconnect holding it
 * are told how it ended (before, their welcome did not name it, and a runtime counted a round
 * that had published as lost), and its clients that accepted but never uploaded end "dropped",
 * as a live or resumed round leaves them. The real round manager over a real SQLite store, as a
 * killed coordinator leaves it; the hub is a map of connected clients that record what they are sent.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { roundManager } from '../../coordinator/rounds/rounds.ts'
import { plainServer } from '../../coordinator/rounds/secure/none.ts'
import type { ClientConnection } from '../../coordinator/rounds/hub.ts'
import { roundConfigSchema } from '../../shared/rounds/config.ts'
import type { ServerMessage } from '../../shared/rounds/messages.ts'
import { cryptoUniform, encodeUpdate, fixedPointParams } from '../../aggregation/fixed-point.ts'
import { PASSED, recoveryStores } from '../helpers/recovery-store.ts'

const stores = recoveryStores('blockfed-recovered-')
afterAll(stores.close)

const [a, b, c] = ['a', 'b', 'c'].map(x => x.repeat(64)) as [string, string, string]
const fixedPoint = fixedPointParams({ clip: 1, clients: 3 })
const config = roundConfigSchema.parse({
  model: 'm', id: 'r_00000000000000ab', baseVersion: 1, manifestCid: 'bafyexampleexample', trainable: ['x'], tensors: ['x'],
  vectorLength: 9, clients: [a, b, c], fixedPoint, seed: '00'.repeat(32), clip: 1,
  secure: { mode: 'none', graph: 'sparse' }, selection: { fraction: 1, minClients: 2, maxClients: 1000, cooldownMs: 0, minUploads: 2 }
})

describe('a round ended by recover() after a restart', () => {
  it('is named in the welcome of its uploaders, who are sent its result; its accepted clients without an upload end dropped', async () => {
    const store = await stores.fresh()
    store.create(config)
    store.transition(config.id, 'collecting')
    for (const id of [a, b]) {
      store.putUpload(config.id, id, { payload: new Uint8Array(encodeUpdate(new Float32Array(8), { params: fixedPoint, weight: 1, random: cryptoUniform() }).buffer), signature: '' })
      store.setClient(config.id, id, 'uploaded')
    }
    store.setClient(config.id, c, 'accepted')

    const sent = new Map<string, ServerMessage[]>()
    const connected = new Map<string, ClientConnection>()
    const connect = (id: string): ClientConnection => {
      const client = { id, models: ['m'], given: new Map(), send: (m: ServerMessage) => { sent.set(id, [...(sent.get(id) ?? []), m]) }, close: () => {} }
      connected.set(id, client)
      return client
    }
    const manager = roundManager({
      store,
      repo: {} as never,
      hub: () => ({ get: (id: string) => connected.get(id) }) as never,
      publish: async () => { throw new Error('unreached') },
      // No base model here: the round fails right after its sum passed the checks, with PASSED as its reason.
      readBase: async () => { throw new Error(PASSED) },
      secureServer: async cfg => plainServer(cfg)
    })
    await manager.resumeInterrupted()
    // Before recover() ends it: an uploader holding it keeps it; a client without an upload does not.
    expect(manager.handlers.connected(connect(a), [config.id])).toEqual({ rounds: [config.id], awaiting: [] })
    expect(manager.handlers.connected(connect(c), [config.id])).toEqual({ rounds: [], awaiting: [] })
    await manager.recover()
    const result = { type: 'result', roundId: config.id, state: 'failed', version: null, reason: expect.stringContaining(PASSED) }
    expect(sent.get(a)?.at(-1)).toEqual(result)
    // An uploader back after it ended: named, then told.
    expect(manager.handlers.connected(connect(b), [config.id])).toEqual({ rounds: [config.id], awaiting: [] })
    expect(sent.get(b)).toBeUndefined()
    await Promise.resolve()
    expect(sent.get(b)).toEqual([result])
    expect(store.clients(config.id)).toEqual([{ clientId: a, status: 'uploaded' }, { clientId: b, status: 'uploaded' }, { clientId: c, status: 'dropped' }])
  })

  it('a resumed round that ended before its uploader came back names itself to it and sends the result (found in CI)', async () => {
    const store = await stores.fresh()
    const short = roundConfigSchema.parse({ ...config, id: 'r_00000000000000ac', deadlines: { acceptMs: 1000, setupMs: 1000, trainMs: 1000, unmaskMs: 200 } })
    store.create(short)
    store.transition(short.id, 'collecting')
    store.putUpload(short.id, a, { payload: new Uint8Array(encodeUpdate(new Float32Array(8), { params: fixedPoint, weight: 1, random: cryptoUniform() }).buffer), signature: '' })
    store.setClient(short.id, a, 'uploaded')
    store.setClient(short.id, b, 'accepted')
    const sent: ServerMessage[] = []
    let back: ClientConnection | undefined
    const manager = roundManager({
      store,
      repo: {} as never,
      hub: () => ({ get: (id: string) => id === back?.id ? back : undefined }) as never,
      publish: async () => { throw new Error('unreached') },
      readBase: async () => { throw new Error('unreached') },
      secureServer: async cfg => plainServer(cfg)
    })
    // Mode none, one upload of the two it needs: resumed; b never comes back, so it fails.
    await manager.resumeInterrupted()
    await manager.recover()
    await expect.poll(() => store.get(short.id)?.state, { timeout: 10_000 }).toBe('failed')
    back = { id: a, models: ['m'], given: new Map(), send: (m: ServerMessage) => { sent.push(m) }, close: () => {} }
    expect(manager.handlers.connected(back, [short.id]).rounds).toEqual([short.id])
    await Promise.resolve()
    expect(sent).toEqual([{ type: 'result', roundId: short.id, state: 'failed', version: null, reason: expect.stringContaining('resumed after a restart with 1 upload(s)') }])
  })
})
