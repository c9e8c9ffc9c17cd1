/**
 * API fuzz: every operation in the coordinator's own `/openapi.json` gets a fixed, seeded set of
 * malformed requests, each one fault on an otherwise valid request: path parameters of the wrong
 * shape (empty, overlong, `..`, non-ASCII, bad escapes, out-of-range numbers, not a CID), bodies
 * that are not JSON or JSON of the wrong type, deep nesting, missing and unknown fields, wrong
 * field types, oversized strings and bodies, wrong content types, missing or bad tokens, bad
 * query values, methods a path does not have. Each must be answered within a deadline with a
 * 4xx whose `{ error, message }` body (coordinator/http/errors.ts) names what is wrong. Then the
 * coordinator must still serve, with its state (HTTP views, every database table, the block
 * files) exactly as before. Requests go out raw (node:http), so `..` and bad escapes reach the
 * server unnormalised.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { request, STATUS_CODES } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { x25519 } from '@noble/curves/ed25519.js'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { toBase64 } from '../../shared/crypto/bytes.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

/** Deadline of one request: a 4xx comes back in milliseconds; silence this long is a hang. */
const DEADLINE_MS = 5_000
/** The coordinator's upload limit here: small, so an oversized upload is cheap to send. */
const MAX_UPLOAD = 256 << 10
/** fastify's body limit (coordinator/http/server.ts). */
const BODY_LIMIT = 1 << 20
const SEED = 0x23f022

let root: string
let c: Coordinator
let base: string
let edgeToken: string
let blockCid: string
/** The generator every seeded choice draws from: reset per operation, so each gets the same cases whatever runs first. */
let rand = mulberry32(SEED)
const seedFor = (op: string): number => [...op].reduce((h, ch) => Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0, SEED)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T

interface Answer { status: number, contentType: string, text: string, json: unknown, ms: number }
interface Req { method: string, path: string, headers?: Record<string, string>, body?: string | Buffer }
interface Case extends Req {
  /** 'METHOD /openapi/path' of the operation fuzzed. */
  op: string
  /** The one thing wrong with the request. */
  fault: string
  /** The status the fault calls for, when one is exact (otherwise any 4xx). */
  status?: number
  /** What the message must mention for a reader to see what was wrong. */
  names: RegExp
}

/** Sends a request as written (no URL normalisation), with a deadline. */
async function send (req: Req, timeoutMs = DEADLINE_MS): Promise<Answer> {
  const { hostname, port } = new URL(base)
  const started = performance.now()
  const headers: Record<string, string> = { ...req.headers }
  if (req.body !== undefined) headers['content-length'] = String(Buffer.byteLength(req.body))
  return await new Promise((resolve, reject) => {
    const out = request({ host: hostname, port, method: req.method, path: req.path, headers, agent: false, signal: AbortSignal.timeout(timeoutMs) }, res => {
      const chunks: Buffer[] = []
      res.on('data', (d: Buffer) => chunks.push(d))
      res.on('error', reject)
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json: unknown
        try { json = JSON.parse(text) } catch { json = undefined }
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), text, json, ms: Math.round(performance.now() - started) })
      })
    })
    out.on('error', reject)
    out.end(req.body)
  })
}

const admin = (): Record<string, string> => ({ authorization: `Bearer ${c.adminToken}` })
const json = (): Record<string, string> => ({ 'content-type': 'application/json' })

// ---------------------------------------------------------------------------------------------
// The OpenAPI document, as far as this test reads it.

interface Param { name: string, in: 'path' | 'query', required?: boolean }
interface BodySchema { type?: string, properties?: Record<string, PropSchema>, required?: string[], additionalProperties?: boolean }
interface PropSchema { type?: string, enum?: unknown[], pattern?: string, maxLength?: number, minimum?: number, maximum?: number, oneOf?: unknown[], anyOf?: unknown[], items?: unknown, nullable?: boolean }
interface Operation { parameters?: Param[], requestBody?: { content: Record<string, { schema: BodySchema }> }, security?: unknown[] }
interface OpenApi { openapi: string, paths: Record<string, Record<string, Operation>> }

