/**
 * One runtime of the swarm benchmark, in its own process (as a fleet has them): waits for "go",
 * loads the model from its AoE config, reports, keeps serving peers until "stop", then reports
 * what it served. Driven by swarm.bench.ts over the IPC channel.
 *
 * SWARM_PROFILE_DIR=dir writes a V8 CPU profile of each runtime's load ("go" to loaded), named
 * after its data dir, for finding where a wave's CPU goes.
 */
import { writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { basename, join } from 'node:path'
import { createNodeRuntime } from '../../node-runtime/runtime.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { procIo } from './machine.ts'

const [dataDir] = process.argv.slice(2)
if (dataDir === undefined || process.send === undefined) throw new Error('usage: forked by swarm.bench.ts with a data dir')
const send = (message: unknown): void => { process.send?.(message) }

await tfjsBackend()
const runtime = await createNodeRuntime({ dataDir })
send({ type: 'ready' })

const PROFILE_DIR = process.env.SWARM_PROFILE_DIR
async function profiled<T> (name: string, work: () => Promise<T>): Promise<T> {
  if (PROFILE_DIR === undefined) return await work()
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.start')
  try {
    return await work()
  } finally {
    const { profile } = await session.post('Profiler.stop')
    await writeFile(join(PROFILE_DIR, `${name}.cpuprofile`), JSON.stringify(profile))
    session.disconnect()
  }
}

process.on('message', (message: { type: string, config?: unknown }) => {
  if (message.type === 'go') {
    const started = performance.now()
    const atGo = process.cpuUsage()
    const io = procIo()
    profiled(basename(dataDir), async () => await runtime.load(message.config)).then(handle => {
      const cpu = process.cpuUsage()
      const loadCpu = process.cpuUsage(atGo)
      const after = procIo()
      // Bytes through read(2)/write(2) during the load: sockets (payload, Noise, Yamux, gossip, DHT) and cache files.
      const ioBytes = io === null || after === null ? null : { read: after.rchar - io.rchar, written: after.wchar - io.wchar }
      send({ type: 'loaded', ms: performance.now() - started, cpuMs: Math.round((cpu.user + cpu.system) / 1000), loadCpuMs: Math.round((loadCpu.user + loadCpu.system) / 1000), ioBytes, bytesFetched: handle.report.bytesFetched, faults: handle.report.faults.length, swarm: Object.values(runtime.swarmStats())[0] })
    }, (err: Error) => { send({ type: 'failed', error: `${err.name}: ${err.message}` }) })
  } else if (message.type === 'stop') {
    send({ type: 'served', counters: runtime.swarm()?.counters() })
    void runtime.stop().finally(() => process.exit(0))
  }
})
