/**
 * One runtime of the swarm benchmark, in its own process (as a fleet has them): waits for "go",
 * loads the model from its AoE config, reports, keeps serving peers until "stop", then reports
 * what it served. Driven by swarm.bench.ts over the IPC channel.
 */
import { createNodeRuntime } from '../../node-runtime/runtime.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { procIo } from './machine.ts'

const [dataDir] = process.argv.slice(2)
if (dataDir === undefined || process.send === undefined) throw new Error('usage: forked by swarm.bench.ts with a data dir')
const send = (message: unknown): void => { process.send?.(message) }

await tfjsBackend()
const runtime = await createNodeRuntime({ dataDir })
send({ type: 'ready' })
process.on('message', (message: { type: string, config?: unknown }) => {
  if (message.type === 'go') {
    const started = performance.now()
    const io = procIo()
    runtime.load(message.config).then(handle => {
      const cpu = process.cpuUsage()
      const after = procIo()
      // Bytes through read(2)/write(2) during the load: sockets (payload, Noise, Yamux, gossip, DHT) and cache files.
      const ioBytes = io === null || after === null ? null : { read: after.rchar - io.rchar, written: after.wchar - io.wchar }
      send({ type: 'loaded', ms: performance.now() - started, cpuMs: Math.round((cpu.user + cpu.system) / 1000), ioBytes, bytesFetched: handle.report.bytesFetched, faults: handle.report.faults.length, swarm: Object.values(runtime.swarmStats())[0] })
    }, (err: Error) => { send({ type: 'failed', error: `${err.name}: ${err.message}` }) })
  } else if (message.type === 'stop') {
    send({ type: 'served', counters: runtime.swarm()?.counters() })
    void runtime.stop().finally(() => process.exit(0))
  }
})
