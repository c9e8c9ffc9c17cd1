/**
 * Coordinators that try to get one runtime's update from one base into two sums. Each runs its
 * socket in a worker thread: its own event loop, as a remote one.
 *
 * - Racing offers (found by review): it ends round A with a `result` while the runtime is still
 *   protecting A's update (a step that ignores the round's signal), then at once offers round B
 *   at the same base. Before the fix both uploads went out. Now A's work, having outlived its
 *   round, records and sends nothing (participant.ts checks the round's signal before recording
 *   and again before sending), so B's is the only upload from that base.
 * - Deaf: it offers a base the runtime's hello says it already uploaded from. The runtime
 *   declines before accepting, and says its record again.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'
import { createCoordinator, type Coordinator } from '../../../coordinator/coordinator.ts'
import { modelFiles, mnistMlp } from '../../../node-runtime/examples/mnist-mlp.ts'
import { tfjsBackend } from '../../../node-runtime/engines/tfjs.ts'
import { createNodeRuntime } from '../../../node-runtime/runtime.ts'
import { createParticipant, type ParticipantEvent } from '../../../node-runtime/fl/participant.ts'
import { clientIdentity } from '../../../node-runtime/fl/identity.ts'
import { secureClients } from '../../../node-runtime/fl/secure-client.ts'
import { UPDATES_GIVEN_FILE } from '../../../node-runtime/fl/given.ts'
import { toHex } from '../../../shared/crypto/bytes.ts'
import type { RoundConfig } from '../../../shared/rounds/config.ts'
import { rawClient } from '../../helpers/raw-round-client.ts'
import { mnistSlice } from '../../helpers/fl.ts'

const A = 'r_aaaaaaaaaaaaaaaa'
const B = 'r_bbbbbbbbbbbbbbbb'

/** Offers A; once A's last epoch is reported, ends A with a result and offers B from the same base. */
const HOSTILE = `
const { parentPort, workerData } = require('node:worker_threads')
const { WebSocketServer } = require(workerData.ws)
const { pid, template } = workerData
const offer = id => JSON.stringify({ type: 'offer', config: { ...template, id, clients: [pid, template.clients.find(x => x !== pid)].sort() } })
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/v1/rounds/ws' })
wss.on('listening', () => parentPort.postMessage({ port: wss.address().port }))
wss.on('connection', ws => {
  ws.send(JSON.stringify({ type: 'challenge', nonce: 'ab'.repeat(32) }))
  ws.on('message', (data, binary) => {
    if (binary) { parentPort.postMessage({ type: 'upload', roundId: JSON.parse(data.subarray(4, 4 + data.readUInt32LE(0)).toString()).roundId }); return }
    const m = JSON.parse(data.toString())
    if (m.type === 'hello') { ws.send(JSON.stringify({ type: 'welcome', clientId: pid })); ws.send(offer('${A}')) }
    if (m.type === 'accept' || m.type === 'decline') parentPort.postMessage({ type: m.type, roundId: m.roundId, reason: m.reason })
    if (m.type === 'progress' && m.roundId === '${A}' && m.epoch === m.epochs) {
      ws.send(JSON.stringify({ type: 'result', roundId: '${A}', state: 'failed', version: null, reason: 'ended by the coordinator' }))
      ws.send(offer('${B}'))
    }
  })
})
`

/** Offers A at once, whatever the hello says; reports the hello and the answer. */
const DEAF = `
const { parentPort, workerData } = require('node:worker_threads')
const { WebSocketServer } = require(workerData.ws)
const { pid, template } = workerData
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/v1/rounds/ws' })
wss.on('listening', () => parentPort.postMessage({ port: wss.address().port }))
wss.on('connection', ws => {
  ws.send(JSON.stringify({ type: 'challenge', nonce: 'ab'.repeat(32) }))
  ws.on('message', data => {
    const m = JSON.parse(data.toString())
    parentPort.postMessage(m)
    if (m.type === 'hello') {
      ws.send(JSON.stringify({ type: 'welcome', clientId: pid }))
      ws.send(JSON.stringify({ type: 'offer', config: { ...template, id: '${A}', clients: [pid, template.clients.find(x => x !== pid)].sort() } }))
    }
  })
})
`

let root: string
let coordinator: Coordinator
let url: string
let token: string
beforeAll(async () => {
  await tfjsBackend()
  root = await mkdtemp(join(tmpdir(), 'blockfed-one-update-race-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0 })
  url = await coordinator.start()
  token = await coordinator.createToken('edge')
  const model = mnistMlp({ hidden: [16] })
  await coordinator.ingest('mnist', await modelFiles(model))
  model.dispose()
})
afterAll(async () => {
  await coordinator.stop()
  await rm(root, { recursive: true, force: true })
})

/** A real masking offer for a runtime to train on, as the coordinator makes it. */
async function maskingOffer (): Promise<RoundConfig> {
  const raws = [await rawClient(url, token, ['mnist'], { autoAccept: false }), await rawClient(url, token, ['mnist'], { autoAccept: false }), await rawClient(url, token, ['mnist'], { autoAccept: false })]
  await coordinator.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'masking' }, selection: { minClients: 3 }, deadlines: { acceptMs: 500 } })
  await raws[0]?.next(m => m.type === 'offer')
  const template = raws[0]?.offers[0] as RoundConfig
  for (const r of raws) r.close()
  return template
}

