/**
 * The AoE model config (DESIGN.md, "Runtime contract (AoE style)"). didi's AI on Edge describes
 * each model with a small JSON file — `version`, `tag`, `runtime`, `source`, `modelDir`,
 * `modelName` (github.com/didi/AoE, "model.config") — and blockfed accepts those fields as AoE
 * writes them, plus `updateURL` (the coordinator) and blockfed's own optional keys. The schema is
 * strict: an unknown key is an error naming it (with the likely intended key), so a typo never
 * silently falls back to a default. config/aoe-config.schema.json is generated from this file
 * (node-runtime/config/write-schema.ts).
 */
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { InvalidConfigError } from '../errors/errors.ts'
import { closestKey } from '../errors/suggest.ts'
import {
  DEFAULT_CACHE_CONFIG, DEFAULT_FETCH_CONFIG, FETCH_CONCURRENCY_MAX, FETCH_RETRIES_MAX, FETCH_TIMEOUT_MAX_MS,
  HALF_LIFE_HOURS_MAX, RUNTIME_STATE_NAMES
} from './constants.ts'

export type Engine = 'tfjs' | 'onnx'

/** AoE runtime names → the engine that runs them. AoE's "tensorflow" models run on tfjs here. */
export const AOE_RUNTIMES = Object.freeze({
  tensorflow: 'tfjs',
  tfjs: 'tfjs',
  tensorflowjs: 'tfjs',
  onnx: 'onnx',
  onnxruntime: 'onnx'
} as const satisfies Record<string, Engine>)

export type AoeRuntime = keyof typeof AOE_RUNTIMES

const RUNTIME_NAMES = Object.keys(AOE_RUNTIMES) as [AoeRuntime, ...AoeRuntime[]]
/** AoE's model sources: "local"/"cloud" as AoE's Android SDK writes them (ModelSource), "installed"/"remote" as its early docs do, and blockfed's own. */
const AOE_SOURCES = ['local', 'cloud', 'installed', 'remote', 'blockfed'] as const

/** `[a-z0-9][a-z0-9._-]{0,63}`: the model's name at the coordinator, safe in URLs and paths. */
export const MODEL_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/

/** `word` in any case, with trailing dots or spaces: one folder name on Windows and macOS volumes. */
const sameFolderAs = (word: string): string =>
  `${[...word].map(c => /[a-z]/.test(c) ? `[${c}${c.toUpperCase()}]` : c === '.' ? '\\.' : c).join('')}[. ]*`

/** A segment that is not `.`, `..`, nor a folder kept in a model's folder: `(?!…)` before one. */
const NOT_RESERVED_SEGMENT = `(?!(?:\\.\\.?|${['blocks', 'anchors'].map(sameFolderAs).join('|')})(?:\\/|$))`
const SEGMENT = '[^/\\\\:\\x00-\\x1f]+'

/**
 * A relative folder path: one or more `/`-separated segments, none empty, `.` or `..`, and no
 * backslash, colon (drive letters, NTFS streams) or control character — so joining it under the
 * runtime's data dir can never leave that dir, on any OS. No segment is `blocks` or `anchors`,
 * the folders blockfed keeps inside a model's folder (its cache, its anchors): a model whose
 * folder lay inside another's cache was emptied by it at start. In any case and with trailing
 * dots or spaces, which name the same folder on Windows and case-insensitive macOS volumes
 * (character classes, not a flag: JSON Schema patterns have none).
 */
export const MODEL_DIR_PATTERN = new RegExp(`^${NOT_RESERVED_SEGMENT}${SEGMENT}(?:\\/${NOT_RESERVED_SEGMENT}${SEGMENT})*$`)

/** A modelDir whose first segment is not a folder (or file) the runtime keeps its own state in. */
const NOT_RUNTIME_STATE_PATTERN = new RegExp(`^(?!(?:${RUNTIME_STATE_NAMES.map(sameFolderAs).join('|')})(?:\\/|$))`)

const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/
const ED25519_HEX_PATTERN = /^[0-9a-fA-F]{64}$/

/** A value shown in an error: short, and as JSON (so `"1"` and `1` are told apart). */
function show (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return 'an object'
  if (typeof value === 'string') {
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value)
  }
  return String(value)
}

