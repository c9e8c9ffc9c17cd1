/**
 * The Node HTTP block source (node-runtime/sources/http.ts) against servers a coordinator may sit
 * behind: one answering an error with a body that never ends, one (a proxy) answering chunked.
 */
import { describe, it, expect, afterAll } from 'vitest'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { nodeHttpBlockSource } from '../../../node-runtime/sources/http.ts'
import { BusyError, TooLargeError, UnavailableError } from '../../../shared/errors/errors.ts'
import { httpBlockSource } from '../../../shared/load/http-source.ts'

const servers: http.Server[] = []
afterAll(() => {
  for (const server of servers) {
    server.closeAllConnections()
    server.close()
  }
})

/** A server answering 500 with an endless body; `closed` resolves when the client hangs up. */
async function endlessError (): Promise<{ url: string, closed: Promise<void> }> {
  let hungUp!: () => void
  const closed = new Promise<void>(resolve => { hungUp = resolve })
  const server = http.createServer((_req, res) => {
    res.writeHead(500)
    const timer = setInterval(() => res.write(Buffer.alloc(64 << 10)), 1)
    res.on('close', () => { clearInterval(timer); hungUp() })
  })
  servers.push(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, closed }
}

describe('nodeHttpBlockSource', () => {
  it('rejects a cancelled request with the caller\'s reason, before the answer and during its body (both sources)', async () => {
    // Headers and half the body at once, then nothing: a request is cancelled either waiting for
    // the answer (path /stall) or reading its body.
    const server = http.createServer((req, res) => {
      if (req.url?.includes('stall') === true) return
      res.writeHead(200, { 'content-length': '1000' })
      res.write(Buffer.alloc(500))
    })
    servers.push(server)
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    for (const source of [nodeHttpBlockSource({ baseUrl, timeoutMs: 10_000 }), httpBlockSource({ baseUrl, timeoutMs: 10_000 })]) {
      for (const cid of ['stall', 'body']) {
        const controller = new AbortController()
        const reason = new Error('the load was cancelled')
        const asked = source.get(cid, { signal: controller.signal })
        setTimeout(() => { controller.abort(reason) }, 200)
        await expect(asked, `${source.name} ${cid}`).rejects.toBe(reason)
      }
    }
  })

  it('hangs up on an error reply instead of reading its body until the deadline', async () => {
    const { url, closed } = await endlessError()
    const source = nodeHttpBlockSource({ baseUrl: url, timeoutMs: 600_000 })
    await expect(source.get('bafkabc', { signal: new AbortController().signal })).rejects.toThrow(/500/)
    // Settles at once, or fails the test by its timeout: the deadline is ten minutes away.
    await closed
    source.close()
  }, 5_000)

  it('reads a chunked answer (no Content-Length, as a proxy may send it) within its bound', async () => {
    const bytes = Uint8Array.from({ length: 100_000 }, (_, i) => i * 7 & 0xff)
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }) // no length: chunked
      for (let at = 0; at < bytes.length; at += 30_000) res.write(bytes.subarray(at, at + 30_000))
      res.end()
    })
    servers.push(server)
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const source = nodeHttpBlockSource({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })
    const signal = new AbortController().signal
    // Before: refused as "Content-Length missing", every block unavailable behind such a proxy.
    expect(await source.get('bafkabc', { signal })).toEqual(bytes)
    expect(source.bytesFetched).toBe(bytes.length)
    await expect(source.get('bafkabc', { signal, size: 99_999 })).rejects.toThrow(TooLargeError)
    source.close()
  })

  it('answers a busy at once, and a proxy error whose body stalls after a second, by its status (both sources)', async () => {
    const server = http.createServer((req, res) => {
      // Headers, a few bytes, then nothing (the socket stays open).
      if (req.url?.includes('busy') === true) res.writeHead(503, { 'retry-after': '2' })
      else res.writeHead(502, { 'content-type': 'text/html' })
      res.write('<h')
    })
    servers.push(server)
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const node = nodeHttpBlockSource({ baseUrl, timeoutMs: 600_000 })
    const signal = new AbortController().signal
    // Within the test's 5 s, or it fails by its timeout: the request deadline is ten minutes.
    // Before (review 37e), every error body was read: a stalled one held the answer to its
    // deadline and came back a TimeoutError.
    for (const source of [node, httpBlockSource({ baseUrl, timeoutMs: 600_000 })]) {
      await expect(source.get('busy', { signal })).rejects.toThrow(BusyError)
      const err = await source.get('proxy', { signal }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(UnavailableError)
      expect((err as Error).message).toMatch(/HTTP 502$/)
    }
    node.close()
    server.closeAllConnections()
  }, 5_000)
})
