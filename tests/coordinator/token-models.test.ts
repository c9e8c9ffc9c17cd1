/**
 * API tokens limited to models (review 49b: one edge token, say a kiosk's, opened every model's
 * data keys): a limited token gets the data keys, ingests, release channels and rounds of its
 * models only, and round offers only for them; an admin token, which makes tokens, cannot be
 * limited. A real coordinator on 127.0.0.1 with two small tfjs models, raw HTTP and WebSocket.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'
import { Peer } from '../helpers/ws-fuzz-peer.ts'
import { AccessDeniedError } from '../../shared/errors/errors.ts'
import { generateWrapKey } from '../../shared/crypto/wrap.ts'

let root: string
let coordinator: Coordinator
let url: string
const peers: Peer[] = []

const files = async (seed: number): ReturnType<typeof denseModelFiles> => await denseModelFiles(8, [['hidden', 4, seed], ['head', 2, seed + 1]])

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-token-models-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0 })
  url = await coordinator.start()
  for (const [i, name] of ['kiosk-a', 'kiosk-b', 'other'].entries()) await coordinator.ingest(name, await files(i * 10))
}, 60_000)

afterAll(async () => {
  for (const p of peers) p.ws.terminate()
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

async function api (method: string, path: string, token: string, body?: unknown): Promise<{ status: number, json: any }> {
  const res = await fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
  const text = await res.text()
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text) }
}
const keysOf = async (model: string, token: string): Promise<{ status: number, json: any }> =>
  await api('POST', `/v1/models/${model}/versions/1/keys`, token, { publicKey: Buffer.alloc(32, 9).toString('base64') })

describe('an API token limited to models', () => {
  it('is made with its models (a prefix ending in * for a family), listed with them, and refused for an admin or a malformed name', async () => {
    const admin = coordinator.adminToken
    const made = await api('POST', '/v1/tokens', admin, { role: 'edge', models: ['kiosk-*', 'kiosk-*'], label: 'kiosk 7' })
    expect(made.status).toBe(200)
    expect(made.json.models).toEqual(['kiosk-*'])
    const listed = (await api('GET', '/v1/tokens', admin)).json.tokens.find((t: { id: string }) => t.id === made.json.id)
    expect(listed.models).toEqual(['kiosk-*'])
    expect((await api('GET', '/v1/tokens', admin)).json.tokens.find((t: { adminFile: boolean }) => t.adminFile).models).toBeNull()
    const asAdmin = await api('POST', '/v1/tokens', admin, { role: 'admin', models: ['kiosk-a'] })
    expect(asAdmin).toMatchObject({ status: 400, json: { error: 'InvalidInputError', message: 'models: an admin token makes tokens, which may open every model; it cannot be limited to models' } })
    // kiosk* would also open kiosks-admin: a prefix ends in a separator (review 49d).
    for (const models of [['Kiosk'], ['kiosk*a'], ['*'], [], ['kiosk*'], ['-*']]) {
      const bad = await api('POST', '/v1/tokens', admin, { role: 'edge', models })
      expect(bad.status, JSON.stringify(models)).toBe(400)
      expect(bad.json.message).toMatch(/^body\.models/)
    }
    await expect(coordinator.createToken('edge', { models: ['Bad!'] })).rejects.toThrow(/models: 0: a model name, or a prefix of one ending in a separator \(- _ \.\) and \*/)
  })

  it('gets the data keys of its models only', async () => {
    const kiosk = await coordinator.createToken('edge', { models: ['kiosk-*'] })
    for (const model of ['kiosk-a', 'kiosk-b']) {
      const granted = await keysOf(model, kiosk)
      expect(granted.status, model).toBe(200)
      expect(granted.json.keys.length).toBeGreaterThan(0)
    }
    expect(await keysOf('other', kiosk)).toMatchObject({ status: 403, json: { error: 'AccessDeniedError', message: 'this API token is limited to the models kiosk-*: it may not get the data keys of other' } })
    // An unlimited edge token, as before: every model.
    expect((await keysOf('other', await coordinator.createToken('edge'))).status).toBe(200)
    // The client says it as the typed error.
    await expect(coordinatorClient({ baseUrl: url, token: kiosk }).keys('other', 1, generateWrapKey())).rejects.toThrow(AccessDeniedError)
  })

  it('ingests, sets channels and runs rounds for its models only', async () => {
    const publisher = await coordinator.createToken('publisher', { models: ['kiosk-a'] })
    const client = coordinatorClient({ baseUrl: url, token: publisher })
    expect((await client.ingest('kiosk-a', await files(100))).version).toBe(2)
    await expect(client.ingest('other', await files(100))).rejects.toThrow('this API token is limited to the models kiosk-a: it may not ingest other')
    expect(await api('PUT', '/v1/models/other/channels/canary', publisher, { version: 1, rollout: 0.5 })).toMatchObject({ status: 403, json: { message: 'this API token is limited to the models kiosk-a: it may not set the release channels of other' } })
    expect(await api('DELETE', '/v1/models/other/channels/canary', publisher)).toMatchObject({ status: 403 })
    expect((await api('DELETE', '/v1/models/kiosk-a/channels/canary', publisher)).status).toBe(200)
    expect(await api('POST', '/v1/rounds', publisher, { model: 'other', trainable: ['head'] })).toMatchObject({ status: 403, json: { message: 'this API token is limited to the models kiosk-a: it may not start rounds of other' } })
    expect(await api('GET', '/v1/models/other/rounds', publisher)).toMatchObject({ status: 403, json: { message: 'this API token is limited to the models kiosk-a: it may not read rounds of other' } })
    expect((await api('GET', '/v1/models/kiosk-a/rounds', publisher)).status).toBe(200)
  })

  it('is offered rounds of its models only, whatever models its runtime says it holds', async () => {
    const kiosk = await coordinator.createToken('edge', { models: ['kiosk-b'] })
    for (let i = 0; i < 2; i++) peers.push(await Peer.open(url, kiosk, `kiosk-${i}`, { models: ['kiosk-b', 'other'] }))
    const start = async (model: string): Promise<{ status: number, json: any }> =>
      await api('POST', '/v1/rounds', coordinator.adminToken, { model, trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 2 }, deadlines: { acceptMs: 1000 } })
    const refused = await start('other')
    expect(refused.status).toBe(503)
    expect(refused.json.message).toMatch(/round for other not started: 0 eligible client\(s\) connected/)
    const at = peers.map(p => p.mark())
    const started = await start('kiosk-b')
    expect(started.status, JSON.stringify(started.json)).toBe(202)
    // Its round, read with a token limited to other models: refused; with its own, read.
    const other = await coordinator.createToken('publisher', { models: ['other'] })
    expect(await api('GET', `/v1/rounds/${started.json.id as string}`, other)).toMatchObject({ status: 403, json: { message: 'this API token is limited to the models other: it may not read rounds of kiosk-b' } })
    expect((await api('GET', `/v1/rounds/${started.json.id as string}`, await coordinator.createToken('publisher', { models: ['kiosk-*'] }))).status).toBe(200)
    expect((await api('GET', '/v1/rounds/r_0000000000000000', other)).status).toBe(404)
    for (const [i, p] of peers.entries()) expect((await p.waitFrom(at[i] as number, m => m?.type === 'offer', 10_000))?.config?.model).toBe('kiosk-b')
  })
})
