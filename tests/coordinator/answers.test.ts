/**
 * The coordinator's answer budget (coordinator/answers.ts): bytes of block and shard answers
 * under way are bounded, HTTP and libp2p together; an answer beyond it is refused at once.
 */
import { describe, it, expect } from 'vitest'
import { request } from 'node:http'
import { connect } from 'node:net'
import { answerAdmission } from '../../coordinator/answers.ts'
import { buildServer, type ServerDeps } from '../../coordinator/http/server.ts'
import { rawCid } from '../../shared/crypto/cid.ts'

describe('answer admission', () => {
  it('admits up to the byte budget, always one answer when none is under way, and frees on release (once)', () => {
    const a = answerAdmission({ maxBytes: 100, deadlineMs: 10_000 })
    const big = a.admit(500)
    expect(big).toBeDefined()
    expect(a.admit(1)).toBeUndefined()
    big?.()
    big?.()
    expect(a.underway).toBe(0)
    const first = a.admit(60)
    const second = a.admit(40)
    expect(second).toBeDefined()
    expect(a.admit(1)).toBeUndefined()
    first?.()
    expect(a.admit(60)).toBeDefined()
    expect(a.underway).toBe(100)
  })

  it('under an upload cap, also admits only what the cap sends within half the deadline', () => {
    // 1 kB/s and a 10 s deadline: 5 kB under way at most, though the budget allows far more.
    const a = answerAdmission({ maxBytes: 1 << 20, bytesPerSecond: 1_000, deadlineMs: 10_000 })
    expect(a.pace).toBeDefined()
    const first = a.admit(4_000)
    expect(a.admit(1_000)).toBeDefined()
    expect(a.admit(1)).toBeUndefined()
    first?.()
    expect(a.admit(4_000)).toBeDefined()
  })
})

describe('the HTTP block route under a budget of one answer', () => {
  it('takes no admission for a client gone while its file was read, and answers the next one (review 53a)', async () => {
    const bytes = new Uint8Array(300_000).fill(7)
    const cid = await rawCid(bytes)
    const answers = answerAdmission({ maxBytes: 1, deadlineMs: 10_000 })
    let entered!: () => void
    let reading = new Promise<void>(resolve => { entered = resolve })
    let release!: () => void
    let gate = new Promise<void>(resolve => { release = resolve })
    const app = await buildServer({
      repo: {}, identity: {}, erasure: { k: 4, m: 2 }, maxUploadBytes: 1 << 20, answers,
      files: { has: async () => true, get: async () => { entered(); await gate; return bytes } }
    } as unknown as ServerDeps)
    const url = new URL(await app.listen({ port: 0, host: '127.0.0.1' }))
    try {
      // A client that asks and leaves while the file is read (a load cancelling a shard it no longer needs).
      const left = request({ host: url.hostname, port: url.port, path: `/v1/blocks/${cid}` })
      const closed = new Promise<void>(resolve => left.once('close', () => { resolve() }))
      left.on('error', () => {})
      left.end()
      await reading
      left.destroy()
      await closed
      // The server hears the close on its side before the read ends.
      await new Promise(resolve => setTimeout(resolve, 100))
      release()
      await new Promise(resolve => setTimeout(resolve, 100))
      expect(answers.underway).toBe(0)
      reading = Promise.resolve()
      gate = Promise.resolve()
      const next = await fetch(`${url.origin}/v1/blocks/${cid}`)
      expect(next.status).toBe(200)
      expect((await next.arrayBuffer()).byteLength).toBe(bytes.length)
      await expect.poll(() => answers.underway, { timeout: 2_000 }).toBe(0)
    } finally {
      release()
      await app.close()
    }
  })
})

describe('the HTTP block route and a reader that stops', () => {
  it('cuts the connection at the answer deadline, so that the admission comes back (review 53a)', async () => {
    // Far more than loopback's socket buffers take: the write stalls once the reader pauses.
    const bytes = new Uint8Array(32 << 20).fill(3)
    const cid = await rawCid(bytes)
    const answers = answerAdmission({ maxBytes: 1, deadlineMs: 10_000 })
    const app = await buildServer({
      repo: {}, identity: {}, erasure: { k: 4, m: 2 }, maxUploadBytes: 1 << 20, answers, answerDeadlineMs: 1_000,
      files: { has: async () => true, get: async () => bytes }
    } as unknown as ServerDeps)
    const url = new URL(await app.listen({ port: 0, host: '127.0.0.1' }))
    const stalled = connect(Number(url.port), '127.0.0.1')
    try {
      stalled.on('error', () => {})
      let received = 0
      stalled.on('data', (chunk: Buffer) => {
        received += chunk.length
        stalled.pause() // reads its first bytes (the headers) and stops
      })
      stalled.write(`GET /v1/blocks/${cid} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`)
      await expect.poll(() => answers.underway, { timeout: 2_000 }).toBe(bytes.length)
      // Still held half a deadline in: the reader is slow, not yet given up on.
      await new Promise(resolve => setTimeout(resolve, 500))
      expect(answers.underway).toBe(bytes.length)
      // Cut (a paused socket hears no end until it reads on): the admission is back.
      await expect.poll(() => answers.underway, { timeout: 2_000 }).toBe(0)
      expect(received).toBeLessThan(bytes.length)
      const next = await fetch(`${url.origin}/v1/blocks/${cid}`)
      expect(next.status).toBe(200)
      expect((await next.arrayBuffer()).byteLength).toBe(bytes.length)
    } finally {
      stalled.destroy()
      await app.close()
    }
  })
})
