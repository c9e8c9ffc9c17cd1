/**
 * PUT /v1/models/:name/channels/:channel and the canary's rollout: moved without one, the canary
 * keeps its rollout; a rollout given replaces it; the stable channel never takes the canary's.
 * A real coordinator over HTTP, through the typed client.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { coordinatorClient, type CoordinatorClient } from '../../shared/client/coordinator-client.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

let root: string
let coordinator: Coordinator
let admin: CoordinatorClient

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-channel-rollout-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0 })
  admin = coordinatorClient({ baseUrl: await coordinator.start(), token: coordinator.adminToken })
  for (const seed of [1, 2]) await admin.ingest('m', await denseModelFiles(4, [['a', 2, seed]]))
}, 60_000)

afterAll(async () => {
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('release channels', () => {
  it('a given rollout replaces the canary\'s kept one, and the stable channel answers rollout 1 whatever the canary\'s', async () => {
    expect(await admin.setChannel('m', 'canary', { version: 1, rollout: 0.1 })).toMatchObject({ version: 1, rollout: 0.1 })
    expect(await admin.setChannel('m', 'canary', { version: 2 })).toMatchObject({ version: 2, rollout: 0.1 })
    expect(await admin.setChannel('m', 'canary', { version: 1, rollout: 0.5 })).toMatchObject({ version: 1, rollout: 0.5 })
    expect(await admin.setChannel('m', 'stable', { version: 2 })).toMatchObject({ channel: 'stable', version: 2, rollout: 1 })
    expect(await admin.setChannel('m', 'canary', { version: 2 })).toMatchObject({ version: 2, rollout: 0.5 })
  })
})
