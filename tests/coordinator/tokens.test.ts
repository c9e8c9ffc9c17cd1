/**
 * API tokens can be listed and revoked (coordinator/http/token-routes.ts): a revoked token opens
 * nothing (HTTP or rounds), the round connections opened with it are closed at once, and
 * revoking the data dir's own admin token renews admin.token. A real coordinator on 127.0.0.1.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { tokenHash } from '../../coordinator/http/auth.ts'
import { upgradeStatus } from '../helpers/upgrade-status.ts'
import { rawClient } from '../helpers/raw-round-client.ts'
import { SILERO_PATH } from '../helpers/models.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

let root: string
let coordinator: Coordinator
let url: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-tokens-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'data'), port: 0 })
  url = await coordinator.start()
})
afterAll(async () => {
  await coordinator.stop()
  await rm(root, { recursive: true, force: true })
})

async function api (method: string, path: string, token: string | undefined, body?: unknown): Promise<{ status: number, json: any, text: string, challenge: string | null, cacheControl: string | null }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await res.text()
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text), text, challenge: res.headers.get('www-authenticate'), cacheControl: res.headers.get('cache-control') }
}

const admin = (): string => coordinator.adminToken

describe('API tokens', () => {
  it('lists tokens by id, role and label, never the token or its whole hash', async () => {
    const made = await api('POST', '/v1/tokens', admin(), { role: 'edge', label: 'kiosk 7' })
    expect(made.status).toBe(200)
    // A secret, and the caller's alone: no cache may keep it (review 49b).
    expect(made.cacheControl).toBe('no-store')
    const { token, id } = made.json as { token: string, id: string }
    expect(id).toBe((await tokenHash(token)).slice(0, 16))
    const list = await api('GET', '/v1/tokens', admin())
    expect(list.status).toBe(200)
    expect(list.cacheControl).toBe('no-store')
    // The rule is for answers to a token: a public answer asked without one is left to the route.
    expect((await api('GET', '/v1/models', undefined)).cacheControl).toBeNull()
    expect(list.json.tokens).toContainEqual({ id, role: 'edge', label: 'kiosk 7', createdAt: expect.any(String), revokedAt: null, expiresAt: null, lastUsedAt: null, adminFile: false, models: null, levels: [] })
    expect(list.json.tokens).toContainEqual(expect.objectContaining({ id: (await tokenHash(admin())).slice(0, 16), role: 'admin', label: 'created on first start', adminFile: true }))
    expect(list.json.tokens.filter((t: { adminFile: boolean }) => t.adminFile)).toHaveLength(1)
    expect(list.text).not.toContain(token)
    expect(list.text).not.toContain(await tokenHash(token))
    expect(list.text).not.toContain(admin())
  })

  it('refuses a request whose token was revoked while its body was still coming (review 49e: a revoked admin token minted another)', async () => {
    const leaked = (await api('POST', '/v1/tokens', admin(), { role: 'admin', label: 'leaked' })).json as { token: string, id: string }
    const body = JSON.stringify({ role: 'admin', label: 'minted by the leaked token' })
    // Told when the server has looked the token up for this request (its onRequest check, valid
    // then): a revoke sent earlier, on a loaded machine, was refused by that check instead of the
    // re-check once the body is in, which this test is for (review 50a L1).
    const hash = await tokenHash(leaked.token)
    const lookUp = coordinator.repo.token
    let checked: () => void = () => {}
    const wasChecked = new Promise<void>(resolve => { checked = resolve })
    coordinator.repo.token = h => { if (h === hash) checked(); return lookUp(h) }
    // Headers and the body's first bytes now, the rest after the revoke.
    const answer = new Promise<{ status: number, text: string }>((resolve, reject) => {
      const req = request(`${url}/v1/tokens`, { method: 'POST', headers: { authorization: `Bearer ${leaked.token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, res => {
        let text = ''
        res.on('data', (c: Buffer) => { text += c.toString() })
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, text }) })
      })
      req.on('error', reject)
      req.write(body.slice(0, 5))
      void wasChecked.then(async () => await api('DELETE', `/v1/tokens/${leaked.id}`, admin())).then(revoked => {
        expect(revoked.status).toBe(200)
        req.end(body.slice(5))
      }, reject)
    })
    const { status, text } = await answer.finally(() => { coordinator.repo.token = lookUp })
    expect(status).toBe(401)
    expect(JSON.parse(text)).toMatchObject({ error: 'UnauthenticatedError', message: expect.stringMatching(/^this API token was revoked at /) })
    expect((await api('GET', '/v1/tokens', admin())).json.tokens.filter((t: { label: string | null }) => t.label === 'minted by the leaked token')).toEqual([])
  })

  it('lets only a role that manages tokens list or revoke them', async () => {
    const edge = await coordinator.createToken('edge')
    const publisher = await coordinator.createToken('publisher')
    const { id } = (await api('POST', '/v1/tokens', admin(), { role: 'edge' })).json as { id: string }
    for (const caller of [edge, publisher]) {
      expect(await api('GET', '/v1/tokens', caller)).toMatchObject({ status: 403, json: { message: expect.stringMatching(/may not list tokens \(an admin token may\)/) } })
      expect(await api('DELETE', `/v1/tokens/${id}`, caller)).toMatchObject({ status: 403, json: { message: expect.stringMatching(/may not revoke tokens/) } })
    }
    // No token is a 401 (RFC 9110 §15.5.2) whose challenge names no error (RFC 6750 §3.1); a role that may not, a 403 without one.
    expect(await api('GET', '/v1/tokens', undefined)).toMatchObject({ status: 401, json: { error: 'UnauthenticatedError' }, challenge: 'Bearer realm="blockfed"' })
    expect(await api('GET', '/v1/tokens', edge)).toMatchObject({ status: 403, json: { error: 'AccessDeniedError' }, challenge: null })
    // Nothing was revoked by the refused calls.
    expect((await api('GET', '/v1/tokens', admin())).json.tokens).toContainEqual(expect.objectContaining({ id, revokedAt: null }))
  })

  it('revokes a token: it opens nothing from then on, on HTTP or for rounds, and stays listed as revoked', async () => {
    const { token, id } = (await api('POST', '/v1/tokens', admin(), { role: 'publisher' })).json as { token: string, id: string }
    expect((await api('GET', '/v1/models', token)).status).toBe(200)
    const revoked = await api('DELETE', `/v1/tokens/${id}`, admin())
    expect(revoked.status).toBe(200)
    expect(revoked.json).toMatchObject({ id, role: 'publisher', revokedAt: expect.any(String), replacedAdminToken: false, closedConnections: 0 })
    // A route that needs a token, and one whose role check is the handler's own.
    const after = await api('POST', '/v1/tokens', token, { role: 'edge' })
    expect(after).toMatchObject({ status: 401, challenge: 'Bearer realm="blockfed", error="invalid_token"' })
    expect(after.json.message).toBe(`this API token was revoked at ${revoked.json.revokedAt as string}`)
    expect((await api('GET', '/v1/tokens', admin())).json.tokens).toContainEqual(expect.objectContaining({ id, revokedAt: revoked.json.revokedAt }))
    expect(await api('DELETE', `/v1/tokens/${id}`, admin())).toMatchObject({ status: 409, json: { message: expect.stringMatching(/was revoked already/) } })
  })

  it('closes the round connections opened with a revoked edge token, and refuses it a new one', async () => {
    const { token, id } = (await api('POST', '/v1/tokens', admin(), { role: 'edge' })).json as { token: string, id: string }
    const other = await coordinator.createToken('edge')
    await coordinator.ingest('trained', await denseModelFiles(8, [['hidden', 4, 1], ['head', 2, 2]]))
    const [a, b, kept] = [await rawClient(url, token, ['m', 'trained']), await rawClient(url, token, ['m', 'trained']), await rawClient(url, other, ['m', 'trained'])]
    try {
      const revoked = await api('DELETE', `/v1/tokens/${id}`, admin())
      expect(revoked.json.closedConnections).toBe(2)
      // Out of the rounds at once, not when their sockets close (review 49e: a round started
      // within that second picked them, failed, and left the others cooling down).
      const round = await api('POST', '/v1/rounds', admin(), { model: 'trained', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 2 } })
      expect(round).toMatchObject({ status: 503, json: { error: 'TooFewClientsError', message: expect.stringMatching(/^round for trained not started: 1 eligible client\(s\) connected/) } })
      for (const c of [a, b]) expect(await c.closed).toEqual({ code: 1008, reason: 'the API token of this connection was revoked' })
      const refused = await upgradeStatus(url, token)
      expect(refused.status).toBe(401)
      // Refused as the HTTP API refuses: a 401 with its Bearer challenge and the API's error body.
      expect(JSON.parse(refused.body)).toEqual({ error: 'UnauthenticatedError', message: `this API token was revoked at ${revoked.json.revokedAt as string}` })
      expect(refused.challenge).toBe('Bearer realm="blockfed", error="invalid_token"')
      // Another edge token's connection is untouched.
      expect(kept.socket.readyState).toBe(WebSocket.OPEN)
      expect((await upgradeStatus(url, other)).status).toBe(101)
    } finally {
      for (const c of [a, b, kept]) c.close()
    }
  })

  it('refuses an unknown id with 404 and a malformed one with 400, naming the form', async () => {
    expect(await api('DELETE', '/v1/tokens/0123456789abcdef', admin())).toMatchObject({ status: 404, json: { message: expect.stringMatching(/no API token has the id 0123456789abcdef/) } })
    for (const bad of ['0123456789ABCDEF', '0123', `${'a'.repeat(16)}0`, 'bf_00']) {
      const answer = await api('DELETE', `/v1/tokens/${bad}`, admin())
      expect(answer.status).toBe(400)
      expect(answer.json.message).toMatch(/16 lowercase hex digits/)
    }
  })

  it('renews admin.token when its token is revoked, and keeps the renewed one across a restart', async () => {
    const dataDir = join(root, 'own')
    const own = await createCoordinator({ dataDir, port: 0 })
    const at = await own.start()
    const first = own.adminToken
    let second: string
    try {
      const id = (await tokenHash(first)).slice(0, 16)
      const revoked = await fetch(`${at}/v1/tokens/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${first}` } })
      expect(await revoked.json()).toMatchObject({ id, role: 'admin', replacedAdminToken: true })
      second = own.adminToken
      expect(second).toMatch(/^bf_[0-9a-f]{64}$/)
      expect(second).not.toBe(first)
      expect(await readFile(join(dataDir, 'admin.token'), 'utf8')).toBe(`${second}\n`)
      expect((await fetch(`${at}/v1/tokens`, { headers: { authorization: `Bearer ${first}` } })).status).toBe(401)
      const list = await fetch(`${at}/v1/tokens`, { headers: { authorization: `Bearer ${second}` } })
      expect(list.status).toBe(200)
      expect((await list.json() as { tokens: unknown[] }).tokens).toContainEqual(expect.objectContaining({ role: 'admin', label: `replaced revoked admin token ${id}`, revokedAt: null }))
    } finally {
      await own.stop()
    }
    const again = await createCoordinator({ dataDir, port: 0 })
    try {
      expect(again.adminToken).toBe(second)
    } finally {
      await again.stop()
    }
  })

  it('refuses a label that could act on an operator\'s terminal (review 41a): controls, escapes, line breaks, bidi overrides', async () => {
    for (const label of ['\u001b]52;c;aGk=\u0007', 'x\r\nb5f6716ba398084d  admin  active', 'a\u202eb', 'nul\u0000', '\u009b2J']) {
      const answer = await api('POST', '/v1/tokens', admin(), { role: 'edge', label })
      expect(answer.status, JSON.stringify(label)).toBe(400)
      expect(answer.json.message).toMatch(/body\.label: a label is printable text/)
    }
    expect((await api('POST', '/v1/tokens', admin(), { role: 'edge', label: 'kiosk ü 😀' })).status).toBe(200)
  })

  it('publishes nothing from an upload whose token was revoked while it was under way (review 41a)', async () => {
    const { token, id } = (await api('POST', '/v1/tokens', admin(), { role: 'publisher' })).json as { token: string, id: string }
    const boundary = 'tokens-test'
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      await readFile(SILERO_PATH),
      Buffer.from(`\r\n--${boundary}--\r\n`)
    ])
    const half = Math.floor(body.length / 2)
    // Told when the upload's token has been looked up (its onRequest check): the revoke comes after it.
    const hash = await tokenHash(token)
    const lookUp = coordinator.repo.token
    let checked: () => void = () => {}
    const wasChecked = new Promise<void>(resolve => { checked = resolve })
    coordinator.repo.token = h => { if (h === hash) checked(); return lookUp(h) }
    let status = 0
    let text = ''
    const answered = new Promise<void>((resolve, reject) => {
      const req = request(`${url}/v1/models/revoked-upload/ingest`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': body.length } }, res => {
        status = res.statusCode ?? 0
        res.on('data', (d: Buffer) => { text += d.toString() })
        res.on('end', resolve)
      })
      req.on('error', reject)
      // Half the body, then the revoke, then the rest: the token was good when the upload began.
      req.write(body.subarray(0, half))
      void wasChecked.then(async () => await api('DELETE', `/v1/tokens/${id}`, admin())).then(revoked => {
        expect(revoked.status).toBe(200)
        req.end(body.subarray(half))
      }, reject)
    })
    try {
      await answered
    } finally {
      coordinator.repo.token = lookUp
    }
    expect(status).toBe(401)
    expect(JSON.parse(text).message).toMatch(/this API token was revoked at/)
    expect((await api('GET', '/v1/models', undefined)).json.models.map((m: { name: string }) => m.name)).not.toContain('revoked-upload')
  })

  describe('expiry and last use', () => {
    /** Moves the coordinator's clock (Date.now, which every expiry check reads) `seconds` on. */
    const realNow = Date.now.bind(Date)
    const later = (seconds: number): void => {
      vi.spyOn(Date, 'now').mockImplementation(() => realNow() + seconds * 1000)
    }
    afterEach(() => { vi.restoreAllMocks() })

    it('refuses a lifetime out of its bounds, naming the field', async () => {
      for (const expiresInSeconds of [59, 1.5, '3600', 10 * 366 * 24 * 3600 + 1, -60]) {
        const answer = await api('POST', '/v1/tokens', admin(), { role: 'edge', expiresInSeconds })
        expect(answer.status, String(expiresInSeconds)).toBe(400)
        expect(answer.json.message).toMatch(/body\.expiresInSeconds/)
      }
    })

    it('lets a token with a lifetime open what its role may until it expires, then nothing, on HTTP or for rounds; it stays listed', async () => {
      const made = await api('POST', '/v1/tokens', admin(), { role: 'admin', expiresInSeconds: 3600 })
      const edge = (await api('POST', '/v1/tokens', admin(), { role: 'edge', expiresInSeconds: 3600 })).json as { token: string, id: string, expiresAt: string }
      const { token, id, expiresAt } = made.json as { token: string, id: string, expiresAt: string }
      expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(3590_000)
      expect(Date.parse(expiresAt) - Date.now()).toBeLessThanOrEqual(3600_000)
      expect((await api('GET', '/v1/tokens', token)).status).toBe(200)
      expect((await upgradeStatus(url, edge.token)).status).toBe(101)
      later(3599)
      expect((await api('GET', '/v1/tokens', token)).status).toBe(200)
      later(3601)
      const refused = await api('GET', '/v1/tokens', token)
      expect(refused.status).toBe(401)
      expect(refused.json.message).toBe(`this API token expired at ${expiresAt}; make another (blockfed token create)`)
      const rounds = await upgradeStatus(url, edge.token)
      expect(rounds.status).toBe(401)
      expect(JSON.parse(rounds.body)).toEqual({ error: 'UnauthenticatedError', message: `this API token expired at ${edge.expiresAt}; make another (blockfed token create)` })
      // Listed as it was, and still revocable (an expired token may be revoked for the record).
      const listed = (await api('GET', '/v1/tokens', admin())).json.tokens as Array<{ id: string, expiresAt: string, revokedAt: string | null }>
      expect(listed.find(t => t.id === id)).toMatchObject({ expiresAt, revokedAt: null })
      expect((await api('DELETE', `/v1/tokens/${id}`, admin())).status).toBe(200)
    })

    it('closes a round connection when its token expires, within a ping interval, and leaves the others open', async () => {
      const own = await createCoordinator({ dataDir: join(root, 'expiry'), port: 0, pingMs: 100 })
      const at = await own.start()
      try {
        const short = (await (await fetch(`${at}/v1/tokens`, { method: 'POST', headers: { authorization: `Bearer ${own.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ role: 'edge', expiresInSeconds: 600 }) })).json()) as { token: string, expiresAt: string }
        const lasting = await own.createToken('edge')
        const [expiring, kept] = [await rawClient(at, short.token, ['m']), await rawClient(at, lasting, ['m'])]
        try {
          later(601)
          expect(await expiring.closed).toEqual({ code: 1008, reason: `the API token of this connection expired at ${short.expiresAt}` })
          expect(expiring.messages.at(-1)).toEqual({ type: 'error', message: `the API token of this connection expired at ${short.expiresAt}` })
          // Two more ping intervals: the connection of a token that does not expire answered them.
          await new Promise(resolve => setTimeout(resolve, 250))
          expect(kept.socket.readyState).toBe(WebSocket.OPEN)
        } finally {
          for (const c of [expiring, kept]) c.close()
        }
      } finally {
        await own.stop()
      }
    })

    it('answers the token list when the last uses cannot be written, and refuses a token whose expiry does not parse (review 42c)', async () => {
    const flush = coordinator.repo.flushTokenUses
    coordinator.repo.flushTokenUses = () => { throw new Error('disk full') }
    try {
      expect((await api('GET', '/v1/tokens', admin())).status).toBe(200)
    } finally {
      coordinator.repo.flushTokenUses = flush
    }
    const { token } = (await api('POST', '/v1/tokens', admin(), { role: 'publisher' })).json as { token: string }
    const lookUp = coordinator.repo.token
    const hash = await tokenHash(token)
    coordinator.repo.token = h => { const row = lookUp(h); return h === hash && row !== undefined ? { ...row, expiresAt: 'soon' } : row }
    try {
      const refused = await api('GET', '/v1/tokens', token)
      expect(refused.status).toBe(401)
      expect(refused.json.message).toMatch(/this API token expired at soon/)
    } finally {
      coordinator.repo.token = lookUp
    }
  })

  it('records each token\'s last use (HTTP and rounds), written behind and kept across a restart', async () => {
      const dataDir = join(root, 'uses')
      const own = await createCoordinator({ dataDir, port: 0 })
      const at = await own.start()
      const call = async (token: string, method = 'GET'): Promise<Response> => await fetch(`${at}/v1/tokens`, { method, headers: { authorization: `Bearer ${token}` } })
      const idOf = async (token: string): Promise<string> => (await tokenHash(token)).slice(0, 16)
      const listOf = async (): Promise<Array<{ id: string, lastUsedAt: string | null, adminFile: boolean }>> => ((await (await call(own.adminToken)).json()) as { tokens: Array<{ id: string, lastUsedAt: string | null, adminFile: boolean }> }).tokens
      const [unused, publisher, edge] = [await own.createToken('edge'), await own.createToken('publisher'), await own.createToken('edge')]
      const before = new Date().toISOString()
      let list: Awaited<ReturnType<typeof listOf>>
      try {
        // A publisher is refused the list for its role, but its token was used; an edge token is used by a round connection.
        expect((await call(publisher)).status).toBe(403)
        expect((await upgradeStatus(at, edge)).status).toBe(101)
        list = await listOf()
        expect(list.find(t => t.adminFile)?.id).toBe(await idOf(own.adminToken))
      } finally {
        await own.stop()
      }
      const byId = new Map(list.map(t => [t.id, t.lastUsedAt]))
      expect(byId.get(await idOf(unused))).toBeNull()
      for (const token of [publisher, edge, own.adminToken]) expect(Date.parse(byId.get(await idOf(token)) ?? ''), 'used').toBeGreaterThanOrEqual(Date.parse(before))
      // Written to the database: a restarted coordinator lists the same uses.
      const again = await createCoordinator({ dataDir, port: 0 })
      try {
        const rows = again.repo.tokens()
        for (const token of [unused, publisher, edge]) {
          const hash = await tokenHash(token)
          expect(rows.find(r => r.hash === hash)?.lastUsedAt ?? null).toBe(byId.get(hash.slice(0, 16)) ?? null)
        }
      } finally {
        await again.stop()
      }
    })
  })
})
