/**
 * The Node runtime (node-runtime/runtime.ts) against a real coordinator, for what only a load
 * shows: the version a handle serves when recording a move fails, and the sockets `stop` leaves.
 */
import { describe, it, expect, expectTypeOf, beforeAll, afterAll, vi } from 'vitest'
import http from 'node:http'
import type { Socket } from 'node:net'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { coordinatorClient, type CoordinatorClient } from '../../shared/client/coordinator-client.ts'
import { createNodeRuntime, type ModelHandle, type NodeRuntime } from '../../node-runtime/runtime.ts'
import { nodeHttpBlockSource } from '../../node-runtime/sources/http.ts'
import { tfjsPassthrough } from '../../shared/runtime/passthrough.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

let root: string
let coordinator: Coordinator
let url: string
let admin: CoordinatorClient
let token: string

const files = async (seed: number): Promise<Awaited<ReturnType<typeof denseModelFiles>>> =>
  await denseModelFiles(16, [['a', 32, seed], ['b', 4, seed + 1]])
const config = (modelName: string): Record<string, unknown> => ({ version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: modelName, modelName, updateURL: url, token })

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-runtime-coordinator-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0, partition: { targetBytes: 1 << 10, maxBytes: 2 << 10 } })
  url = await coordinator.start()
  admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
  token = await admin.createToken('edge')
}, 60_000)

