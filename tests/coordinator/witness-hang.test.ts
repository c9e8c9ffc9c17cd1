/**
 * A witness that accepts connections and never answers must not hold up the coordinator: not its
 * start, not the versions published after it (found by review: start 10 s, two ingests 20 s).
 * The bounds below are deadlines (a hang would take 10 s per step), not a speed measurement.
 */
import { describe, it, expect, afterAll, vi } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { witnessCosigner, type WitnessStatus } from '../../coordinator/ledger/witnesses.ts'
import { ed25519 } from '@noble/curves/ed25519.js'
import { witnessVerifierKey } from '../../shared/ledger/cosignature.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

let root: string | undefined
const sockets = new Set<net.Socket>()
const silent = net.createServer(socket => { sockets.add(socket) }) // accepts, never answers

afterAll(async () => {
  for (const socket of sockets) socket.destroy()
  await new Promise(resolve => silent.close(resolve))
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

describe('a hanging witness', () => {
  it('costs neither the start nor the publishes more than the grace period', async () => {
    await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`
    root = await mkdtemp(join(tmpdir(), 'blockfed-witness-hang-'))
    const c = await createCoordinator({ dataDir: join(root, 'c'), port: 0, witnesses: [{ url, vkey: witnessVerifierKey('witness.test/silent', ed25519.getPublicKey(ed25519.utils.randomSecretKey())) }], witnessTimeoutMs: 10_000 })
    try {
      const started = performance.now()
      await c.start()
      expect(performance.now() - started).toBeLessThan(5_000)
      const files = await Promise.all([denseModelFiles(16, [['a', 8, 1]]), denseModelFiles(16, [['a', 8, 2]])])
      const before = performance.now()
      const results = await Promise.all(files.map(async f => await c.ingest('m', f)))
      expect(results.map(r => r.version).sort()).toEqual([1, 2])
      // Each caller waits at most the 2 s grace, the two together well under one witness timeout.
      expect(performance.now() - before).toBeLessThan(8_000)
      // The checkpoint covering both is signed (by the log alone: the witness never cosigned).
      expect(c.log.latest()?.checkpoint.size).toBe(2)
      expect(c.log.latest()?.cosigners).toEqual([])
    } finally {
      await c.stop()
    }
  })

  it('gets one run for the calls made while a run waits, and stop ends the run under way without reporting the witness as failed', async () => {
    const accepted: net.Socket[] = []
    const server = net.createServer(socket => { accepted.push(socket); sockets.add(socket) })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
    root ??= await mkdtemp(join(tmpdir(), 'blockfed-witness-hang-'))
    const c = await createCoordinator({ dataDir: join(root, 'runs'), port: 0 })
    try {
      await c.ingest('m', await denseModelFiles(16, [['a', 8, 3]]))
      const statuses: WitnessStatus[] = []
      const cosigner = witnessCosigner({ log: c.log, witnesses: [{ url, vkey: witnessVerifierKey('witness.test/slow', ed25519.getPublicKey(ed25519.utils.randomSecretKey())) }], timeoutMs: 60_000, onStatus: s => statuses.push(s) })
      const first = cosigner.cosign()
      await vi.waitFor(() => { expect(accepted).toHaveLength(1) })
      // Five publishes and retries while the first run hangs: before, each queued a run of its own.
      const queued = Array.from({ length: 5 }, async () => await cosigner.cosign())
      accepted[0]?.destroy()
      expect((await first).failed).toHaveLength(1)
      await vi.waitFor(() => { expect(accepted).toHaveLength(2) })
      accepted[1]?.destroy()
      const outcomes = await Promise.all(queued)
      expect(new Set(outcomes).size).toBe(1) // one run answered all five
      expect(outcomes[0]?.failed).toHaveLength(1)
      expect(accepted).toHaveLength(2)
      expect(statuses.map(s => s.ok)).toEqual([false]) // said once, on the change
      // A run under way at stop: its request is aborted, and the witness is not said to fail.
      statuses.length = 0
      const late = cosigner.cosign()
      await vi.waitFor(() => { expect(accepted).toHaveLength(3) })
      await cosigner.stop()
      expect((await late).failed).toEqual([])
      expect(await cosigner.cosign()).toEqual({ size: 0, cosigned: [], failed: [] })
      expect(accepted).toHaveLength(3)
    } finally {
      await c.stop()
      for (const socket of accepted) socket.destroy()
      await new Promise(resolve => server.close(resolve))
    }
  })
})
