/**
 * The Node HTTP block source (node-runtime/sources/http.ts) against a coordinator that answers
 * an error with a body that never ends.
 */
import { describe, it, expect, afterAll } from 'vitest'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { nodeHttpBlockSource } from '../../../node-runtime/sources/http.ts'

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
  it('hangs up on an error reply instead of reading its body until the deadline', async () => {
    const { url, closed } = await endlessError()
    const source = nodeHttpBlockSource({ baseUrl: url, timeoutMs: 600_000 })
    await expect(source.get('bafkabc', { signal: new AbortController().signal })).rejects.toThrow(/500/)
    // Settles at once, or fails the test by its timeout: the deadline is ten minutes away.
    await closed
    source.close()
  }, 5_000)
})