afterAll(async () => {
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

/**
 * A runtime of `model` whose `failing`-th model code, once initialised (its blocks verified, its
 * move not yet recorded), puts a folder in versions.json's place, so recording fails; `released`
 * lists the codes released, by number.
 */
async function failingRecord (model: string, failing: number): Promise<{ rt: NodeRuntime, dataDir: string, released: number[] }> {
  const dataDir = join(root, model)
  const released: number[] = []
  let made = 0
  const rt = await createNodeRuntime({
    dataDir,
    accessHistory: false,
    codes: {
      [model]: () => {
        const n = ++made
        const code = tfjsPassthrough()
        return {
          ...code,
          init: async context => {
            code.init(context)
            if (n === failing) {
              await rm(join(dataDir, model, 'versions.json'), { recursive: true, force: true })
              await mkdir(join(dataDir, model, 'versions.json'))
            }
          },
          release: () => { released.push(n); code.release() }
        }
      }
    }
  })
  return { rt, dataDir, released }
}

describe('node runtime', () => {
  it('keeps serving the version versions.json names when recording an upgrade fails, and frees the candidate', async () => {
    await admin.ingest('record', await files(1))
    const { rt, dataDir, released } = await failingRecord('record', 2)
    const handle = await rt.load(config('record'))
    expect(handle.manifest.version).toBe(1)
    await admin.ingest('record', await files(7))
    await expect(handle.update()).rejects.toThrow(/EISDIR|versions\.json/)
    expect(handle.manifest.version).toBe(1)
    expect(released).toEqual([2])
    await rm(join(dataDir, 'record', 'versions.json'), { recursive: true })
    await rt.stop()
    expect(released).toEqual([2, 1])
  }, 60_000)

  it('moves nowhere when the handle is released while the next version is prepared: nothing recorded, the candidate freed', async () => {
    await admin.ingest('released', await files(8))
    const dataDir = join(root, 'released')
    const released: number[] = []
    let handle: ModelHandle | undefined
    let releasing: Promise<void> | undefined
    const rt = await createNodeRuntime({
      dataDir,
      accessHistory: false,
      codes: {
        released: () => {
          const code = tfjsPassthrough()
          let version = 0
          return {
            ...code,
            // Version 2's code, once ready, releases the handle it is about to serve in.
            init: context => { version = context.manifest.version; code.init(context); if (version === 2) releasing = handle?.release() },
            release: () => { released.push(version); code.release() }
          }
        }
      }
    })
    try {
      handle = await rt.load(config('released'))
      await admin.ingest('released', await files(9))
      await expect(handle.update()).rejects.toThrow('released: this model handle was released')
      await releasing
      expect(released.sort()).toEqual([1, 2])
      const recorded = JSON.parse(await readFile(join(dataDir, 'released', 'versions.json'), 'utf8')) as { current: number }
      expect(recorded.current).toBe(1)
    } finally {
      await rt.stop()
    }
  }, 60_000)

  it('frees what a first load set up when recording it fails', async () => {
    await admin.ingest('first', await files(2))
    const { rt, dataDir, released } = await failingRecord('first', 1)
    await expect(rt.load(config('first'))).rejects.toThrow(/EISDIR|versions\.json/)
    // No handle holds it: before, its engine and code stayed held, through stop() too.
    expect(released).toEqual([1])
    await rm(join(dataDir, 'first', 'versions.json'), { recursive: true })
    expect((await rt.load(config('first'))).manifest.version).toBe(1)
    await rt.stop()
    expect(released).toEqual([1, 2])
  }, 60_000)

  it('ends a prefetch under way at stop and waits for it; none starts after', async () => {
    await admin.ingest('prefetch', await files(4))
    // Blocks come over HTTP until `hang` is set; then every get waits for its signal.
    let hang = false
    const asked: string[] = []
    const rt = await createNodeRuntime({
      dataDir: join(root, 'prefetch'),
      accessHistory: false,
      source: c => {
        const http = nodeHttpBlockSource({ baseUrl: c.updateURL, timeoutMs: c.fetch.timeoutMs })
        return {
          name: 'hanging',
          get: async (cid, options) => {
            if (!hang) return await http.get(cid, options)
            asked.push(cid)
            return await new Promise<never>((_resolve, reject) => {
              options.signal.addEventListener('abort', () => { reject(options.signal.reason) }, { once: true })
            })
          }
        }
      }
    })
    const handle = await rt.load(config('prefetch'))
    await admin.ingest('prefetch', await files(5))
    hang = true
    let settled = false
    const prefetching = handle.prefetch().finally(() => { settled = true })
    await vi.waitFor(() => { expect(asked.length).toBeGreaterThan(0) }, { timeout: 10_000 })
    await rt.stop()
    // Before, stop returned with the prefetch still waiting on its blocks.
    expect(settled).toBe(true)
    await expect(prefetching).rejects.toThrow(/stopping/)
    await expect(handle.prefetch()).rejects.toThrow(/the runtime has stopped/)
  }, 60_000)

  it('refuses a second config of one model folder whose cache settings differ from the open cache\'s', async () => {
    await admin.ingest('cached', await files(6))
    const rt = await createNodeRuntime({ dataDir: join(root, 'cached'), accessHistory: false })
    try {
      const cache = { memoryBytes: 1 << 20, diskBytes: 1 << 24 }
      await rt.load({ ...config('cached'), cache })
      // Before, it loaded with the first config's cache, its own sizes unheard.
      await expect(rt.load({ ...config('cached'), cache: { ...cache, memoryBytes: 1 << 21 } }))
        .rejects.toThrow(/modelDir cached has a cache open with other settings \(\{"memoryBytes":1048576,.*this config: \{"memoryBytes":2097152/)
      // The same settings, in another order and with the defaults spelt out, share it.
      const again = await rt.load({ ...config('cached'), cache: { diskBytes: 1 << 24, memoryBytes: 1 << 20, halfLifeHours: 24 } })
      expect(again.manifest.version).toBe(1)
    } finally {
      await rt.stop()
    }
  }, 60_000)

  it('types each version move with the actions it can take (npm test type-checks this; stop 48b: update\'s type said it could roll back)', () => {
    type Action<K extends 'update' | 'check' | 'rollback'> = Awaited<ReturnType<ModelHandle[K]>>['action']
    expectTypeOf<Action<'update'>>().toEqualTypeOf<'none' | 'available' | 'upgraded' | 'rejected'>()
    expectTypeOf<Action<'check'>>().toEqualTypeOf<'none' | 'rolled-back'>()
    expectTypeOf<Action<'rollback'>>().toEqualTypeOf<'rolled-back'>()
    expectTypeOf<Awaited<ReturnType<NodeRuntime['rollback']>>['action']>().toEqualTypeOf<'rolled-back'>()
  })

  it('names where a token the coordinator refuses came from: the runtime option, the config\'s token, its tokenEnv', async () => {
    await admin.ingest('refused', await files(4))
    const wrong = `bf_${'0'.repeat(64)}`
    const { token: _, ...bare } = config('refused')
    process.env.BLOCKFED_TEST_REFUSED_TOKEN = wrong
    const cases: Array<[Record<string, unknown>, string | undefined, string]> = [
      [{ ...bare, token: wrong }, undefined, 'the aoe config\'s "token"'],
      [{ ...bare, tokenEnv: 'BLOCKFED_TEST_REFUSED_TOKEN' }, undefined, 'BLOCKFED_TEST_REFUSED_TOKEN, the aoe config\'s "tokenEnv"'],
      [config('refused'), wrong, 'the runtime\'s token option']
    ]
    try {
      for (const [given, option, from] of cases) {
        const rt = await createNodeRuntime({ dataDir: join(root, 'refused'), accessHistory: false, token: option })
        try {
          await expect(rt.load(given)).rejects.toThrow(`refused: the coordinator refused the API token (from ${from}): POST /v1/models/refused/versions/1/keys: unknown API token`)
        } finally {
          await rt.stop()
        }
      }
    } finally {
      delete process.env.BLOCKFED_TEST_REFUSED_TOKEN
    }
  }, 60_000)

  it('rolls back offline to the version before the one in use, and says that an older one is not kept (review 52a: "never verified here")', async () => {
    const own = await createCoordinator({ dataDir: join(root, 'offline-coordinator'), port: 0 })
    const ownUrl = await own.start()
    const ownAdmin = coordinatorClient({ baseUrl: ownUrl, token: own.adminToken })
    for (const seed of [21, 22, 23]) await ownAdmin.ingest('kept', await files(seed))
    const aoe = { version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'kept', modelName: 'kept', updateURL: ownUrl, token: await ownAdmin.createToken('edge') }
    const dataDir = join(root, 'offline-runtime')
    // Versions 1, 2 and 3 verified here in turn.
    for (const pin of [1, 2, 3]) {
      const rt = await createNodeRuntime({ dataDir, accessHistory: false })
      expect((await rt.load({ ...aoe, pin })).manifest.version).toBe(pin)
      await rt.stop()
    }
    await own.stop()
    const rt = await createNodeRuntime({ dataDir, accessHistory: false })
    try {
      await expect(rt.rollback(aoe, 1)).rejects.toThrow('kept@1: the coordinator is unreachable and this version is not kept here (a runtime keeps what verifies the version in use and the one before it, offline); reach the coordinator to go further back')
      expect(await rt.rollback(aoe, 2)).toMatchObject({ action: 'rolled-back', from: 3, to: 2, bytesFetched: 0 })
    } finally {
      await rt.stop()
    }
  }, 60_000)

  it('refuses at load a version policy that scores versions when the model code has no evaluate(), and frees what it set up (review 52a)', async () => {
    await admin.ingest('unscored', await files(5))
    const released: number[] = []
    const rt = await createNodeRuntime({ dataDir: join(root, 'unscored'), accessHistory: false, codes: { unscored: () => { const code = tfjsPassthrough(); return { ...code, release: () => { released.push(1); code.release() } } } } })
    try {
      for (const [policy, named] of [[{ upgrade: { validate: { margin: 0.01 } } }, 'upgrade.validate'], [{ rollback: { below: 0.9 } }, 'rollback.below']] as const) {
        await expect(rt.load({ ...config('unscored'), ...policy })).rejects.toThrow(`aoe config for unscored: ${named} scores versions with the model code's evaluate(), and this model's code has none (give createNodeRuntime a codes["unscored"] whose code has evaluate(), or leave ${named} out)`)
      }
      expect(released).toEqual([1, 1])
      // Pinned, validation never runs: no refusal.
      expect((await rt.load({ ...config('unscored'), pin: 1, upgrade: { validate: { margin: 0.01 } } })).manifest.version).toBe(1)
    } finally {
      await rt.stop()
    }
  }, 60_000)

  it('closes its HTTP block sources\' keep-alive sockets on stop', async () => {
    await admin.ingest('sockets', await files(3))
    // Every socket a node:http agent opens (the block sources'; fetch's pool is not an agent).
    const sockets: Socket[] = []
    const connect = http.Agent.prototype.createConnection
    const spy = vi.spyOn(http.Agent.prototype, 'createConnection').mockImplementation(function (this: http.Agent, ...args: Parameters<typeof connect>) {
      const socket = connect.apply(this, args) as Socket
      sockets.push(socket)
      return socket
    })
    try {
      const rt = await createNodeRuntime({ dataDir: join(root, 'sockets'), accessHistory: false })
      await rt.load(config('sockets'))
      await rt.load(config('sockets'))
      expect(sockets.length).toBeGreaterThan(0)
      await rt.stop()
      expect(sockets.filter(s => !s.destroyed)).toHaveLength(0)
    } finally {
      spy.mockRestore()
    }
  }, 60_000)
})
