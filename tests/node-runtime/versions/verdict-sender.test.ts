/**
 * Kept verdicts (node-runtime/versions/verdict-sender.ts): which answers forget a verdict and
 * which keep it for the next try, through the real coordinator client against a loopback server
 * answering as the coordinator or as a proxy in front of it would; and one pass at a time per
 * folder, with a pass asked for during one run after it.
 */
import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from 'vitest'
import { createServer, type Server } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { coordinatorClient } from '../../../shared/client/coordinator-client.ts'
import { localVersions, type Verdict } from '../../../node-runtime/versions/local-store.ts'
import { sendKeptVerdicts, verdictPasses } from '../../../node-runtime/versions/verdict-sender.ts'

/** What the server answers next: status, content type, body. */
let answer: { status: number, type: string, body: string, headers?: Record<string, string> }
let server: Server
let url: string
let dir: string

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume()
    req.on('end', () => { res.writeHead(answer.status, { 'content-type': answer.type, ...answer.headers }).end(answer.body) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(async () => { await new Promise(resolve => server.close(resolve)) })
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'blockfed-verdicts-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

const json = (status: number, error: string, message: string, headers?: Record<string, string>): typeof answer =>
  ({ status, type: 'application/json', body: JSON.stringify({ error, message }), headers })
const verdict: Verdict = { version: 7, verdict: 'rolled-back' }

async function passAgainst (baseUrl: string): Promise<{ sent: number, dropped: number, left: number, kept: Verdict[] }> {
  const local = localVersions(dir)
  await local.keepVerdict(verdict)
  const client = coordinatorClient({ baseUrl, token: 'bf_test', timeoutMs: 5_000 })
  const done = await sendKeptVerdicts(local, async v => { await client.reportVerdict('m', v.version, { clientId: 'ab'.repeat(32), verdict: v.verdict }) })
  return { ...done, kept: await local.unsentVerdicts() }
}

describe('a kept verdict', () => {
  it('is forgotten once the coordinator takes it', async () => {
    answer = { status: 200, type: 'application/json', body: '{"recorded":true}' }
    expect(await passAgainst(url)).toEqual({ sent: 1, dropped: 0, left: 0, kept: [] })
  })

  it.each([
    ['404, no such version', json(404, 'NotFoundError', 'model m has no version 7')],
    ['409, out of the window', json(409, 'ConflictError', 'm@7: only the 32 latest versions (from 40) take verdicts')],
    ['400, malformed', json(400, 'InvalidInputError', 'body.clientId: expected 64 hex digits')]
  ])('is dropped when the coordinator refuses it for good in its own words (%s)', async (_, refusal) => {
    answer = refusal
    expect(await passAgainst(url)).toEqual({ sent: 0, dropped: 1, left: 0, kept: [] })
  })

  it.each([
    ['a proxy\'s 404 page while the coordinator deploys', { status: 404, type: 'text/html', body: '<html><body>404 Not Found</body></html>' }],
    ['nginx\'s 400 for plain HTTP to its TLS port', { status: 400, type: 'text/html', body: '<html>The plain HTTP request was sent to HTTPS port</html>' }],
    ['a refused token (401)', json(401, 'UnauthenticatedError', 'unknown API token')],
    ['a token without the model (403)', json(403, 'AccessDeniedError', 'this token may not report a verdict on m')],
    ['a busy coordinator (503)', json(503, 'BusyError', 'busy', { 'retry-after': '1' })],
    ['a failure of its own (500)', json(500, 'InternalError', 'internal error; see the coordinator log')],
    ['a proxy\'s 502 while it is down', { status: 502, type: 'text/html', body: '<html>Bad Gateway</html>' }]
  ])('is kept for the next try after %s', async (_, refusal) => {
    answer = refusal
    expect(await passAgainst(url)).toEqual({ sent: 0, dropped: 0, left: 1, kept: [verdict] })
  })

  it('is kept when the coordinator cannot be reached at all', async () => {
    const closed = createServer()
    await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
    const port = (closed.address() as AddressInfo).port
    await new Promise(resolve => closed.close(resolve))
    expect(await passAgainst(`http://127.0.0.1:${port}`)).toEqual({ sent: 0, dropped: 0, left: 1, kept: [verdict] })
  })
})

describe('verdict passes', () => {
  it('run one at a time per folder, and a pass asked for during one runs after it (a verdict kept after its last read is not left behind)', async () => {
    const local = localVersions(dir)
    const passes: Array<Promise<void>> = []
    const run = verdictPasses(pass => passes.push(pass))
    const sent: number[] = []
    let inFlight = 0
    let most = 0
    let keptLate = false
    // The pass's last read answers "nothing left"; just then (before the pass ends) a verdict is
    // kept and a pass asked for, as a check() rolling back at that moment does.
    const racing = {
      unsentVerdicts: async () => {
        const unsent = await local.unsentVerdicts()
        if (unsent.length === 0 && !keptLate) {
          keptLate = true
          await local.keepVerdict({ version: 9, verdict: 'rejected' })
          run('model', pass)
        }
        return unsent
      },
      verdictSent: local.verdictSent
    }
    const pass = async (): Promise<unknown> => await sendKeptVerdicts(racing, async v => {
      most = Math.max(most, ++inFlight)
      await new Promise(resolve => setTimeout(resolve, 5))
      sent.push(v.version)
      inFlight--
    })
    await local.keepVerdict({ version: 8, verdict: 'rejected' })
    run('model', pass)
    run('model', pass) // asked again at once: no second pass beside the first
    for (let settled = 0; settled < passes.length;) {
      const now = passes.length
      await Promise.all(passes)
      settled = now
    }
    expect(sent).toEqual([8, 9])
    expect(most).toBe(1)
    expect(await local.unsentVerdicts()).toEqual([])
  })
})
