/**
 * Cold-start wave: 16 Node runtimes (one process each) load the same 59 MB model at once,
 * (a) all from the coordinator's HTTP API (origin mode, what runtimes without `peers` do), and
 * (b) as a swarm (AoE `peers`: Bloom hints, DHT, the coordinator's node as super-seeding origin).
 * Prints per-mode completion times (p50/p95/max, from "go" to a model ready to infer, swarm join
 * included), bytes served by the coordinator and by peers. A second scenario caps the upload of
 * the coordinator and of every runtime (default 50 MB/s each, the runtime's and coordinator's
 * own token-bucket caps; `SWARM_CAPPED_ONLY=1` runs it alone), where bandwidth rather than this
 * machine's 2 cores is the bottleneck. Per swarm wave it also prints the origin's busy answers and
 * why objects were forced onto the origin (`forcedBecause`). Figure: coordinator bytes in swarm
 * mode; reference: coordinator bytes in origin mode (ratio; the target is
 * ≤ 1.5 × the model size in swarm mode vs 16 × in origin mode, and a completion time no worse).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import type { Manifest } from '../../shared/manifest/schema.ts'
import type { SwarmCounters } from '../../node-runtime/p2p/swarm.ts'
import { wideModelFiles } from './wide-model.ts'
import { machine } from './machine.ts'

const RUNTIMES = Number(process.env.SWARM_RUNTIMES ?? 16)
/** Upload cap of the second scenario (coordinator and every runtime), bytes/s; 0 skips it. */
const CAP_BPS = Number(process.env.SWARM_CAP_BPS ?? 50_000_000)
/** `1` runs only the capped scenario (to study it alone); the figure then comes from it. */
const CAPPED_ONLY = process.env.SWARM_CAPPED_ONLY === '1'
const WAVE_TIMEOUT_MS = 300_000
const WORKER = fileURLToPath(new URL('./swarm-worker.ts', import.meta.url))

interface Loaded { type: 'loaded', ms: number, cpuMs: number, loadCpuMs: number, ioBytes: { read: number, written: number } | null, bytesFetched: number, faults: number, swarm?: { bytesFromPeers: number, bytesFromOrigin: number, bytesFromFallback: number, corrupt: number, referrals: number, requests: number, hedges: number, lookups: number, lookupMs: number, originBusy: number, failures: Record<string, number>, forcedBecause: Record<string, number> } }

/** Per-key sums of one count map over every runtime. */
const sumCounts = (maps: Array<Record<string, number> | undefined>): Record<string, number> => {
  const all: Record<string, number> = {}
  for (const map of maps) for (const [k, v] of Object.entries(map ?? {})) all[k] = (all[k] ?? 0) + v
  return all
}

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] as number
}

function waitFor<T> (child: ChildProcess, type: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`worker ${child.pid}: no "${type}" within ${timeoutMs} ms`)) }, timeoutMs)
    const onMessage = (m: { type: string, error?: string }): void => {
      if (m.type === type) { cleanup(); resolve(m as T) } else if (m.type === 'failed') { cleanup(); reject(new Error(`worker ${child.pid}: ${m.error ?? 'failed'}`)) }
    }
    const onExit = (code: number | null): void => { cleanup(); reject(new Error(`worker ${child.pid} exited (${code}) before "${type}"`)) }
    const cleanup = (): void => { clearTimeout(timer); child.off('message', onMessage); child.off('exit', onExit) }
    child.on('message', onMessage)
    child.on('exit', onExit)
  })
}

const files = await wideModelFiles()
const root = await mkdtemp(join(tmpdir(), 'blockfed-bench-swarm-'))
const children: ChildProcess[] = []

