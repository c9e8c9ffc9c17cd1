/**
 * The round protocol against clients that misbehave or fail (found by review): connections reset
 * mid-upgrade, oversized frames before the hello, declines that would take back an upload or
 * dodge the cooldown, progress out of turn, a schedule whose rounds can no longer start, a round
 * whose recording fails part-way (nothing kept, its clients free), a client flooding text frames, and
 * runtimes whose local work fails or hangs. Real coordinator, real runtimes over loopback.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { rm } from 'node:fs/promises'
import { connect, createServer, type AddressInfo } from 'node:net'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import WebSocket from 'ws'
import type { Coordinator } from '../../coordinator/coordinator.ts'
import { TooFewClientsError, type RoundEvent } from '../../coordinator/rounds/rounds.ts'
import { modelFiles, mnistMlp } from '../../node-runtime/examples/mnist-mlp.ts'
import { ConflictError } from '../../shared/errors/errors.ts'
import { mnistRoundCoordinator } from '../helpers/mnist-round-coordinator.ts'
import { rawClient, type RawClient } from '../helpers/raw-round-client.ts'
import type { RoundConfig } from '../../shared/rounds/config.ts'
import { mnistSlice, startParticipants, stopParticipants } from '../helpers/fl.ts'

let root: string
let c: Coordinator
let at: string
let token: string
const events: RoundEvent[] = []

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
async function untilState (roundId: string, state: string): Promise<void> {
  for (let i = 0; i < 500 && !events.some(e => e.type === 'state' && e.roundId === roundId && e.state === state); i++) await sleep(20)
}

/** A valid mode-none update that changes nothing: zero deltas and the weight 0.02. */
function weightOnly (config: RoundConfig): Uint32Array {
  const update = new Uint32Array(config.vectorLength)
  update[update.length - 1] = Math.round(0.02 * config.fixedPoint.weightScale)
  return update
}

async function roundStatus (id: string): Promise<{ clients: Array<{ clientId: string, status: string }> }> {
  return await (await fetch(`${at}/v1/rounds/${id}`, { headers: { authorization: `Bearer ${c.adminToken}` } })).json() as { clients: Array<{ clientId: string, status: string }> }
}

beforeAll(async () => {
  ({ root, c, at, token } = await mnistRoundCoordinator('round-protocol', events))
}, 60_000)

afterAll(async () => {
  await c.stop()
  await rm(root, { recursive: true, force: true })
})

describe('the WebSocket endpoint', () => {
  it('survives clients that reset the connection right after their upgrade request, with or without a token', async () => {
    const { port, hostname } = new URL(at)
    for (let i = 0; i < 60; i++) {
      const auth = i % 3 === 0 ? '' : i % 3 === 1 ? 'Authorization: Bearer nonsense\r\n' : `Authorization: Bearer ${token}\r\n`
      await new Promise<void>(resolve => {
        const s = connect(Number(port), hostname, () => {
          s.write(`GET /v1/rounds/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${auth}\r\n`)
          s.resetAndDestroy()
          resolve()
        })
        s.on('error', () => resolve())
      })
    }
    await sleep(200)
    // Still serving (an unhandled socket error would have ended this process, and the test run).
    expect((await fetch(`${at}/v1/models`)).status).toBe(200)
  })

  it('closes a connection that sends a large frame before its hello', async () => {
    const ws = new WebSocket(`${at.replace(/^http/, 'ws')}/v1/rounds/ws`, { headers: { authorization: `Bearer ${token}` } })
    const replies: string[] = []
    ws.on('message', data => replies.push(data.toString()))
    await new Promise(resolve => ws.once('open', resolve))
    ws.send('x'.repeat(64 << 10))
    const [code] = await new Promise<[number]>(resolve => ws.once('close', code => resolve([code])))
    expect(code).toBe(4003)
    expect(replies.some(r => /hello: 65536 bytes, at most 32768/.test(r))).toBe(true)
  })
})

describe('a client flooding text frames', () => {
  it('is cut once its messages pass the text budget of a window, and the coordinator serves on', async () => {
    const client = await rawClient(at, token, ['mnist'])
    try {
      // Each frame within the 4 MiB cap for one message; five of them are over 16 MiB in a window.
      const frame = JSON.stringify({ type: 'progress', junk: 'x'.repeat((4 << 20) - 100) })
      for (let i = 0; i < 5; i++) client.sendJson(frame)
      expect(await client.next(m => m.type === 'error' && /more than 16777216 bytes of messages in 10 s/.test(m.message))).toBeDefined()
      expect(await client.closed).toMatchObject({ code: 1008 })
      expect((await fetch(`${at}/v1/models`)).status).toBe(200)
    } finally {
      client.close()
    }
  })
})

