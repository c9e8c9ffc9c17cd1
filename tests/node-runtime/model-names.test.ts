/**
 * Model names that are Object.prototype's keys (review 37e): a model named "constructor" found
 * Object.prototype.constructor among the runtime's model codes, and its load failed with
 * "code.init is not a function" where it should run under the passthrough code.
 */
import { expect, it } from 'vitest'
import { join } from 'node:path'
import { createNodeRuntime } from '../../node-runtime/runtime.ts'
import { toHex } from '../../shared/crypto/bytes.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'
import { fileCoordinator } from '../helpers/file-coordinator.ts'

const at = fileCoordinator('model-names')

it('a model named "constructor" loads under the passthrough code when no code is given for it', async () => {
  const { coordinator, url, root } = at
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
