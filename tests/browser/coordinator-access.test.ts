/**
 * A web page on another origin (where a browser runtime lives) reaching the coordinator: the HTTP
 * API answers pages from the origins it is configured with (CORS), and the round WebSocket
 * takes the API token as a subprotocol, since a browser's WebSocket cannot set headers. Real
 * Chromium (Debian's), real coordinator, loopback only.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer, type Server } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { corsOrigins } from '../../coordinator/http/cors.ts'
import { ROUNDS_SUBPROTOCOL, roundsProtocols } from '../../shared/rounds/messages.ts'

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run']

let root: string
let browser: Browser
let coordinator: Coordinator
let closed: Coordinator
let api: string
let closedApi: string
let token: string
let publisherToken: string
const pages: Server[] = []

/** A page server on its own loopback port: its origin is `http://127.0.0.1:<port>`. */
async function pageOrigin (): Promise<string> {
  const server = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end('<!doctype html><title>app</title>') })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  pages.push(server)
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

let allowed: string
let other: string

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-browser-access-'))
  allowed = await pageOrigin()
  other = await pageOrigin()
  coordinator = await createCoordinator({ dataDir: join(root, 'c'), port: 0, corsOrigins: [allowed] })
  api = await coordinator.start()
  token = await coordinator.createToken('edge')
  publisherToken = await coordinator.createToken('publisher')
  closed = await createCoordinator({ dataDir: join(root, 'closed'), port: 0 })
  closedApi = await closed.start()
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS })
}, 60_000)

afterAll(async () => {
  await browser?.close()
  for (const s of pages) s.close()
  await coordinator?.stop()
  await closed?.stop()
  await rm(root, { recursive: true, force: true })
})

async function pageAt (origin: string): Promise<Page> {
  const page = await browser.newPage()
  await page.goto(`${origin}/`)
  return page
}

/** fetch from the page: the status, or the error the browser gave (a CORS refusal is a TypeError). */
async function fetchFrom (page: Page, url: string, token?: string, put?: unknown): Promise<string> {
  return await page.evaluate(async ({ url, token, put }) => {
    const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` }
    const init: RequestInit = put === undefined ? { headers } : { method: 'PUT', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(put) }
    try {
      const res = await fetch(url, init)
      return `HTTP ${res.status}`
    } catch (err) {
      return `refused: ${(err as Error).message}`
    }
  }, { url, token, put })
}

describe('the HTTP API from a web page', () => {
  it('answers pages from a configured origin, with the token in the Authorization header', async () => {
    const page = await pageAt(allowed)
    expect(await fetchFrom(page, `${api}/v1/coordinator`)).toBe('HTTP 200')
    expect(await fetchFrom(page, `${api}/v1/models`, token)).toBe('HTTP 200')
    // A refused token is a refusal the page can read, not a CORS failure (the token hook runs after CORS's).
    expect(await fetchFrom(page, `${api}/v1/rounds/r_0123456789abcdef`, 'bf_not-a-token')).toBe('HTTP 401')
    // PUT (release channels) passes the preflight: the page reads the coordinator's own answer.
    expect(await fetchFrom(page, `${api}/v1/models/m/channels/stable`, publisherToken, { version: 1 })).toBe('HTTP 404')
    // An unknown route's 404 (refused from the request's head) carries the CORS headers too (review 53c).
    expect(await fetchFrom(page, `${api}/v1/no-such-route`)).toBe('HTTP 404')
    await page.close()
  })

  it('is closed to other origins, and to every origin when none is configured', async () => {
    const page = await pageAt(other)
    expect(await fetchFrom(page, `${api}/v1/models`, token)).toMatch(/^refused/)
    await page.close()
    const fromAllowed = await pageAt(allowed)
    expect(await fetchFrom(fromAllowed, `${closedApi}/v1/coordinator`)).toMatch(/^refused/)
    await fromAllowed.close()
  })

  it('refuses a configured origin that is not one', () => {
    expect(corsOrigins(['*', 'https://app.example:8443'])).toEqual(['*', 'https://app.example:8443'])
    for (const bad of ['https://app.example/', 'app.example', 'https://app.example/path', 'file:///x', 'null']) {
      expect(() => corsOrigins([bad]), bad).toThrow(/CORS origin/)
    }
  })
})

describe('the round WebSocket from a web page', () => {
  /** Opens a WebSocket from the page and reports its subprotocol and first message, or its close code. */
  async function openFrom (page: Page, url: string, protocols: string[]): Promise<{ protocol?: string, first?: string, code?: number }> {
    return await page.evaluate(async ({ url, protocols }) => await new Promise(resolve => {
      const ws = new WebSocket(url, protocols)
      ws.onmessage = e => { resolve({ protocol: ws.protocol, first: String(e.data) }); ws.close() }
      ws.onclose = e => resolve({ code: e.code })
    }), { url, protocols })
  }

  it('takes the token as a subprotocol and echoes only the rounds subprotocol', async () => {
    const page = await pageAt(other) // the round protocol's own handshake authenticates; no CORS here
    const ws = `${api.replace(/^http/, 'ws')}/v1/rounds/ws`
    const opened = await openFrom(page, ws, roundsProtocols(token))
    expect(opened.protocol).toBe(ROUNDS_SUBPROTOCOL)
    expect(JSON.parse(opened.first ?? '{}')).toMatchObject({ type: 'challenge' })
    // A wrong token, or a token without the rounds subprotocol beside it, never opens.
    expect(await openFrom(page, ws, roundsProtocols('bf_wrong'))).toEqual({ code: 1006 })
    expect(await openFrom(page, ws, [`bearer.${token}`])).toEqual({ code: 1006 })
    await page.close()
  })
})