/** Both waves against one coordinator; `capBps` caps the coordinator's and every runtime's upload. */
async function scenario (name: string, capBps?: number): Promise<Record<string, unknown>> {
  const coordinator = await createCoordinator({ dataDir: join(root, `${name}-coordinator`), port: 0, p2p: {}, uploadBytesPerSecond: capBps })
  try {
    const url = await coordinator.start()
    const admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
    const token = await admin.createToken('edge')
    await admin.ingest('bench-swarm', files)
    const manifest = (await admin.manifest('bench-swarm', 1) as { manifest: Manifest }).manifest
    const modelBytes = manifest.blocks.reduce((n, b) => n + b.sealedLength, 0)
    const bootstrap = coordinator.p2p()?.addresses ?? []

    const wave = async (mode: 'origin' | 'swarm'): Promise<Record<string, unknown>> => {
      const workers = Array.from({ length: RUNTIMES }, (_, i) => fork(WORKER, [join(root, `${name}-${mode}-${i}`)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: process.execArgv }))
      children.push(...workers)
      await Promise.all(workers.map(async w => await waitFor(w, 'ready', 60_000)))
      const before = coordinator.served()
      const config = {
        version: '1.0.0', tag: 'bench', runtime: 'tensorflow', source: 'blockfed', modelDir: 'bench', modelName: 'bench-swarm', updateURL: url, token,
        ...(mode === 'swarm' ? { peers: { bootstrap, ...(capBps === undefined ? {} : { uploadBytesPerSecond: capBps }) } } : {})
      }
      const started = performance.now()
      const loads = workers.map(async w => await waitFor<Loaded>(w, 'loaded', WAVE_TIMEOUT_MS))
      for (const w of workers) w.send({ type: 'go', config })
      const results = await Promise.all(loads)
      const wallMs = performance.now() - started
      const after = coordinator.served()
      const counters = await Promise.all(workers.map(async w => {
        const reply = waitFor<{ counters?: SwarmCounters }>(w, 'served', 30_000)
        w.send({ type: 'stop' })
        return (await reply).counters
      }))
      const served = counters.map(c => c?.bytesServed ?? 0)
      // Streams refused and wasted, connections cut and refused (stream-limit.ts): an honest wave should cut none.
      const floods = (key: 'streamsRefused' | 'streamsWasted' | 'connectionsCut' | 'connectionsRefused'): number =>
        counters.reduce((n, c) => n + (c?.[key] ?? 0), 0) + (after.p2p?.[key] ?? 0) - (before.p2p?.[key] ?? 0)
      await Promise.all(workers.map(async w => await new Promise(resolve => { if (w.exitCode !== null) resolve(null); else w.once('exit', resolve) })))
      const coordinatorBytes = (after.httpBytes - before.httpBytes) + ((after.p2p?.bytesServed ?? 0) - (before.p2p?.bytesServed ?? 0))
      const ms = results.map(r => r.ms)
      return {
        completionMs: { p50: Math.round(quantile(ms, 0.5)), p95: Math.round(quantile(ms, 0.95)), max: Math.round(Math.max(...ms)), wall: Math.round(wallMs) },
        coordinatorBytes,
        coordinatorModelCopies: +(coordinatorBytes / modelBytes).toFixed(2),
        peerBytes: served.reduce((a, b) => a + b, 0),
        fetchedBytes: results.reduce((n, r) => n + r.bytesFetched, 0),
        faults: results.reduce((n, r) => n + r.faults, 0),
        cpuMsPerRuntime: Math.round(results.reduce((n, r) => n + r.cpuMs, 0) / results.length),
        // The part of it spent from "go" to loaded (the rest is module loading and runtime start).
        loadCpuMsPerRuntime: Math.round(results.reduce((n, r) => n + r.loadCpuMs, 0) / results.length),
        // read(2)/write(2) bytes per runtime during its load (sockets and cache files): what moved beside the payload.
        ioMBPerRuntime: results.every(r => r.ioBytes !== null)
          ? { read: +(results.reduce((n, r) => n + (r.ioBytes?.read ?? 0), 0) / results.length / 1e6).toFixed(1), written: +(results.reduce((n, r) => n + (r.ioBytes?.written ?? 0), 0) / results.length / 1e6).toFixed(1) }
          : null,
        ...(mode === 'swarm'
          ? {
              fromOrigin: results.reduce((n, r) => n + (r.swarm?.bytesFromOrigin ?? 0), 0),
              fromPeers: results.reduce((n, r) => n + (r.swarm?.bytesFromPeers ?? 0), 0),
              fromHttpFallback: results.reduce((n, r) => n + (r.swarm?.bytesFromFallback ?? 0), 0),
              referrals: results.reduce((n, r) => n + (r.swarm?.referrals ?? 0), 0),
              requests: results.reduce((n, r) => n + (r.swarm?.requests ?? 0), 0),
              hedges: results.reduce((n, r) => n + (r.swarm?.hedges ?? 0), 0),
              forced: (after.p2p?.forced ?? 0) - (before.p2p?.forced ?? 0),
              lookups: results.reduce((n, r) => n + (r.swarm?.lookups ?? 0), 0),
              originBusy: results.reduce((n, r) => n + (r.swarm?.originBusy ?? 0), 0),
              failures: sumCounts(results.map(r => r.swarm?.failures)),
              forcedBecause: sumCounts(results.map(r => r.swarm?.forcedBecause)),
              streamFloods: { streamsRefused: floods('streamsRefused'), streamsWasted: floods('streamsWasted'), connectionsCut: floods('connectionsCut'), connectionsRefused: floods('connectionsRefused') }
            }
          : {})
      }
    }

    const origin = await wave('origin')
    const swarm = await wave('swarm')
    const max = (r: Record<string, unknown>): number => (r.completionMs as { max: number }).max
    return {
      uploadCapBytesPerSecond: capBps ?? null,
      model: { sealedBytes: modelBytes, blocks: manifest.blocks.length, erasure: `${manifest.erasure.k}+${manifest.erasure.m}` },
      origin,
      swarm,
      coordinatorBytesRatio: +((swarm.coordinatorBytes as number) / (origin.coordinatorBytes as number)).toFixed(3),
      timeRatio: +(max(swarm) / max(origin)).toFixed(3)
    }
  } finally {
    await coordinator.stop()
  }
}

try {
  if (CAPPED_ONLY && !(CAP_BPS > 0)) throw new Error('SWARM_CAPPED_ONLY=1 needs SWARM_CAP_BPS > 0')
  const unlimited = CAPPED_ONLY ? undefined : await scenario('unlimited')
  const capped = CAP_BPS > 0 ? await scenario('capped', CAP_BPS) : undefined
  const headline = (unlimited ?? capped) as Record<string, unknown>
  console.log(JSON.stringify({
    bench: 'swarm',
    runtimes: RUNTIMES,
    unlimited,
    capped,
    figure: { swarmCoordinatorModelCopies: (headline.swarm as { coordinatorModelCopies: number }).coordinatorModelCopies },
    reference: { originCoordinatorModelCopies: (headline.origin as { coordinatorModelCopies: number }).coordinatorModelCopies },
    ratio: headline.coordinatorBytesRatio,
    target: { swarmCoordinatorModelCopies: '≤ 1.5', timeRatio: '≤ 1' },
    machine: machine()
  }, null, 2))
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
  await rm(root, { recursive: true, force: true })
}