/** A valid value of every path and query parameter the API has, by name: real objects where there are some. */
function validParams (): Record<string, string> {
  return { name: 'dense', version: '1', cid: blockCid, id: 'r_00000000000000ff', index: '0', channel: 'canary', limit: '5', size: '2', from: '1', to: '2' }
}

/** A valid body of every operation that takes JSON. */
const VALID_BODIES: Record<string, Record<string, unknown>> = {
  'POST /v1/models/{name}/versions/{version}/keys': { publicKey: toBase64(x25519.getPublicKey(new Uint8Array(32).fill(7))) },
  'POST /v1/tokens': { role: 'edge', label: 'fuzz' },
  'POST /v1/rounds': { model: 'dense', epochs: 1, learningRate: 0.05 },
  'PUT /v1/models/{name}/channels/{channel}': { version: 1, rollout: 0.25 }
}
/** Operations whose body is not JSON (described in prose only): the ingest upload. */
const MULTIPART = new Set(['POST /v1/models/{name}/ingest'])
/** Token-guarded operations an edge token may use (it reads the data keys of the default level). */
const EDGE_ALLOWED = new Set(['POST /v1/models/{name}/versions/{version}/keys'])

function fill (template: string, values: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (_m, p: string) => {
    const v = values[p]
    if (v === undefined) throw new Error(`no value for path parameter ${p}`)
    return v
  })
}

// ---------------------------------------------------------------------------------------------
// Faults.

interface Bad { raw: string, why: string, status?: number, names?: RegExp }

/** A string of `n` characters no path parameter accepts, drawn from the seeded generator. */
function junk (n: number): string {
  const alphabet = ['~', '!', '$', '*', '(', ')', ',', ';', '=', '@', ':', '%20', '%22', '%3C', '%7F', '%C3%A9', '%E2%80%AE', '%F0%9F%A4%96', 'A', 'z', '9', '_', '.']
  let s = pick(['~', '!', '%20', '%E2%80%AE'])
  for (let i = 1; i < n; i++) s += pick(alphabet)
  return s
}

/** Bad shapes every path parameter gets. */
function commonBad (): Bad[] {
  return [
    { raw: '', why: 'empty' },
    { raw: 'a'.repeat(300), why: 'overlong (300 chars)' },
    { raw: '..', why: '".." (raw)' },
    { raw: '%2e%2e%2F..%2Fcoordinator.sqlite', why: 'encoded path traversal' },
    { raw: '%E6%A8%A1%E5%9E%8B', why: 'non-ASCII (UTF-8 escapes)' },
    { raw: 'mod\u00e9le', why: 'raw Latin-1 byte' },
    { raw: '%FF%FE', why: 'invalid UTF-8 escape' },
    { raw: '%zz', why: 'malformed percent-escape' },
    { raw: '%00', why: 'NUL' },
    { raw: junk(12), why: 'seeded junk' }
  ]
}

