/**
 * One model folder serves one model (node-runtime/versions/local-store.ts, `claim`): a config
 * naming another model's modelDir is refused before anything in the folder is read or opened,
 * in the same runtime and after a restart; the folder's own model still loads. Two models in one
 * folder took each other's versions: the second started from the first's current version and
 * failed with "no version 3", and their anchors and keys overwrote each other (review).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { createNodeRuntime, type NodeRuntime } from '../../node-runtime/runtime.ts'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import { InvalidConfigError } from '../../shared/errors/errors.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

let root: string
let coordinator: Coordinator
const runtimes: NodeRuntime[] = []
let config: (model: string, modelDir: string) => Record<string, unknown>

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-model-folders-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0 })
  const url = await coordinator.start()
  const admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
  await admin.ingest('x', await denseModelFiles(8, [['a', 4, 1]]))
  await admin.ingest('y', await denseModelFiles(8, [['a', 4, 2]]))
  const token = await admin.createToken('edge')
  config = (model, modelDir) => ({ version: '1', tag: 't', runtime: 'tfjs', source: 'blockfed', modelDir, modelName: model, updateURL: url, token })
}, 60_000)

afterAll(async () => {
  for (const rt of runtimes) await rt.stop().catch(() => {})
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

async function runtime (): Promise<NodeRuntime> {
  const rt = await createNodeRuntime({ dataDir: join(root, 'rt'), accessHistory: false })
  runtimes.push(rt)
  return rt
}

describe('a model folder', () => {
  it('serves the model that claimed it and refuses another, in the same runtime and after a restart', async () => {
    let rt = await runtime()
    expect((await rt.load(config('x', 'shared'))).manifest.model).toBe('x')
    const refused = await rt.load(config('y', 'shared')).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(InvalidConfigError)
    expect((refused as Error).message).toMatch(/aoe config for y: its modelDir .*shared holds the state of model x; give each model its own modelDir/)
    await expect(rt.fetch(config('y', 'shared'), 1)).rejects.toThrow(InvalidConfigError)
    expect(JSON.parse(await readFile(join(root, 'rt', 'shared', 'owner.json'), 'utf8'))).toEqual({ model: 'x' })
    // y in a folder of its own loads beside it.
    expect((await rt.load(config('y', 'y'))).manifest.model).toBe('y')
    await rt.stop()

    rt = await runtime()
    await expect(rt.load(config('y', 'shared'))).rejects.toThrow(/holds the state of model x/)
    expect((await rt.load(config('x', 'shared'))).report.fetchedBlocks).toBe(0)
    await rt.stop()
  })

  it('is claimed again when its owner file is damaged', async () => {
    await writeFile(join(root, 'rt', 'y', 'owner.json'), '{"model":')
    const rt = await runtime()
    expect((await rt.load(config('y', 'y'))).manifest.model).toBe('y')
    expect(JSON.parse(await readFile(join(root, 'rt', 'y', 'owner.json'), 'utf8'))).toEqual({ model: 'y' })
  })
})