/** A zod error option that says what was expected and what came (never echoing a secret). */
function expecting (what: string, options: { secret?: boolean, url?: boolean } = {}): { error: (issue: { input?: unknown }) => string } {
  return {
    error: (issue) => {
      if (issue.input === undefined) return `missing, expected ${what}`
      const got = options.secret === true && typeof issue.input === 'string'
        ? (issue.input === '' ? 'an empty string' : `a string of ${issue.input.length} characters`)
        : show(options.url === true && typeof issue.input === 'string' ? withoutUserinfo(issue.input) : issue.input)
      return `expected ${what}, got ${got}`
    }
  }
}

/**
 * `text` with all before its last `@` cut: whatever a URL that does not parse holds there may be
 * a password (`http://user:pa/ss@host` is no URL), so an error never shows it.
 */
function withoutUserinfo (text: string): string {
  const at = text.lastIndexOf('@')
  return at < 0 ? text : `…${text.slice(at)}`
}

/** A coordinator URL must carry no credentials: every request would fail, its error showing them. */
function hasNoUserinfo (text: string): boolean {
  try {
    const url = new URL(text)
    return url.username === '' && url.password === ''
  } catch {
    return true // not a URL: z.url says so
  }
}

/** An array's length bound, said as such (the array's own `expecting` message would say only "got an array"). */
const atMost = (n: number, what: string): { error: (issue: { input?: unknown }) => string } => ({
  error: (issue) => `expected at most ${n} ${what}, got ${Array.isArray(issue.input) ? issue.input.length : show(issue.input)}`
})

const positiveInt = (what: string): z.ZodNumber => z.number(expecting(what)).int(expecting(what)).positive(expecting(what))
const intRange = (min: number, max: number): z.ZodNumber => {
  const e = expecting(`an integer from ${min} to ${max}`)
  return z.number(e).int(e).min(min, e).max(max, e)
}

const nonNegative = (what: string): z.ZodNumber => z.number(expecting(what)).min(0, expecting(what)).max(1e6, expecting(what))

const cacheSchema = z.strictObject({
  memoryBytes: positiveInt('a positive integer (bytes)').default(DEFAULT_CACHE_CONFIG.memoryBytes)
    .meta({ description: 'Memory tier (LRU) capacity in bytes.' }),
  diskBytes: positiveInt('a positive integer (bytes)').default(DEFAULT_CACHE_CONFIG.diskBytes)
    .meta({ description: 'Disk tier (decayed LFU) capacity in bytes. Give it about three times the model: an upgrade fetches the new version while the one in use and the rollback target are pinned, and a new block with no room is used but not kept.' }),
  halfLifeHours: z.number(expecting('a positive number of hours')).positive(expecting('a positive number of hours'))
    .max(HALF_LIFE_HOURS_MAX, expecting(`a number of hours of at most ${HALF_LIFE_HOURS_MAX}`))
    .default(DEFAULT_CACHE_CONFIG.halfLifeHours)
    .meta({ description: 'Half-life of an access in the disk tier\'s frequency count, in hours.' }),
  weights: z.strictObject({
    frequency: nonNegative('a non-negative number'),
    recency: nonNegative('a non-negative number'),
    size: nonNegative('a non-negative number')
  }, expecting('an object { frequency, recency, size }')).optional()
    .meta({ description: 'Disk tier eviction score weights: log2 decayed access count, idle half-lives, log2 size. Default { frequency: 1, recency: 0.5, size: 0.5 }.' }),
  adapt: z.boolean(expecting('true or false')).default(DEFAULT_CACHE_CONFIG.adapt)
    .meta({ description: 'Let the disk tier adapt its frequency/recency weights to the misses its evictions cause (ghost-list regret, as LeCaR).' })
}, expecting('an object { memoryBytes, diskBytes, halfLifeHours, weights, adapt }'))

const fetchSchema = z.strictObject({
  concurrency: intRange(1, FETCH_CONCURRENCY_MAX).default(DEFAULT_FETCH_CONFIG.concurrency)
    .meta({ description: 'Blocks and shards fetched at once.' }),
  timeoutMs: intRange(1, FETCH_TIMEOUT_MAX_MS).default(DEFAULT_FETCH_CONFIG.timeoutMs)
    .meta({ description: 'Deadline of each request, in milliseconds.' }),
  retries: intRange(0, FETCH_RETRIES_MAX).default(DEFAULT_FETCH_CONFIG.retries)
    .meta({ description: 'Further attempts after a failed fetch.' })
}, expecting('an object { concurrency, timeoutMs, retries }'))

const metric = (what: string): z.ZodNumber => z.number(expecting(what)).min(0, expecting(what)).max(1, expecting(what))