/** Bad values specific to each parameter (numbers out of range, near misses of the pattern). */
function specificBad (param: string): Bad[] {
  switch (param) {
    case 'name': return [
      { raw: 'UPPER', why: 'uppercase' }, { raw: 'a'.repeat(65), why: '65 chars (limit 64)' }, { raw: '-dense', why: 'leading dash' }, { raw: 'dense%0A', why: 'trailing newline' }
    ]
    case 'version': return [
      { raw: '0', why: 'zero' }, { raw: '-1', why: 'negative' }, { raw: '1.5', why: 'fraction' }, { raw: 'abc', why: 'not a number' }, { raw: '1e400', why: 'overflows to Infinity' },
      { raw: '99999999999999999999', why: 'beyond 2^53' }, { raw: '9007199254740993', why: '2^53 + 1' }, { raw: 'NaN', why: 'NaN' }, { raw: 'LATEST', why: 'uppercase latest' }
    ]
    case 'cid': return [
      { raw: 'not-a-cid', why: 'not a CID' },
      { raw: 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG', why: 'CIDv0' },
      { raw: 'bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi', why: 'dag-pb CIDv1' },
      { raw: blockCid.toUpperCase(), why: 'not canonical (upper case)' },
      { raw: `${blockCid}x`, why: 'real CID plus a character' },
      { raw: 'a'.repeat(150), why: '150 chars' }
    ]
    case 'id': return [{ raw: 'r_0', why: 'too short' }, { raw: 'R_00000000000000FF', why: 'upper case' }, { raw: 'r_000000000000000g', why: 'non-hex' }]
    case 'index': return [
      { raw: '-1', why: 'negative' }, { raw: '01', why: 'leading zero' }, { raw: '1.5', why: 'fraction' }, { raw: '1e3', why: 'exponent' },
      { raw: '9007199254740993', why: '2^53 + 1' }, { raw: '99999999999999999', why: '17 digits' }, { raw: '999999', why: 'beyond the log', status: 404, names: /no entry 999999/ }
    ]
    case 'channel': return [{ raw: 'beta', why: 'unknown channel' }, { raw: 'STABLE', why: 'upper case' }]
    default: throw new Error(`no bad values for path parameter ${param}: add some`)
  }
}

/** What the message must name for a bad path parameter: the parameter, or the URL when the router refused it. */
function paramNames (param: string, bad: Bad): RegExp {
  if (bad.names !== undefined) return bad.names
  return new RegExp(`(^|\\W)(params\\.)?${param}\\b|not a valid url component|exceeding the max param length|Route \\w+:/\\S* not found`)
}

/** Wrong values for one body property, by its schema: two drawn (seeded) from the pool of its type. */
function wrongValues (prop: PropSchema): Array<{ value: unknown, why: string }> {
  const huge = { value: 'x'.repeat(200_000), why: 'a 200 kB string' }
  const pools: Record<string, Array<{ value: unknown, why: string }>> = {
    string: [{ value: 12345, why: 'a number' }, { value: ['x'], why: 'an array' }, { value: { a: 1 }, why: 'an object' }, { value: '', why: 'empty' }, { value: '\u{1F916}\u202E', why: 'emoji + RTL override' }, huge],
    integer: [{ value: '1', why: 'a numeric string' }, { value: 1.5, why: 'a fraction' }, { value: -1, why: 'negative' }, { value: 2 ** 53 + 2, why: 'beyond 2^53' }, { value: 1e300, why: '1e300' }, { value: true, why: 'a boolean' }],
    number: [{ value: '0.5', why: 'a numeric string' }, { value: -1, why: 'negative' }, { value: 1e300, why: '1e300' }, { value: [], why: 'an array' }, { value: false, why: 'a boolean' }],
    array: [{ value: 'x', why: 'a string' }, { value: [], why: 'empty' }, { value: [1, 2], why: 'numbers' }, { value: Array.from({ length: 10_001 }, () => 'x'), why: '10,001 items' }],
    object: [{ value: 'x', why: 'a string' }, { value: [], why: 'an array' }, { value: { name: 'nope', zzz: 1 }, why: 'unknown variant' }, { value: 7, why: 'a number' }]
  }
  const type = prop.type ?? (prop.oneOf !== undefined || prop.anyOf !== undefined ? 'object' : 'string')
  const pool = (pools[type] ?? pools.string as Array<{ value: unknown, why: string }>).filter(w => !(prop.nullable === true && w.value === null))
  if (prop.enum !== undefined) pool.push({ value: 'not-in-enum', why: 'not one of the enum' })
  const first = pick(pool)
  const rest = pool.filter(w => w !== first)
  return [first, pick(rest)]
}

/** A JSON text nested `depth` levels deep. */
const deepArray = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth)
const deepObject = (depth: number): string => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)

function multipartBody (parts: Array<{ name: string, filename?: string, bytes: string | Buffer }>, boundary = 'fuzzb'): Buffer {
  const chunks: Buffer[] = []
  for (const p of parts) {
    const disposition = `form-data; name="${p.name}"${p.filename === undefined ? '' : `; filename="${p.filename}"`}`
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\nContent-Type: application/octet-stream\r\n\r\n`), Buffer.from(p.bytes), Buffer.from('\r\n'))
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`))
  return Buffer.concat(chunks)
}
const MULTIPART_TYPE = 'multipart/form-data; boundary=fuzzb'

