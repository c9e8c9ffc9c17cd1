/**
 * `blockfed demo --load-only`: the model plane on one machine. A coordinator in a temporary data dir; an
 * MNIST MLP trained on the `mnist` package's digits; the model ingested over HTTP; N Node
 * runtimes, each from its own AoE config file and data dir, loading the model through the load
 * pipeline and classifying the 2,000 held-out digits; then runtime 1 restarted to show a load
 * from its cache. Prints load time, bytes fetched and accuracy per runtime.
 */
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import { createCoordinator, type Coordinator } from '../coordinator.ts'
import { createNodeRuntime } from '../../node-runtime/runtime.ts'
import { mnistSplit } from '../../node-runtime/data/mnist.ts'
import { accuracy, mnistDigitsCode, modelFiles, trainMnistMlp } from '../../node-runtime/examples/mnist-mlp.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { runAll } from './cleanup.ts'

// Resolved through the package's own exports, so it works from the sources and from dist/.
const EXAMPLE_CONFIG = new URL(import.meta.resolve('blockfed/config/examples/mnist-digits.aoe.json'))

const mb = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(2)} MiB`

/** Runs the demo and prints as it goes; `signal` stops it (the coordinator stopped, the data deleted). */
export async function runLoadDemo ({ runtimes, signal }: { runtimes: number, signal?: AbortSignal }): Promise<void> {
  signal?.throwIfAborted()
  const root = await mkdtemp(join(tmpdir(), 'blockfed-demo-'))
  let coordinator: Coordinator | undefined
  let failed = false
  try {
    // Smaller blocks than the 1 MiB default so this 0.4 MB model shows its semantic blocks:
    // the first hidden layer in one block, the second hidden layer and the head in another.
    coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0, partition: { targetBytes: 128 << 10, maxBytes: 512 << 10 } })
    const url = await coordinator.start()
    console.log(`coordinator     ${url}  (data ${join(root, 'coordinator')})`)

    const { train, test } = mnistSplit()
    const backend = await tfjsBackend()
    let t = performance.now()
    const model = await trainMnistMlp(train, { epochs: 5, batchSize: 32, signal })
    console.log(`trained         MNIST MLP 784-128-64-10 on ${train.count} digits, tfjs ${backend}, ${((performance.now() - t) / 1000).toFixed(1)} s`)
    const files = await modelFiles(model)
    model.dispose()
    signal?.throwIfAborted()

    const admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
    t = performance.now()
    const ingest = await admin.ingest('mnist-digits', files, { signal })
    console.log(`ingested        mnist-digits@${ingest.version}  ${ingest.blocks} blocks, ${mb(ingest.bytesStored)} stored (sealed blocks + 4+2 shards), ${(performance.now() - t).toFixed(0)} ms`)
    console.log(`                manifest ${ingest.manifestCid}`)

    const example = JSON.parse(await readFile(EXAMPLE_CONFIG, 'utf8')) as Record<string, unknown>
    const rows: string[][] = []
    const configs: string[] = []
    for (let i = 1; i <= runtimes; i++) {
      const dir = join(root, `runtime-${i}`)
      await mkdir(dir, { recursive: true })
      const configPath = join(dir, 'mnist-digits.aoe.json')
      // Each runtime gets its own edge token; the example's tokenEnv gives way to it.
      await writeFile(configPath, JSON.stringify({ ...example, updateURL: url, tokenEnv: undefined, token: await admin.createToken('edge') }, null, 2))
      configs.push(configPath)
    }
    const started = configs.map(async (configPath, n) => {
      const runtime = await createNodeRuntime({ dataDir: join(root, `runtime-${n + 1}`), codes: { 'mnist-digits': mnistDigitsCode } })
      try {
        const handle = await runtime.load(configPath, signal)
        const predicted = await handle.infer(test.images) as Int32Array
        rows.push([`runtime-${n + 1}`, `${handle.report.totalMs.toFixed(0)} ms`, mb(handle.report.bytesFetched), `${handle.report.fetchedBlocks}/${handle.report.blocks}`, `${(accuracy(predicted, test.labels) * 100).toFixed(2)}%`])
      } finally {
        await runtime.stop()
      }
    })
    // Every load settles before the first failure is thrown: the cleanup below deletes the
    // runtimes' folders, which must not happen under a load still running.
    const failure = (await Promise.allSettled(started)).find(r => r.status === 'rejected')
    if (failure !== undefined) throw failure.reason
    signal?.throwIfAborted()

    // Restart runtime 1: its blocks now come from its disk cache.
    const again = await createNodeRuntime({ dataDir: join(root, 'runtime-1'), codes: { 'mnist-digits': mnistDigitsCode } })
    try {
      const handle = await again.load(join(root, 'runtime-1', 'mnist-digits.aoe.json'), signal)
      const predicted = await handle.infer(test.images) as Int32Array
      rows.sort((a, b) => (a[0] as string).localeCompare(b[0] as string))
      rows.push(['runtime-1 again', `${handle.report.totalMs.toFixed(0)} ms`, mb(handle.report.bytesFetched), `${handle.report.fetchedBlocks}/${handle.report.blocks} (${handle.report.fromCache} cached)`, `${(accuracy(predicted, test.labels) * 100).toFixed(2)}%`])
    } finally {
      await again.stop()
    }

    const header = ['runtime', 'load', 'fetched', 'blocks fetched', `accuracy on ${test.count} held-out digits`]
    const widths = header.map((h, c) => Math.max(h.length, ...rows.map(r => (r[c] as string).length)))
    const line = (r: string[]): string => r.map((v, c) => v.padEnd(widths[c] as number)).join('  ')
    console.log('')
    console.log(line(header))
    for (const r of rows) console.log(line(r))
  } catch (err) {
    failed = true
    throw err
  } finally {
    const errors = await runAll([async () => await coordinator?.stop(), async () => await rm(root, { recursive: true, force: true })])
    // The demo's own error says more; without one, the first cleanup error is the outcome.
    if (!failed && errors.length > 0) throw errors[0]
  }
}
