/**
 * A coordinator whose HTTP API answers but whose p2p address swallows connections (a firewall
 * dropping the port; review 49c): over real libp2p on 127.0.0.1, a runtime whose bootstrap is a
 * TCP socket that accepts and never speaks. Before the fix every shard dialled it again and
 * waited out two dial deadlines (13 s for a load HTTP did in 0.3 s); now two failed dials (the
 * join's, then the first shards') mark the peer undialable for a while, the source skips the
 * origin and forces nothing on it, and the load comes from HTTP. And one lost dial is not that
 * (review 49d): behind a proxy that drops only its first connection, the load still comes from
 * the origin, with no fallback. Counted, not timed: connections, and the source's failures.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, createServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../../coordinator/coordinator.ts'
import { createNodeRuntime } from '../../../node-runtime/runtime.ts'
import { tfjsBackend } from '../../../node-runtime/engines/tfjs.ts'
import { denseModelFiles } from '../../helpers/dense-model.ts'

let root: string
let coordinator: Coordinator
let url: string
let silent: Server
const sockets: Socket[] = []

beforeAll(async () => {
  await tfjsBackend()
  root = await mkdtemp(join(tmpdir(), 'blockfed-origin-unreachable-'))
  coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0, p2p: {} })
  url = await coordinator.start()
  await coordinator.ingest('m', await denseModelFiles(256, [['a', 512], ['b', 512], ['c', 256]]))
  silent = createServer(socket => { sockets.push(socket); socket.on('error', () => {}) })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
}, 60_000)

afterAll(async () => {
  for (const s of sockets) s.destroy()
  await new Promise(resolve => silent?.close(resolve))
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('a coordinator whose p2p address swallows connections', () => {
  it('is dialled once, at the join; its shard requests fail at once, none is forced, and the load comes from HTTP', async () => {
    const originId = coordinator.p2p()?.peerId as string
    const port = (silent.address() as AddressInfo).port
    const rt = await createNodeRuntime({ dataDir: join(root, 'runtime'), accessHistory: false })
    try {
      const handle = await rt.load({
        version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: url, token: await coordinator.createToken('edge'),
        fetch: { timeoutMs: 30_000, retries: 0, concurrency: 4 }, peers: { bootstrap: [`/ip4/127.0.0.1/tcp/${port}/p2p/${originId}`] }
      })
      expect(handle.manifest.version).toBe(1)
      const stats = Object.values(rt.swarmStats())[0]
      expect(Object.keys(rt.swarmStats())).toHaveLength(1)
      const shards = handle.manifest.blocks.reduce((n, b) => n + b.shards.cids.length, 0)
      expect(stats?.bytesFromFallback).toBeGreaterThan(0)
      expect(stats?.bytesFromOrigin).toBe(0)
      // Each shard asked the origin at most once (unforced), and failed without a dial of its own.
      expect(stats?.failures['origin NoConnectionError']).toBeGreaterThan(0)
      expect(stats?.failures['origin NoConnectionError']).toBeLessThanOrEqual(shards)
      expect(stats?.failures['origin TimeoutError']).toBeUndefined()
      expect(stats?.forcedBecause).toEqual({})
      // The join's dial and the first shards' (one dial for all of them), no other.
      expect(sockets.length).toBeGreaterThanOrEqual(1)
      expect(sockets.length).toBeLessThanOrEqual(2)
    } finally {
      await rt.stop()
    }
  }, 60_000)

  it('one dial that is lost (reset) does not take the origin from the load: with no fallback, it comes from the origin', async () => {
    const p2p = coordinator.p2p()
    const target = Number(/\/ip4\/127\.0\.0\.1\/tcp\/(\d+)/.exec(p2p?.addresses.join(' ') ?? '')?.[1])
    let connections = 0
    const piped: Socket[] = []
    const proxy = createServer(socket => {
      piped.push(socket)
      socket.on('error', () => {})
      if (++connections === 1) { socket.destroy(); return }
      const up = connect(target, '127.0.0.1')
      piped.push(up)
      up.on('error', () => socket.destroy())
      socket.pipe(up).pipe(socket)
    })
    await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve))
    const rt = await createNodeRuntime({ dataDir: join(root, 'runtime-lost-dial'), accessHistory: false })
    try {
      const handle = await rt.load({
        version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: url, token: await coordinator.createToken('edge'),
        fetch: { timeoutMs: 30_000, retries: 2, concurrency: 4 },
        peers: { bootstrap: [`/ip4/127.0.0.1/tcp/${(proxy.address() as AddressInfo).port}/p2p/${p2p?.peerId as string}`], fallback: 'none' }
      })
      expect(handle.manifest.version).toBe(1)
      const stats = Object.values(rt.swarmStats())[0]
      expect(stats?.bytesFromOrigin).toBeGreaterThan(0)
      expect(stats?.bytesFromFallback).toBe(0)
      expect(connections).toBeGreaterThanOrEqual(2)
    } finally {
      await rt.stop()
      for (const s of piped) s.destroy()
      await new Promise(resolve => proxy.close(resolve))
    }
  }, 60_000)
})