/** The malformed requests for one operation. */
function casesFor (doc: OpenApi, path: string, method: string): Case[] {
  const operation = doc.paths[path]?.[method] as Operation
  const op = `${method.toUpperCase()} ${path}`
  rand = mulberry32(seedFor(op))
  const METHOD = method.toUpperCase()
  const valid = validParams()
  const params = operation.parameters ?? []
  const pathParams = params.filter(p => p.in === 'path').map(p => p.name)
  const queryParams = params.filter(p => p.in === 'query')
  const needsToken = (operation.security ?? []).length > 0
  const bodySchema = operation.requestBody?.content['application/json']?.schema
  const validBody = VALID_BODIES[op]
  if (bodySchema !== undefined && validBody === undefined) throw new Error(`${op} takes a JSON body: add a valid one to VALID_BODIES`)
  const validQuery = queryParams.filter(q => q.required === true || q.name === 'limit').map(q => `${q.name}=${valid[q.name] ?? ''}`).join('&')
  const validPath = fill(path, valid) + (validQuery === '' ? '' : `?${validQuery}`)
  const validHeaders = (): Record<string, string> => ({ ...(needsToken ? admin() : {}), ...(validBody === undefined ? {} : json()) })
  const validText = validBody === undefined ? undefined : JSON.stringify(validBody)
  const out: Case[] = []
  const add = (fault: string, req: Partial<Req>, names: RegExp, status?: number): void => {
    out.push({ op, fault, method: req.method ?? METHOD, path: req.path ?? validPath, headers: req.headers ?? validHeaders(), body: 'body' in req ? req.body : validText, names, ...(status === undefined ? {} : { status }) })
  }

  // Path parameters, one at a time.
  for (const p of pathParams) {
    for (const bad of [...commonBad(), ...specificBad(p)]) {
      const target = fill(path, { ...valid, [p]: bad.raw }) + (validQuery === '' ? '' : `?${validQuery}`)
      add(`params.${p} ${bad.why}: ${JSON.stringify(bad.raw.slice(0, 40))}`, { path: target }, paramNames(p, bad), bad.status)
    }
  }

  // Query parameters: missing, malformed, repeated, unknown.
  for (const q of queryParams) {
    const others = queryParams.filter(o => o !== q && (o.required === true || o.name === 'limit')).map(o => `${o.name}=${valid[o.name] ?? ''}`)
    const at = (value: string | undefined): string => `${fill(path, valid)}?${[...others, ...(value === undefined ? [] : [value])].join('&')}`
    const names = new RegExp(`querystring\\.${q.name}\\b|\\b${q.name}\\b`)
    if (q.required === true) add(`query ${q.name} missing`, { path: at(undefined) }, names, 400)
    for (const v of ['', '-1', '01', '1.5', 'abc', '1e400', '9007199254740993', '%FF', '%00']) add(`query ${q.name}=${JSON.stringify(v)}`, { path: at(`${q.name}=${v}`) }, new RegExp(`${names.source}|not a valid url component`), v === '%FF' ? undefined : 400)
    add(`query ${q.name} repeated`, { path: at(`${q.name}=1&${q.name}=2`) }, names, 400)
  }
  if (queryParams.length > 0) add('query with an unknown parameter', { path: `${validPath}&zzz=1` }, /zzz|querystring/, 400)

  // Tokens.
  if (needsToken) {
    const withAuth = (value: string | undefined): Record<string, string> => ({ ...(validBody === undefined ? {} : json()), ...(value === undefined ? {} : { authorization: value }) })
    add('no token', { headers: withAuth(undefined) }, /needs an API token/, 403)
    add('unknown token', { headers: withAuth(`Bearer bf_${'0'.repeat(64)}`) }, /unknown API token/, 403)
    add('Basic credentials', { headers: withAuth('Basic YWRtaW46YWRtaW4=') }, /needs an API token/, 403)
    add('empty bearer', { headers: withAuth('Bearer ') }, /needs an API token/, 403)
    add('overlong bearer (300 chars)', { headers: withAuth(`Bearer ${'x'.repeat(300)}`) }, /needs an API token/, 403)
    if (!EDGE_ALLOWED.has(op)) add('edge token on an operator route', { headers: withAuth(`Bearer ${edgeToken}`) }, /role edge may not/, 403)
  }

  // JSON bodies.
  if (bodySchema !== undefined && validBody !== undefined) {
    const bodyNames = /\bbody\b|JSON|content-type/i
    add('body not JSON', { body: '{"a":' }, bodyNames, 400)
    add('body single-quoted pseudo-JSON', { body: "{'a':1}" }, bodyNames, 400)
    add('empty body with a JSON content-type', { body: '' }, bodyNames, 400)
    add('no body, no content-type', { body: undefined, headers: needsToken ? admin() : {} }, /\bbody\b/, 400)
    for (const [text, why] of [['[]', 'an array'], ['7', 'a number'], ['null', 'null'], ['"edge"', 'a string'], ['true', 'a boolean']]) add(`body is ${why}`, { body: text }, /\bbody\b/, 400)
    add('body nested 200,000 arrays deep', { body: deepArray(200_000) }, /\bbody\b|JSON|nest|depth/i, 400)
    add('body nested 100,000 objects deep', { body: deepObject(100_000) }, /\bbody\b|JSON|nest|depth|Unrecognized/i, 400)
    add('body over the 1 MiB limit', { body: JSON.stringify({ ...validBody, pad: 'x'.repeat(BODY_LIMIT) }) }, /too large|limit/i, 413)
    add('body with an unknown field', { body: JSON.stringify({ ...validBody, zzz: 1 }) }, /zzz/, 400)
    add('body with __proto__', { body: `{"__proto__":{"admin":true},${validText?.slice(1) ?? ''}` }, /__proto__|prototype|body/i, 400)
    add('body with constructor.prototype', { body: `{"constructor":{"prototype":{"admin":true}},${validText?.slice(1) ?? ''}` }, /constructor|prototype|body/i, 400)
    for (const field of bodySchema.required ?? []) {
      const { [field]: _dropped, ...rest } = validBody
      add(`body.${field} missing`, { body: JSON.stringify(rest) }, new RegExp(`body\\.${field}\\b`), 400)
    }
    for (const [field, prop] of Object.entries(bodySchema.properties ?? {})) {
      for (const w of wrongValues(prop)) add(`body.${field} ${w.why}`, { body: JSON.stringify({ ...validBody, [field]: w.value }) }, new RegExp(`body\\.${field}\\b`), 400)
    }
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'multipart/form-data; boundary=x', 'application/json; charset=utf-16']) {
      add(`content-type ${type}`, { headers: { ...(needsToken ? admin() : {}), 'content-type': type } }, /media type|content-type|\bbody\b|charset|multipart/i)
    }
  }

  // The multipart upload.
  if (MULTIPART.has(op)) {
    const up = (body: string | Buffer, type = MULTIPART_TYPE): Partial<Req> => ({ body, headers: { ...admin(), 'content-type': type } })
    add('JSON instead of multipart', up('{}', 'application/json'), /multipart/, 400)
    add('text instead of multipart', up('model', 'text/plain'), /multipart/, 400)
    add('no body, no content-type', { body: undefined, headers: admin() }, /multipart/, 400)
    add('multipart without a boundary', up('abc', 'multipart/form-data'), /multipart/, 400)
    add('truncated multipart', up('--fuzzb\r\nContent-Disposition: form-data; name="file"; filename="a.onnx"\r\n\r\nabc'), /multipart/, 400)
    add('multipart with no parts', up('--fuzzb--\r\n'), /no files/, 400)
    add('multipart text field', up(multipartBody([{ name: 'note', bytes: 'hello' }])), /form field/, 400)
    add('file named ../model.json', up(multipartBody([{ name: 'f', filename: '../model.json', bytes: '{}' }])), /not a safe relative path/, 400)
    add('file named with a control character', up(multipartBody([{ name: 'f', filename: 'm\u0001.onnx', bytes: 'x' }])), /not a safe relative path/, 400)
    add('file named 300 chars', up(multipartBody([{ name: 'f', filename: `${'a'.repeat(300)}.onnx`, bytes: 'x' }])), /a{20}|path|name/, 400)
    add('file sent twice', up(multipartBody([{ name: 'f', filename: 'a.onnx', bytes: 'x' }, { name: 'f', filename: 'a.onnx', bytes: 'x' }])), /sent twice/, 400)
    add('garbage .onnx', up(multipartBody([{ name: 'f', filename: 'm.onnx', bytes: Buffer.from(Array.from({ length: 512 }, () => Math.floor(rand() * 256))) }])), /onnx|model|protobuf|truncated/i)
    add('model.json that is not JSON', up(multipartBody([{ name: 'f', filename: 'model.json', bytes: '{"modelTopology":' }])), /model\.json|JSON/i)
    add('model.json of the wrong shape', up(multipartBody([{ name: 'f', filename: 'model.json', bytes: '[1,2,3]' }])), /model\.json|model|topology|weights/i)
    add('file over the upload limit', up(multipartBody([{ name: 'f', filename: 'big.onnx', bytes: Buffer.alloc(MAX_UPLOAD + 1) }])), /limit|large/i, 413)
    add('300 files (limit 256)', up(multipartBody(Array.from({ length: 300 }, (_, i) => ({ name: 'f', filename: `w${i}.bin`, bytes: 'x' })))), /files|limit|parts|too many/i)
  }

  // A method the path does not have.
  const methods = Object.keys(doc.paths[path] ?? {})
  if (methods[0] === method) {
    const other = ['delete', 'patch'].find(m => !methods.includes(m)) as string
    add(`method ${other.toUpperCase()}`, { method: other.toUpperCase() }, /Route \w+:\/\S* not found/, 404)
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// State: what a malformed request must not change.

async function state (): Promise<Record<string, unknown>> {
  const get = async (path: string, headers: Record<string, string> = {}): Promise<string> => {
    const a = await send({ method: 'GET', path, headers })
    if (a.status !== 200) throw new Error(`GET ${path}: ${a.status} ${a.text}`)
    return a.text
  }
  const db = new DatabaseSync(join(root, 'c', 'coordinator.sqlite'), { readOnly: true })
  const tables: Record<string, string> = {}
  try {
    for (const { name } of db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>) {
      // Every row, in a fixed order (some tables have no rowid).
      const rows = db.prepare(`SELECT * FROM "${name}"`).all().map(r => JSON.stringify(r, (_k, v: unknown) => v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)).sort()
      tables[name] = `${rows.length} rows, sha256 ${createHash('sha256').update(rows.join('\n')).digest('hex')}`
    }
  } finally {
    db.close()
  }
  let blockFiles = 0
  for (const fan of await readdir(join(root, 'c', 'blocks'))) blockFiles += (await readdir(join(root, 'c', 'blocks', fan))).length
  return {
    models: JSON.parse(await get('/v1/models')),
    versions: JSON.parse(await get('/v1/models/dense/versions')),
    channels: JSON.parse(await get('/v1/models/dense/channels')),
    rounds: JSON.parse(await get('/v1/models/dense/rounds', admin())),
    checkpoint: await get('/ledger/checkpoint'),
    tables,
    blockFiles
  }
}

// ---------------------------------------------------------------------------------------------

let doc: OpenApi
let before: Record<string, unknown>

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-api-fuzz-'))
  c = await createCoordinator({ dataDir: join(root, 'c'), port: 0, maxUploadBytes: MAX_UPLOAD })
  base = await c.start()
  await c.ingest('dense', await denseModelFiles(8, [['a', 4, 1], ['b', 2, 2]]))
  await c.ingest('dense', await denseModelFiles(8, [['a', 4, 3], ['b', 2, 4]]))
  edgeToken = await c.createToken('edge')
  const manifest = await send({ method: 'GET', path: '/v1/models/dense/versions/1/manifest' })
  blockCid = (manifest.json as { manifest: { blocks: Array<{ cid: string }> } }).manifest.blocks[0]?.cid as string
  const canary = await send({ method: 'PUT', path: '/v1/models/dense/channels/canary', headers: { ...admin(), ...json() }, body: JSON.stringify({ version: 1, rollout: 0.25 }) })
  expect(canary.status, canary.text).toBe(200)
  doc = (await send({ method: 'GET', path: '/openapi.json' })).json as OpenApi
}, 60_000)

