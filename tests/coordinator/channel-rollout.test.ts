/**
 * PUT /v1/models/:name/channels/:channel and the canary's rollout: moved without one, the canary
 * keeps its rollout; a rollout given replaces it; the stable channel never takes the canary's.
 * DELETE clears a channel: stable follows the latest version again, the canary ends.
 * A real coordinator over HTTP, through the typed client.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { coordinatorClient, type CoordinatorClient } from '../../shared/client/coordinator-client.ts'
import { ledgerClient } from '../../shared/ledger/client.ts'
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

  it('a stable channel set stays put as versions come; cleared, it follows the latest again, and a cleared canary is gone', async () => {
    const channels = ledgerClient({ baseUrl: admin.baseUrl })
    await admin.setChannel('m', 'stable', { version: 1 })
    await admin.setChannel('m', 'canary', { version: 2, rollout: 0.2 })
    await admin.ingest('m', await denseModelFiles(4, [['a', 2, 3]]))
    expect(await channels.channels('m')).toMatchObject({ model: 'm', stable: { version: 1, followsLatest: false }, canary: { version: 2, rollout: 0.2 } })
    expect(await admin.clearChannel('m', 'stable')).toMatchObject({ model: 'm', stable: { version: 3, followsLatest: true }, canary: { version: 2, rollout: 0.2 } })
    await admin.ingest('m', await denseModelFiles(4, [['a', 2, 4]]))
    expect((await channels.channels('m')).stable).toEqual({ version: 4, followsLatest: true })
    expect(await admin.clearChannel('m', 'canary')).toMatchObject({ canary: null })
    // Clearing what is not set leaves it so.
    expect(await admin.clearChannel('m', 'canary')).toMatchObject({ stable: { version: 4, followsLatest: true }, canary: null })
    // A canary set again starts from rollout 1: the cleared one's fraction is gone with it.
    expect(await admin.setChannel('m', 'canary', { version: 3 })).toMatchObject({ version: 3, rollout: 1 })
  })

  it('lets only roles that may ingest clear a channel, and names an unknown model', async () => {
    const edge = coordinatorClient({ baseUrl: admin.baseUrl, token: await coordinator.createToken('edge') })
    await expect(edge.clearChannel('m', 'canary')).rejects.toThrow(/role edge may not set release channels/)
    expect((await ledgerClient({ baseUrl: admin.baseUrl }).channels('m')).canary).not.toBeNull()
    await expect(admin.clearChannel('nosuch', 'stable')).rejects.toThrow(/no model named nosuch/)
  })
})
