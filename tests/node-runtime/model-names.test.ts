/**
 * Model names that are Object.prototype's keys (review 37e): a model named "constructor" found
 * Object.prototype.constructor among the runtime's model codes, and its load failed with
 * "code.init is not a function" where it should run under the passthrough code.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { createNodeRuntime } from '../../node-runtime/runtime.ts'
import { toHex } from '../../shared/crypto/bytes.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

let root: string
let coordinator: Coordinator
let url: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-model-names-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'c'), port: 0, host: '127.0.0.1' })
  url = await coordinator.start()
}, 60_000)
afterAll(async () => {
  await coordinator.stop()
  await rm(root, { recursive: true, force: true })
})

it('a model named "constructor" loads under the passthrough code when no code is given for it', async () => {
  await coordinator.ingest('constructor', await denseModelFiles(16, [['a', 8, 1]]))
  const token = await coordinator.createToken('edge')
  const runtime = await createNodeRuntime({ dataDir: join(root, 'runtime'), token, accessHistory: false, codes: { other: () => { throw new Error('not this model\'s code') } } })
  try {
    const handle = await runtime.load({ version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'constructor', modelName: 'constructor', updateURL: url, token, coordinatorKey: toHex(coordinator.identity.signing.publicKey) })
    expect(handle.manifest.model).toBe('constructor')
    await handle.release()
  } finally {
    await runtime.stop()
  }
}, 60_000)
