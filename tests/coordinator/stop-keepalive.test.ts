/**
 * A coordinator stopping while a keep-alive request is under way (review 46f): its connection was
 * held open to the server's 72 s idle timeout after the answer, and stop() with it (a SIGTERM took
 * 70 s, the data dir locked all along). Answers given while closing now end their connection.
 */
import { afterAll, expect, it } from 'vitest'
import http from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator } from '../../coordinator/coordinator.ts'

const root = await mkdtemp(join(tmpdir(), 'blockfed-stop-keepalive-'))
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

it('stops within seconds when a keep-alive request was under way as it began', async () => {
  const coordinator = await createCoordinator({ dataDir: join(root, 'c'), port: 0, host: '127.0.0.1' })
  const url = new URL(await coordinator.start())
  const agent = new http.Agent({ keepAlive: true })
  try {
    // A request whose body comes in two parts: under way (headers read, body awaited) when stop begins.
    const answered = new Promise<{ status: number, connection: string | undefined }>((resolve, reject) => {
      const req = http.request({ host: url.hostname, port: url.port, path: '/v1/tokens', method: 'POST', agent, headers: { 'content-type': 'application/json', authorization: `Bearer ${coordinator.adminToken}` } }, res => {
        res.resume()
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }) })
      })
      req.on('error', reject)
      req.write('{"role":')
      setTimeout(() => { req.end('"edge"}') }, 300)
    })
    await new Promise(resolve => setTimeout(resolve, 100))
    const stopped = coordinator.stop().then(() => 'stopped')
    const answer = await answered
    expect(answer).toEqual({ status: 200, connection: 'close' })
    // Deadline far below the 72 s idle timeout it waited for, far above a stop's own work.
    const deadline = new Promise(resolve => setTimeout(() => { resolve('still stopping after 15 s') }, 15_000).unref())
    expect(await Promise.race([stopped, deadline])).toBe('stopped')
  } finally {
    agent.destroy()
    await coordinator.stop()
  }
}, 60_000)