afterAll(async () => {
  await c?.stop()
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

describe('the coordinator API under malformed requests', () => {
  it('has a valid request for every operation in its OpenAPI document (so each fault below is the only one)', async () => {
    expect(doc.openapi).toMatch(/^3\./)
    // What a valid request is answered: 2xx, or the 4xx/503 its real state calls for (the round
    // id is well formed but unknown; a round needs clients, and there are none).
    const expected: Record<string, number> = { 'GET /v1/p2p': 404, 'GET /v1/rounds/{id}': 404, 'POST /v1/rounds': 503 }
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const method of Object.keys(methods)) {
        const op = `${method.toUpperCase()} ${path}`
        const cases = casesFor(doc, path, method)
        expect(cases.length, op).toBeGreaterThan(0)
        // Valid uploads and token creation change state; their faults are checked against the state below.
        if (MULTIPART.has(op) || op === 'POST /v1/tokens') continue
        const first = cases[0] as Case
        const valid = cases.find(x => x.fault.startsWith('method '))
        const operation = methods[method] as Operation
        const query = (operation.parameters ?? []).filter(p => p.in === 'query' && (p.required === true || p.name === 'limit')).map(p => `${p.name}=${validParams()[p.name] ?? ''}`).join('&')
        const target = fill(path, validParams()) + (query === '' ? '' : `?${query}`)
        const body = VALID_BODIES[op]
        const a = await send({ method: method.toUpperCase(), path: target, headers: { ...((operation.security ?? []).length > 0 ? admin() : {}), ...(body === undefined ? {} : json()) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
        expect(a.status, `${op} (valid request ${target}): ${a.text.slice(0, 300)}`).toBe(expected[op] ?? 200)
        void first
        void valid
      }
    }
  })

  it('answers each with a prompt 4xx whose message names what is wrong, and changes nothing', async () => {
    before = await state()
    const cases = Object.entries(doc.paths).flatMap(([path, methods]) => Object.keys(methods).flatMap(method => casesFor(doc, path, method)))
    const failures: string[] = []
    const log: string[] = []
    for (const x of cases) {
      let a: Answer
      try {
        a = await send(x)
      } catch (err) {
        failures.push(`${x.op} — ${x.fault}: no answer (${(err as Error).name}: ${(err as Error).message})`)
        continue
      }
      const body = a.json as { error?: unknown, message?: unknown } | undefined
      const message = typeof body?.message === 'string' ? body.message : ''
      log.push(`${a.status} ${a.ms}ms ${x.op} — ${x.fault} → ${a.text.slice(0, 200)}`)
      const wrong: string[] = []
      if (a.status < 400 || a.status > 499) wrong.push(`status ${a.status}, want 4xx`)
      else if (x.status !== undefined && a.status !== x.status) wrong.push(`status ${a.status}, want ${x.status}`)
      if (!a.contentType.startsWith('application/json')) wrong.push(`content-type "${a.contentType}"`)
      if (typeof body?.error !== 'string' || body.error === '') wrong.push('no error name')
      if (message.trim() === '') wrong.push('no message')
      else if (message === STATUS_CODES[a.status]) wrong.push(`generic message "${message}"`)
      else if (!x.names.test(message)) wrong.push(`message does not name ${String(x.names)}`)
      if (wrong.length > 0) failures.push(`${x.op} — ${x.fault}: ${wrong.join('; ')} — ${a.status} ${a.text.slice(0, 300)}`)
    }
    if (process.env.FUZZ_LOG !== undefined) {
      const { writeFile } = await import('node:fs/promises')
      await writeFile(process.env.FUZZ_LOG, `${cases.length} cases\n${log.join('\n')}\n\nFAILURES\n${failures.join('\n')}\n`)
    }
    expect(failures).toEqual([])
  })

  it('still serves valid requests afterwards, with its state unchanged', async () => {
    expect(before).toBeDefined()
    expect(await state()).toEqual(before)
    const versions = await send({ method: 'GET', path: '/v1/models/dense/versions' })
    expect((versions.json as { versions: Array<{ version: number }> }).versions.map(v => v.version)).toEqual([1, 2])
  })
})
