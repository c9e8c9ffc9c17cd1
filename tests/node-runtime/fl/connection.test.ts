/**
 * The runtime's connection to the rounds socket: versions told apart at the handshake (either
 * side of a mismatch says so), refusals read out, and reconnects backed off.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'
import { createCoordinator, type Coordinator } from '../../../coordinator/coordinator.ts'
import { createParticipant, reconnectDelay, REFUSED_RECONNECT_MAX_MS, type ParticipantEvent } from '../../../node-runtime/fl/participant.ts'
import { generateSigningKey } from '../../../shared/crypto/sign.ts'
import { ROUNDS_SUBPROTOCOL } from '../../../shared/rounds/messages.ts'

let root: string
let coordinator: Coordinator
let url: string
let token: string

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-connection-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'c'), port: 0 })
  url = await coordinator.start()
  token = await coordinator.createToken('edge')
})
afterAll(async () => {
  await coordinator.stop()
  await rm(root, { recursive: true, force: true })
})

/** A participant that records its events; stopped by the caller. */
function participantAt (at: string, bearer: string, extra: { reconnectMs?: number, reconnectMaxMs?: number } = {}): { events: ParticipantEvent[], participant: ReturnType<typeof createParticipant> } {
  const events: ParticipantEvent[] = []
  const participant = createParticipant({
    url: at,
    token: bearer,
    identity: generateSigningKey(),
    models: { mnist: { data: () => { throw new Error('no round is expected here') } } },
    fetchVersion: async () => { throw new Error('no round is expected here') },
    onEvent: e => events.push(e),
    ...extra
  })
  return { events, participant }
}