const validateSchema = z.strictObject({
  margin: metric('a margin from 0 to 1, in the metric\'s own units (added to the current score, e.g. 0.005)').default(0)
    .meta({ description: 'The candidate must score at least this much above the current version.' })
}, expecting('an object { margin }'))

const rollbackSchema = z.strictObject({
  below: metric('a metric bound from 0 to 1 (e.g. 0.9 for 90% accuracy)')
    .meta({ description: 'Roll back when the local metric falls below this bound after an upgrade.' })
}, expecting('an object { below }'))

/** A signed-note verifier key: name+hexkeyid+base64 (C2SP signed-note). Checked in full by the ledger code. */
const VKEY_PATTERN = /^[^+\s]{1,200}\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$/
const vkey = (what: string): z.ZodString => z.string(expecting(what)).regex(VKEY_PATTERN, expecting(what))

const ledgerSchema = z.strictObject({
  key: vkey('a log verifier key "origin+hexkeyid+base64key"').optional()
    .meta({ description: 'The log\'s verifier key (GET /ledger/key). Default: the coordinator key under the log\'s origin.' }),
  witnesses: z.array(vkey('a witness verifier key "name+hexkeyid+base64key"'), expecting('an array of witness verifier keys')).max(64, atMost(64, 'witness keys')).default([])
    .meta({ description: 'Witnesses this runtime knows (their cosignature/v1 verifier keys).' }),
  minWitnesses: intRange(0, 64).default(0)
    .meta({ description: 'How many of those witnesses must have cosigned a checkpoint before it is trusted.' })
}, expecting('an object { key, witnesses, minWitnesses }'))

/** A multiaddr naming its peer (…/p2p/<peer id>), as bootstrap addresses must. */
function isPeerMultiaddr (text: string): boolean {
  try {
    return multiaddr(text).getComponents().some(c => c.name === 'p2p')
  } catch {
    return false
  }
}
const peerAddr = z.string(expecting('a multiaddr with a peer id, such as "/ip4/10.0.0.1/tcp/4001/p2p/12D3Koo…"'))
  .max(512, expecting('a multiaddr of at most 512 characters'))
  .refine(isPeerMultiaddr, expecting('a multiaddr with a peer id, such as "/ip4/10.0.0.1/tcp/4001/p2p/12D3Koo…"'))
const listenAddr = z.string(expecting('a multiaddr to listen on, such as "/ip4/0.0.0.0/tcp/4001"')).max(512)
  .refine(t => { try { multiaddr(t); return true } catch { return false } }, expecting('a multiaddr to listen on, such as "/ip4/0.0.0.0/tcp/4001"'))

const peersSchema = z.strictObject({
  bootstrap: z.array(peerAddr, expecting('an array of multiaddrs')).min(1, expecting('at least one bootstrap multiaddr')).max(32, atMost(32, 'bootstrap multiaddrs'))
    .meta({ description: 'Where to join the swarm: the coordinator\'s libp2p addresses (GET /v1/p2p), with /p2p/<peer id>.' }),
  listen: z.array(listenAddr, expecting('an array of multiaddrs')).max(8, atMost(8, 'listen multiaddrs')).optional()
    .meta({ description: 'Addresses this runtime\'s node listens on. Default TCP and WebSockets on 127.0.0.1, ports chosen by the OS.' }),
  uploadBytesPerSecond: positiveInt('a positive integer (bytes per second)').optional()
    .meta({ description: 'Cap on what this runtime uploads to peers. Unlimited when absent.' }),
  fallback: z.enum(['http', 'none'], expecting('"http" or "none"')).default('http')
    .meta({ description: 'When neither peers nor the coordinator\'s node can serve a shard: ask the coordinator\'s HTTP API ("http"), or fail ("none").' }),
  prefetch: z.boolean(expecting('true or false')).default(true)
    .meta({ description: 'When a newer version is announced on the model\'s topic, fetch its missing blocks into the cache ahead of the upgrade.' })
}, expecting('an object { bootstrap, listen, uploadBytesPerSecond, fallback, prefetch }'))

const nonEmpty = (what: string): z.ZodString => z.string(expecting(what)).min(1, expecting(what))

