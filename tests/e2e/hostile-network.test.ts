/**
 * A runtime between a real coordinator and a hostile or broken network: every request of the
 * runtime goes through a real HTTP proxy on 127.0.0.1 that the test makes tamper, hang or pass
 * through. Plain-HTTP deployments meet exactly this (a man in the middle), and so does a buggy
 * coordinator. What must hold: nothing the runtime verified and kept is ever spoilt by a bad
 * answer, it never moves backwards or onto an unanchored version unasked, and a coordinator
 * that hangs is treated like one that is down.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer, type Server } from 'node:http'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { createNodeRuntime, type NodeRuntime } from '../../node-runtime/runtime.ts'
import { coordinatorClient, type CoordinatorClient } from '../../shared/client/coordinator-client.ts'
import { fromBase64 } from '../../shared/crypto/bytes.ts'
import { wrapKeys } from '../../shared/crypto/wrap.ts'
import { IntegrityError, LedgerSecurityError, UnavailableError } from '../../shared/errors/errors.ts'
import type { ModelFile } from '../../shared/model/types.ts'
import type { ModelCode } from '../../shared/runtime/lifecycle.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

type Mode = 'pass' | 'hang'
  | { rewrite: (path: string, request: Buffer, body: Buffer) => Buffer | undefined }
  /** Requests whose path matches `hold` wait for `until` before passing through; `arrived` hears of each. */
  | { hold: RegExp, until: Promise<void>, arrived: () => void }

let root: string
let coordinator: Coordinator
let upstream: string
let admin: CoordinatorClient
let token: string
let proxy: Server
let url: string
let mode: Mode = 'pass'
const runtimes: NodeRuntime[] = []

/** Two dense layers, small blocks (each layer its own block); `seed` changes the second layer only. */
const files = async (seed: number): Promise<ModelFile[]> => await denseModelFiles(64, [['a', 128, 1], ['b', 10, seed]])

const config = (model: string, extra: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ version: '1', tag: 't', runtime: 'tfjs', source: 'blockfed', modelDir: model, modelName: model, updateURL: url, token, ...extra })

async function runtime (dir: string, options: Partial<Parameters<typeof createNodeRuntime>[0]> = {}): Promise<NodeRuntime> {
  const rt = await createNodeRuntime({ dataDir: join(root, dir), accessHistory: false, ...options })
  runtimes.push(rt)
  return rt
}

async function setChannel (model: string, version: number): Promise<void> {
  const r = await fetch(`${upstream}/v1/models/${model}/channels/stable`, { method: 'PUT', headers: { 'content-type': 'application/json', authorization: `Bearer ${coordinator.adminToken}` }, body: JSON.stringify({ version }) })
  expect(r.status).toBe(200)
}