async function until (check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

/** An upgrade request sent by hand: the status and body the coordinator answers with. */
async function upgrade (protocols: string, auth: string | undefined): Promise<{ status: number, body: string }> {
  const u = new URL('/v1/rounds/ws', url)
  return await new Promise((resolve, reject) => {
    const req = request({
      host: u.hostname,
      port: u.port,
      path: u.pathname,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': Buffer.alloc(16, 7).toString('base64'),
        ...(protocols === '' ? {} : { 'sec-websocket-protocol': protocols }),
        ...(auth === undefined ? {} : { authorization: `Bearer ${auth}` })
      },
      signal: AbortSignal.timeout(5000)
    })
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve({ status: res.statusCode ?? 0, body: '' }) })
    req.on('response', res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('round protocol version at the handshake', () => {
  it('the runtime offers the versioned subprotocol and the coordinator echoes it', async () => {
    expect(ROUNDS_SUBPROTOCOL).toBe('blockfed.rounds.v8')
    const { participant, events } = participantAt(url, token)
    await participant.start()
    try {
      await participant.ready(10_000)
      expect(events.filter(e => e.type === 'error')).toEqual([])
    } finally {
      await participant.stop()
    }
  })

  it('a client offering another version is refused with a 400 that names both, before its token is looked at', async () => {
    for (const [offered, theirs] of [['blockfed.rounds.v7', '7'], ['blockfed.rounds.v9, bearer.x', '9']] as const) {
      for (const auth of [token, undefined]) {
        const answer = await upgrade(offered, auth)
        expect(answer.status).toBe(400)
        expect(answer.body).toContain(`this coordinator speaks round protocol 8, the other side ${theirs} (subprotocol blockfed.rounds.v8 expected)`)
      }
    }
    // Offering ours beside an older one is fine: a client that speaks both.
    expect((await upgrade('blockfed.rounds.v7, blockfed.rounds.v8', token)).status).toBe(101)
    // Without any rounds subprotocol (a Node runtime from before it named the version) the hello is what refuses it (ws-fuzz).
    expect((await upgrade('', token)).status).toBe(101)
  })

  it('a runtime meeting a coordinator that does not echo the subprotocol (an older blockfed) says so, and never counts as connected', async () => {
    const old = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/v1/rounds/ws', handleProtocols: () => false })
    await new Promise(resolve => old.once('listening', resolve))
    const { participant, events } = participantAt(`http://127.0.0.1:${(old.address() as { port: number }).port}`, token, { reconnectMs: 50 })
    await participant.start()
    try {
      await until(() => events.some(e => e.type === 'error'), 'an error')
      const first = events.find(e => e.type === 'error')
      expect(first).toEqual({ type: 'error', message: 'this runtime speaks round protocol 8, the other side another one (the coordinator, of another blockfed version, does not answer subprotocol blockfed.rounds.v8): run the same blockfed version on the runtime and the coordinator' })
      expect(events.some(e => e.type === 'connected')).toBe(false)
    } finally {
      await participant.stop()
      await new Promise(resolve => old.close(resolve))
    }
  })
})

describe('refusals and reconnects', () => {
  it('keeps reconnecting after a refusal even when its event listener throws', async () => {
    const attempts: number[] = []
    const refusing = new WebSocketServer({ host: '127.0.0.1', port: 0, verifyClient: (_info, cb) => { attempts.push(Date.now()); cb(false, 403, 'no') } })
    await new Promise(resolve => refusing.once('listening', resolve))
    const unhandled: unknown[] = []
    const onUnhandled = (err: unknown): void => { unhandled.push(err) }
    process.on('unhandledRejection', onUnhandled)
    const events: ParticipantEvent[] = []
    const participant = createParticipant({
      url: `http://127.0.0.1:${(refusing.address() as { port: number }).port}`,
      token,
      identity: generateSigningKey(),
      models: { mnist: { data: () => { throw new Error('no round is expected here') } } },
      fetchVersion: async () => { throw new Error('no round is expected here') },
      onEvent: e => { events.push(e); if (e.type === 'error') throw new Error('a listener that throws') },
      reconnectMs: 20,
      reconnectMaxMs: 40
    })
    await participant.start()
    try {
      await until(() => attempts.length >= 3, '3 attempts')
    } finally {
      await participant.stop()
      await new Promise(resolve => refusing.close(resolve))
      process.off('unhandledRejection', onUnhandled)
    }
    expect(events.some(e => e.type === 'error' && e.message === 'the coordinator refused the connection: 403 no')).toBe(true)
    expect(unhandled).toEqual([])
  })

  it('a refused token is reported with the coordinator\'s reason, not a bare status; ready() rejects with it at once', async () => {
    const { participant, events } = participantAt(url, 'bf_not-a-token', { reconnectMs: 50 })
    await expect(participant.ready(60_000)).rejects.toThrow(/not started, or stopped/)
    await participant.start()
    try {
      // Well within its 60 s: the refusal ends the wait (before, only the deadline did).
      await expect(participant.ready(60_000)).rejects.toThrow(/^participant [0-9a-f]{8}: the coordinator refused the connection: 40[13] \S/)
      await until(() => events.some(e => e.type === 'error'), 'an error')
      const error = events.find(e => e.type === 'error')
      expect(error?.type === 'error' ? error.message : '').toMatch(/^the coordinator refused the connection: 40[13] \S/)
      expect(events.some(e => e.type === 'error' && /Unexpected server response|closed before the connection/.test(e.message))).toBe(false)
      const waiting = participant.ready(60_000)
      await participant.stop()
      await expect(waiting).rejects.toThrow(/stopped/)
    } finally {
      await participant.stop()
    }
  })

  it('an operator\'s token is refused naming the role that trains; without an onEvent listener the refusal is said on stderr, once', async () => {
    const said: string[] = []
    const original = console.error
    console.error = (...args: unknown[]) => { said.push(args.join(' ')) }
    const participant = createParticipant({
      url,
      token: coordinator.adminToken,
      identity: generateSigningKey(),
      models: { mnist: { data: () => { throw new Error('no round is expected here') } } },
      fetchVersion: async () => { throw new Error('no round is expected here') },
      reconnectMs: 20,
      reconnectMaxMs: 40
    })
    try {
      await participant.start()
      await expect(participant.ready(60_000)).rejects.toThrow('403 this API token may not take part in rounds: only edge-role tokens train (admin and publisher tokens operate); make one with `blockfed token create edge` or POST /v1/tokens {"role":"edge"}')
      // It keeps trying (a role can be changed by no one, but a proxy's 403 may pass): said once, not per attempt.
      await until(() => said.length > 0, 'a line on stderr')
      await new Promise(resolve => setTimeout(resolve, 200))
    } finally {
      await participant.stop()
      console.error = original
    }
    expect(said).toEqual([expect.stringMatching(/^blockfed: participant [0-9a-f]{8}: the coordinator refused the connection: 403 this API token may not take part in rounds: only edge-role tokens train .*; it keeps trying$/)])
  })

  it('refused for good (a revoked token), backs off past reconnectMaxMs toward minutes instead of knocking every few seconds (review 52a)', async () => {
    let attempts = 0
    const body = JSON.stringify({ error: 'UnauthenticatedError', message: 'this API token was revoked at 2026-11-24T00:00:00.000Z' })
    const server = createServer()
    server.on('upgrade', (_req, socket) => {
      attempts++
      socket.end(`HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const participant = createParticipant({
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      token: 'bf_revoked',
      identity: generateSigningKey(),
      models: { mnist: { data: () => { throw new Error('no round is expected here') } } },
      fetchVersion: async () => { throw new Error('no round is expected here') },
      onEvent: () => {},
      reconnectMs: 20,
      reconnectMaxMs: 40
    })
    try {
      await participant.start()
      await expect(participant.ready(10_000)).rejects.toThrow('401 this API token was revoked at')
      await new Promise(resolve => setTimeout(resolve, 1200))
    } finally {
      await participant.stop()
      await new Promise(resolve => server.close(resolve))
    }
    // Waits of at least 10, 20, 40, … 640 ms (half of each doubling one is fixed): at most 8
    // attempts in 1.2 s. Capped at reconnectMaxMs (40 ms), as before, it made 30 or more.
    expect(attempts).toBeGreaterThan(1)
    expect(attempts).toBeLessThanOrEqual(8)
    expect(REFUSED_RECONNECT_MAX_MS).toBe(300_000)
  })

  it('backs off exponentially to its cap, with half of each wait random', () => {
    expect([0, 1, 2, 3, 4, 5, 10, 100].map(n => reconnectDelay(n, 100, 1000, 0))).toEqual([50, 100, 200, 400, 500, 500, 500, 500])
    expect([0, 1, 2, 3, 4].map(n => reconnectDelay(n, 100, 1000, 0.999999)).map(Math.round)).toEqual([100, 200, 400, 800, 1000])
    // Holding a masking round it uploaded to: no backoff (the restarted coordinator's wait is short).
    expect([0, 3, 10].map(n => reconnectDelay(n, 100, 1000, 0, true))).toEqual([50, 50, 50])
    // A first wait above the cap is kept, not cut to the cap.
    expect(reconnectDelay(0, 10_000, 5000, 0)).toBe(5000)
    expect(reconnectDelay(5, 10_000, 5000, 0)).toBe(5000)
  })

  it('a refused runtime knocks less and less often', async () => {
    // A server that refuses the first upgrades, counting them.
    const attempts: number[] = []
    const refusing = new WebSocketServer({ host: '127.0.0.1', port: 0, verifyClient: (_info, cb) => { attempts.push(Date.now()); cb(false, 403, 'not yet') } })
    await new Promise(resolve => refusing.once('listening', resolve))
    const { participant, events } = participantAt(`http://127.0.0.1:${(refusing.address() as { port: number }).port}`, token, { reconnectMs: 40, reconnectMaxMs: 640 })
    await participant.start()
    try {
      await until(() => attempts.length >= 6, '6 attempts')
      const gaps = attempts.slice(1).map((t, i) => t - (attempts[i] as number))
      // Waits of at least 20, 40, 80, 160, 320 ms (the fixed half of each): the fifth gap is
      // above 300 ms, where a fixed 40 ms retry would have made a dozen attempts.
      expect(gaps[4]).toBeGreaterThanOrEqual(300)
      expect(events.filter(e => e.type === 'error').every(e => e.type === 'error' && e.message === 'the coordinator refused the connection: 403 not yet')).toBe(true)
    } finally {
      await participant.stop()
      await new Promise(resolve => refusing.close(resolve))
    }
  })
})