const fields = {
  $schema: z.string(expecting('a string (the JSON Schema this file follows)')).optional()
    .meta({ description: 'Optional: the JSON Schema of this file, for editors.' }),
  // AoE's own fields.
  version: nonEmpty('a non-empty version label such as "1.0.0"')
    .meta({ description: 'AoE: the model\'s version label (informational; blockfed versions are numbers, see "pin").' }),
  tag: nonEmpty('a non-empty tag naming the feature, such as "tag_mnist"').optional()
    .meta({ description: 'AoE: the feature this model serves; several models may share a tag. Default: the model name (AoE\'s Android configs carry no tag).' }),
  runtime: z.enum(RUNTIME_NAMES, expecting(`one of ${RUNTIME_NAMES.map((n) => `"${n}"`).join(', ')}`))
    .meta({ description: 'AoE: the inference runtime. tensorflow/tfjs/tensorflowjs run on tfjs; onnx/onnxruntime on onnxruntime.' }),
  source: z.enum(AOE_SOURCES, expecting(`one of ${AOE_SOURCES.map(s => `"${s}"`).join(', ')}`))
    .meta({ description: 'AoE: where the model comes from — with the app ("local"; "installed" in AoE\'s early docs), downloaded ("cloud"; "remote"), or "blockfed". Informational: blockfed always loads verified blocks from the coordinator.' }),
  modelId: positiveInt('a positive integer (AoE\'s id of a cloud model)').optional()
    .meta({ description: 'AoE (cloud models): the model\'s id in AoE\'s model service. Informational.' }),
  modelSign: nonEmpty('a non-empty string (AoE\'s signature of a cloud model)').optional()
    .meta({ description: 'AoE (cloud models): the package signature AoE checks. Informational: blockfed checks the coordinator\'s signed manifest and the version ledger instead.' }),
  modelDir: z.string(expecting('a relative folder path such as "mnist" or "vision/pose"'))
    .max(255, expecting('a relative folder path of at most 255 characters'))
    .regex(MODEL_DIR_PATTERN, expecting('a relative folder path such as "mnist" or "vision/pose" (no "..", ".", "blocks" or "anchors" segment, no empty one, no leading "/", no "\\" or ":")'))
    .regex(NOT_RUNTIME_STATE_PATTERN, expecting(`a folder of the model's own: the runtime keeps its state in ${RUNTIME_STATE_NAMES.map(n => `"${n}"`).join(', ')} of its data dir`))
    .meta({ description: 'AoE: the model\'s folder, relative; blockfed keeps the model\'s cache there under the runtime\'s data dir.' }),
  modelName: z.string(expecting('a model name matching [a-z0-9][a-z0-9._-]{0,63}'))
    .regex(MODEL_NAME_PATTERN, expecting('a model name matching [a-z0-9][a-z0-9._-]{0,63}'))
    .meta({ description: 'AoE: the model\'s name; in blockfed, its name at the coordinator.' }),
  updateURL: z.url({ protocol: /^https?$/, ...expecting('an http:// or https:// URL of the coordinator', { url: true }) })
    .refine(hasNoUserinfo, 'remove the user name and password from the URL (the coordinator takes the API token from "token" or "tokenEnv")')
    .refine(text => !text.includes('?'), 'remove the query ("?…") from the URL: give the coordinator\'s base URL, such as "https://coordinator.example/api"')
    .refine(text => !text.includes('#'), 'remove the fragment ("#…") from the URL: give the coordinator\'s base URL, such as "https://coordinator.example/api"')
    .meta({ description: 'The coordinator\'s base URL (http or https), without user name, password, query or fragment.', pattern: '^https?://[^/?#@]+(?:/[^?#]*)?$' }),
  // blockfed's own, all optional.
  pin: positiveInt('a positive integer version').optional()
    .meta({ description: 'Stay on this model version (excludes "channel").' }),
  channel: z.enum(['stable', 'canary'], expecting('"stable" or "canary"')).optional()
    .meta({ description: 'Follow this release channel (excludes "pin").' }),
  // A wrong token is reported without its value.
  token: z.string(expecting('a non-empty API token string', { secret: true }))
    .min(1, expecting('a non-empty API token string', { secret: true })).optional()
    .meta({ description: 'API token for the coordinator (excludes "tokenEnv"). Prefer "tokenEnv" in files that are shared.' }),
  tokenEnv: z.string(expecting('an environment variable name such as "BLOCKFED_TOKEN"'))
    .regex(ENV_NAME_PATTERN, expecting('an environment variable name such as "BLOCKFED_TOKEN"')).optional()
    .meta({ description: 'Name of the environment variable holding the API token (excludes "token").' }),
  coordinatorKey: z.string(expecting('64 hex characters (an Ed25519 public key)'))
    .regex(ED25519_HEX_PATTERN, expecting('64 hex characters (an Ed25519 public key)')).toLowerCase().optional()
    .meta({ description: 'The coordinator\'s Ed25519 public key, hex: manifests and checkpoints must be signed by it.' }),
  upgrade: z.union([
    z.enum(['auto', 'manual']),
    z.strictObject({ validate: validateSchema }, expecting('{ "validate": { "margin": number } }'))
  ], expecting('"auto", "manual" or { "validate": { "margin": number } }')).default('auto')
    .meta({ description: 'When a newer anchored version appears on the channel: take it ("auto"), only report it ("manual"), or take it only if the model code\'s local evaluation on the runtime\'s held-out data beats the current version by "margin" ({ "validate": { "margin": 0.005 } }).' }),
  rollback: rollbackSchema.optional()
    .meta({ description: 'Roll back to the previous version automatically when the model code\'s local evaluation drops below "below" after an upgrade.' }),
  ledger: ledgerSchema.prefault({}).meta({ description: 'Version ledger trust: the log key and the witnesses whose cosignatures a checkpoint needs.' }),
  cache: cacheSchema.prefault({}).meta({ description: 'Block cache sizes.' }),
  fetch: fetchSchema.prefault({}).meta({ description: 'Block fetching.' }),
  peers: peersSchema.optional()
    .meta({ description: 'Load blocks from the swarm (peers first, the coordinator as fallback origin) and serve what this runtime caches. Without it, blocks come from the coordinator\'s HTTP API.' })
}

