/**
 * Answers from outside are read with a byte cap enforced as they arrive: a hostile witness,
 * ledger or coordinator streaming an endless chunked body is cut off near the cap, not read
 * whole first (found by review: 400 MiB streamed took a coordinator from 93 to 522 MiB).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import http from 'node:http'
import { TooLargeError } from '../../../shared/errors/errors.ts'
import { readBodyBounded } from '../../../shared/client/bounded-body.ts'
import { addCheckpoint } from '../../../shared/ledger/witness/client.ts'
import { ledgerClient } from '../../../shared/ledger/client.ts'
import { coordinatorClient } from '../../../shared/client/coordinator-client.ts'

const CHUNK = new Uint8Array(1 << 20).fill(0x61)
const LIMIT = 256 << 20
let server: http.Server
let base: string
/** Bytes the hostile server got out per request path before the client hung up. */
const written = new Map<string, number>()

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const path = req.url ?? ''
    res.writeHead(200, { 'content-type': path.includes('ledger/checkpoint') ? 'text/plain' : 'application/json' }) // chunked, no length
    let sent = 0
    const pump = (): void => {
      while (sent < LIMIT) {
        sent += CHUNK.length
        written.set(path, sent)
        if (!res.write(CHUNK)) { res.once('drain', pump); return }
      }
      res.end()
    }
    res.on('error', () => {})
    req.socket.on('close', () => res.destroy())
    pump()
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise(resolve => server.close(resolve))
})

describe('bounded answers', () => {
  it('a witness answer past 64 KiB', async () => {
    const answer = addCheckpoint(base, { old: 0, proof: [], note: 'origin\n1\nAAAA\n\n— origin AAAA\n' })
    await expect(answer).rejects.toThrow(TooLargeError)
    expect(written.get('/add-checkpoint')).toBeLessThan(32 << 20)
  })

  it('a ledger checkpoint past 64 KiB', async () => {
    await expect(ledgerClient({ baseUrl: base }).checkpoint()).rejects.toThrow(/ledger GET \/ledger\/checkpoint: the body passed the 65536-byte bound/)
    expect(written.get('/ledger/checkpoint')).toBeLessThan(32 << 20)
  })

  it('a coordinator JSON answer past 64 MiB', async () => {
    await expect(coordinatorClient({ baseUrl: base }).models()).rejects.toThrow(TooLargeError)
    const sent = [...written].find(([path]) => path.startsWith('/v1/models'))?.[1] ?? 0
    expect(sent).toBeGreaterThan(64 << 20)
    expect(sent).toBeLessThan(96 << 20)
  })
})

describe('a caller\'s abort', () => {
  it('rejects every client with the caller\'s reason, not as an outage or a timeout', async () => {
    const calls: Array<(signal: AbortSignal) => Promise<unknown>> = [
      async signal => await ledgerClient({ baseUrl: base }).key(signal),
      async signal => await coordinatorClient({ baseUrl: base }).models(signal),
      async signal => await addCheckpoint(base, { old: 0, proof: [], note: 'origin\n1\nAAAA\n\n— origin AAAA\n' }, signal)
    ]
    for (const call of calls) {
      const reason = new Error('cancelled by the caller')
      await expect(call(AbortSignal.abort(reason))).rejects.toBe(reason)
    }
    // And mid-body (the coordinator's 64 MiB bound leaves room to abort while it streams).
    const controller = new AbortController()
    const reason = new Error('released')
    setTimeout(() => controller.abort(reason), 20)
    await expect(coordinatorClient({ baseUrl: base }).models(controller.signal)).rejects.toBe(reason)
  })
})

describe('a body in many small chunks', () => {
  it('is read whole within its bound, in order', async () => {
    // 200,000 one-byte chunks: the chunks were spread as call arguments and overflowed the stack.
    const n = 200_000
    let i = 0
    const body = new ReadableStream<Uint8Array>({ pull (c) { if (i < n) c.enqueue(new Uint8Array([i++ & 0xff])); else c.close() } })
    const bytes = await readBodyBounded(new Response(body), 1 << 20, 'trickle')
    expect(bytes.length).toBe(n)
    expect(bytes.every((b, at) => b === (at & 0xff))).toBe(true)
  })
})
