/**
 * A runtime's kept state damaged on disk (a bad sector, a hand edit): a key file or a version
 * anchor that does not parse is moved aside and reported, and the model loads again with the
 * coordinator up, instead of failing every load for good. Real coordinator, real runtime.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { createNodeRuntime } from '../../node-runtime/runtime.ts'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

let root: string
let coordinator: Coordinator
let config: Record<string, unknown>

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-damaged-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0 })
  const url = await coordinator.start()
  const admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
  await admin.ingest('m', await denseModelFiles(4, [['x', 2, 1]]))
  config = { version: '1', tag: 't', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: url, token: await admin.createToken('edge') }
}, 60_000)

afterAll(async () => {
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('damaged kept state', () => {
  for (const file of ['keys.json', 'anchors/1.json']) {
    it(`${file} that does not parse is moved aside, reported, and rewritten by the next load`, async () => {
      const dataDir = join(root, file.replace('/', '-'))
      const first = await createNodeRuntime({ dataDir, accessHistory: false })
      await first.load(config)
      await first.stop()
      const path = join(dataDir, 'm', file)
      await writeFile(path, '{"truncated":')

      const damaged: string[] = []
      const rt = await createNodeRuntime({ dataDir, accessHistory: false, onStateDamaged: (model, at, err) => damaged.push(`${model} ${at} ${err.name}`) })
      try {
        expect((await rt.load(config)).manifest.version).toBe(1)
      } finally {
        await rt.stop()
      }
      expect(damaged).toEqual([`m ${path} IntegrityError`])
      expect(await readFile(`${path}.damaged`, 'utf8')).toBe('{"truncated":')
      expect(JSON.parse(await readFile(path, 'utf8'))).toBeTypeOf('object')
    })
  }
})