const objectSchema = z.strictObject(fields, expecting('a JSON object (an AoE model config)'))

/** The AoE config schema: parses to the config with defaults filled in and `engine` added. */
export const aoeConfigSchema = objectSchema
  .superRefine((config, ctx) => {
    // Pairs that contradict each other. Runs even when other fields failed, so that one run
    // reports every problem.
    if (typeof config !== 'object' || config === null || Array.isArray(config)) return
    const has = (k: string): boolean => (config as Record<string, unknown>)[k] !== undefined
    if (has('token') && has('tokenEnv')) {
      ctx.addIssue({ code: 'custom', path: ['tokenEnv'], message: 'give "token" or "tokenEnv", not both' })
    }
    const ledger = (config as Record<string, unknown>).ledger as { witnesses?: unknown[], minWitnesses?: unknown } | undefined
    if (typeof ledger?.minWitnesses === 'number' && ledger.minWitnesses > (Array.isArray(ledger.witnesses) ? ledger.witnesses.length : 0)) {
      ctx.addIssue({ code: 'custom', path: ['ledger', 'minWitnesses'], message: `requires ${ledger.minWitnesses} witness cosignatures but "ledger.witnesses" lists ${Array.isArray(ledger.witnesses) ? ledger.witnesses.length : 0}` })
    }
    // A witness listed twice would count twice toward minWitnesses; the note verifier refuses
    // two keys of one name, so such a list could never verify a checkpoint. Refused here.
    const names = Array.isArray(ledger?.witnesses) ? ledger.witnesses.map(w => typeof w === 'string' ? w.split('+')[0] : undefined) : []
    names.forEach((name, i) => {
      if (name !== undefined && names.indexOf(name) < i) ctx.addIssue({ code: 'custom', path: ['ledger', 'witnesses', i], message: `names witness "${name}" a second time (entry ${names.indexOf(name)}); list each witness once` })
    })
    // A cosignature/v1 signature does not cover the key name, so one key under two names would
    // let one witness's cosignature, relabelled, count twice.
    const keys = Array.isArray(ledger?.witnesses) ? ledger.witnesses.map(w => typeof w === 'string' ? w.split('+')[2] : undefined) : []
    keys.forEach((key, i) => {
      if (key !== undefined && keys.indexOf(key) < i && names.indexOf(names[i]) === i) ctx.addIssue({ code: 'custom', path: ['ledger', 'witnesses', i], message: `lists the key of witness entry ${keys.indexOf(key)} again under another name; list each witness key once` })
    })
    if (has('pin') && has('channel')) {
      ctx.addIssue({ code: 'custom', path: ['channel'], message: 'give "pin" (stay on one version) or "channel" (follow releases), not both' })
    }
  }, { when: () => true })
  .transform((config) => ({ ...config, tag: config.tag ?? config.modelName, engine: AOE_RUNTIMES[config.runtime] as Engine }))

/** An AoE config as the runtime uses it: AoE's fields, blockfed's, defaults filled, engine added. */
export type AoeConfig = z.output<typeof aoeConfigSchema>
/** An AoE config as written in a file. */
export type AoeConfigInput = z.input<typeof aoeConfigSchema>

