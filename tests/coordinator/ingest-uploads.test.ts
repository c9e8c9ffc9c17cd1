/**
 * The ingest route's memory bound: an upload keeps its slot until its ingest settles, so
 * uploads waiting in the one-at-a-time ingest queue count against INGEST_UPLOADS (2) too.
 */
import { describe, expect, it, vi } from 'vitest'
import { buildServer, type ServerDeps } from '../../coordinator/http/server.ts'
import { MAX_MESSAGE_CHARS } from '../../coordinator/http/errors.ts'
import { InvalidModelError } from '../../shared/errors/errors.ts'

/** A server whose every token is admin's and whose ingest is `ingest`: the route alone is under test. */
async function serverWith (ingest: ServerDeps['ingest'], logger?: ServerDeps['logger']): ReturnType<typeof buildServer> {
  return await buildServer({
    logger,
    repo: { token: () => ({ role: 'admin', revokedAt: null, expiresAt: null, models: null }), noteTokenUse: () => {} },
    files: {},
    identity: {},
    erasure: { k: 4, m: 2 },
    maxUploadBytes: 1 << 20,
    ingest
  } as unknown as ServerDeps)
}

describe('ingest uploads', () => {
  it('checks the token again where the version would be recorded, after the wait in the ingest queue (review 49e)', async () => {
    const row = { role: 'publisher', revokedAt: null as string | null, expiresAt: null, models: null }
    let entered!: () => void
    const inQueue = new Promise<void>(resolve => { entered = resolve })
    let release!: () => void
    const gate = new Promise<void>(resolve => { release = resolve })
    const app = await buildServer({
      repo: { token: () => row, noteTokenUse: () => {} },
      files: {},
      identity: {},
      erasure: { k: 4, m: 2 },
      maxUploadBytes: 1 << 20,
      // As the real ingest: the queue, then `authorize` inside the transaction.
      ingest: async (_name: string, _files: unknown, options?: { authorize?: () => void }) => {
        entered()
        await gate
        options?.authorize?.()
        return { model: 'm', version: 1, manifestCid: 'b', created: true, blocks: 0, newBlocks: 0, bytesStored: 0, ledgerIndex: 0 }
      }
    } as unknown as ServerDeps)
    const url = await app.listen({ port: 0, host: '127.0.0.1' })
    try {
      const form = new FormData()
      form.append('file', new Blob([new Uint8Array(1024)]), 'm.onnx')
      const answer = fetch(`${url}/v1/models/m/ingest`, { method: 'POST', headers: { authorization: 'Bearer t' }, body: form })
      await inQueue
      row.revokedAt = '2026-01-01T00:00:00.000Z'
      release()
      const res = await answer
      expect(res.status).toBe(401)
      expect(await res.json()).toMatchObject({ error: 'UnauthenticatedError', message: 'this API token was revoked at 2026-01-01T00:00:00.000Z' })
    } finally {
      release()
      await app.close()
    }
  })

  it('holds an upload\'s slot until its ingest settles: a third upload gets 503 while two are ingesting', async () => {
    let ingesting = 0
    let release!: () => void
    const gate = new Promise<void>(resolve => { release = resolve })
    const app = await serverWith(async () => {
      ingesting++
      await gate
      ingesting--
      return { model: 'm', version: 1, manifestCid: 'b', created: true, blocks: 0, newBlocks: 0, bytesStored: 0, ledgerIndex: 0 }
    })
    const url = await app.listen({ port: 0, host: '127.0.0.1' })
    try {
      const upload = async (signal?: AbortSignal): Promise<Response> => {
        const form = new FormData()
        form.append('file', new Blob([new Uint8Array(1024)]), 'm.onnx')
        return await fetch(`${url}/v1/models/m/ingest`, { method: 'POST', headers: { authorization: 'Bearer t' }, body: form, ...(signal === undefined ? {} : { signal }) })
      }
      const held = [upload(), upload()]
      // Bounded wait for both bodies to be received and handed to ingest.
      for (let i = 0; i < 200 && ingesting < 2; i++) await new Promise(resolve => setTimeout(resolve, 10))
      expect(ingesting).toBe(2)
      // Answered at once; were it queued behind the gate, the deadline fails the test instead of hanging it.
      const third = await upload(AbortSignal.timeout(5_000))
      expect(third.status).toBe(503)
      expect(((await third.json()) as { message: string }).message).toMatch(/^2 uploads are being received; retry/)
      // Said when to retry (review 47d: no Retry-After, and a stack trace logged per refusal).
      expect(third.headers.get('retry-after')).toBe('5')
      release()
      expect((await Promise.all(held)).map(r => r.status)).toEqual([200, 200])
      expect((await upload()).status).toBe(200)
    } finally {
      release()
      await app.close()
    }
  })

  it('answers a refusal quoting a huge upload string with a bounded message (review 46c: a 30 MB dtype came back whole)', async () => {
    const dtype = 'q'.repeat(3_000_000)
    const app = await serverWith(async () => { throw new InvalidModelError(`model.json: weight "w" has unknown dtype "${dtype}"`) })
    const url = await app.listen({ port: 0, host: '127.0.0.1' })
    try {
      const form = new FormData()
      form.append('file', new Blob([new Uint8Array(16)]), 'model.json')
      const answer = await fetch(`${url}/v1/models/m/ingest`, { method: 'POST', headers: { authorization: 'Bearer t' }, body: form })
      expect(answer.status).toBe(422)
      const { error, message } = await answer.json() as { error: string, message: string }
      expect(error).toBe('InvalidModelError')
      const full = `model.json: weight "w" has unknown dtype "${dtype}"`
      expect(message).toBe(`${full.slice(0, MAX_MESSAGE_CHARS)}… (${full.length - MAX_MESSAGE_CHARS} more characters)`)
    } finally {
      await app.close()
    }
  })

  it('logs a server error to stderr when told to log errors (the CLI\'s coordinator; review 46f: its 500s said "see the coordinator log", which held nothing)', async () => {
    const written: string[] = []
    const write = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => { written.push(String(chunk)); return true })
    const app = await serverWith(async () => { throw new Error('ENOSPC: no space left on device, write') }, 'errors')
    try {
      const url = await app.listen({ port: 0, host: '127.0.0.1' })
      const form = new FormData()
      form.append('file', new Blob([new Uint8Array(16)]), 'model.json')
      const answer = await fetch(`${url}/v1/models/m/ingest`, { method: 'POST', headers: { authorization: 'Bearer t' }, body: form })
      expect(answer.status).toBe(500)
      expect(written.join('')).toContain('ENOSPC: no space left on device, write')
    } finally {
      write.mockRestore()
      await app.close()
    }
  })

  it('answers a full disk, from the file system or SQLite, as 507 saying so, not as an internal error (review 46f)', async () => {
    const full = [
      Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }),
      Object.assign(new Error('database or disk is full'), { code: 'ERR_SQLITE_ERROR', errcode: 13 }),
      new InvalidModelError('wrapped', { cause: Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }) })
    ]
    for (const err of full) {
      const app = await serverWith(async () => { throw err })
      try {
        const url = await app.listen({ port: 0, host: '127.0.0.1' })
        const form = new FormData()
        form.append('file', new Blob([new Uint8Array(16)]), 'model.json')
        const answer = await fetch(`${url}/v1/models/m/ingest`, { method: 'POST', headers: { authorization: 'Bearer t' }, body: form })
        expect(answer.status, err.message).toBe(507)
        expect(await answer.json()).toEqual({ error: 'InsufficientStorage', message: 'the coordinator\'s disk is full, so nothing of this request was stored; free space where its data dir is, then retry' })
      } finally {
        await app.close()
      }
    }
  })
})
