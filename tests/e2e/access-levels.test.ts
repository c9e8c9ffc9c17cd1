/**
 * Block access levels end to end (DESIGN.md, "Keys and access"; review 50a M2: every block was
 * sealed at `default`, so no refusal could happen): an ingest seals named units at a level, an
 * edge token reads `default` and the levels it was given, admin and publisher tokens read all.
 * A real coordinator over HTTP, real Node runtimes loading through the keys route; bad levels,
 * units and tokens get a 400 that names them and store nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { coordinatorClient, type CoordinatorClient } from '../../shared/client/coordinator-client.ts'
import { createNodeRuntime, type NodeRuntime } from '../../node-runtime/runtime.ts'
import { AccessDeniedError } from '../../shared/errors/errors.ts'
import type { SignedManifest } from '../../shared/manifest/schema.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'
import { generateWrapKey } from '../../shared/crypto/wrap.ts'
import { modelFiles, mnistMlp } from '../../node-runtime/examples/mnist-mlp.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { startParticipants, stopParticipants } from '../helpers/fl.ts'
import { TooFewClientsError } from '../../coordinator/rounds/rounds.ts'

let root: string
let coordinator: Coordinator
let url: string
let admin: CoordinatorClient
const runtimes: NodeRuntime[] = []

// Small blocks, so that each layer is a block of its own and a level can be told per block.
const files = async (seed: number): ReturnType<typeof denseModelFiles> => await denseModelFiles(64, [['hidden', 64, seed], ['head', 10, seed + 1]])

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-access-levels-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0, partition: { targetBytes: 4 << 10, maxBytes: 32 << 10 } })
  url = await coordinator.start()
  admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
}, 60_000)

afterAll(async () => {
  for (const rt of runtimes) await rt.stop()
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

const levelsOf = async (version: number, model = 'm'): Promise<Array<[string, string]>> =>
  ((await admin.manifest(model, version)) as SignedManifest).manifest.blocks.map(b => [b.unit, b.access])

async function load (token: string, name: string): Promise<ReturnType<NodeRuntime['load']>> {
  const runtime = await createNodeRuntime({ dataDir: join(root, name), accessHistory: false })
  runtimes.push(runtime)
  return await runtime.load({ version: '1', runtime: 'tensorflow', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: url, token })
}

async function post (path: string, token: string, body: unknown): Promise<{ status: number, json: any }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, json: await res.json() }
}

describe('block access levels', () => {
  it('an ingest seals the units it names at their level; an edge token without it is refused their keys, one given it loads', async () => {
    const made = await admin.ingest('m', await files(1), { access: { head: 'premium' } })
    expect(made.version).toBe(1)
    expect(await levelsOf(1)).toEqual([['hidden', 'default'], ['head', 'premium']])

    const plain = await admin.createToken('edge')
    const keys = await coordinatorClient({ baseUrl: url, token: plain }).keys('m', 1, generateWrapKey())
    const head = ((await admin.manifest('m', 1)) as SignedManifest).manifest.blocks[1]
    expect(keys.denied).toEqual([head?.keyId])
    expect(keys.keys.size).toBe(1)
    await expect(load(plain, 'plain')).rejects.toThrow(AccessDeniedError)

    const premium = (await admin.issueToken({ role: 'edge', levels: ['premium', 'premium'] }))
    expect(premium.levels).toEqual(['premium'])
    expect((await admin.tokens()).find(t => t.id === premium.id)?.levels).toEqual(['premium'])
    const handle = await load(premium.token, 'premium')
    expect(handle.manifest.version).toBe(1)
    expect((await coordinatorClient({ baseUrl: url, token: premium.token }).keys('m', 1, generateWrapKey())).denied).toEqual([])
    // A publisher reads every level.
    const publisher = await admin.createToken('publisher')
    expect((await coordinatorClient({ baseUrl: url, token: publisher }).keys('m', 1, generateWrapKey())).denied).toEqual([])
  }, 60_000)

  it('a later ingest keeps the levels it does not name, and may change them', async () => {
    const kept = await admin.ingest('m', await files(2))
    expect(kept.version).toBe(2)
    expect(await levelsOf(2)).toEqual([['hidden', 'default'], ['head', 'premium']])
    // The same weights at other levels are a new version (what a level protects is its manifest's).
    const moved = await admin.ingest('m', await files(2), { access: { head: 'default', hidden: 'staff' } })
    expect(moved).toMatchObject({ version: 3, created: true, newBlocks: 0 })
    expect(await levelsOf(3)).toEqual([['hidden', 'staff'], ['head', 'default']])
  }, 60_000)

  it('gives a key that equal bytes at two levels share, and does not list it as denied (review 51b)', async () => {
    // Two layers of one seed: equal kernels and biases, so one sealed block for both.
    await admin.ingest('twins', await denseModelFiles(4, [['x', 4, 5], ['y', 4, 5]]), { access: { y: 'premium' } })
    const blocks = ((await admin.manifest('twins', 1)) as SignedManifest).manifest.blocks
    expect(blocks.map(b => [b.unit, b.access])).toEqual([['x', 'default'], ['y', 'premium']])
    expect(blocks[0]?.keyId).toBe(blocks[1]?.keyId)
    const answer = await coordinatorClient({ baseUrl: url, token: await admin.createToken('edge') }).keys('twins', 1, generateWrapKey())
    expect([answer.keys.size, answer.denied]).toEqual([1, []])
  }, 60_000)

  it('refuses an unknown unit, a malformed level or pair, and levels for a token that reads every level, storing nothing', async () => {
    const versions = (await admin.versions('m')).length
    const upload = async (query: string): Promise<{ status: number, json: any }> => {
      const form = new FormData()
      for (const f of await files(3)) form.append('file', new Blob([f.bytes as Uint8Array<ArrayBuffer>]), f.path)
      const res = await fetch(`${url}/v1/models/m/ingest${query}`, { method: 'POST', headers: { authorization: `Bearer ${coordinator.adminToken}` }, body: form })
      return { status: res.status, json: await res.json() }
    }
    expect(await upload('?access=tail%3Dpremium')).toMatchObject({ status: 400, json: { error: 'InvalidInputError', message: 'access: the model has no unit "tail"; its units: hidden, head' } })
    expect(await upload('?access=head%3DPremium!')).toMatchObject({ status: 400, json: { message: expect.stringMatching(/^querystring\.access "head=Premium!": "Premium!" is not an access level/) } })
    expect(await upload('?access=premium')).toMatchObject({ status: 400, json: { message: 'querystring.access "premium": expected UNIT=LEVEL (head=premium)' } })
    expect(await upload('?access=head%3Da&access=head%3Db')).toMatchObject({ status: 400, json: { message: 'querystring.access: unit head given two levels (a, b)' } })
    expect(await upload('?acess=head%3Da')).toMatchObject({ status: 400 })
    expect((await admin.versions('m')).length).toBe(versions)

    const adminToken = coordinator.adminToken
    expect(await post('/v1/tokens', adminToken, { role: 'publisher', levels: ['premium'] })).toMatchObject({ status: 400, json: { message: 'levels: a publisher token reads every access level already' } })
    for (const levels of [['Premium'], [], ['a'.repeat(33)]]) {
      const bad = await post('/v1/tokens', adminToken, { role: 'edge', levels })
      expect(bad.status, JSON.stringify(levels)).toBe(400)
      expect(bad.json.message).toMatch(/^body\.levels/)
    }
  }, 60_000)

  it('offers a round only to runtimes whose tokens read every level of its base, and the version it publishes keeps the levels', async () => {
    await tfjsBackend()
    const model = mnistMlp({ hidden: [16] })
    await admin.ingest('mnist', await modelFiles(model), { access: { head: 'premium' } })
    model.dispose()
    // hidden_1 (50 KB) is cut at rows into blocks of its own, all at its level.
    expect(new Set((await levelsOf(1, 'mnist')).map(([unit, level]) => `${unit} ${level}`))).toEqual(new Set(['hidden_1 default', 'head premium']))
    const request = { model: 'mnist', trainable: ['head'], secure: { mode: 'none' as const }, selection: { minClients: 3 } }

    const plain = await startParticipants(url, await admin.createToken('edge'), join(root, 'plain-runtimes'), 3)
    try {
      const refused = coordinator.rounds.start(request)
      await expect(refused).rejects.toThrow(TooFewClientsError)
      await expect(refused).rejects.toThrow('round for mnist not started: 0 eligible client(s) connected (3 more connected with tokens that may not read every block of version 1, which has blocks at premium: give those runtimes tokens made with those levels, token create edge --level), at least 3 needed')
    } finally {
      await stopParticipants(plain)
    }

    const premium = (await admin.issueToken({ role: 'edge', levels: ['premium'] })).token
    const given = await startParticipants(url, premium, join(root, 'premium-runtimes'), 3)
    try {
      const summary = await coordinator.rounds.run(request)
      expect(summary).toMatchObject({ state: 'published', version: 2, reason: null })
      expect(await levelsOf(2, 'mnist')).toEqual(await levelsOf(1, 'mnist'))
    } finally {
      await stopParticipants(given)
    }
  }, 120_000)
})
