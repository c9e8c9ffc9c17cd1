/**
 * Runtimes' verdicts on versions (coordinator/http/verdict-routes.ts, store/verdicts.ts; review
 * 49f): one per client and version, a later one replacing its client's; read by operators only;
 * every malformed report a 400 naming the field, an unknown version a 404, another model's token
 * a 403, and a version holding MAX_VERDICTS refuses new clients. A real coordinator over HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { coordinatorClient, type CoordinatorClient } from '../../shared/client/coordinator-client.ts'
import { AccessDeniedError, ConflictError, NotFoundError } from '../../shared/errors/errors.ts'
import { MAX_VERDICTS, VERDICT_VERSIONS } from '../../coordinator/store/verdicts.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

let root: string
let coordinator: Coordinator
let url: string
let admin: CoordinatorClient
let edge: CoordinatorClient
const client = (n: number): string => n.toString(16).padStart(64, '0')

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-verdicts-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0 })
  url = await coordinator.start()
  admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
  edge = coordinatorClient({ baseUrl: url, token: await coordinator.createToken('edge') })
  await admin.ingest('m', await denseModelFiles(4, [['d', 2, 1]]))
  await admin.ingest('m', await denseModelFiles(4, [['d', 2, 2]]))
  await admin.ingest('other', await denseModelFiles(4, [['d', 2, 3]]))
}, 60_000)

afterAll(async () => {
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

async function post (path: string, body: unknown): Promise<{ status: number, message: string }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${coordinator.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, message: ((await res.json()) as { message?: string }).message ?? '' }
}

describe('verdicts on versions', () => {
  it('counts one verdict per client and version, the latest replacing its client\'s earlier', async () => {
    expect(await admin.verdicts('m')).toEqual([])
    await edge.reportVerdict('m', 2, { clientId: client(1), verdict: 'rejected' })
    await edge.reportVerdict('m', 2, { clientId: client(1), verdict: 'rejected' })
    await edge.reportVerdict('m', 2, { clientId: client(2), verdict: 'rejected' })
    await edge.reportVerdict('m', 1, { clientId: client(2), verdict: 'rolled-back' })
    expect(await admin.verdicts('m')).toEqual([{ version: 1, rejected: 0, rolledBack: 1 }, { version: 2, rejected: 2, rolledBack: 0 }])
    await edge.reportVerdict('m', 2, { clientId: client(2), verdict: 'rolled-back' })
    expect((await admin.verdicts('m')).find(v => v.version === 2)).toEqual({ version: 2, rejected: 1, rolledBack: 1 })
  })

  it('are an operator\'s to read, and a limited token reports on its models only', async () => {
    await expect(edge.verdicts('m')).rejects.toThrow(AccessDeniedError)
    await expect(edge.verdicts('m')).rejects.toThrow('role edge may not read verdicts (an operator\'s: publisher or admin)')
    await expect(admin.verdicts('nosuch')).rejects.toThrow(NotFoundError)
    const limited = coordinatorClient({ baseUrl: url, token: await coordinator.createToken('edge', { models: ['other'] }) })
    await expect(limited.reportVerdict('m', 1, { clientId: client(3), verdict: 'rejected' })).rejects.toThrow('this API token is limited to the models other: it may not report a verdict on m')
    await expect(coordinatorClient({ baseUrl: url }).reportVerdict('m', 1, { clientId: client(3), verdict: 'rejected' })).rejects.toThrow(/needs an API token/)
    const otherPublisher = coordinatorClient({ baseUrl: url, token: await coordinator.createToken('publisher', { models: ['other'] }) })
    await expect(otherPublisher.verdicts('m')).rejects.toThrow('this API token is limited to the models other: it may not read the verdicts on m')
  })

  it('refuses a malformed report with a 400 naming the field, and an unknown version with a 404', async () => {
    const good = { clientId: client(4), verdict: 'rejected' }
    expect(await post('/v1/models/m/versions/1/verdicts', { ...good, clientId: 'ab' })).toMatchObject({ status: 400, message: expect.stringMatching(/^body\.clientId: a client id: 64 lowercase hex digits/) })
    expect(await post('/v1/models/m/versions/1/verdicts', { ...good, verdict: 'bad' })).toMatchObject({ status: 400, message: expect.stringMatching(/^body\.verdict/) })
    expect(await post('/v1/models/m/versions/1/verdicts', { ...good, score: 0.5 })).toMatchObject({ status: 400, message: expect.stringMatching(/^body/) })
    for (const version of ['0', 'latest', '-1', '1.5', '9999999999']) {
      expect((await post(`/v1/models/m/versions/${version}/verdicts`, good)).status, version).toBe(400)
    }
    expect(await post('/v1/models/m/versions/3/verdicts', good)).toMatchObject({ status: 404, message: 'model m has no version 3' })
    expect(await post('/v1/models/nosuch/versions/1/verdicts', good)).toMatchObject({ status: 404 })
    expect((await admin.verdicts('m')).find(v => v.version === 1)).toEqual({ version: 1, rejected: 0, rolledBack: 1 })
  })

  it('takes verdicts on the VERDICT_VERSIONS latest versions only, and drops those of older ones (review 51c)', async () => {
    await coordinator.ingest('seq', await denseModelFiles(4, [['d', 2, 100]]))
    await edge.reportVerdict('seq', 1, { clientId: client(7), verdict: 'rejected' })
    for (let i = 2; i <= VERDICT_VERSIONS + 1; i++) await coordinator.ingest('seq', await denseModelFiles(4, [['d', 2, 100 + i]]))
    await expect(edge.reportVerdict('seq', 1, { clientId: client(8), verdict: 'rejected' })).rejects.toThrow(`seq@1: only the ${VERDICT_VERSIONS} latest versions (from 2) take verdicts`)
    expect(await admin.verdicts('seq')).toEqual([])
    await edge.reportVerdict('seq', 2, { clientId: client(8), verdict: 'rejected' })
    expect(await admin.verdicts('seq')).toEqual([{ version: 2, rejected: 1, rolledBack: 0 }])
  }, 60_000)

  it('takes at most MAX_VERDICTS clients per version; a client already counted may still change its verdict', async () => {
    // Filled straight in the database: a hundred thousand reports over HTTP would take minutes.
    const { DatabaseSync } = await import('node:sqlite')
    const db = new DatabaseSync(join(root, 'coordinator', 'coordinator.sqlite'))
    try {
      const insert = db.prepare('INSERT INTO version_verdicts (model, version, client_id, verdict, at) VALUES (\'other\', 1, ?, \'rejected\', \'2026-01-01T00:00:00.000Z\')')
      db.exec('BEGIN')
      for (let i = 0; i < MAX_VERDICTS - 1; i++) insert.run(client(1_000_000 + i))
      db.exec('COMMIT')
    } finally {
      db.close()
    }
    await edge.reportVerdict('other', 1, { clientId: client(5), verdict: 'rejected' })
    await expect(edge.reportVerdict('other', 1, { clientId: client(6), verdict: 'rejected' })).rejects.toThrow(ConflictError)
    await edge.reportVerdict('other', 1, { clientId: client(5), verdict: 'rolled-back' })
    expect(await admin.verdicts('other')).toEqual([{ version: 1, rejected: MAX_VERDICTS - 1, rolledBack: 1 }])
  }, 60_000)
})
