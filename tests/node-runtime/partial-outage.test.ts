/**
 * A cold start in a partial outage (review 37b): the coordinator's channel answers (version 2
 * is out) but its manifests do not (a proxy's 502). The runtime serves the version it verified,
 * kept and used, as it does when the coordinator is wholly down; before, the load failed ("this
 * version was never verified here"). The same for a next version that fails once fetched (its
 * model code refuses it, review 46e). A real coordinator behind a real proxy on 127.0.0.1.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { createNodeRuntime } from '../../node-runtime/runtime.ts'
import type { ModelCode } from '../../shared/runtime/lifecycle.ts'
import { toHex } from '../../shared/crypto/bytes.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'
import { fileCoordinator } from '../helpers/file-coordinator.ts'
import { forward } from '../helpers/forward.ts'

const at = fileCoordinator('partial-outage')
/** up: forward everything; manifests-down: a 502 for every manifest request. */
let mode: 'up' | 'manifests-down' = 'up'
const proxy = http.createServer((req, res) => {
  const badGateway = (): void => { res.writeHead(502, { 'content-type': 'text/html' }); res.end('<h1>502 Bad Gateway</h1>') }
  if (mode === 'manifests-down' && (req.url ?? '').includes('/manifest')) { badGateway(); return }
  forward(at.url, req, res, badGateway)
})

beforeAll(async () => {
  await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve))
})
afterAll(() => {
  proxy.closeAllConnections()
  proxy.close()
})

it('serves the version in use when the next one is announced but its manifest cannot be fetched', async () => {
  const { coordinator, root } = at
  await coordinator.ingest('m', await denseModelFiles(16, [['a', 8, 1]]))
  const token = await coordinator.createToken('edge')
  const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
  const config = { version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: url, token, coordinatorKey: toHex(coordinator.identity.signing.publicKey) }
  const dataDir = join(root, 'runtime')
  const coldStart = async (pin?: number): Promise<{ version: number, offline: boolean, notServed?: { version: number, reason: string } }> => {
    const runtime = await createNodeRuntime({ dataDir, token, accessHistory: false })
    try {
      const handle = await runtime.load(pin === undefined ? config : { ...config, pin })
      const got = { version: handle.manifest.version, offline: handle.report.offline, ...(handle.report.notServed === undefined ? {} : { notServed: handle.report.notServed }) }
      await handle.release()
      return got
    } finally {
      await runtime.stop()
    }
  }
  expect(await coldStart()).toEqual({ version: 1, offline: false })
  await coordinator.ingest('m', await denseModelFiles(16, [['a', 8, 2]]))
  mode = 'manifests-down'
  // Served, and said: the version asked for is not the one serving, and why.
  expect(await coldStart()).toMatchObject({ version: 1, notServed: { version: 2, reason: expect.stringMatching(/m@2: the coordinator is unreachable/) } })
  // A pin is no different: the pinned version cannot be had, the report names it.
  expect(await coldStart(2)).toMatchObject({ version: 1, notServed: { version: 2 } })
  mode = 'up'
  expect(await coldStart()).toEqual({ version: 2, offline: false })
}, 60_000)

it('serves the version in use when the next one fails once fetched: its model code refuses it (review 46e)', async () => {
  // Every restart failed the same way until the channel moved, though the version in use was kept.
  const { coordinator, root } = at
  await coordinator.ingest('n', await denseModelFiles(16, [['a', 8, 3]]))
  const token = await coordinator.createToken('edge')
  const config = { version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'n', modelName: 'n', updateURL: at.url, token, coordinatorKey: toHex(coordinator.identity.signing.publicKey) }
  const refusing = (version: number): ModelCode => ({
    init: async ({ manifest }) => { if (manifest.version === version) throw new Error(`this model code refuses version ${version} (a changed input shape)`) },
    preProcess: async (x: unknown) => x,
    run: async (x: unknown) => x,
    postProcess: async (x: unknown) => x,
    release: async () => {}
  })
  const dataDir = join(root, 'runtime-refusing')
  const coldStart = async (): Promise<{ version: number, notServed?: { version: number, reason: string } }> => {
    const runtime = await createNodeRuntime({ dataDir, token, accessHistory: false, codes: { n: () => refusing(2) } })
    try {
      const handle = await runtime.load(config)
      const got = { version: handle.manifest.version, ...(handle.report.notServed === undefined ? {} : { notServed: handle.report.notServed }) }
      await handle.release()
      return got
    } finally {
      await runtime.stop()
    }
  }
  expect(await coldStart()).toEqual({ version: 1 })
  await coordinator.ingest('n', await denseModelFiles(16, [['a', 8, 4]]))
  expect(await coldStart()).toEqual({ version: 1, notServed: { version: 2, reason: 'this model code refuses version 2 (a changed input shape)' } })
  // And again at the next start: still served, nothing recorded as moved.
  expect(await coldStart()).toMatchObject({ version: 1, notServed: { version: 2 } })
}, 60_000)
