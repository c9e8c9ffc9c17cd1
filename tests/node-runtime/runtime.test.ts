/**
 * The Node runtime without a coordinator (node-runtime/runtime.ts): what it does before the first
 * request, with the coordinator's key pinned in the config and its URL unreachable.
 */
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNodeRuntime } from '../../node-runtime/runtime.ts'
import type { BlockSource } from '../../shared/load/source.ts'
import { InvalidConfigError, UnavailableError } from '../../shared/errors/errors.ts'
import { clientIdentity } from '../../node-runtime/fl/identity.ts'
import { peerIdOfKey } from '../../node-runtime/p2p/peer-node.ts'

const roots: string[] = []
afterAll(async () => { for (const root of roots) await rm(root, { recursive: true, force: true }) })

async function dataDir (): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'blockfed-runtime-'))
  roots.push(root)
  return root
}

/** A config whose coordinator is never reached before the cache is open (its key is given). */
const offline = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: 'http://127.0.0.1:1', token: 't', coordinatorKey: 'ab'.repeat(32), ...extra
})

const nowhere: BlockSource = { name: 'nowhere', get: async () => { throw new UnavailableError('nowhere') } }

describe('createNodeRuntime', () => {
  it('opens a model\'s cache once for operations on it that start together', async () => {
    let calls = 0
    // The first operation fails after claiming the folder, before opening the cache; the next
    // two then reach the open with no I/O in between, the second while the first's is under way.
    const rt = await createNodeRuntime({
      dataDir: await dataDir(),
      accessHistory: false,
      source: () => { if (calls++ === 0) throw new Error('no source yet'); return nowhere }
    })
    await expect(rt.fetch(offline(), 1)).rejects.toThrow('no source yet')
    expect(rt.cacheOf('m')).toBeUndefined()
    const results = await Promise.allSettled([rt.fetch(offline(), 1), rt.fetch(offline(), 1)])
    for (const r of results) {
      expect(r.status).toBe('rejected')
      expect(String((r as PromiseRejectedResult).reason)).toMatch(/coordinator is unreachable/)
    }
    expect(rt.cacheOf('m')).toBeDefined()
    await rt.stop()
  })

  it('takes a tokenEnv naming what process.env inherits (toString, __proto__) as unset, not as the token', async () => {
    const rt = await createNodeRuntime({ dataDir: await dataDir(), accessHistory: false })
    const { token: _, ...noToken } = offline()
    for (const name of ['toString', '__proto__', 'hasOwnProperty']) {
      const err = await rt.load({ ...noToken, tokenEnv: name }).then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(InvalidConfigError)
      expect((err as Error).message).toBe(`aoe config for m: no API token: its "tokenEnv" names ${name}, which is not set in this process's environment`)
    }
    await rt.stop()
  })

  it('says once, through onNotice, that none of a config\'s bootstrap peers answered (review 52a: a stale address loaded on without a word)', async () => {
    const nobody = peerIdOfKey(new Uint8Array(32).fill(9)).toString()
    const config = offline({ peers: { bootstrap: [`/ip4/127.0.0.1/tcp/1/p2p/${nobody}`] }, fetch: { timeoutMs: 2_000 } })
    const notices: string[] = []
    const rt = await createNodeRuntime({ dataDir: await dataDir(), accessHistory: false, onNotice: m => notices.push(m) })
    try {
      for (let i = 0; i < 2; i++) await expect(rt.fetch(config, 1)).rejects.toThrow(UnavailableError)
    } finally {
      await rt.stop()
    }
    expect(notices).toHaveLength(1)
    expect(notices[0]).toMatch(/^m: none of the peers in its aoe config's peers\.bootstrap answered \(.+\); loading goes on from peers already known, else from the coordinator over HTTP/)
  }, 30_000)

  it('gives its swarm node a peer id of its own, not its round client id, the same across restarts', async () => {
    const dir = await dataDir()
    const nobody = peerIdOfKey(new Uint8Array(32).fill(7)).toString()
    const config = offline({ peers: { bootstrap: [`/ip4/127.0.0.1/tcp/1/p2p/${nobody}`] }, fetch: { timeoutMs: 2_000 } })
    const peerIds: Array<string | undefined> = []
    for (let i = 0; i < 2; i++) {
      const rt = await createNodeRuntime({ dataDir: dir, accessHistory: false })
      await expect(rt.fetch(config, 1)).rejects.toThrow(UnavailableError)
      peerIds.push(rt.swarm()?.peerId)
      await rt.stop()
    }
    expect(peerIds[0]).toMatch(/^12D3Koo/)
    expect(peerIds[1]).toBe(peerIds[0])
    expect(peerIds[0]).not.toBe(peerIdOfKey((await clientIdentity(dir)).publicKey).toString())
  }, 30_000)
})