/**
 * Checks an AoE config (already parsed from JSON) and returns it with defaults filled in and the
 * normalised `engine`. Throws InvalidConfigError naming every bad field by its JSON path:
 * `aoe config mnist.json: "cache.memoryBytes": expected a positive integer (bytes), got -1`.
 *
 * @example
 * const config = parseAoeConfig(JSON.parse(text), 'mnist.json')
 * config.engine // 'tfjs' for "runtime": "tensorflow"
 */
export function parseAoeConfig (input: unknown, source?: string): AoeConfig {
  const result = aoeConfigSchema.safeParse(withoutDerivedEngine(input))
  if (result.success) return result.data
  const problems = result.error.issues.flatMap(describeIssue)
  const total = result.error.issues.reduce((n, i) => n + (i.code === 'unrecognized_keys' ? i.keys.length : 1), 0)
  const where = source === undefined ? 'aoe config' : `aoe config ${source}`
  const listed = problems.slice(0, MAX_PROBLEMS)
  throw new InvalidConfigError(`${where}: ${listed.join('; ')}${total > listed.length ? `; and ${total - listed.length} more` : ''}`, { cause: result.error })
}

/**
 * A config this module returned carries `engine`, which no file may set: taken off again when it
 * is the one `runtime` gives, so a parsed config can be handed back (to `load`, say). Otherwise
 * it stays, and is refused as the unknown key it is.
 */
function withoutDerivedEngine (input: unknown): unknown {
  if (typeof input !== 'object' || input === null || Array.isArray(input) || !Object.hasOwn(input, 'engine')) return input
  const { engine, ...rest } = input as Record<string, unknown>
  const runtime = rest.runtime
  return typeof runtime === 'string' && Object.hasOwn(AOE_RUNTIMES, runtime) && AOE_RUNTIMES[runtime as AoeRuntime] === engine ? rest : input
}

/** The JSON Schema (draft 2020-12) of what a config file may contain. */
export function aoeConfigJsonSchema (): Record<string, unknown> {
  const schema = z.toJSONSchema(objectSchema, { io: 'input', target: 'draft-2020-12' }) as Record<string, unknown>
  const { $schema, ...rest } = schema
  return {
    $schema,
    title: 'blockfed AoE model config',
    description: 'An AoE (didi AI on Edge) model config as AoE writes it, plus blockfed\'s optional keys. ' +
      'Generated from shared/config/aoe.ts by node-runtime/config/write-schema.ts; do not edit. ' +
      'Not expressed here: "token"/"tokenEnv" and "pin"/"channel" exclude each other.',
    ...rest
  }
}

const KNOWN_KEYS: Record<string, readonly string[]> = {
  '': Object.keys(fields),
  cache: Object.keys(cacheSchema.shape),
  ledger: Object.keys(ledgerSchema.shape),
  rollback: Object.keys(rollbackSchema.shape),
  'upgrade.validate': Object.keys(validateSchema.shape),
  fetch: Object.keys(fetchSchema.shape),
  peers: Object.keys(peersSchema.shape)
}

/** Problems one error lists; the rest are counted. */
const MAX_PROBLEMS = 10
/** Longest key quoted whole (closestKey guesses nothing for a longer one either). */
const MAX_KEY_SHOWN = 64

const shorten = (text: string): string => text.length <= MAX_KEY_SHOWN ? text : `${text.slice(0, MAX_KEY_SHOWN)}… (${text.length} characters)`

function jsonPath (path: ReadonlyArray<PropertyKey>): string {
  if (path.length === 0) return '(root)'
  let out = ''
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`
    else out += out === '' ? String(p) : `.${String(p)}`
  }
  return out
}

function describeIssue (issue: z.core.$ZodIssue): string[] {
  if (issue.code === 'unrecognized_keys') {
    const parent = jsonPath(issue.path)
    const known = KNOWN_KEYS[parent === '(root)' ? '' : parent] ?? []
    // Only as many as are said: a config of 40,000 unknown keys is described as fast as one.
    return issue.keys.slice(0, MAX_PROBLEMS).map((key) => {
      const full = parent === '(root)' ? key : `${parent}.${key}`
      const guess = closestKey(key, known)
      return `${JSON.stringify(shorten(full))}: unknown key${guess === undefined ? '' : ` (did you mean "${guess}"?)`}`
    })
  }
  return [issue.path.length === 0 ? issue.message : `"${jsonPath(issue.path)}": ${issue.message}`]
}
