/**
 * Rounds from the command line, over the rounds HTTP API (coordinator/http/rounds-routes.ts):
 *   rounds start NAME [options]   start a round now; --wait follows it to its end (exit 1 if it fails)
 *   rounds show ID [--wait]       a round's state, outcome, metrics and clients
 *   rounds list NAME              a model's latest rounds, newest first
 * Each needs a token whose role may run rounds (--token, BLOCKFED_TOKEN or --data). A round
 * request is checked here with the schema the coordinator uses, so a typo is named before
 * anything is sent.
 */
import { InvalidArgumentError, Option, type Command } from 'commander'
import { z } from 'zod'
import { coordinatorClient, type CoordinatorClient } from '../../shared/client/coordinator-client.ts'
import { parseJsonText } from '../../shared/config/json.ts'
import { AccessDeniedError, InvalidInputError, isUnreachable, TimeoutError } from '../../shared/errors/errors.ts'
import { sleep } from '../../shared/load/deadline.ts'
import { describeIssues } from '../../shared/errors/parse-json.ts'
import { clientCounts, type RoundListEntry, type RoundStatus } from '../../shared/rounds/api.ts'
import { roundRequestSchema, secureModeSchema, type RoundRequestInput } from '../../shared/rounds/config.ts'
import { strategyConfigSchema } from '../../shared/rounds/strategy-config.ts'
import { readOptionFile } from './paths.ts'
import { coordinatorOption, integer, jsonArgument, modelName, number, token } from './args.ts'

/** How often `--wait` asks for the round's state. */
const POLL_MS = 1000
/** `--wait`'s default deadline: above the longest round the default deadlines allow (≈ 6 min). */
const DEFAULT_WAIT_S = 3600

const ROUND_ID = /^r_[0-9a-f]{16}$/

interface Access { coordinator: string, token?: string, data?: string }

interface StartOptions extends Access {
  request?: string
  base?: number
  trainable?: string[]
  epochs?: number
  batchSize?: number
  learningRate?: number
  optimizer?: string
  strategy?: z.infer<typeof strategyConfigSchema>
  secure?: string
  minClients?: number
  maxClients?: number
  minUploads?: number
  wait?: boolean
  timeout: number
  json?: boolean
}

async function client (o: Access, what: string): Promise<CoordinatorClient> {
  const bearer = await token(o)
  if (bearer === undefined) throw new AccessDeniedError(`${what} needs an API token whose role may run rounds (--token, BLOCKFED_TOKEN or --data)`)
  // Short calls: `--wait` asks again each second and its own deadline bounds the whole wait.
  return coordinatorClient({ baseUrl: o.coordinator, token: bearer, timeoutMs: 10_000 })
}

const units = (value: string): string[] => {
  const list = value.split(',').map(u => u.trim())
  if (list.some(u => u === '')) throw new InvalidArgumentError('expected unit names separated by commas (blockfed versions NAME lists them)')
  return list
}

