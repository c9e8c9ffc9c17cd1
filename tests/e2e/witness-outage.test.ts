/**
 * A runtime that requires a witness's cosignature, when the witness goes down (or cosignatures
 * are stripped on the way): the coordinator's latest checkpoint then lacks the quorum. A restart
 * keeps serving the version it verified and kept instead of refusing to start, a running handle's
 * update stays on it and says why, and neither raises a security alarm: a missing cosignature is
 * not evidence of a fork. A stand-in witness cosigns whatever it is sent until it is "down".
 */
import { describe, it, expect, afterAll } from 'vitest'
import { createServer } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ed25519 } from '@noble/curves/ed25519.js'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import { createNodeRuntime } from '../../node-runtime/runtime.ts'
import { cosignatureSigner, witnessVerifierKey } from '../../shared/ledger/cosignature.ts'
import { signLine, splitNote } from '../../shared/ledger/note.ts'
import { parseAddCheckpoint } from '../../shared/ledger/witness/request.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'
import { tfjsPassthrough } from '../../shared/runtime/passthrough.ts'

const secret = new Uint8Array(32).fill(5)
const signer = cosignatureSigner('witness.test/w1', secret)
const vkey = witnessVerifierKey('witness.test/w1', ed25519.getPublicKey(secret))
let up = true
const witness = createServer((req, res) => {
  let body = ''
  req.on('data', c => { body += c })
  req.on('end', () => {
    if (!up) { res.writeHead(503); res.end(); return }
    const { note } = parseAddCheckpoint(body)
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(signLine(splitNote(note).text, signer))
  })
})
let root: string | undefined
let coordinator: Coordinator | undefined

afterAll(async () => {
  await coordinator?.stop()
  witness.closeAllConnections()
  await new Promise(resolve => witness.close(resolve))
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

describe('a witness outage', () => {
  it('a restarted runtime keeps serving its verified version when the latest checkpoint lacks the cosignature it requires', async () => {
    await new Promise<void>(resolve => witness.listen(0, '127.0.0.1', resolve))
    const witnessUrl = `http://127.0.0.1:${(witness.address() as { port: number }).port}`
    root = await mkdtemp(join(tmpdir(), 'blockfed-witness-outage-'))
    coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0, witnesses: [{ url: witnessUrl, vkey }], witnessTimeoutMs: 2000 })
    const url = await coordinator.start()
    const admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
    const edge = await admin.createToken('edge')
    await admin.ingest('m', await denseModelFiles(4, [['d1', 3, 1]]))
    const dataDir = join(root, 'runtime')
    const config = { version: '1', runtime: 'tensorflow', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: url, token: edge, ledger: { witnesses: [vkey], minWitnesses: 1 } }
    let alarms = 0
    const first = await createNodeRuntime({ dataDir, accessHistory: false, onSecurityError: () => { alarms++ } })
    const running = await first.load(config)
    expect(running.manifest.version).toBe(1)

    up = false
    await admin.ingest('m', await denseModelFiles(4, [['d1', 3, 2]]))
    const served = await (await fetch(`${url}/ledger/checkpoint`)).text()
    expect(served.split('\n').filter(l => l.startsWith('—'))).toHaveLength(1) // the log's own line only
    // A running handle's update stays too, and says why (review 49f: it threw WitnessQuorumError).
    const stayed = await running.update()
    expect(stayed).toMatchObject({ action: 'none', from: 1, to: 1, bytesFetched: 0, logUnverified: true })
    expect(stayed.reason).toMatch(/^staying on 1: the log's latest checkpoint cannot be verified \(checkpoint 2: cosigned by 0 known witness\(es\) \(none\), 1 required; a witness is down/)
    expect(running.manifest.version).toBe(1)
    await first.stop()

    // Before, both failed with "checkpoint 2: cosigned by 0 known witness(es) (none), 1 required".
    for (const upgrade of ['manual', 'auto'] as const) {
      const again = await createNodeRuntime({ dataDir, accessHistory: false, onSecurityError: () => { alarms++ } })
      try {
        const handle = await again.load({ ...config, upgrade })
        expect(handle.manifest.version, upgrade).toBe(1)
        expect(handle.report.offline, upgrade).toBe(true)
      } finally {
        await again.stop()
      }
    }
    expect(alarms).toBe(0)
  }, 120_000)
  it('a handle failing its bound rolls back to the version it kept, as offline (review 51a: check() threw)', async () => {
    up = true
    const witnessUrl = `http://127.0.0.1:${(witness.address() as { port: number }).port}`
    const c = await createCoordinator({ dataDir: join(root as string, 'coordinator-2'), port: 0, witnesses: [{ url: witnessUrl, vkey }], witnessTimeoutMs: 2000 })
    try {
      const url = await c.start()
      const admin = coordinatorClient({ baseUrl: url, token: c.adminToken })
      const edge = await admin.createToken('edge')
      const config = { version: '1', runtime: 'tensorflow', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: url, token: edge, ledger: { witnesses: [vkey], minWitnesses: 1 }, rollback: { below: 0.5 } }
      // Version 1 scores 0.9 on the runtime's data, version 2 0.1.
      const code = (): ReturnType<typeof tfjsPassthrough> => {
        const base = tfjsPassthrough()
        let version = 0
        return { ...base, evaluate: async () => version === 1 ? 0.9 : 0.1, init: context => { version = context.manifest.version; base.init(context) } }
      }
      const rt = await createNodeRuntime({ dataDir: join(root as string, 'runtime-2'), accessHistory: false, codes: { m: code } })
      try {
        await admin.ingest('m', await denseModelFiles(4, [['d1', 3, 1]]))
        const handle = await rt.load(config)
        await admin.ingest('m', await denseModelFiles(4, [['d1', 3, 2]]))
        expect(await handle.update()).toMatchObject({ action: 'upgraded', from: 1, to: 2 })
        up = false
        await admin.ingest('m', await denseModelFiles(4, [['d1', 3, 3]]))
        const back = await handle.check()
        expect(back).toMatchObject({ action: 'rolled-back', from: 2, to: 1, metrics: { current: 0.1, candidate: 0.9 } })
        expect(handle.manifest.version).toBe(1)
      } finally {
        await rt.stop()
      }
    } finally {
      await c.stop()
    }
  }, 120_000)
})
