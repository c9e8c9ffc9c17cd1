#!/usr/bin/env node
/**
 * The `blockfed` command line: run a coordinator, ingest and pull models, list models and
 * versions, and run the demo. Arguments are parsed by commander; each command validates its
 * own values and exits non-zero with a one-line reason on any error.
 */
import { Command, InvalidArgumentError } from 'commander'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import { BlockfedError } from '../../shared/errors/errors.ts'
import { modelNameSchema } from '../../shared/manifest/schema.ts'
import { createCoordinator } from '../coordinator.ts'
import { readModelFiles } from '../../node-runtime/model-files.ts'
import { pullModel } from '../../node-runtime/pull.ts'
import { progressBar } from '../../node-runtime/progress.ts'
import { runDemo } from './demo.ts'

const DEFAULT_COORDINATOR = process.env.BLOCKFED_COORDINATOR ?? 'http://127.0.0.1:7070'

function port (value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('expected a port number 0-65535')
  return n
}

function url (value: string): string {
  try {
    const u = new URL(value)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)')
    return value
  } catch {
    throw new InvalidArgumentError('expected an http:// or https:// URL')
  }
}

function modelName (value: string): string {
  const parsed = modelNameSchema.safeParse(value)
  if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues[0]?.message ?? 'invalid model name')
  return value
}

function modelRef (value: string): { name: string, version: number | 'latest' } {
  const [name = '', version] = value.split('@')
  modelName(name)
  if (version === undefined || version === 'latest') return { name, version: 'latest' }
  const n = Number(version)
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`version "${version}" is not a positive integer`)
  return { name, version: n }
}

async function token (options: { token?: string, data?: string }): Promise<string | undefined> {
  if (options.token !== undefined) return options.token
  const fromEnv = process.env.BLOCKFED_TOKEN
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  if (options.data !== undefined) return (await readFile(join(options.data, 'admin.token'), 'utf8')).trim()
  return undefined
}

const program = new Command()
  .name('blockfed')
  .description('Federated-learning coordinator and edge runtime: models as sealed semantic blocks.')
  .showHelpAfterError()

program.command('coordinator')
  .description('run a coordinator service')
  .requiredOption('--data <dir>', 'data directory (created if missing)')
  .option('--port <port>', 'TCP port', port, 7070)
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--max-upload-mb <mb>', 'largest accepted model upload', (v: string) => { const n = Number(v); if (!(n > 0)) throw new InvalidArgumentError('expected a positive number'); return n }, 512)
  .action(async (o: { data: string, port: number, host: string, maxUploadMb: number }) => {
    const coordinator = await createCoordinator({ dataDir: resolve(o.data), port: o.port, host: o.host, maxUploadBytes: Math.round(o.maxUploadMb * 2 ** 20), logger: false })
    const at = await coordinator.start()
    console.log(`blockfed coordinator listening on ${at}`)
    console.log(`  signing key  ${coordinator.identity.publicKeyHex}`)
    console.log(`  admin token  ${join(resolve(o.data), 'admin.token')}`)
    console.log(`  API docs     ${at}/openapi.json`)
    const stop = (): void => { void coordinator.stop().then(() => process.exit(0)) }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })

program.command('ingest')
  .description('upload a model (model.json, .onnx or a folder) and ingest it as a new version')
  .argument('<path>', 'model.json, model.onnx, or a folder holding one model')
  .requiredOption('--name <name>', 'model name at the coordinator', modelName)
  .option('--coordinator <url>', 'coordinator URL', url, DEFAULT_COORDINATOR)
  .option('--token <token>', 'API token (or BLOCKFED_TOKEN)')
  .option('--data <dir>', 'read the admin token from this coordinator data dir')
  .option('--json', 'print the result as JSON')
  .action(async (path: string, o: { name: string, coordinator: string, token?: string, data?: string, json?: boolean }) => {
    const files = await readModelFiles(path)
    const client = coordinatorClient({ baseUrl: o.coordinator, token: await token(o) })
    const bar = progressBar('upload')
    const result = await client.ingest(o.name, files, { onProgress: (sent, total) => bar.update(sent, total) }).finally(() => bar.stop())
    if (o.json === true) console.log(JSON.stringify(result))
    else console.log(`${result.model}@${result.version} ${result.manifestCid}${result.created ? '' : ' (unchanged: nothing stored)'} — ${result.blocks} blocks, ${result.newBlocks} new, ${result.bytesStored} bytes stored`)
  })