describe('client weights', () => {
  it('a DP round weighs every client the same (sampleCap 1) unless the request says otherwise, over HTTP too (reviews 49f, 49g)', async () => {
    const clients = [await rawClient(at, token, ['mnist'], { autoAccept: false }), await rawClient(at, token, ['mnist'], { autoAccept: false })]
    try {
      const capOf = async (request: Record<string, unknown>, over: 'api' | 'http' = 'api'): Promise<number> => {
        const body = { model: 'mnist', trainable: ['head'], secure: { mode: 'none' as const }, selection: { minClients: 2 }, deadlines: { acceptMs: 300 }, ...request }
        let id: string
        if (over === 'api') {
          id = (await c.rounds.start(body)).id
        } else {
          const res = await fetch(`${at}/v1/rounds`, { method: 'POST', headers: { authorization: `Bearer ${c.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
          expect(res.status).toBe(202)
          id = ((await res.json()) as { id: string }).id
        }
        for (let i = 0; i < 250 && !(clients[0]?.offers.some(o => o.id === id) ?? false); i++) await sleep(20)
        const cap = clients[0]?.offers.find(o => o.id === id)?.sampleCap
        // Nobody accepts: the round fails at its accept deadline, and the next may start.
        await untilState(id, 'failed')
        if (cap === undefined) throw new Error('no offer arrived')
        return cap
      }
      expect(await capOf({ dp: { noiseMultiplier: 1, clip: 1 } })).toBe(1)
      expect(await capOf({ dp: { noiseMultiplier: 1, clip: 1 } }, 'http')).toBe(1)
      expect(await capOf({ dp: { noiseMultiplier: 1, clip: 1 }, sampleCap: 400 }, 'http')).toBe(400)
      expect(await capOf({})).toBe(10_000)
    } finally {
      for (const client of clients) client.close()
    }
  })
})

describe('declines and progress', () => {
  it('refuses a decline after an upload; a decline after an accept drops the client at once', async () => {
    const clients = [await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist'])]
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 3 }, deadlines: { trainMs: 60_000 } })
      await untilState(started.id, 'collecting')
      const config = clients[0]?.offers.find(o => o.id === started.id)
      if (config === undefined) throw new Error('no offer arrived')
      const [a, b, quitter] = clients as [typeof clients[0], typeof clients[0], typeof clients[0]]
      // Progress is for accepted clients before they upload; an absurd loss is refused by the schema.
      a.sendJson({ type: 'progress', roundId: config.id, epoch: 1, epochs: 1, loss: 1e308 })
      expect(await a.next(m => m.type === 'error')).toMatchObject({ message: expect.stringMatching(/loss/) })
      const update = weightOnly(config)
      for (const client of [a, b]) await client.upload({ roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' }, new Uint8Array(update.buffer))
      a.sendJson({ type: 'decline', roundId: config.id, reason: 'changed my mind' })
      expect(await a.next(m => m.type === 'error' && /already uploaded; a decline cannot take it back/.test(m.message))).toBeDefined()
      a.sendJson({ type: 'progress', roundId: config.id, epoch: 1, epochs: 1, loss: 0.5 })
      expect(await a.next(m => m.type === 'error' && /progress only between accept and upload/.test(m.message))).toBeDefined()
      // The third withdraws: the round publishes with two uploads now, not after the 60 s deadline.
      const begun = Date.now()
      quitter.sendJson({ type: 'decline', roundId: config.id, reason: 'local data unavailable' })
      const result = await a.next(m => m.type === 'result' && m.roundId === config.id, 20_000)
      expect(result).toMatchObject({ state: 'published' })
      expect(Date.now() - begun).toBeLessThan(20_000)
      const status = await (await fetch(`${at}/v1/rounds/${config.id}`, { headers: { authorization: `Bearer ${c.adminToken}` } })).json() as { clients: Array<{ client: string, status: string }> }
      expect(status.clients).toEqual(expect.arrayContaining([{ clientId: a.id, status: 'uploaded' }, { clientId: quitter.id, status: 'dropped' }]))
    } finally {
      for (const client of clients) client.close()
    }
  })
})

describe('a client that declines (review 38a)', () => {
  it('cannot accept after its decline, and stays "declined" when it disconnects (a "dropped" counted in the cooldown)', async () => {
    const [a, b] = [await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist'])]
    // The silent one keeps the accept window open: the decliner's accept comes while it is.
    const [decliner, silent] = [await rawClient(at, token, ['mnist'], { autoAccept: false }), await rawClient(at, token, ['mnist'], { autoAccept: false })]
    const clients = [a, b, decliner, silent]
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 4, minUploads: 2 }, deadlines: { trainMs: 60_000 } })
      for (let i = 0; i < 250 && !decliner.offers.some(o => o.id === started.id); i++) await sleep(20)
      decliner.sendJson({ type: 'decline', roundId: started.id, reason: 'no data today' })
      decliner.sendJson({ type: 'accept', roundId: started.id })
      expect(await decliner.next(m => m.type === 'error')).toMatchObject({ roundId: started.id, message: expect.stringMatching(/this client declined; it cannot accept after/), left: true })
      decliner.close()
      await decliner.closed
      silent.sendJson({ type: 'decline', roundId: started.id, reason: 'busy' })
      await untilState(started.id, 'collecting')
      const config = a.offers.find(o => o.id === started.id) as RoundConfig
      for (const client of [a, b]) await client.upload({ roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' }, new Uint8Array(weightOnly(config).buffer))
      expect(await a.next(m => m.type === 'result' && m.roundId === config.id, 20_000)).toMatchObject({ state: 'published' })
      expect((await roundStatus(config.id)).clients).toEqual(expect.arrayContaining([{ clientId: decliner.id, status: 'declined' }, { clientId: a.id, status: 'uploaded' }]))
    } finally {
      for (const client of clients) client.close()
    }
  })
})

describe('a round that fails because clients declined', () => {
  it('tells the operator why each declined, and the round\'s clients only how many did: a client\'s words are not its peers\'', async () => {
    const accepter = await rawClient(at, token, ['mnist'])
    const decliners = [await rawClient(at, token, ['mnist'], { autoAccept: false }), await rawClient(at, token, ['mnist'], { autoAccept: false })]
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 3, minUploads: 2 }, deadlines: { acceptMs: 5000 } })
      for (let i = 0; i < 250 && !decliners.every(d => d.offers.some(o => o.id === started.id)); i++) await sleep(20)
      for (const [i, d] of decliners.entries()) d.sendJson({ type: 'decline', roundId: started.id, reason: `battery at ${i + 3}% near 10.0.0.${i + 7}` })
      const summary = await started.done
      expect(summary.state).toBe('failed')
      expect(summary.reason).toBe('1 client(s) accepted, at least 2 needed; 2 declined: "battery at 3% near 10.0.0.7", "battery at 4% near 10.0.0.8"')
      for (const client of [accepter, ...decliners]) {
        for (let i = 0; i < 250 && !client.messages.some(m => m.type === 'result'); i++) await sleep(20)
        expect(client.messages.filter(m => m.type === 'result' && m.roundId === started.id)).toEqual([{ type: 'result', roundId: started.id, state: 'failed', version: null, reason: '1 client(s) accepted, at least 2 needed; 2 declined' }])
      }
    } finally {
      for (const client of [accepter, ...decliners]) client.close()
    }
  })
})

describe('a client that never answers its offer', () => {
  it('is "unanswered" once the round has ended, not left "offered" as if the round still waited on it', async () => {
    const accepter = await rawClient(at, token, ['mnist'])
    const [decliner, silent] = [await rawClient(at, token, ['mnist'], { autoAccept: false }), await rawClient(at, token, ['mnist'], { autoAccept: false })]
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 3, minUploads: 2 }, deadlines: { acceptMs: 1000 } })
      for (let i = 0; i < 250 && !decliner.offers.some(o => o.id === started.id); i++) await sleep(20)
      // While the round waits, the silent client is "offered".
      expect((await roundStatus(started.id)).clients).toContainEqual({ clientId: silent.id, status: 'offered' })
      decliner.sendJson({ type: 'decline', roundId: started.id, reason: 'busy' })
      expect(await started.done).toMatchObject({ state: 'failed' })
      expect((await roundStatus(started.id)).clients).toEqual(expect.arrayContaining([{ clientId: silent.id, status: 'unanswered' }, { clientId: decliner.id, status: 'declined' }, { clientId: accepter.id, status: 'accepted' }]))
    } finally {
      for (const client of [accepter, decliner, silent]) client.close()
    }
  })
})

describe('clients the round no longer counts on', () => {

  it('tells a withdrawn client it has left when it sends progress or secure-aggregation messages', async () => {
    const clients = [await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist'])]
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 3, maxClients: 3 }, deadlines: { trainMs: 60_000 } })
      await untilState(started.id, 'collecting')
      const [a, b, quitter] = clients as [RawClient, RawClient, RawClient]
      quitter.sendJson({ type: 'decline', roundId: started.id, reason: 'local data unavailable' })
      quitter.sendJson({ type: 'progress', roundId: started.id, epoch: 1, epochs: 1, loss: 0.5 })
      expect(await quitter.next(m => m.type === 'error')).toMatchObject({ message: expect.stringMatching(/withdrew or was dropped/), left: true })
      quitter.sendJson({ type: 'secagg', roundId: started.id, payload: {} })
      expect(await quitter.next(m => m.type === 'error')).toMatchObject({ message: expect.stringMatching(/only from clients that accepted the round and are still in it/), left: true })
      const config = a.offers.find(o => o.id === started.id)
      if (config === undefined) throw new Error('no offer arrived')
      for (const client of [a, b]) await client.upload({ roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' }, new Uint8Array(weightOnly(config).buffer))
      expect(await started.done).toMatchObject({ state: 'published' })
    } finally {
      for (const client of clients) client.close()
    }
  })

  it('refuses an upload from a client that withdrew, telling it it is out; the round goes on without it', async () => {
    const clients = [await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist'])]
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 3, minUploads: 2 }, deadlines: { trainMs: 60_000 } })
      await untilState(started.id, 'collecting')
      const [a, b, quitter] = clients as [RawClient, RawClient, RawClient]
      const config = a.offers.find(o => o.id === started.id) as RoundConfig
      const update = weightOnly(config)
      const header = { roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' as const }
      await a.upload(header, new Uint8Array(update.buffer))
      quitter.sendJson({ type: 'decline', roundId: config.id, reason: 'local data unavailable' })
      for (let i = 0; i < 500 && !(await roundStatus(config.id)).clients.some(x => x.clientId === quitter.id && x.status === 'dropped'); i++) await sleep(20)
      await quitter.upload(header, new Uint8Array(update.buffer))
      expect(await quitter.next(m => m.type === 'error' && m.roundId === config.id)).toMatchObject({ message: expect.stringMatching(/withdrew or was dropped/), left: true })
      await b.upload(header, new Uint8Array(update.buffer))
      expect(await a.next(m => m.type === 'result' && m.roundId === config.id, 20_000)).toMatchObject({ state: 'published' })
      const status = await roundStatus(config.id)
      expect(status.clients).toEqual(expect.arrayContaining([{ clientId: quitter.id, status: 'dropped' }]))
      expect(events.filter(e => e.type === 'upload' && e.roundId === config.id).map(e => (e as { clientId: string }).clientId).sort()).toEqual([a.id, b.id].sort())
    } finally {
      for (const client of clients) client.close()
    }
  })

  it('tells a client that has not uploaded by the training deadline that the round goes on without it', async () => {
    const clients = [await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist'])]
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 3, minUploads: 2 }, deadlines: { trainMs: 1000 } })
      await untilState(started.id, 'collecting')
      const [a, b, slow] = clients as [RawClient, RawClient, RawClient]
      const config = a.offers.find(o => o.id === started.id) as RoundConfig
      const update = weightOnly(config)
      for (const client of [a, b]) await client.upload({ roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' }, new Uint8Array(update.buffer))
      expect(await slow.next(m => m.type === 'error' && m.roundId === config.id, 20_000)).toMatchObject({ left: true, message: expect.stringMatching(/no upload before the training deadline; the round goes on without this client/) })
      slow.sendJson({ type: 'progress', roundId: config.id, epoch: 1, epochs: 1, loss: 0.5 })
      expect(await a.next(m => m.type === 'result' && m.roundId === config.id, 20_000)).toMatchObject({ state: 'published' })
    } finally {
      for (const client of clients) client.close()
    }
  })

  it('a runtime whose accept comes too late stops at once: it neither trains, records nor sends an update', async () => {
    // Frames from the runtime reach the coordinator 1 s late once `delayed` is set.
    const target = new URL(at)
    let delayed = false
    const proxy = createServer(down => {
      const up = connect(Number(target.port), target.hostname)
      down.on('data', chunk => { if (delayed) setTimeout(() => up.write(chunk), 1000); else up.write(chunk) })
      up.on('data', chunk => down.write(chunk))
      const end = (): void => { up.destroy(); down.destroy() }
      for (const s of [up, down]) { s.on('close', end); s.on('error', end) }
    })
    await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve))
    const dir = join(root, 'late-accept')
    const [late] = await startParticipants(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, token, dir, 1, { size: 40 })
    const others = [await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist'])]
    try {
      if (late === undefined) throw new Error('no runtime')
      delayed = true
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 3, minUploads: 2 }, deadlines: { acceptMs: 300, trainMs: 60_000 } })
      await untilState(started.id, 'collecting')
      for (let i = 0; i < 500 && !late.events.some(e => e.type === 'error' && e.roundId === started.id); i++) await sleep(20)
      expect(late.events.find(e => e.type === 'error' && e.roundId === started.id)).toMatchObject({ message: expect.stringMatching(/acceptances are closed/) })
      // Done with the round ('bytes' ends a round's work) while it still collects from the others,
      // having trained nothing and sent nothing (it trained on and uploaded, refused, before).
      for (let i = 0; i < 250 && !late.events.some(e => e.type === 'bytes' && e.roundId === started.id); i++) await sleep(20)
      expect(late.events.filter(e => 'roundId' in e && e.roundId === started.id).map(e => e.type)).toEqual(['offer', 'error', 'bytes'])
      expect(events.some(e => e.type === 'state' && e.roundId === started.id && e.state !== 'open' && e.state !== 'collecting')).toBe(false)
      await expect(readFile(join(dir, 'runtime-0', 'updates-given.json'), 'utf8')).rejects.toThrow(/ENOENT/)
      const config = others[0]?.offers.find(o => o.id === started.id) as RoundConfig
      const update = weightOnly(config)
      for (const o of others) await o.upload({ roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' }, new Uint8Array(update.buffer))
      expect(await others[0]?.next(m => m.type === 'result' && m.roundId === config.id, 20_000)).toMatchObject({ state: 'published' })
      expect(events.filter(e => e.roundId === config.id && 'clientId' in e && e.clientId === late.participant.id).map(e => e.type)).not.toContain('rejected')
    } finally {
      for (const o of others) o.close()
      if (late !== undefined) await stopParticipants([late])
      proxy.close()
    }
  })
})

describe('selection', () => {
  it('starts no round that selects fewer clients than its minUploads (it could only fail, and clients size their DP noise for minUploads)', async () => {
    const clients = [await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist'])]
    try {
      const start = c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 2, minUploads: 3 } })
      await expect(start).rejects.toThrow(TooFewClientsError)
      await expect(start).rejects.toThrow(/2 eligible client\(s\) connected, at least 3 needed \(selection\.minUploads\)/)
    } finally {
      for (const client of clients) client.close()
    }
  })
})

describe('a client that leaves right after its upload', () => {
  it('keeps the upload, whose frame arrived whole before the connection closed', async () => {
    // 6.5 MB uploads: the digest takes long enough for the close to be seen meanwhile, which
    // settled the round's wait for the client and made its check refuse the upload ("stopped
    // collecting"), though the runtime had recorded it as given (found in CI).
    const model = mnistMlp({ hidden: [2048], seed: 2 })
    await c.ingest('wide-leaver', await modelFiles(model))
    model.dispose()
    const [a, b] = [await rawClient(at, token, ['wide-leaver']), await rawClient(at, token, ['wide-leaver'])]
    try {
      const started = await c.rounds.start({ model: 'wide-leaver', secure: { mode: 'none' }, selection: { minClients: 2 }, deadlines: { trainMs: 60_000 } })
      await untilState(started.id, 'collecting')
      const config = a.offers.find(o => o.id === started.id) as RoundConfig
      const update = weightOnly(config)
      const header = { roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' as const }
      await a.upload(header, new Uint8Array(update.buffer))
      for (let i = 0; i < 500 && !events.some(e => e.type === 'upload' && e.roundId === config.id && e.clientId === a.id); i++) await sleep(20)
      await b.upload(header, new Uint8Array(update.buffer))
      // Gone as soon as the frame is handed to the kernel: it arrives, then the connection ends.
      for (let i = 0; i < 1000 && b.socket.bufferedAmount > 0; i++) await sleep(2)
      b.socket.terminate()
      const summary = await started.done
      expect(summary.reason).toBeNull()
      expect(summary.participants.uploaded).toBe(2)
    } finally {
      for (const client of [a, b]) client.close()
    }
  }, 60_000)
})

describe('a client\'s own record of the updates it gave', () => {
  it('keeps a client that declines with its record (an upload this coordinator never took) out of the next round from that base, saying why', async () => {
    const clients = [await rawClient(at, token, ['mnist'], { autoAccept: false }), await rawClient(at, token, ['mnist'], { autoAccept: false }), await rawClient(at, token, ['mnist'], { autoAccept: false })]
    try {
      const request = { model: 'mnist', trainable: ['head'], secure: { mode: 'masking' as const }, selection: { minClients: 3 } }
      const started = await c.rounds.start(request)
      const [a, b, d] = clients as [RawClient, RawClient, RawClient]
      await a.next(m => m.type === 'offer' && m.config.id === started.id)
      const config = a.offers.find(o => o.id === started.id) as RoundConfig
      a.sendJson({ type: 'decline', roundId: config.id, reason: 'already uploaded from this base', given: { base: config.baseVersion, secure: true } })
      for (const other of [b, d]) other.sendJson({ type: 'decline', roundId: config.id, reason: 'not now' })
      expect((await started.done).state).toBe('failed')
      // b and d said no without a record: they stay eligible; a does not.
      await expect(c.rounds.start(request)).rejects.toThrow(`round for mnist not started: 2 eligible client(s) connected (1 more already uploaded from version ${config.baseVersion} to a round that failed or did not take the upload, and give one update per base version), at least 3 needed; those that uploaded train again from a new version (ingest changed weights: the same files are the same version)`)
      const plain = await c.rounds.start({ ...request, secure: { mode: 'none' }, selection: { minClients: 2 }, deadlines: { acceptMs: 500 } })
      await b.next(m => m.type === 'offer' && m.config.id === plain.id)
      expect([...(b.offers.find(o => o.id === plain.id) as RoundConfig).clients].sort()).toEqual([b.id, d.id].sort())
      expect(a.offers.some(o => o.id === plain.id)).toBe(false)
      await plain.done
    } finally {
      for (const client of clients) client.close()
    }
  })
})

describe('a client that connects again', () => {
  it('is out of its rounds when its new connection replaces one not yet seen closed (a restarted runtime), so the round does not wait for it', async () => {
    const [a, b, restarting] = [await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist'])]
    let again: RawClient | undefined
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 3 }, deadlines: { trainMs: 60_000 } })
      await untilState(started.id, 'collecting')
      const config = a.offers.find(o => o.id === started.id)
      if (config === undefined) throw new Error('no offer arrived')
      const update = weightOnly(config)
      for (const client of [a, b]) await client.upload({ roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' }, new Uint8Array(update.buffer))
      // The same key connects again while its first connection is still open (no close was seen).
      const begun = Date.now()
      again = await rawClient(at, token, ['mnist'], { identity: restarting.identity })
      expect(await restarting.closed).toEqual({ code: 4002, reason: 'replaced by a newer connection of the same client' })
      const result = await a.next(m => m.type === 'result' && m.roundId === config.id, 20_000)
      expect(result).toMatchObject({ state: 'published' })
      expect(Date.now() - begun).toBeLessThan(20_000)
      const status = await (await fetch(`${at}/v1/rounds/${config.id}`, { headers: { authorization: `Bearer ${c.adminToken}` } })).json() as { clients: Array<{ client: string, status: string }> }
      expect(status.clients).toEqual(expect.arrayContaining([{ clientId: restarting.id, status: 'dropped' }]))
    } finally {
      for (const client of [a, b, restarting, again]) client?.close()
    }
  })
})

describe('uploads', () => {
  /** A mode-none round of at least 2 clients, as `client` was offered it, and a zero update of weight 0.02 to send. */
  async function roundOfferedTo (client: RawClient): Promise<{ started: { id: string, done: Promise<unknown> }, config: RoundConfig, upload: (from: RawClient) => Promise<void> }> {
    const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 2 }, deadlines: { acceptMs: 30_000, trainMs: 60_000 } })
    const offer = await client.next(m => m.type === 'offer' && m.config.id === started.id)
    if (offer.type !== 'offer') throw new Error('no offer')
    const config = offer.config
    const update = weightOnly(config)
    const upload = async (from: RawClient): Promise<void> => { await from.upload({ roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' }, new Uint8Array(update.buffer)) }
    return { started, config, upload }
  }

  it('holds an upload sent before the others accepted (mode none) until uploads open, instead of refusing it', async () => {
    const quick = await rawClient(at, token, ['mnist'])
    const slow = await rawClient(at, token, ['mnist'], { autoAccept: false })
    try {
      const { config, upload } = await roundOfferedTo(quick)
      // The quick client has accepted and uploads at once; the slow one has not answered yet.
      await upload(quick)
      await sleep(300)
      expect(events.some(e => e.type === 'state' && e.roundId === config.id && e.state === 'collecting')).toBe(false)
      slow.sendJson({ type: 'accept', roundId: config.id })
      await untilState(config.id, 'collecting')
      await upload(slow)
      expect(await quick.next(m => m.type === 'result' && m.roundId === config.id)).toMatchObject({ state: 'published' })
      expect(quick.messages.filter(m => m.type === 'error')).toEqual([])
      expect(events.filter(e => e.type === 'upload' && e.roundId === config.id).map(e => e.type === 'upload' && e.clientId).sort()).toEqual([quick.id, slow.id].sort())
    } finally {
      quick.close()
      slow.close()
    }
  })

  it('reports the median of the uploaders\' losses: one client\'s word does not set the round\'s trainLoss (review 47b)', async () => {
    const clients = await Promise.all(Array.from({ length: 3 }, async () => await rawClient(at, token, ['mnist'])))
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 3, maxClients: 3 } })
      const offers = await Promise.all(clients.map(async client => await client.next(m => m.type === 'offer' && m.config.id === started.id)))
      const config = (offers[0] as Extract<typeof offers[0], { type: 'offer' }>).config
      await untilState(config.id, 'collecting')
      const update = weightOnly(config)
      for (const [i, loss] of [0.30, 0.31, -1e9].entries()) {
        const client = clients[i] as RawClient
        client.sendJson({ type: 'progress', roundId: config.id, epoch: 1, epochs: 1, loss })
        await client.upload({ roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' }, new Uint8Array(update.buffer))
      }
      const summary = await started.done as { state: string, metrics: Record<string, number> }
      expect(summary.state).toBe('published')
      // The mean was −333,333,333.
      expect(summary.metrics.trainLoss).toBe(0.30)
    } finally {
      for (const client of clients) client.close()
    }
  })

  it('does not sum a held upload whose client left before uploads opened', async () => {
    const quick = await rawClient(at, token, ['mnist'])
    const slow = [await rawClient(at, token, ['mnist'], { autoAccept: false }), await rawClient(at, token, ['mnist'], { autoAccept: false })]
    try {
      const { started, config, upload } = await roundOfferedTo(quick)
      await upload(quick)
      await sleep(200)
      quick.close()
      await quick.closed
      for (const s of slow) s.sendJson({ type: 'accept', roundId: config.id })
      await untilState(config.id, 'collecting')
      for (const s of slow) await upload(s)
      const summary = await started.done
      expect(summary).toMatchObject({ state: 'published', participants: { uploaded: 2 } })
      expect(events.filter(e => e.type === 'upload' && e.roundId === config.id).map(e => e.type === 'upload' && e.clientId).sort()).toEqual(slow.map(s => s.id).sort())
    } finally {
      for (const s of slow) s.close()
    }
  })

  it('refuses a held upload with its reason when the round fails before uploads open', async () => {
    const quick = await rawClient(at, token, ['mnist'])
    const never = await rawClient(at, token, ['mnist'], { autoAccept: false })
    try {
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 2 }, deadlines: { acceptMs: 1_000 } })
      const offer = await quick.next(m => m.type === 'offer' && m.config.id === started.id)
      if (offer.type !== 'offer') throw new Error('no offer')
      const config = offer.config
      await quick.upload({ roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' }, new Uint8Array(config.vectorLength * 4))
      expect(await quick.next(m => m.type === 'error' && m.roundId === config.id)).toMatchObject({ message: expect.stringMatching(/round ended before uploads opened/) })
      expect(await started.done).toMatchObject({ state: 'failed', reason: expect.stringMatching(/1 client\(s\) accepted, at least 2 needed/) })
    } finally {
      quick.close()
      never.close()
    }
  })
})

describe('a round that cannot be recorded', () => {
  it('leaves no round behind and frees its clients for the next one', async () => {
    const clients = [await rawClient(at, token, ['mnist'], { autoAccept: false }), await rawClient(at, token, ['mnist'], { autoAccept: false })]
    // A second connection to the coordinator's database, with a trigger refusing the second offer:
    // a real SQLite failure part-way through recording the round.
    const db = new DatabaseSync(join(root, 'c', 'coordinator.sqlite'))
    try {
      const rounds = (): number => (db.prepare('SELECT COUNT(*) AS n FROM rounds').get() as { n: number }).n
      const before = rounds()
      db.exec(`CREATE TRIGGER refuse_offer BEFORE INSERT ON round_clients WHEN NEW.client_id = '${clients[1]?.id}' BEGIN SELECT RAISE(ABORT, 'offer refused by the test'); END`)
      const request = { model: 'mnist', trainable: ['head'], secure: { mode: 'none' as const }, selection: { minClients: 2, maxClients: 2 } }
      await expect(c.rounds.start(request)).rejects.toThrow(/offer refused by the test/)
      expect(rounds()).toBe(before)
      db.exec('DROP TRIGGER refuse_offer')
      const started = await c.rounds.start(request)
      const offered = await Promise.all(clients.map(async client => await client.next(m => m.type === 'offer' && m.config.id === started.id)))
      expect(offered).toHaveLength(2)
      expect(rounds()).toBe(before + 1)
      for (const client of clients) client.sendJson({ type: 'decline', roundId: started.id, reason: 'test over' })
      expect(await started.done).toMatchObject({ state: 'failed' })
    } finally {
      db.close()
      for (const client of clients) client.close()
    }
  })
})

describe('masking rounds too small to run', () => {
  it('are refused before any offer: fewer than 3 eligible clients, or a selection capped below 3', async () => {
    const [a, b] = [await rawClient(at, token, ['mnist']), await rawClient(at, token, ['mnist'])]
    try {
      const request = { model: 'mnist', trainable: ['head'], secure: { mode: 'masking' as const }, selection: { minClients: 2 } }
      await expect(c.rounds.start(request)).rejects.toThrow(TooFewClientsError)
      await expect(c.rounds.start(request)).rejects.toThrow('round for mnist not started: 2 eligible client(s) connected, at least 3 needed (masking needs 3)')
      // Clients connected for another model are said to be there (review 52a: "0 eligible" alone).
      const other = await rawClient(at, token, ['other-model'])
      try {
        await expect(c.rounds.start(request)).rejects.toThrow('round for mnist not started: 2 eligible client(s) connected (1 more connected for other models only: a runtime trains the models its participant names), at least 3 needed (masking needs 3)')
      } finally {
        other.close()
      }
      await expect(c.rounds.start({ ...request, selection: { minClients: 2, maxClients: 2 } })).rejects.toThrow('selection.maxClients 2: masking needs at least 3 clients')
      expect([...a.messages, ...b.messages].filter(m => m.type === 'offer')).toEqual([])
    } finally {
      a.close()
      b.close()
    }
  })
})

describe('a round whose clip leaves no fixed-point scale (review 47b)', () => {
  it('is a 400 naming the fields, not a 500, and frees the clients it selected', async () => {
    const clients = await Promise.all(Array.from({ length: 6 }, async () => await rawClient(at, token, ['mnist'])))
    try {
      const request = { model: 'mnist', trainable: ['head'], secure: { mode: 'masking' }, dp: { noiseMultiplier: 100, clip: 1e6 }, selection: { minClients: 6, maxClients: 6 } }
      const res = await fetch(`${at}/v1/rounds`, { method: 'POST', headers: { authorization: `Bearer ${c.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(request) })
      expect(res.status).toBe(400)
      expect(((await res.json()) as { message: string }).message).toBe('round for mnist: clip 1, dp.clip 1000000 at noise multiplier 100 and 6 clients leave no fixed-point scale under 2^31 (their updates could overflow the sum); lower the clip, dp.clip or dp.noiseMultiplier or the clients (selection.maxClients)')
      // Beyond the schema's bound: named by the schema.
      const over = await fetch(`${at}/v1/rounds`, { method: 'POST', headers: { authorization: `Bearer ${c.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ ...request, dp: { noiseMultiplier: 1, clip: 1e12 } }) })
      expect(over.status).toBe(400)
      expect(((await over.json()) as { message: string }).message).toMatch(/dp\.clip/)
      // The clients are free: a round that fits starts with all six.
      const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'masking' }, selection: { minClients: 6, maxClients: 6 } })
      await Promise.all(clients.map(async client => await client.next(m => m.type === 'offer' && m.config.id === started.id)))
      for (const client of clients) client.close()
      expect((await started.done).state).toBe('failed')
    } finally {
      for (const client of clients) client.close()
    }
  })
})

describe('schedule', () => {
  it('runs its rounds without an onRound, and ends, reporting the error, when they can no longer start, instead of taking the process down', async () => {
    const errors: Error[] = []
    const client = await rawClient(at, token, ['mnist'])
    const model = mnistMlp({ hidden: [16], seed: 9 })
    await c.ingest('mnist', await modelFiles(model)) // version 1 (the pinned base) is no longer the latest
    model.dispose()
    const schedule = c.rounds.schedule({ model: 'mnist', baseVersion: 1, trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 1 } }, { pauseMs: 10, onError: err => errors.push(err) })
    for (let i = 0; i < 250 && errors.length === 0; i++) await sleep(20)
    await schedule.stop()
    client.close()
    expect(errors).toHaveLength(1)
    expect(errors[0]).toBeInstanceOf(ConflictError)
  })
})

describe('a runtime whose local work fails or hangs', () => {
  it('declines at once when its data fails, so the round does not wait out its training deadline', async () => {
    const ps = await startParticipants(at, token, join(root, 'failing'), 3, {
      size: 50,
      extra: i => i === 2 ? { models: { mnist: { data: () => { throw new Error('local data store unavailable') } } } } : {}
    })
    try {
      const begun = Date.now()
      const summary = await c.rounds.run({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 3 }, deadlines: { trainMs: 60_000 } })
      expect(summary).toMatchObject({ state: 'published', participants: expect.objectContaining({ uploaded: 2 }) })
      expect(Date.now() - begun).toBeLessThan(30_000)
    } finally {
      await stopParticipants(ps)
    }
  })

  it('stops its work on a round once the round has ended, and is free for the next offer at once', async () => {
    let hang = true
    const ps = await startParticipants(at, token, join(root, 'hanging'), 2, {
      size: 50,
      extra: i => i === 1
        ? { models: { mnist: { data: async () => { if (hang) await new Promise(() => {}); return mnistSlice(1, 50) } } } } // hangs, watching no signal
        : {}
    })
    try {
      const first = await c.rounds.run({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 2 }, deadlines: { trainMs: 1_000 } })
      // It fails (one upload of two needed); its result reaches both runtimes.
      expect(first).toMatchObject({ state: 'failed', participants: expect.objectContaining({ accepted: 2, uploaded: 1 }) })
      hang = false
      // Told at the training deadline that the round goes on without it, the hung runtime ended its
      // part: no waiting out its budget (the deadlines + 5 s).
      const second = await c.rounds.run({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 2 }, deadlines: { acceptMs: 2_000, trainMs: 60_000 } })
      expect(second).toMatchObject({ state: 'published', participants: expect.objectContaining({ accepted: 2, uploaded: 2 }) })
      expect(ps[1]?.events).toEqual(expect.arrayContaining([expect.objectContaining({ type: 'error', roundId: first.id, message: expect.stringMatching(/no upload before the training deadline/) })]))
    } finally {
      await stopParticipants(ps)
    }
  })
})

describe('frame sizes', () => {
  const closeOf = async (ws: WebSocket): Promise<number> => await new Promise(resolve => ws.once('close', code => resolve(code)))

  it('cuts a client (1009) that sends more than a hello before its hello, before ws buffers the frame', async () => {
    const ws = new WebSocket(`${at.replace(/^http/, 'ws')}/v1/rounds/ws`, { headers: { authorization: `Bearer ${token}` } })
    const replies: string[] = []
    ws.on('message', data => replies.push(data.toString()))
    const closed = closeOf(ws)
    await new Promise(resolve => ws.once('open', resolve))
    // Far below maxPayload (256 MiB): ws alone would buffer all of it, then the hello check refuse it (4003).
    ws.send(new Uint8Array(8 << 20))
    expect(await closed).toBe(1009)
    expect(replies.some(r => /frame too large: over 32768 bytes before its hello/.test(r))).toBe(true)
    expect((await fetch(`${at}/v1/models`)).status).toBe(200)
  })

  it('lets a participant send its upload of the round\'s size, and cuts a larger one or one from a client no round waits for', async () => {
    // All of a 784-2048-10 MLP is trained: its upload (6.5 MB) is larger than any text message.
    const model = mnistMlp({ hidden: [2048], seed: 1 })
    await c.ingest('wide', await modelFiles(model))
    model.dispose()
    const [a, b] = [await rawClient(at, token, ['wide']), await rawClient(at, token, ['wide'])]
    const stranger = await rawClient(at, token, ['nothing-here'])
    try {
      const started = await c.rounds.start({ model: 'wide', secure: { mode: 'none' }, selection: { minClients: 2 }, deadlines: { trainMs: 60_000 } })
      await untilState(started.id, 'collecting')
      const config = a.offers.find(o => o.id === started.id)
      if (config === undefined) throw new Error('no offer arrived')
      expect(config.vectorLength * 4).toBeGreaterThan(6e6)
      const update = weightOnly(config)
      const header = { roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' as const }
      await a.upload(header, new Uint8Array(update.buffer))
      for (let i = 0; i < 500 && !events.some(e => e.type === 'upload' && e.clientId === a.id); i++) await sleep(20)
      expect(events.some(e => e.type === 'upload' && e.roundId === config.id && e.clientId === a.id)).toBe(true)
      // b's frame is 2 MiB over its one upload; the stranger sends an upload-sized frame for a round it is not in.
      await b.upload(header, new Uint8Array(update.byteLength + (2 << 20)))
      stranger.socket.send(new Uint8Array(update.byteLength))
      expect((await b.closed).code).toBe(1009)
      expect(b.messages.some(m => m.type === 'error' && /frame too large: over \d+ bytes for the upload a round waits for/.test(m.message))).toBe(true)
      expect((await stranger.closed).code).toBe(1009)
      expect(stranger.messages.some(m => m.type === 'error' && /while no round waits for an upload from it/.test(m.message))).toBe(true)
      expect((await fetch(`${at}/v1/models`)).status).toBe(200)
    } finally {
      for (const client of [a, b, stranger]) client.close()
    }
  }, 60_000)
})
