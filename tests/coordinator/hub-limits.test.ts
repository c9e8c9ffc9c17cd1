/**
 * What the rounds hub bounds for all clients together (review 38a): one edge token may open any
 * number of connections under fresh keys, so per-connection limits alone let eight of them hold
 * the event loop for seconds, and thirty hold 120 MiB of messages never finished. A real hub
 * (coordinator/rounds/hub.ts) on 127.0.0.1, with handlers that do nothing.
 */
import { afterEach, describe, expect, it } from 'vitest'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import WebSocket from 'ws'
import { roundHub, type RoundHubOptions } from '../../coordinator/rounds/hub.ts'
import { upgradeStatus } from '../helpers/upgrade-status.ts'
import { rawClient, type RawClient } from '../helpers/raw-round-client.ts'

const TOKEN = 'hub-limits-token'
const opened: Array<{ close: () => Promise<void> }> = []
const clients: RawClient[] = []
afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  for (const s of opened.splice(0)) await s.close()
})

async function hubAt (options: Partial<RoundHubOptions>): Promise<{ url: string, clientsSeen: () => number }> {
  const server = http.createServer((_req, res) => { res.end('ok') })
  const hub = roundHub({
    trainer: async token => token === TOKEN ? { tokenId: 'test-token' } : { refused: 'unknown API token', status: 401 as const },
    handlers: { message: () => {}, upload: () => {}, disconnect: () => {}, connected: () => ({ rounds: [], awaiting: [] }), uploadAllowance: () => 0 },
    maxPayload: 64 << 20,
    pingMs: 10_000,
    handshakeMs: 10_000,
    ...options
  })
  hub.attach(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  opened.push({ close: async () => { await hub.stop(); server.closeAllConnections(); await new Promise(resolve => server.close(resolve)) } })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, clientsSeen: () => hub.clients().length }
}

const connect = async (url: string): Promise<RawClient> => {
  const client = await rawClient(url, TOKEN, ['m'])
  clients.push(client)
  return client
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

describe('the rounds hub, for all clients together', () => {
  it('takes at most maxConnections at once: one more is refused with 503, and taken once one leaves', async () => {
    const { url, clientsSeen } = await hubAt({ maxConnections: 3 })
    const three = [await connect(url), await connect(url), await connect(url)]
    expect(await upgradeStatus(url, TOKEN)).toMatchObject({ status: 503, body: expect.stringMatching(/holds 3 round connections/) })
    three[0]?.close()
    await three[0]?.closed
    for (let i = 0; i < 100 && clientsSeen() > 2; i++) await sleep(10)
    expect((await connect(url)).id).toMatch(/^[0-9a-f]{64}$/)
  })

  it('takes at most maxConnectionsPerToken on one token: more are refused with 429, other tokens still get in (review 47b)', async () => {
    const OTHER = 'hub-limits-other'
    const server = await hubAt({
      maxConnections: 10,
      maxConnectionsPerToken: 2,
      trainer: async token => token === TOKEN ? { tokenId: 'one' } : token === OTHER ? { tokenId: 'two' } : { refused: 'unknown API token', status: 401 as const }
    })
    const two = [await connect(server.url), await connect(server.url)]
    // One token held every place of the hub before: here, its third connection is refused.
    expect(await upgradeStatus(server.url, TOKEN)).toMatchObject({ status: 429, body: expect.stringMatching(/this API token holds 2 round connections, as many as one token may; .*--round-connections-per-token/) })
    const other = await rawClient(server.url, OTHER, ['m'])
    clients.push(other)
    expect(other.id).toMatch(/^[0-9a-f]{64}$/)
    // A place comes back when one closes.
    two[0]?.close()
    await two[0]?.closed
    for (let i = 0; i < 100 && server.clientsSeen() > 2; i++) await sleep(10)
    expect((await connect(server.url)).id).toMatch(/^[0-9a-f]{64}$/)
  })

  it('cuts the client that took most of the hub\'s parse time, and not one sending small messages beside it', async () => {
    // The byte budget per client is lifted: only the parse-time budget can cut here.
    const { url } = await hubAt({ parseBudgetMs: 150, textBudgetBytes: 1 << 30 })
    const [flooder, honest] = [await connect(url), await connect(url)]
    // 200,000 keys (≈ 2.2 MB): tens of ms of JSON.parse each, refused by the schema after.
    const heavy = `{${Array.from({ length: 200_000 }, (_, i) => `"k${i}":0`).join(',')}}`
    const small = JSON.stringify({ type: 'progress', roundId: 'r_0000000000000000', epoch: 1, epochs: 1, loss: 0.5 })
    let sent = 0
    for (; sent < 40 && flooder.socket.readyState === WebSocket.OPEN; sent++) {
      flooder.sendJson(heavy)
      honest.sendJson(small)
      await sleep(20)
    }
    const closed = await Promise.race([flooder.closed, sleep(10_000).then(() => ({ code: 0, reason: 'still open after 10 s' }))])
    expect(closed.code).toBe(1008)
    expect(flooder.messages.some(m => m.type === 'error' && /too much to parse/.test(m.message))).toBe(true)
    expect(sent).toBeLessThan(40)
    honest.sendJson(small)
    await sleep(100)
    expect(honest.socket.readyState).toBe(WebSocket.OPEN)
  })

  it('cuts a client whose message stalls under way, and not one whose long message keeps coming', async () => {
    const { url } = await hubAt({ pingMs: 200 })
    const [stalled, steady] = [await connect(url), await connect(url)]
    // A first part of 200 kB and nothing after: ws would keep it until the last part, for ever.
    stalled.socket.send(`{"type":"progress","x":"${'a'.repeat(200_000)}`, { fin: false })
    // 1 MB in parts of 50 kB every 50 ms (1 MB/s), then its last part.
    steady.socket.send(`{"type":"progress","x":"${'b'.repeat(50_000)}`, { fin: false })
    for (let i = 0; i < 20; i++) {
      await sleep(50)
      steady.socket.send('b'.repeat(50_000), { fin: false })
    }
    steady.socket.send('"}', { fin: true })
    const closed = await Promise.race([stalled.closed, sleep(5_000).then(() => undefined)])
    expect(closed?.code).toBe(1008)
    expect(stalled.messages.some(m => m.type === 'error' && /a message stalled: 200\d+ bytes under way/.test(m.message))).toBe(true)
    expect(steady.socket.readyState).toBe(WebSocket.OPEN)
  })
})

describe('the rounds hub when letting a client go fails', () => {
  it('says so and keeps serving: a throw from a close, a replacement or a cut never reaches the process (review 53b)', async () => {
    const errors: string[] = []
    const { url, clientsSeen } = await hubAt({
      handlers: { message: () => {}, upload: () => {}, disconnect: () => { throw new Error('database or disk is full') }, connected: () => ({ rounds: [], awaiting: [] }), uploadAllowance: () => 0 },
      onError: message => { errors.push(message) }
    })
    const first = await connect(url)
    first.close()
    await first.closed
    await expect.poll(() => errors.length, { timeout: 2_000 }).toBe(1)
    expect(errors[0]).toBe(`rounds: letting client ${first.id.slice(0, 16)}… go failed: database or disk is full`)
    // Still serving: the next client gets in, and its close is said the same way.
    const second = await connect(url)
    expect(clientsSeen()).toBe(1)
    second.close()
    await second.closed
    await expect.poll(() => errors.length, { timeout: 2_000 }).toBe(2)
  })
})