program.command('pull')
  .description('load a model version through the runtime\'s load pipeline and write it out in its original format')
  .argument('<model>', 'NAME or NAME@VERSION', modelRef)
  .requiredOption('--out <dir>', 'output folder')
  .option('--coordinator <url>', 'coordinator URL', url, DEFAULT_COORDINATOR)
  .option('--token <token>', 'API token (or BLOCKFED_TOKEN)')
  .option('--data <dir>', 'read the admin token from this coordinator data dir')
  .option('--coordinator-key <hex>', 'pin the coordinator\'s Ed25519 key instead of trusting it on first use')
  .option('--home <dir>', 'where pulled blocks are cached and keys pinned', join(homedir(), '.blockfed'))
  .action(async (ref: { name: string, version: number | 'latest' }, o: { out: string, coordinator: string, token?: string, data?: string, coordinatorKey?: string, home: string }) => {
    const bar = progressBar('blocks')
    const pulled = await pullModel({
      baseUrl: o.coordinator, token: await token(o), model: ref.name, version: ref.version, home: o.home, coordinatorKey: o.coordinatorKey,
      onBlock: (done, total) => bar.update(done, total)
    }).finally(() => bar.stop())
    await mkdir(o.out, { recursive: true })
    for (const f of pulled.files) {
      const target = join(o.out, f.path)
      await mkdir(dirname(target), { recursive: true })
      await writeFile(target, f.bytes)
    }
    const r = pulled.report
    console.log(`${pulled.manifest.model}@${pulled.manifest.version} → ${o.out}: ${pulled.files.map(f => f.path).join(', ')}`)
    console.log(`  ${r.blocks} blocks (${r.fromCache} from cache), ${r.bytesFetched} bytes fetched, ${r.faults.length} shard faults tolerated, ${r.ms.toFixed(0)} ms`)
  })

program.command('models')
  .description('list the coordinator\'s models')
  .option('--coordinator <url>', 'coordinator URL', url, DEFAULT_COORDINATOR)
  .option('--json', 'print JSON')
  .action(async (o: { coordinator: string, json?: boolean }) => {
    const models = await coordinatorClient({ baseUrl: o.coordinator }).models()
    if (o.json === true) { console.log(JSON.stringify(models)); return }
    if (models.length === 0) console.log('no models')
    for (const m of models) console.log(`${m.name.padEnd(24)} ${m.format.padEnd(12)} latest ${m.latest}  (${m.versions} versions)`)
  })

program.command('versions')
  .description('list a model\'s versions')
  .argument('<name>', 'model name', modelName)
  .option('--coordinator <url>', 'coordinator URL', url, DEFAULT_COORDINATOR)
  .option('--json', 'print JSON')
  .action(async (name: string, o: { coordinator: string, json?: boolean }) => {
    const versions = await coordinatorClient({ baseUrl: o.coordinator }).versions(name)
    if (o.json === true) { console.log(JSON.stringify(versions)); return }
    for (const v of versions) {
      console.log(`${name}@${v.version}  parent ${v.parent ?? '-'}  ${v.blocks} blocks  ${v.weightBytes} bytes  ${v.createdAt}  ${v.manifestCid}`)
    }
  })

program.command('demo')
  .description('the main job: coordinator + MNIST model + 3 Node runtimes, each loading and classifying held-out digits')
  .option('--runtimes <n>', 'how many runtimes', (v: string) => { const n = Number(v); if (!Number.isInteger(n) || n < 1 || n > 32) throw new InvalidArgumentError('expected 1-32'); return n }, 3)
  .action(async (o: { runtimes: number }) => { await runDemo({ runtimes: o.runtimes }) })

try {
  await program.parseAsync()
} catch (err) {
  const message = err instanceof BlockfedError ? `${err.name}: ${err.message}` : err instanceof Error ? err.message : String(err)
  console.error(`blockfed: ${message}`)
  process.exitCode = 1
}