/** A coordinator in a worker thread running `script`; its reports land in `seen`. */
async function fakeCoordinator (script: string, pid: string, template: RoundConfig, seen: Array<Record<string, unknown>>): Promise<{ worker: Worker, port: number }> {
  const worker = new Worker(script, { eval: true, workerData: { pid, template, ws: fileURLToPath(import.meta.resolve('ws')) } })
  const port = await new Promise<number>((resolve, reject) => {
    worker.on('error', reject)
    worker.on('message', (m: Record<string, unknown>) => {
      if (typeof m.port === 'number') resolve(m.port)
      else seen.push(m)
    })
  })
  return { worker, port }
}

it('sends nothing for a round that ended while its update was protected, so a second round from that base gets the only upload', async () => {
  const template = await maskingOffer()
  const dir = join(root, 'runtime')
  const runtime = await createNodeRuntime({ dataDir: dir, token })
  const identity = await clientIdentity(dir)
  const seen: Array<Record<string, unknown>> = []
  const { worker, port } = await fakeCoordinator(HOSTILE, toHex(identity.publicKey), template, seen)
  const events: ParticipantEvent[] = []
  const aoe = { version: '1.0.0', tag: 'fl', runtime: 'tensorflow', source: 'blockfed', modelDir: 'mnist', modelName: 'mnist', updateURL: url }
  const data = mnistSlice(0, 100)
  const participant = createParticipant({
    url: `http://127.0.0.1:${port}`,
    token,
    identity,
    stateDir: dir,
    models: { mnist: { data: () => data } },
    fetchVersion: async (_m, v, signal) => await runtime.fetch(aoe, v, signal),
    onEvent: e => events.push(e),
    // Protection that outlasts the round's end and ignores the signal, like Paillier's wait for
    // its randomness pool.
    secureClient: () => ({
      encoding: 'ring-u32le',
      begin: async () => {},
      message: async () => {},
      async protect (encoded) {
        await new Promise(resolve => setTimeout(resolve, 500))
        return new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength)
      },
      dispose: () => {}
    })
  })
  try {
    await participant.start()
    // B trains and uploads; A's protection ended long before B's does.
    const deadline = Date.now() + 30_000
    while (!seen.some(m => m.type === 'upload') && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
    // Room for a late upload of A's to arrive, were it sent.
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(seen.filter(m => m.type === 'accept').map(m => m.roundId)).toEqual([A, B])
    expect(seen.filter(m => m.type === 'upload').map(m => m.roundId)).toEqual([B])
    expect(events.filter(e => e.type === 'uploaded').map(e => (e as { roundId: string }).roundId)).toEqual([B])
    expect(JSON.parse(await readFile(join(dir, UPDATES_GIVEN_FILE), 'utf8'))).toEqual([['mnist', 1, true]])
  } finally {
    await participant.stop()
    await runtime.stop()
    await worker.terminate()
  }
})

/** A runtime in `dir` offered round A from `template` by DEAF: what it sent, and its events, once it declined (at most 10 s). */
async function offeredByDeaf (dir: string, template: RoundConfig): Promise<{ seen: Array<Record<string, unknown>>, events: ParticipantEvent[] }> {
  const identity = await clientIdentity(dir)
  const seen: Array<Record<string, unknown>> = []
  const { worker, port } = await fakeCoordinator(DEAF, toHex(identity.publicKey), template, seen)
  const events: ParticipantEvent[] = []
  const participant = createParticipant({
    url: `http://127.0.0.1:${port}`,
    token,
    identity,
    stateDir: dir,
    models: { mnist: { data: () => mnistSlice(0, 10) } },
    fetchVersion: async () => { throw new Error('a refused offer fetches nothing') },
    onEvent: e => events.push(e),
    secureClient: secureClients()
  })
  try {
    await participant.start()
    const deadline = Date.now() + 10_000
    while (!seen.some(m => m.type === 'decline') && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
  } finally {
    await participant.stop()
    await worker.terminate()
  }
  return { seen, events }
}

it('says its record in its hello, and declines an offer from a base it uploaded from with the record, before accepting', async () => {
  const template = await maskingOffer()
  const dir = join(root, 'uploaded-before')
  await mkdir(dir, { recursive: true })
  // An upload from v1 this runtime sent to a secure round (the coordinator may never have taken it).
  await writeFile(join(dir, UPDATES_GIVEN_FILE), JSON.stringify([['mnist', template.baseVersion, true]]))
  const { seen, events } = await offeredByDeaf(dir, template)
  expect(seen.find(m => m.type === 'hello')).toMatchObject({ models: ['mnist'], given: [{ model: 'mnist', base: template.baseVersion, secure: true }] })
  expect(seen.filter(m => m.type === 'accept')).toEqual([])
  expect(seen.find(m => m.type === 'decline')).toEqual({ type: 'decline', roundId: A, reason: expect.stringMatching(/already uploaded an update from mnist@1 to a secure round.*offered base 1 in mode masking/), given: { base: template.baseVersion, secure: true } })
  expect(events).toContainEqual({ type: 'offer', roundId: A, accepted: false, reason: expect.stringMatching(/already uploaded/) })
})

it('declines an offer that counts on more uploads than it selected clients (its DP noise would be sized for clients that are not there)', async () => {
  const masking = await maskingOffer()
  const template = { ...masking, selection: { ...masking.selection, minUploads: 50 } }
  const dir = join(root, 'inflated-min-uploads')
  await mkdir(dir, { recursive: true })
  const { seen } = await offeredByDeaf(dir, template)
  expect(seen.filter(m => m.type === 'accept')).toEqual([])
  expect(seen.find(m => m.type === 'decline')).toMatchObject({ roundId: A, reason: 'the offer counts on 50 uploads from 2 selected clients' })
})
