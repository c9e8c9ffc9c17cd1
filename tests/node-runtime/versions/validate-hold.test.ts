/**
 * An upgrade under `upgrade: { validate }` holds its candidate while it obtains, evaluates and
 * records it, as `switchTo` does (review 40b: the validate branch did not). Without the hold, a
 * prune by another operation of the same model meanwhile (here: a second handle, pinned to a
 * newer version, recording its move) dropped the candidate's anchor, and the upgrade recorded the
 * candidate as the version in use with no anchor kept, so offline it could not be served again. A real coordinator and runtime; the
 * candidate's blocks are held back by the test's block source, so the order is fixed.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../../coordinator/coordinator.ts'
import { coordinatorClient, type CoordinatorClient } from '../../../shared/client/coordinator-client.ts'
import { createNodeRuntime, type NodeRuntime } from '../../../node-runtime/runtime.ts'
import { signedManifestSchema } from '../../../shared/manifest/schema.ts'
import { tfjsPassthrough } from '../../../shared/runtime/passthrough.ts'
import type { ModelCode } from '../../../shared/runtime/lifecycle.ts'
import { localVersions } from '../../../node-runtime/versions/local-store.ts'
import { denseModelFiles } from '../../helpers/dense-model.ts'
import { gatedSource } from '../../helpers/gated-source.ts'

let root: string
let coordinator: Coordinator
let url: string
let admin: CoordinatorClient
let rt: NodeRuntime
let token: string
const gated = gatedSource(() => url)

const files = async (seed: number): Promise<Awaited<ReturnType<typeof denseModelFiles>>> =>
  await denseModelFiles(16, [['a', 32, seed], ['b', 4, seed + 1]])
const config = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: url, token, ...extra })
const anchors = async (): Promise<number[]> => (await readdir(join(root, 'runtime', 'm', 'anchors'))).map(name => Number(name.replace('.json', ''))).sort((a, b) => a - b)
const blocksOf = async (v: number): Promise<string[]> => signedManifestSchema.parse(await admin.manifest('m', v)).manifest.blocks.map(b => b.cid)

/** Passthrough code whose local metric is its version / 10: every newer version validates. */
function scoredByVersion (): ModelCode<any, any, any, any> {
  const base = tfjsPassthrough()
  let version = 0
  return { ...base, init: context => { version = context.manifest.version; return base.init(context) }, evaluate: async () => version / 10 }
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-validate-hold-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0, partition: { targetBytes: 1 << 10, maxBytes: 2 << 10 } })
  url = await coordinator.start()
  admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
  token = await admin.createToken('edge')
  rt = await createNodeRuntime({ dataDir: join(root, 'runtime'), accessHistory: false, source: gated.source, codes: { m: scoredByVersion } })
}, 60_000)

afterAll(async () => {
  await rt?.stop()
  gated.close()
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('an upgrade that validates its candidate', () => {
  it('keeps the candidate\'s anchor through another operation\'s prune, and records it in use with its anchor', async () => {
    await admin.ingest('m', await files(1))
    const validating = await rt.load(config({ upgrade: { validate: { margin: 0 } } }))
    await admin.ingest('m', await files(20))
    await admin.ingest('m', await files(30))
    await admin.setChannel('m', 'stable', { version: 2 })
    const others = new Set(await blocksOf(1))
    for (const cid of await blocksOf(3)) others.add(cid)
    const { asked, open } = gated.gate((await blocksOf(2)).filter(cid => !others.has(cid)))

    const upgrading = validating.update()
    await asked
    // Another handle of the model, pinned to 3, records its move (1 → 3) and prunes.
    const pinned = await rt.load(config({ pin: 3 }))
    open()
    expect(await upgrading).toMatchObject({ action: 'upgraded', from: 1, to: 2 })
    await pinned.release()
    // 2 is now in use: its anchor must be kept (before the hold: anchors 1 and 3 only).
    expect((await localVersions(join(root, 'runtime', 'm')).state()).current).toBe(2)
    expect(await anchors()).toContain(2)
  }, 120_000)
})