beforeAll(async () => {
  await tfjsBackend()
  root = await mkdtemp(join(tmpdir(), 'blockfed-hostile-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0, partition: { targetBytes: 16 << 10, maxBytes: 64 << 10 } })
  upstream = await coordinator.start()
  admin = coordinatorClient({ baseUrl: upstream, token: coordinator.adminToken })
  token = await admin.createToken('edge')
  proxy = createServer((req, res) => {
    if (mode === 'hang') return // accepts, never answers
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      void (async () => {
        if (typeof mode === 'object' && 'hold' in mode && mode.hold.test(req.url ?? '/')) {
          mode.arrived()
          await mode.until
        }
        const request = Buffer.concat(chunks)
        const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !['host', 'connection', 'content-length'].includes(k))) as Record<string, string>
        const up = await fetch(upstream + (req.url ?? '/'), { method: req.method, headers, body: req.method === 'GET' || req.method === 'HEAD' ? undefined : request })
        let body: Buffer = Buffer.from(await up.arrayBuffer())
        if (typeof mode === 'object' && 'rewrite' in mode) body = mode.rewrite(req.url ?? '/', request, body) ?? body
        const out: Record<string, string> = {}
        up.headers.forEach((v, k) => { if (!['content-length', 'content-encoding', 'transfer-encoding', 'connection'].includes(k)) out[k] = v })
        res.writeHead(up.status, { ...out, 'content-length': String(body.length) })
        res.end(body)
      })().catch(() => { res.destroy() })
    })
  })
  await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve))
  url = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`
}, 60_000)

afterAll(async () => {
  for (const rt of runtimes) await rt.stop().catch(() => {})
  proxy?.closeAllConnections()
  await new Promise(resolve => proxy?.close(resolve))
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('a runtime behind a hostile network', () => {
  it('a tampered key answer fails that upgrade only: the kept keys survive, the next honest update and a restart work', async () => {
    await admin.ingest('kept', await files(2))
    const handle = await (await runtime('keys')).load(config('kept'))
    const keysFile = join(root, 'keys', 'kept', 'keys.json')
    const keptBefore = JSON.parse(await readFile(keysFile, 'utf8')) as Record<string, string>
    expect((await admin.ingest('kept', await files(3))).newBlocks).toBe(1)

    // Random data keys wrapped to the runtime's own public key (it travels in the request).
    mode = {
      rewrite: (path, request, body) => {
        if (!/\/v1\/models\/kept\/versions\/2\/keys$/.test(path)) return undefined
        const answer = JSON.parse(body.toString()) as { ephemeralPublicKey: string, keys: Array<{ keyId: string, blockCid: string, wrapped: string }> }
        const wrapped = wrapKeys(fromBase64((JSON.parse(request.toString()) as { publicKey: string }).publicKey), answer.keys.map(k => ({ keyId: k.keyId, key: globalThis.crypto.getRandomValues(new Uint8Array(32)), aad: k.blockCid })))
        return Buffer.from(JSON.stringify({ ...answer, ephemeralPublicKey: wrapped.ephemeralPublicKey, keys: answer.keys.map((k, i) => ({ ...k, wrapped: wrapped.keys[i]?.wrapped })) }))
      }
    }
    await expect(handle.update()).rejects.toThrow(IntegrityError)
    expect(handle.manifest.version).toBe(1)
    // Nothing of the bad answer was kept, and no kept key was replaced.
    expect(JSON.parse(await readFile(keysFile, 'utf8'))).toEqual(keptBefore)

    mode = 'pass'
    expect(await handle.update()).toMatchObject({ action: 'upgraded', from: 1, to: 2 })
    expect(handle.manifest.version).toBe(2)
    // A restart pinned to v1 still opens v1 with the keys it kept.
    const again = await (await runtime('keys-restart')).load(config('kept', { pin: 1 }))
    expect(again.manifest.version).toBe(1)
  })

  it('a channel pointing back does not move a restarted runtime backwards', async () => {
    await admin.ingest('back', await files(4))
    await admin.ingest('back', await files(5))
    const first = await runtime('back')
    expect((await first.load(config('back'))).manifest.version).toBe(2)
    await setChannel('back', 1)
    await first.stop()
    const restarted = await runtime('back')
    expect((await restarted.load(config('back'))).manifest.version).toBe(2)
    const state = JSON.parse(await readFile(join(root, 'back', 'back', 'versions.json'), 'utf8')) as { current: number }
    expect(state.current).toBe(2)
    // A pin still goes back: that is the operator's decision, written in the config.
    await restarted.stop()
    expect((await (await runtime('back')).load(config('back', { pin: 1 }))).manifest.version).toBe(1)
  })

  it('a channels answer changed on the way is refused: a fresh runtime does not start on the version it names, and raises the alarm (review 42a M2)', async () => {
    for (const seed of [21, 22, 23]) await admin.ingest('rewritten', await files(seed))
    mode = {
      rewrite: (path, _request, body) => {
        if (!/\/v1\/models\/rewritten\/channels$/.test(path)) return undefined
        const answer = JSON.parse(body.toString()) as { stable: { version: number } }
        answer.stable.version = 1
        return Buffer.from(JSON.stringify(answer))
      }
    }
    const alarms: LedgerSecurityError[] = []
    try {
      const fresh = await runtime('rewritten', { onSecurityError: (_model, err) => { alarms.push(err) } })
      await expect(fresh.load(config('rewritten'))).rejects.toThrow(/rewritten: the channels answer is not signed by the coordinator key this runtime trusts/)
      expect(alarms).toHaveLength(1)
      await fresh.stop()
    } finally {
      mode = 'pass'
    }
    expect((await (await runtime('rewritten')).load(config('rewritten'))).manifest.version).toBe(3)
  })

  it('an older signed channels answer replayed is refused: a runtime is not moved onto a version the operator took off stable (review 42a M2)', async () => {
    await admin.ingest('replayed', await files(24))
    await admin.ingest('replayed', await files(25))
    // Signed while stable followed the latest (2); the operator then puts stable back on 1.
    const old = Buffer.from(await (await fetch(`${upstream}/v1/models/replayed/channels`)).arrayBuffer())
    await setChannel('replayed', 1)
    const alarms: LedgerSecurityError[] = []
    const rt = await runtime('replayed', { onSecurityError: (_model, err) => { alarms.push(err) } })
    const handle = await rt.load(config('replayed'))
    expect(handle.manifest.version).toBe(1)
    mode = { rewrite: path => /\/v1\/models\/replayed\/channels$/.test(path) ? old : undefined }
    try {
      await expect(handle.update()).rejects.toThrow(LedgerSecurityError)
      expect(handle.manifest.version).toBe(1)
      expect(alarms.map(a => a.message)).toEqual([expect.stringMatching(/replayed: the channels answer is older \(seq 2\) than one already accepted here \(seq 3\): a replay/)])
    } finally {
      mode = 'pass'
    }
    expect(await handle.update()).toMatchObject({ action: 'none', from: 1, to: 1 })
  })

  it('a version offered without a ledger entry: a restart keeps serving the verified version and raises the security alarm', async () => {
    await admin.ingest('unanchored', await files(6))
    const first = await runtime('unanchored')
    expect((await first.load(config('unanchored'))).manifest.version).toBe(1)
    await first.stop()
    await admin.ingest('unanchored', await files(7))
    mode = {
      rewrite: (path, _request, body) => {
        if (!/\/v1\/models\/unanchored\/versions$/.test(path)) return undefined
        const list = JSON.parse(body.toString()) as { versions: Array<{ version: number, ledgerIndex: number | null }> }
        for (const v of list.versions) if (v.version === 2) v.ledgerIndex = null
        return Buffer.from(JSON.stringify(list))
      }
    }
    const alarms: LedgerSecurityError[] = []
    try {
      const restarted = await runtime('unanchored', { onSecurityError: (_model, err) => { alarms.push(err) } })
      const handle = await restarted.load(config('unanchored'))
      expect(handle.manifest.version).toBe(1)
      expect(alarms.map(a => a.message)).toEqual([expect.stringMatching(/unanchored@2: the coordinator names no ledger entry for this version; refusing it/)])
    } finally {
      mode = 'pass'
    }
  })

  it('a coordinator that accepts connections and never answers counts as offline: a restart serves the kept version', async () => {
    await admin.ingest('hang', await files(8))
    const first = await runtime('hang')
    expect((await first.load(config('hang'))).manifest.version).toBe(1)
    await first.stop()
    mode = 'hang'
    try {
      const handle = await (await runtime('hang')).load(config('hang', { fetch: { timeoutMs: 1_000 } }))
      expect(handle.manifest.version).toBe(1)
      expect(handle.report.offline).toBe(true)
    } finally {
      mode = 'pass'
      proxy.closeAllConnections()
    }
  })

  it('a checkpoint answer garbled, or given a bad signature line under the log\'s own name, on the way: a restart serves the kept version and says why (review 42a L3)', async () => {
    await admin.ingest('garbled', await files(11))
    const first = await runtime('garbled')
    const running = await first.load(config('garbled'))
    expect(running.manifest.version).toBe(1)
    await admin.ingest('garbled', await files(12))
    // A running handle's update meets it as a witness outage is met: it stays on what it verified
    // and says why (stop 51 tested this with the witness error only).
    mode = { rewrite: (path, _request, body) => /\/ledger\/checkpoint$/.test(path) ? Buffer.from('not a checkpoint\n') : undefined }
    try {
      const stayed = await running.update()
      expect(stayed).toMatchObject({ action: 'none', from: 1, to: 1, bytesFetched: 0, logUnverified: true })
      expect(stayed.reason).toMatch(/^staying on 1: the log's latest checkpoint cannot be verified \(log \S+: its checkpoint answer cannot be trusted \(note: /)
      expect(running.manifest.version).toBe(1)
    } finally {
      mode = 'pass'
    }
    await first.stop()
    const badLine = (note: string): string => {
      // The note's first signature line again, its signature bytes changed: a known key's name and id.
      const line = /^\u2014 (\S+) (\S+)$/m.exec(note)
      if (line === null) throw new Error(`no signature line in ${note}`)
      const bytes = fromBase64(line[2] as string)
      bytes[bytes.length - 1] = (bytes.at(-1) ?? 0) ^ 0xff
      return `${note}\u2014 ${line[1] as string} ${Buffer.from(bytes).toString('base64')}\n`
    }
    for (const [what, rewrite, reason] of [
      ['garbage', () => 'not a checkpoint\n', /its checkpoint answer cannot be trusted \(note: /],
      ['a bad line', (note: string) => badLine(note), /its checkpoint answer cannot be trusted \(.*does not verify/]
    ] as Array<[string, (note: string) => string, RegExp]>) {
      mode = { rewrite: (path, _request, body) => /\/ledger\/checkpoint$/.test(path) ? Buffer.from(rewrite(body.toString())) : undefined }
      const restarted = await runtime('garbled')
      try {
        const handle = await restarted.load(config('garbled'))
        expect(handle.manifest.version, what).toBe(1)
        expect(handle.report.notServed?.reason, what).toMatch(reason)
        expect(handle.report.offline, what).toBe(true)
      } finally {
        await restarted.stop()
        mode = 'pass'
      }
    }
  })

  it('an inference running while an upgrade swaps the version finishes on the old version', async () => {
    await admin.ingest('inflight', await files(9))
    let release!: () => void
    const held = new Promise<void>(resolve => { release = resolve })
    let first = true
    const code = (): ModelCode<Float32Array, tf.Tensor2D, tf.Tensor, Float32Array> => {
      let model: tfl.LayersModel
      return {
        init: ({ engine }) => { model = (engine as { model: tfl.LayersModel }).model },
        // The first inference waits inside the lifecycle until the test lets it go.
        preProcess: async input => { if (first) { first = false; await held } return tf.tensor2d(input, [1, 64]) },
        run: async x => model.predict(x) as tf.Tensor,
        postProcess: async y => await y.data() as Float32Array,
        release: () => {}
      }
    }
    const handle = await (await runtime('inflight', { codes: { inflight: code } })).load(config('inflight'))
    const input = new Float32Array(64).fill(0.25)
    const expected = await (async () => { first = false; const r = await handle.infer(input); first = true; return r })()
    const running = handle.infer(input)
    await admin.ingest('inflight', await files(10))
    expect(await handle.update()).toMatchObject({ action: 'upgraded', from: 1, to: 2 })
    release()
    // The v1 answer, from an engine not yet disposed.
    expect(Array.from(await running)).toEqual(Array.from(expected))
    expect(Array.from(await handle.infer(input))).not.toEqual(Array.from(expected))
  })

  it('a release while an upgrade downloads stops the upgrade: nothing is swapped in after the release, and the handle refuses work', async () => {
    await admin.ingest('released', await files(11))
    const rt = await runtime('released')
    const handle = await rt.load(config('released'))
    await admin.ingest('released', await files(12))
    let open!: () => void
    let arrived!: () => void
    const blockRequested = new Promise<void>(resolve => { arrived = resolve })
    mode = { hold: /^\/v1\/blocks\//, until: new Promise(resolve => { open = resolve }), arrived }
    try {
      const updating = handle.update()
      await blockRequested
      const releasing = handle.release()
      // The upgrade is aborted rather than finishing on a released handle (which would leave a
      // new engine and its pins that nothing frees).
      await expect(updating).rejects.toThrow(/released/)
      await releasing
      expect(handle.manifest.version).toBe(1)
      await expect(handle.infer(new Float32Array(64))).rejects.toThrow(UnavailableError)
      await expect(handle.update()).rejects.toThrow(/released/)
      expect(rt.byTag('t')).toEqual([])
    } finally {
      open()
      mode = 'pass'
    }
  })
})