/** `--request FILE` overlaid with the flags, checked whole by the coordinator's own schema. */
export async function roundRequest (name: string, o: StartOptions): Promise<RoundRequestInput> {
  let fromFile: Record<string, unknown> = {}
  if (o.request !== undefined) {
    const value = parseJsonText(await readOptionFile('--request', o.request), `--request ${o.request}`)
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidInputError(`--request ${o.request}: expected a JSON object (a round request, as POST /v1/rounds takes)`)
    fromFile = value as Record<string, unknown>
    if (fromFile.model !== undefined && fromFile.model !== name) throw new InvalidInputError(`--request ${o.request} names model ${String(fromFile.model)}, the command ${name}`)
  }
  const nested = (key: string): Record<string, unknown> => {
    const v = fromFile[key]
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : {}
  }
  const defined = (entries: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(Object.entries(entries).filter(([, v]) => v !== undefined))
  const selection = defined({ minClients: o.minClients, maxClients: o.maxClients, minUploads: o.minUploads })
  const request: Record<string, unknown> = {
    ...fromFile,
    model: name,
    ...defined({ baseVersion: o.base, trainable: o.trainable, epochs: o.epochs, batchSize: o.batchSize, learningRate: o.learningRate, optimizer: o.optimizer, strategy: o.strategy }),
    ...(o.secure === undefined ? {} : { secure: { ...nested('secure'), mode: o.secure } }),
    ...(Object.keys(selection).length === 0 ? {} : { selection: { ...nested('selection'), ...selection } })
  }
  const parsed = roundRequestSchema.safeParse(request)
  if (!parsed.success) throw new InvalidInputError(`round request${o.request === undefined ? '' : ` (${o.request} with the flags)`}: ${describeIssues(parsed.error)}`)
  return request as RoundRequestInput
}

const seconds = (from: string, to: string): string => `${((Date.parse(to) - Date.parse(from)) / 1000).toFixed(1)} s`

const describeCounts = (c: Record<string, number>): string => {
  const parts = Object.entries(c).sort(([a], [b]) => a.localeCompare(b)).map(([s, n]) => `${n} ${s}`)
  return parts.length === 0 ? 'no clients yet' : parts.join(', ')
}

function outcome (r: RoundStatus | RoundListEntry): string {
  if (r.state === 'published') return `published ${r.model}@${r.version ?? '?'} from @${r.baseVersion}`
  if (r.state === 'failed') return `failed: ${r.reason ?? 'no reason recorded'}`
  return `${r.state} (from ${r.model}@${r.baseVersion})`
}

function printRound (r: RoundStatus): void {
  console.log(`${r.id}  ${outcome(r)}  ${r.secure}  ${seconds(r.createdAt, r.updatedAt)}`)
  if (r.metrics !== null) console.log(`  metrics  ${Object.entries(r.metrics).map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toPrecision(4)}`).join('  ')}`)
  console.log(`  clients  ${describeCounts(clientCounts(r.clients))}`)
  for (const c of r.clients) console.log(`    ${c.clientId.slice(0, 16)}…  ${c.status}`)
}

/**
 * Asks for the round every POLL_MS until it is published or failed, saying each change of state
 * or client counts (on stderr under --json). A coordinator that cannot be reached for a while
 * (restarting: rounds resume) is waited for within the same deadline.
 */
async function follow (c: CoordinatorClient, id: string, timeoutS: number, json: boolean): Promise<RoundStatus> {
  const say = json ? (line: string) => console.error(line) : (line: string) => console.log(line)
  const deadline = Date.now() + timeoutS * 1000
  let last = ''
  let unreachable = false
  for (;;) {
    try {
      const r = await c.round(id)
      if (unreachable) say(`${id}  the coordinator answers again`)
      unreachable = false
      const line = `${r.state}: ${describeCounts(clientCounts(r.clients))}`
      if (line !== last) say(`${id}  ${line}`)
      last = line
      if (r.state === 'published' || r.state === 'failed') return r
    } catch (err) {
      if (!isUnreachable(err)) throw err
      if (!unreachable) say(`${id}  ${(err as Error).message}; still waiting`)
      unreachable = true
    }
    const left = deadline - Date.now()
    if (left <= 0) throw new TimeoutError(`round ${id} did not end within ${timeoutS} s (last seen ${last === '' ? 'never' : last}); blockfed rounds show ${id} looks again`)
    await sleep(Math.min(POLL_MS, left))
  }
}

function finish (r: RoundStatus, json: boolean): void {
  if (json) console.log(JSON.stringify(r))
  else printRound(r)
  if (r.state === 'failed') process.exitCode = 1
}

const roundId = (value: string): string => {
  if (!ROUND_ID.test(value)) throw new InvalidArgumentError('expected a round id: r_ and 16 hex digits (blockfed rounds list NAME shows them)')
  return value
}

function access (command: Command): Command {
  return command
    .addOption(coordinatorOption())
    .option('--token <token>', 'API token whose role may run rounds (or BLOCKFED_TOKEN)')
    .option('--data <dir>', 'read the admin token from this coordinator data dir')
}

export function roundCommands (program: Command): void {
  const rounds = program.command('rounds')
    .description('start federated training rounds and follow them (runtimes take part from code: createParticipant in blockfed/node)')

  access(rounds.command('start'))
    .description('start a training round of a model now, with the clients connected to the coordinator; --wait follows it to its end and exits 1 if it fails')
    .argument('<name>', 'model name', modelName)
    .option('--request <file>', 'a JSON round request (as POST /v1/rounds takes); the flags below override its fields')
    .option('--base <version>', 'the version expected to be the latest: a round always trains the latest, and is refused (409) when another version came after', integer(1, Number.MAX_SAFE_INTEGER))
    .option('--trainable <units>', 'block units to train, comma-separated (blockfed versions NAME lists them; default: all float32 blocks)', units)
    .option('--epochs <n>', 'local epochs per client', integer(1, 100))
    .option('--batch-size <n>', 'local batch size', integer(1, 65_536))
    .option('--learning-rate <rate>', 'local learning rate', number(0, 10, { min: true }))
    .addOption(new Option('--optimizer <name>', 'local optimizer').choices(['sgd', 'momentum', 'adam']))
    .option('--strategy <json>', 'server strategy, e.g. {"name":"fedavgm","momentum":0.9}', jsonArgument(strategyConfigSchema, 'a strategy'))
    .addOption(new Option('--secure <mode>', 'secure aggregation (masking needs at least 3 clients; paillier a coordinator started with --decryptor)').choices(secureModeSchema.options))
    .option('--min-clients <n>', 'fewer eligible connected clients than this: the round does not start', integer(1, 10_000))
    .option('--max-clients <n>', 'most clients offered the round', integer(1, 10_000))
    .option('--min-uploads <n>', 'fewer uploads than this at the deadline: the round fails', integer(1, 10_000))
    .option('--wait', 'follow the round until it is published or failed')
    .option('--timeout <seconds>', 'with --wait: give up waiting after this long (the round runs on)', integer(1, 86_400), DEFAULT_WAIT_S)
    .option('--json', 'print JSON (the round id; with --wait, the final round)')
    .action(async (name: string, o: StartOptions) => {
      const request = await roundRequest(name, o)
      const c = await client(o, 'rounds start')
      const { id } = await c.startRound(request)
      if (o.wait !== true) {
        console.log(o.json === true ? JSON.stringify({ id }) : `${id} started; blockfed rounds show ${id} --wait follows it`)
        return
      }
      if (o.json !== true) console.log(`${id} started`)
      finish(await follow(c, id, o.timeout, o.json === true), o.json === true)
    })

  access(rounds.command('show'))
    .description('a round\'s state, outcome, metrics and clients')
    .argument('<id>', 'round id (r_ and 16 hex digits)', roundId)
    .option('--wait', 'follow the round until it is published or failed')
    .option('--timeout <seconds>', 'with --wait: give up waiting after this long', integer(1, 86_400), DEFAULT_WAIT_S)
    .option('--json', 'print JSON')
    .action(async (id: string, o: Access & { wait?: boolean, timeout: number, json?: boolean }) => {
      const c = await client(o, 'rounds show')
      finish(o.wait === true ? await follow(c, id, o.timeout, o.json === true) : await c.round(id), o.json === true)
    })

  access(rounds.command('list'))
    .description('a model\'s latest rounds, newest first')
    .argument('<name>', 'model name', modelName)
    .option('--limit <n>', 'most rounds listed', integer(1, 200), 20)
    .option('--json', 'print JSON')
    .action(async (name: string, o: Access & { limit: number, json?: boolean }) => {
      const list = await (await client(o, 'rounds list')).rounds(name, o.limit)
      if (o.json === true) {
        console.log(JSON.stringify({ model: name, rounds: list }))
        return
      }
      if (list.length === 0) console.log(`${name}: no rounds yet (blockfed rounds start ${name} starts one)`)
      for (const r of list) console.log(`${r.id}  ${r.createdAt}  ${outcome(r)}  ${r.secure}  ${seconds(r.createdAt, r.updatedAt)}  ${describeCounts(r.clientCounts)}`)
    })
}
