/**
 * A request body trickled a byte at a time must not hold a coordinator's or a decryptor's stop
 * (review 53b: no token needed, an unknown route's body was read whole before its 404, and
 * `stop()` waited for the 10-minute request timeout). An unknown route is refused from the
 * request's head; a slow body on a real route is cut CLOSE_GRACE_MS into the stop.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { createDecryptor } from '../../coordinator/decryptor/decryptor.ts'
import { CLOSE_GRACE_MS } from '../../coordinator/http/lifecycle.ts'

let root: string
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'blockfed-slow-body-')) })
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

/** A client that sends a request's head announcing 900 kB, then a byte every 200 ms; `answer` is what it has read. */
function trickle (url: string, head: string): { socket: Socket, answer: () => string, stop: () => void } {
  const at = new URL(url)
  const socket = connect(Number(at.port), at.hostname)
  let answer = ''
  socket.on('data', (d: Buffer) => { answer += d.toString() })
  socket.on('error', () => {})
  socket.write(`${head}\r\nHost: ${at.host}\r\nContent-Type: application/json\r\nContent-Length: 900000\r\n\r\n{`)
  const timer = setInterval(() => { if (!socket.destroyed) socket.write(' ') }, 200)
  return { socket, answer: () => answer, stop: () => { clearInterval(timer); socket.destroy() } }
}

/** Resolves with how long `stop` took, or 'hung' past `capMs`. */
async function timed (stop: () => Promise<void>, capMs: number): Promise<number | 'hung'> {
  const started = performance.now()
  let timer: ReturnType<typeof setTimeout> | undefined
  const cap = new Promise<'hung'>(resolve => { timer = setTimeout(() => { resolve('hung') }, capMs) })
  try {
    return await Promise.race([stop().then(() => performance.now() - started), cap])
  } finally {
    clearTimeout(timer)
  }
}

describe('a body trickled to the coordinator', () => {
  it('to an unknown route is refused 404 from its head; to a real one it is cut when the coordinator stops', async () => {
    const coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0 })
    const url = await coordinator.start()
    const unknown = trickle(url, 'POST /no-such-route HTTP/1.1')
    const ingest = trickle(url, `POST /v1/models/m/ingest HTTP/1.1\r\nAuthorization: Bearer ${coordinator.adminToken}`)
    try {
      await expect.poll(unknown.answer, { timeout: 5_000 }).toMatch(/^HTTP\/1\.1 404 /)
      expect(unknown.answer()).toContain('"error":"NotFoundError","message":"Route POST:/no-such-route not found"')
      // The admin's upload is under way (nothing refused it): only the stop's grace ends it.
      await new Promise(resolve => setTimeout(resolve, 500))
      expect(ingest.answer()).toBe('')
      const took = await timed(coordinator.stop, 3 * CLOSE_GRACE_MS)
      expect(took).not.toBe('hung')
      expect(took).toBeGreaterThanOrEqual(CLOSE_GRACE_MS - 100)
      await expect.poll(() => ingest.socket.destroyed || ingest.socket.readableEnded, { timeout: 2_000 }).toBe(true)
    } finally {
      unknown.stop()
      ingest.stop()
      await coordinator.stop()
    }
  })
})

describe('a body trickled to the decryptor', () => {
  it('to an unknown route is refused 404 from its head, and the decryptor stops at once', async () => {
    const decryptor = await createDecryptor({ dataDir: join(root, 'decryptor'), port: 0, keyBits: 1024 })
    const url = await decryptor.start()
    const unknown = trickle(url, 'POST /no-such-route HTTP/1.1')
    try {
      await expect.poll(unknown.answer, { timeout: 5_000 }).toMatch(/^HTTP\/1\.1 404 /)
      const took = await timed(decryptor.stop, 3 * CLOSE_GRACE_MS)
      expect(took).not.toBe('hung')
    } finally {
      unknown.stop()
      await decryptor.stop()
    }
  })
})
