/**
 * API fuzz: every operation in the coordinator's own `/openapi.json` gets a fixed, seeded set of
 * malformed requests, each one fault on an otherwise valid request: path parameters of the wrong
 * shape (empty, overlong, `..`, non-ASCII, bad escapes, out-of-range numbers, not a CID), bodies
 * that are not JSON or JSON of the wrong type, deep nesting, missing and unknown fields, wrong
 * field types, oversized strings and bodies, wrong content types, missing or bad tokens, bad
 * query values, values out of range for the coordinator's real state, methods a path does not
 * have. Each must be answered within a deadline with a 4xx whose `{ error, message }` body
 * (coordinator/http/errors.ts) names what is wrong. Afterwards the coordinator must still serve,
 * with its state (HTTP views, every database table, the block files) exactly as before.
 *
 * Requests go out raw through node:http, so `..`, bad escapes and stray bytes reach the server
 * unnormalised. Everything generated comes from one seeded generator, reset per operation.
 * Written by a review (stop 23); the five faults it found answered wrongly were fixed with it: a
 * multipart part without a filename (leaked TypeError), unsupported content types ("Unsupported
 * Media Type" alone), a raw non-ASCII byte in the target ("Client Error"), a stale base or
 * unknown unit answered 503 while too few clients were connected, and selection bounds above
 * maxClients never refused.
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
import { MAX_PATH_PARAM_CHARS } from '../../coordinator/constants.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { toBase64 } from '../../shared/crypto/bytes.ts'
import { jsonCid, rawCid } from '../../shared/crypto/cid.ts'
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
let unknownRawCid: string
let unknownJsonCid: string

/** The generator every seeded choice draws from: reset per operation, so each gets the same cases whatever ran before. */
let rand = mulberry32(SEED)
const seedFor = (op: string): number => [...op].reduce((h, ch) => Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0, SEED)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T

interface Answer { status: number, contentType: string, text: string, json: unknown, challenge?: string }
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
async function send (req: Req): Promise<Answer> {
  const { hostname, port } = new URL(base)
  const headers: Record<string, string> = { ...req.headers }
  if (req.body !== undefined) headers['content-length'] = String(Buffer.byteLength(req.body))
  return await new Promise((resolve, reject) => {
    const out = request({ host: hostname, port, method: req.method, path: req.path, headers, agent: false, signal: AbortSignal.timeout(DEADLINE_MS) }, res => {
      const chunks: Buffer[] = []
      res.on('data', (d: Buffer) => chunks.push(d))
      res.on('error', reject)
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json: unknown
        try { json = JSON.parse(text) } catch { json = undefined }
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), text, json, ...(res.headers['www-authenticate'] === undefined ? {} : { challenge: res.headers['www-authenticate'] }) })
      })
    })
    out.on('error', reject)
    out.end(req.body)
  })
}

/** What is wrong with an answer to a malformed request (nothing when it is a 4xx that says what it refused). */
function problems (x: Case, a: Answer): string[] {
  const body = a.json as { error?: unknown, message?: unknown } | undefined
  const message = typeof body?.message === 'string' ? body.message : ''
  const wrong: string[] = []
  if (a.status < 400 || a.status > 499) wrong.push(`status ${a.status}, want 4xx`)
  else if (x.status !== undefined && a.status !== x.status) wrong.push(`status ${a.status}, want ${x.status}`)
  // What a generated client reads: the status is one the operation documents (review 47d), a
  // method the path does not have aside, and a 401 says its scheme (RFC 9110 §11.6.1).
  const [method = '', path = ''] = x.op.split(' ')
  const documented = doc.paths[path]?.[method.toLowerCase()]?.responses ?? {}
  if (x.method === method && !Object.hasOwn(documented, String(a.status))) wrong.push(`status ${a.status} is not among the operation's documented answers (${Object.keys(documented).join(', ')})`)
  if (a.status === 401 && a.challenge?.startsWith('Bearer realm="blockfed"') !== true) wrong.push(`a 401 without its Bearer challenge (WWW-Authenticate: ${a.challenge ?? 'none'})`)
  if (!a.contentType.startsWith('application/json')) wrong.push(`content-type "${a.contentType}"`)
  if (typeof body?.error !== 'string' || body.error === '') wrong.push('no error name')
  if (message.trim() === '') wrong.push('no message')
  else if (message === STATUS_CODES[a.status] || /^(Client Error|Bad Request|Unsupported Media Type)$/.test(message)) wrong.push(`generic message "${message}"`)
  else if (!x.names.test(message)) wrong.push(`message does not name ${String(x.names)}`)
  return wrong
}

const admin = (): Record<string, string> => ({ authorization: `Bearer ${c.adminToken}` })
const json = (): Record<string, string> => ({ 'content-type': 'application/json' })

// ---------------------------------------------------------------------------------------------
// The OpenAPI document, as far as this test reads it.

interface Param { name: string, in: 'path' | 'query', required?: boolean }
interface PropSchema { type?: string, enum?: unknown[], pattern?: string, minLength?: number, maxLength?: number, oneOf?: unknown[], anyOf?: unknown[], nullable?: boolean }
interface BodySchema { properties?: Record<string, PropSchema>, required?: string[] }
interface Operation { parameters?: Param[], requestBody?: { content: Record<string, { schema: BodySchema }> }, security?: unknown[], responses?: Record<string, unknown> }
interface OpenApi { openapi: string, paths: Record<string, Record<string, Operation>> }

/** A valid value of every path and query parameter the API has, by name: real objects where there are some. */
function validParams (): Record<string, string> {
  return { name: 'dense', version: '1', cid: blockCid, id: 'r_00000000000000ff', tokenId: '00000000000000ff', index: '0', channel: 'canary', limit: '5', size: '2', from: '1', to: '2' }
}

/** A valid body of every operation that takes JSON. */
const VALID_BODIES: Record<string, Record<string, unknown>> = {
  'POST /v1/models/{name}/versions/{version}/keys': { publicKey: toBase64(x25519.getPublicKey(new Uint8Array(32).fill(7))) },
  'POST /v1/models/{name}/versions/{version}/verdicts': { clientId: 'ab'.repeat(32), verdict: 'rejected' },
  'POST /v1/tokens': { role: 'edge', label: 'fuzz' },
  'POST /v1/rounds': { model: 'dense', epochs: 1, learningRate: 0.05 },
  'PUT /v1/models/{name}/channels/{channel}': { version: 1, rollout: 0.25 }
}
/** What a valid request is answered, when not 200: the round id is well formed but unknown; a round needs clients, and none are connected; this coordinator runs no libp2p node. */
const VALID_STATUS: Record<string, number> = { 'GET /v1/p2p': 404, 'GET /v1/rounds/{id}': 404, 'POST /v1/rounds': 503 }
/** Operations whose body is not JSON (described in prose only): the ingest upload. */
const MULTIPART = new Set(['POST /v1/models/{name}/ingest'])
/** Operations a valid request of which changes state: checked by their faults only, against the state. */
const WRITES = new Set(['POST /v1/models/{name}/ingest', 'POST /v1/tokens', 'DELETE /v1/tokens/{tokenId}', 'DELETE /v1/models/{name}/channels/{channel}'])
/** Token-guarded operations an edge token may use (it reads the data keys of the default access level). */
const EDGE_ALLOWED = new Set(['POST /v1/models/{name}/versions/{version}/keys', 'POST /v1/models/{name}/versions/{version}/verdicts'])


function fill (template: string, values: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (_m, p: string) => {
    const v = values[p]
    if (v === undefined) throw new Error(`no value for path parameter ${p}: add one to validParams`)
    return v
  })
}

/** The query string of a valid request: every required parameter and `limit`. */
function validQuery (operation: Operation): string {
  const valid = validParams()
  return (operation.parameters ?? []).filter(p => p.in === 'query' && (p.required === true || p.name === 'limit')).map(p => `${p.name}=${valid[p.name] ?? ''}`).join('&')
}

function validRequest (path: string, method: string, operation: Operation): Req {
  const op = `${method.toUpperCase()} ${path}`
  const query = validQuery(operation)
  const body = VALID_BODIES[op]
  return {
    method: method.toUpperCase(),
    path: fill(path, validParams()) + (query === '' ? '' : `?${query}`),
    headers: { ...((operation.security ?? []).length > 0 ? admin() : {}), ...(body === undefined ? {} : json()) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  }
}

// ---------------------------------------------------------------------------------------------
// Faults.

interface Bad { raw: string, why: string, status?: number, names?: RegExp }

/** A string of `n` characters no path parameter accepts (it starts with one none allows), from the seeded generator. */
function junk (n: number): string {
  const alphabet = ['~', '!', '$', '*', '(', ')', ',', ';', '=', '@', ':', '%20', '%22', '%3C', '%7F', '%C3%A9', '%E2%80%AE', '%F0%9F%A4%96', 'A', 'z', '9', '_', '.']
  let s = pick(['~', '!', '%20', '%E2%80%AE'])
  for (let i = 1; i < n; i++) s += pick(alphabet)
  return s
}

/**
 * Bad shapes every path parameter gets. Those the router refuses before any route sees them
 * (overlong, stray bytes, bad escapes) go only to an operation's first parameter.
 */
function commonBad (first: boolean): Bad[] {
  return [
    { raw: '', why: 'empty' },
    { raw: '..', why: '".." (raw)' },
    { raw: '%2e%2e%2F..%2Fcoordinator.sqlite', why: 'encoded path traversal' },
    { raw: '%E6%A8%A1%E5%9E%8B', why: 'non-ASCII (UTF-8 escapes)' },
    { raw: '%00', why: 'NUL' },
    { raw: junk(12), why: 'seeded junk' },
    ...(first
      ? [
          { raw: 'a'.repeat(300), why: 'overlong (300 chars)' },
          // Past the router's own bound (MAX_PATH_PARAM_CHARS) only: it answers a bare 414.
          { raw: 'a'.repeat(MAX_PATH_PARAM_CHARS + 1), why: 'beyond the router bound', names: /exceeding the max param length/, status: 414 },
          // Refused by Node's HTTP parser before any route: it cannot name the parameter.
          { raw: 'mod\u00e9le', why: 'raw Latin-1 byte', names: /not valid HTTP.*percent-encoded/ },
          { raw: '%FF%FE', why: 'invalid UTF-8 escape' },
          { raw: '%zz', why: 'malformed percent-escape' }
        ]
      : [])
  ]
}

/** Bad values specific to each parameter (numbers out of range, near misses of the pattern, unknown objects). */
function specificBad (param: string): Bad[] {
  switch (param) {
    case 'name': return [
      { raw: 'UPPER', why: 'uppercase' }, { raw: 'a'.repeat(65), why: '65 chars (limit 64)' }, { raw: '-dense', why: 'leading dash' }, { raw: 'dense%0A', why: 'trailing newline' }
    ]
    case 'version': return [
      { raw: '0', why: 'zero' }, { raw: '-1', why: 'negative' }, { raw: '1.5', why: 'fraction' }, { raw: 'abc', why: 'not a number' }, { raw: '1e400', why: 'overflows to Infinity' },
      { raw: '99999999999999999999', why: 'beyond 2^53' }, { raw: '9007199254740993', why: '2^53 + 1' }, { raw: 'NaN', why: 'NaN' }, { raw: 'LATEST', why: 'uppercase latest' },
      { raw: '99', why: 'no such version', status: 404, names: /no version 99/ }
    ]
    case 'cid': return [
      { raw: 'not-a-cid', why: 'not a CID' },
      { raw: 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG', why: 'CIDv0' },
      { raw: 'bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi', why: 'dag-pb CIDv1' },
      { raw: blockCid.toUpperCase(), why: 'not canonical (upper case)' },
      { raw: `${blockCid}x`, why: 'real CID plus a character' },
      { raw: 'a'.repeat(150), why: '150 chars' },
      { raw: unknownRawCid, why: 'unknown raw CID', status: 404, names: /no block or shard/ },
      { raw: unknownJsonCid, why: 'unknown json CID', status: 404, names: /no block or shard/ }
    ]
    case 'tokenId': return [
      { raw: '00000000000000f', why: '15 digits' }, { raw: '00000000000000FF', why: 'upper case' }, { raw: 'bf_0000000000000', why: 'a token, not an id' },
      { raw: '0000000000000000', why: 'well formed, no such token', status: 404, names: /no API token has the id/ }
    ]
    case 'id': return [{ raw: 'r_0', why: 'too short' }, { raw: 'R_00000000000000FF', why: 'upper case' }, { raw: 'r_000000000000000g', why: 'non-hex' }]
    case 'index': return [
      { raw: '-1', why: 'negative' }, { raw: '01', why: 'leading zero' }, { raw: '1.5', why: 'fraction' }, { raw: '1e3', why: 'exponent' },
      { raw: '9007199254740993', why: '2^53 + 1' }, { raw: '99999999999999999', why: '17 digits' }, { raw: '999999', why: 'beyond the log', status: 404, names: /no entry 999999/ }
    ]
    case 'channel': return [{ raw: 'beta', why: 'unknown channel' }, { raw: 'STABLE', why: 'upper case' }]
    default: throw new Error(`no bad values for path parameter ${param}: add some to specificBad`)
  }
}

/** Bad values specific to each query parameter, beyond those every one gets. */
function specificBadQuery (param: string): string[] {
  return param === 'limit' ? ['0', '201'] : []
}

/** Requests out of range for the coordinator's real state, per operation (path and query, or body, replaced). */
function outOfRange (op: string): Array<{ fault: string, path?: string, body?: unknown, status: number, names: RegExp }> {
  switch (op) {
    case 'GET /ledger/proof/inclusion': return [
      { fault: 'index not below size', path: '/ledger/proof/inclusion?index=2&size=2', status: 400, names: /index 2/ },
      { fault: 'size beyond the log', path: '/ledger/proof/inclusion?index=0&size=3', status: 400, names: /size 3/ },
      { fault: 'size 0', path: '/ledger/proof/inclusion?index=0&size=0', status: 400, names: /size 0/ }
    ]
    case 'GET /ledger/proof/consistency': return [
      { fault: 'from above to', path: '/ledger/proof/consistency?from=2&to=1', status: 400, names: /from 2/ },
      { fault: 'to beyond the log', path: '/ledger/proof/consistency?from=1&to=3', status: 400, names: /to 3/ }
    ]
    case 'POST /v1/models/{name}/versions/{version}/keys': return [
      { fault: 'unknown model', path: '/v1/models/nosuch/versions/1/keys', status: 404, names: /nosuch/ },
      // 43 base64 characters and "=", but the last one's pad bits are not zero: no 32 bytes have this text.
      { fault: 'public key with non-zero pad bits', body: { publicKey: `${'A'.repeat(42)}B=` }, status: 400, names: /publicKey/ }
    ]
    case 'PUT /v1/models/{name}/channels/{channel}': return [
      { fault: 'unknown model', path: '/v1/models/nosuch/channels/canary', status: 404, names: /nosuch/ },
      { fault: 'no such version', body: { version: 99 }, status: 404, names: /no version 99/ },
      { fault: 'rollout on the stable channel', path: '/v1/models/dense/channels/stable', body: { version: 1, rollout: 0.5 }, status: 400, names: /rollout/ }
    ]
    case 'DELETE /v1/models/{name}/channels/{channel}': return [
      { fault: 'unknown model', path: '/v1/models/nosuch/channels/canary', status: 404, names: /nosuch/ }
    ]
    case 'DELETE /v1/tokens/{tokenId}': return [
      { fault: 'no token has the id', status: 404, names: /no API token has the id 00000000000000ff/ }
    ]
    case 'POST /v1/tokens': return [
      { fault: 'unknown role', body: { role: 'root' }, status: 400, names: /unknown role "root"/ },
      { fault: 'role named like an Object property', body: { role: 'constructor' }, status: 400, names: /unknown role "constructor"/ }
    ]
    case 'POST /v1/rounds': return [
      { fault: 'unknown model', body: { model: 'nosuch' }, status: 404, names: /nosuch/ },
      { fault: 'meanMix without secure aggregation', body: { model: 'dense', secure: { mode: 'none' }, meanMix: { lambda: 0.1, classes: 2, features: 8 } }, status: 400, names: /meanMix/ },
      { fault: 'stale baseVersion (1; the latest is 2)', body: { model: 'dense', baseVersion: 1 }, status: 409, names: /version/ },
      { fault: 'unknown trainable unit', body: { model: 'dense', trainable: ['no-such-unit'] }, status: 400, names: /no-such-unit/ },
      // A typo of a known key is told which key it likely meant (review 40a L16).
      { fault: 'a typo of a key', body: { model: 'dense', epoch: 2 }, status: 400, names: /Unrecognized key: "epoch" \(did you mean "epochs"\?\)/ },
      { fault: 'a typo of a nested key', body: { model: 'dense', selection: { minclients: 2 } }, status: 400, names: /selection.*Unrecognized key: "minclients" \(did you mean "minClients"\?\)/ },
      { fault: 'minClients above maxClients', body: { model: 'dense', selection: { minClients: 5, maxClients: 2 } }, status: 400, names: /minClients|maxClients/ },
      { fault: 'minUploads above maxClients', body: { model: 'dense', selection: { maxClients: 2, minUploads: 5 } }, status: 400, names: /minUploads|maxClients/ },
      // Its ε overflows to Infinity, which the round's JSON metrics store as null (GET would then fail).
      { fault: 'a DP noise multiplier so small ε is infinite', body: { model: 'dense', dp: { noiseMultiplier: 1e-200, clip: 1 } }, status: 400, names: /dp\.noiseMultiplier/ }
    ]
    default: return []
  }
}

/** Wrong values for one body property, by its schema: `n` drawn (seeded) from those its type refuses. */
function wrongValues (prop: PropSchema, n: number): Array<{ value: unknown, why: string }> {
  const constrained = prop.pattern !== undefined || prop.enum !== undefined || prop.minLength !== undefined
  const pools: Record<string, Array<{ value: unknown, why: string }>> = {
    string: [
      { value: 12345, why: 'a number' }, { value: ['x'], why: 'an array' }, { value: { a: 1 }, why: 'an object' },
      ...(constrained ? [{ value: '', why: 'empty' }, { value: '\u{1F916}\u202E', why: 'emoji + RTL override' }] : []),
      ...(constrained || prop.maxLength !== undefined ? [{ value: 'x'.repeat(200_000), why: 'a 200 kB string' }] : [])
    ],
    integer: [{ value: '1', why: 'a numeric string' }, { value: 1.5, why: 'a fraction' }, { value: -1, why: 'negative' }, { value: 2 ** 53 + 2, why: 'beyond 2^53' }, { value: 1e300, why: '1e300' }, { value: true, why: 'a boolean' }],
    number: [{ value: '0.5', why: 'a numeric string' }, { value: -1, why: 'negative' }, { value: 1e300, why: '1e300' }, { value: [], why: 'an array' }, { value: false, why: 'a boolean' }],
    array: [{ value: 'x', why: 'a string' }, { value: [], why: 'empty' }, { value: [1, 2], why: 'numbers' }, { value: Array.from({ length: 10_001 }, () => 'x'), why: '10,001 items' }],
    object: [{ value: 'x', why: 'a string' }, { value: [], why: 'an array' }, { value: { name: 'nope', zzz: 1 }, why: 'unknown variant' }, { value: 7, why: 'a number' }]
  }
  const type = prop.type ?? (prop.oneOf !== undefined || prop.anyOf !== undefined ? 'object' : 'string')
  const pool = [...(pools[type] ?? pools.string as Array<{ value: unknown, why: string }>)]
  if (prop.enum !== undefined) pool.push({ value: 'not-in-enum', why: 'not one of the enum' })
  const out: Array<{ value: unknown, why: string }> = []
  while (out.length < n) out.push(pick(pool.filter(w => !out.includes(w))))
  return out
}

/** A JSON text nested `depth` levels deep. */
const deepArray = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth)
const deepObject = (depth: number): string => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)

/** A multipart/form-data body with boundary `fuzzb`; each part with a content type unless `type` is null. */
function multipartBody (parts: Array<{ name: string, filename?: string, type?: string | null, bytes: string | Buffer }>): Buffer {
  const chunks: Buffer[] = []
  for (const p of parts) {
    const disposition = `form-data; name="${p.name}"${p.filename === undefined ? '' : `; filename="${p.filename}"`}`
    const type = p.type === null ? '' : `Content-Type: ${p.type ?? 'application/octet-stream'}\r\n`
    chunks.push(Buffer.from(`--fuzzb\r\nContent-Disposition: ${disposition}\r\n${type}\r\n`, 'latin1'), Buffer.from(p.bytes), Buffer.from('\r\n'))
  }
  chunks.push(Buffer.from('--fuzzb--\r\n'))
  return Buffer.concat(chunks)
}

/** The malformed requests for one operation. */
function casesFor (doc: OpenApi, path: string, method: string): Case[] {
  const operation = doc.paths[path]?.[method] as Operation
  const op = `${method.toUpperCase()} ${path}`
  rand = mulberry32(seedFor(op))
  const valid = validParams()
  const params = operation.parameters ?? []
  const queryParams = params.filter(p => p.in === 'query')
  const needsToken = (operation.security ?? []).length > 0
  const bodySchema = operation.requestBody?.content['application/json']?.schema
  const validBody = VALID_BODIES[op]
  if (bodySchema !== undefined && validBody === undefined) throw new Error(`${op} takes a JSON body: add a valid one to VALID_BODIES`)
  const query = validQuery(operation)
  const ok = validRequest(path, method, operation)
  const out: Case[] = []
  const add = (fault: string, req: Partial<Req>, names: RegExp, status?: number): void => {
    out.push({ op, fault, method: req.method ?? ok.method, path: req.path ?? ok.path, headers: req.headers ?? ok.headers, body: 'body' in req ? req.body : ok.body, names, ...(status === undefined ? {} : { status }) })
  }
  const tokenHeader = needsToken ? admin() : {}

  // Path parameters, one at a time.
  for (const [i, p] of params.filter(x => x.in === 'path').map(x => x.name).entries()) {
    for (const bad of [...commonBad(i === 0), ...specificBad(p)]) {
      const names = bad.names ?? new RegExp(`(^|\\W)(params\\.)?${p}\\b|not a valid url component`)
      add(`params.${p} ${bad.why}: ${JSON.stringify(bad.raw.slice(0, 40))}`, { path: fill(path, { ...valid, [p]: bad.raw }) + (query === '' ? '' : `?${query}`) }, names, bad.status)
    }
  }

  // Query parameters: missing, malformed, repeated; an unknown one.
  for (const q of queryParams) {
    const others = queryParams.filter(o => o !== q && (o.required === true || o.name === 'limit')).map(o => `${o.name}=${valid[o.name] ?? ''}`)
    const at = (value: string | undefined): string => `${fill(path, valid)}?${[...others, ...(value === undefined ? [] : [value])].join('&')}`
    const names = new RegExp(`querystring\\.${q.name}\\b`)
    if (q.required === true) add(`query ${q.name} missing`, { path: at(undefined) }, names, 400)
    for (const v of ['', '-1', '1.5', 'abc', '9007199254740993', '%00', ...specificBadQuery(q.name)]) add(`query ${q.name}=${JSON.stringify(v)}`, { path: at(`${q.name}=${v}`) }, names, 400)
    add(`query ${q.name} repeated`, { path: at(`${q.name}=1&${q.name}=2`) }, names, 400)
  }

  // Values out of range for the real state.
  for (const r of outOfRange(op)) add(`${r.fault}`, { ...(r.path === undefined ? {} : { path: r.path }), ...(r.body === undefined ? {} : { body: JSON.stringify(r.body) }) }, r.names, r.status)

  // Tokens.
  if (needsToken) {
    const withAuth = (value: string): Record<string, string> => ({ ...(validBody === undefined ? {} : json()), ...(value === '' ? {} : { authorization: value }) })
    add('no token', { headers: withAuth('') }, /needs an API token/,401)
    add('unknown token', { headers: withAuth(`Bearer bf_${'0'.repeat(64)}`) }, /unknown API token/,401)
    add('Basic credentials', { headers: withAuth('Basic YWRtaW46YWRtaW4=') }, /needs an API token/,401)
    add('empty bearer', { headers: withAuth('Bearer ') }, /needs an API token/,401)
    add('overlong bearer (300 chars)', { headers: withAuth(`Bearer ${'x'.repeat(300)}`) }, /needs an API token/,401)
    add('two tokens in one header', { headers: withAuth(`Bearer ${c.adminToken} ${c.adminToken}`) }, /needs an API token/,401)
    if (!EDGE_ALLOWED.has(op)) add('edge token on an operator route', { headers: withAuth(`Bearer ${edgeToken}`) }, /role edge may not/, 403)
    // The token is looked at before the body: without one, a malformed body is not described.
    if (validBody !== undefined) add('no token and a malformed body', { headers: withAuth(''), body: '{"surely": "not this", ' }, /needs an API token/,401)
  }

  // JSON bodies.
  if (bodySchema !== undefined && validBody !== undefined) {
    const text = JSON.stringify(validBody)
    const bodyNames = /\bbody\b|JSON/i
    // Where the syntax breaks, not only that it does (fastify's parser said neither).
    add('body not JSON', { body: '{"a":' }, /body: not valid JSON at line 1, column 6: expected a JSON value/, 400)
    add('body single-quoted pseudo-JSON', { body: "{'a':1}" }, /body: not valid JSON at line 1, column 2: expected a property name in double quotes, found '''/, 400)
    add('body JSON with a trailing comma', { body: `${text.slice(0, -1)},}` }, new RegExp(`body: not valid JSON at line 1, column ${text.length + 1}: expected a property name`), 400)
    add('body in UTF-16', { body: Buffer.from(text, 'utf16le'), headers: { ...tokenHeader, 'content-type': 'application/json; charset=utf-16' } }, bodyNames, 400)
    add('empty body with a JSON content-type', { body: '' }, bodyNames, 400)
    add('no body, no content-type', { body: undefined, headers: tokenHeader }, /\bbody\b/, 400)
    for (const [t, why] of [['[]', 'an array'], ['7', 'a number'], ['null', 'null'], ['"edge"', 'a string'], ['true', 'a boolean']]) add(`body is ${why}`, { body: t }, /\bbody\b/, 400)
    add('body nested 200,000 arrays deep', { body: deepArray(200_000) }, /\bbody\b/, 400)
    add('body nested 100,000 objects deep', { body: deepObject(100_000) }, /\bbody\b/, 400)
    add('body over the 1 MiB limit', { body: JSON.stringify({ ...validBody, pad: 'x'.repeat(BODY_LIMIT) }) }, /too large/i, 413)
    add('body with an unknown field', { body: JSON.stringify({ ...validBody, zzz: 1 }) }, /zzz/, 400)
    add('body with __proto__', { body: `{"__proto__":{"admin":true},${text.slice(1)}` }, /body: a "__proto__" key, or a "constructor" key holding a "prototype", is refused/, 400)
    add('body with __proto__ 300 levels down', { body: `{"a":${'{"a":'.repeat(299)}{"__proto__":{}}${'}'.repeat(299)},${text.slice(1)}` }, /body: a "__proto__" key, or a "constructor" key holding a "prototype", is refused/, 400)
    add('body with constructor.prototype', { body: `{"constructor":{"prototype":{"admin":true}},${text.slice(1)}` }, /body: a "__proto__" key, or a "constructor" key holding a "prototype", is refused/, 400)
    for (const field of bodySchema.required ?? []) {
      const { [field]: _dropped, ...rest } = validBody
      add(`body.${field} missing`, { body: JSON.stringify(rest) }, new RegExp(`body\\.${field}\\b`), 400)
    }
    // Two wrong values a property; one for bodies of many (the round request has twenty).
    const properties = Object.entries(bodySchema.properties ?? {})
    for (const [field, prop] of properties) {
      for (const w of wrongValues(prop, properties.length > 8 ? 1 : 2)) add(`body.${field} ${w.why}`, { body: JSON.stringify({ ...validBody, [field]: w.value }) }, new RegExp(`body\\.${field}\\b`), 400)
    }
    // Every other media type is refused as one (415), text/plain and multipart too (review 47d: 400 "body").
    for (const type of ['text/plain', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'application/xml']) add(`content-type ${type}`, { headers: { ...tokenHeader, 'content-type': type } }, /content.type|media type.*(json|xml|form)/i, 415)
  }

  // The multipart upload (to the real model's name: nothing of it may be kept).
  if (MULTIPART.has(op)) {
    const up = (body: string | Buffer, type = 'multipart/form-data; boundary=fuzzb'): Partial<Req> => ({ body, headers: { ...admin(), 'content-type': type } })
    const file = (filename: string, bytes: string | Buffer): Buffer => multipartBody([{ name: 'f', filename, bytes }])
    add('JSON instead of multipart', up('{}', 'application/json'), /multipart/, 400)
    add('text instead of multipart', up('model', 'text/plain'), /multipart/, 400)
    add('no body, no content-type', { body: undefined, headers: admin() }, /multipart/, 400)
    add('multipart without a boundary', up('abc', 'multipart/form-data'), /multipart/, 400)
    add('truncated multipart', up('--fuzzb\r\nContent-Disposition: form-data; name="file"; filename="a.onnx"\r\n\r\nabc'), /multipart/, 400)
    add('multipart with no parts', up('--fuzzb--\r\n'), /no files/, 400)
    add('multipart text field', up(multipartBody([{ name: 'note', type: null, bytes: 'hello' }])), /form field/, 400)
    add('file part without a filename', up(multipartBody([{ name: 'note', bytes: 'hello' }])), /file ?name|filename/, 400)
    add('file named ../model.json', up(file('../model.json', '{}')), /not a safe relative path/, 400)
    add('file named with a control character', up(file('m\u0001.onnx', 'x')), /not a safe relative path/, 400)
    add('file named in non-UTF-8 bytes', up(file('m\u00ff\u00fe.onnx', 'x')), /not a safe relative path|onnx|model/i)
    add('file named 300 chars', up(file(`${'a'.repeat(300)}.onnx`, 'x')), /not a safe relative path/, 400)
    add('file sent twice', up(multipartBody([{ name: 'f', filename: 'a.onnx', bytes: 'x' }, { name: 'f', filename: 'a.onnx', bytes: 'x' }])), /sent twice/, 400)
    add('garbage .onnx', up(file('m.onnx', Buffer.from(Array.from({ length: 512 }, () => Math.floor(rand() * 256))))), /m\.onnx/, 422)
    add('empty .onnx', up(file('m.onnx', '')), /m\.onnx|empty|ONNX/i)
    add('model.json that is not JSON', up(file('model.json', '{"modelTopology":')), /model\.json/, 422)
    add('model.json of the wrong shape', up(file('model.json', '[1,2,3]')), /model\.json/, 422)
    add('model.json naming a weight file not sent', up(file('model.json', JSON.stringify({ format: 'layers-model', modelTopology: {}, weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'k', shape: [2], dtype: 'float32' }] }] }))), /w\.bin|model\.json/)
    add('unknown file type', up(file('model.txt', 'hello')), /model\.txt|onnx|model\.json/i)
    add('file over the upload limit', up(file('big.onnx', Buffer.alloc(MAX_UPLOAD + 1))), new RegExp(`exceeds the ${MAX_UPLOAD}-byte upload limit`), 413)
    add('files over the upload limit together', up(multipartBody([{ name: 'f', filename: 'a.onnx', bytes: Buffer.alloc(MAX_UPLOAD * 0.6) }, { name: 'f', filename: 'a.bin', bytes: Buffer.alloc(MAX_UPLOAD * 0.6) }])), new RegExp(`upload exceeds the ${MAX_UPLOAD}-byte limit`), 413)
    add('a file of exactly the upload limit, then one byte', up(multipartBody([{ name: 'f', filename: 'a.onnx', bytes: Buffer.alloc(MAX_UPLOAD) }, { name: 'f', filename: 'a.bin', bytes: 'x' }])), new RegExp(`upload exceeds the ${MAX_UPLOAD}-byte limit`), 413)
    add('300 files (limit 256)', up(multipartBody(Array.from({ length: 300 }, (_, i) => ({ name: 'f', filename: `w${i}.bin`, bytes: 'x' })))), /more than 256 files in one upload/, 413)
  }

  // A method the path does not have (once per path).
  const methods = Object.keys(doc.paths[path] ?? {})
  if (methods[0] === method) {
    const other = ['delete', 'patch'].find(m => !methods.includes(m)) as string
    add(`method ${other.toUpperCase()}`, { method: other.toUpperCase() }, /Route \w+:\/\S* not found/, 404)
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// State: what no malformed request may change.

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
      // A token's last use is a record of requests, refused ones included, not state they may not change.
      const rows = db.prepare(`SELECT * FROM "${name}"`).all().map(r => JSON.stringify(r, (k, v: unknown) => k === 'last_used_at' ? undefined : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)).sort()
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
const cases: Case[] = []
let before: Record<string, unknown> | undefined

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-api-fuzz-'))
  c = await createCoordinator({ dataDir: join(root, 'c'), port: 0, maxUploadBytes: MAX_UPLOAD })
  base = await c.start()
  // A model with two versions, an edge token, a canary channel: real objects behind the routes.
  await c.ingest('dense', await denseModelFiles(8, [['a', 4, 1], ['b', 2, 2]]))
  await c.ingest('dense', await denseModelFiles(8, [['a', 4, 3], ['b', 2, 4]]))
  edgeToken = await c.createToken('edge')
  const manifest = await send({ method: 'GET', path: '/v1/models/dense/versions/1/manifest' })
  blockCid = (manifest.json as { manifest: { blocks: Array<{ cid: string }> } }).manifest.blocks[0]?.cid as string
  unknownRawCid = await rawCid(new TextEncoder().encode('api-fuzz'))
  unknownJsonCid = await jsonCid(new TextEncoder().encode('{"api":"fuzz"}'))
  const canary = await send({ method: 'PUT', path: '/v1/models/dense/channels/canary', headers: { ...admin(), ...json() }, body: JSON.stringify({ version: 1, rollout: 0.25 }) })
  expect(canary.status, canary.text).toBe(200)
  doc = (await send({ method: 'GET', path: '/openapi.json' })).json as OpenApi
}, 60_000)

afterAll(async () => {
  await c?.stop()
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

describe('the coordinator API under malformed requests', () => {
  it('has a valid request for every operation in its OpenAPI document, so each fault below is the only one', async () => {
    expect(doc.openapi).toMatch(/^3\./)
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) => Object.keys(methods).map(method => ({ path, method, operation: methods[method] as Operation })))
    expect(operations.length).toBeGreaterThanOrEqual(19)
    for (const { path, method, operation } of operations) {
      const op = `${method.toUpperCase()} ${path}`
      const generated = casesFor(doc, path, method)
      expect(generated.length, op).toBeGreaterThan(0)
      cases.push(...generated)
      if (WRITES.has(op)) continue
      const a = await send(validRequest(path, method, operation))
      expect(a.status, `${op}, valid request: ${a.text.slice(0, 300)}`).toBe(VALID_STATUS[op] ?? 200)
    }
    // Bounded: a few hundred requests.
    expect(cases.length).toBeLessThan(700)
  })

  it('answers each promptly with a 4xx whose message names what is wrong', async () => {
    expect(cases.length).toBeGreaterThan(0)
    before = await state()
    const failures: string[] = []
    for (const x of cases) {
      let wrong: string[]
      let got = ''
      try {
        const a = await send(x)
        wrong = problems(x, a)
        got = `${a.status} ${a.text.slice(0, 300)}`
      } catch (err) {
        wrong = [`no answer within ${DEADLINE_MS} ms or connection dropped (${(err as Error).name}: ${(err as Error).message})`]
      }
      if (wrong.length === 0) continue
      const line = `${x.method} ${x.path.length > 120 ? `${x.path.slice(0, 120)}…` : x.path} (${x.op} — ${x.fault}): ${wrong.join('; ')} — got ${got}`
      failures.push(line)
    }
    expect(failures).toEqual([])
  })

  it('still serves valid requests afterwards, with its state exactly as before', async () => {
    expect(before).toBeDefined()
    expect(await state()).toEqual(before)
    const versions = await send({ method: 'GET', path: '/v1/models/dense/versions' })
    expect((versions.json as { versions: Array<{ version: number }> }).versions.map(v => v.version)).toEqual([1, 2])
    const keys = await send({ method: 'POST', path: '/v1/models/dense/versions/latest/keys', headers: { authorization: `Bearer ${edgeToken}`, ...json() }, body: JSON.stringify(VALID_BODIES['POST /v1/models/{name}/versions/{version}/keys']) })
    expect(keys.status, keys.text).toBe(200)
  })

  it('spells numbers in URLs one way only, takes the Bearer scheme in any case, and refuses unknown query parameters', async () => {
    // A version or count has one spelling ("01", "1e0" or "0x1" meaning 1 would make two URLs
    // of one immutable manifest); RFC 9110 §11.1: the auth scheme is case-insensitive.
    const manifest = (await send({ method: 'GET', path: '/v1/models/dense/versions/1/manifest' })).text
    const rounds = (await send({ method: 'GET', path: '/v1/models/dense/rounds?limit=5', headers: admin() })).text
    const refused: Array<{ req: Req, names: RegExp }> = [
      ...['01', '1.0', '1e0', '0x1', '+1', '%201', '1%20'].map(v => ({ req: { method: 'GET', path: `/v1/models/dense/versions/${v}/manifest` }, names: /params\.version/ })),
      ...['05', '5.0', '0x5', '%205', '0', '1001'].map(v => ({ req: { method: 'GET', path: `/v1/models/dense/rounds?limit=${v}`, headers: admin() }, names: /querystring\.limit/ })),
      { req: { method: 'GET', path: '/v1/models/dense/rounds?limit=5&zzz=1', headers: admin() }, names: /zzz/ }
    ]
    const wrong: string[] = []
    for (const { req, names } of refused) {
      const a = await send(req)
      const problem = problems({ ...req, op: '', fault: '', names, status: 400 }, a)
      if (problem.length > 0) wrong.push(`${req.method} ${req.path}: ${problem.join('; ')} — got ${a.status} ${a.text.slice(0, 200)}`)
    }
    expect(wrong).toEqual([])
    for (const scheme of ['bearer', 'BEARER', 'Bearer  ']) {
      const a = await send({ method: 'GET', path: '/v1/models/dense/rounds?limit=5', headers: { authorization: `${scheme} ${c.adminToken}` } })
      expect(a.status, scheme).toBe(200)
      expect(a.text).toBe(rounds)
    }
    expect((await send({ method: 'GET', path: '/v1/models/dense/versions/latest/manifest' })).status).toBe(200)
    expect(manifest).toContain('"version":1')
    // A model with nothing behind its name: 404 as on its other routes, not an empty list (review 38c).
    const none = await send({ method: 'GET', path: '/v1/models/nothing-here/rounds', headers: admin() })
    expect([none.status, JSON.parse(none.text)]).toEqual([404, { error: 'NotFoundError', message: 'no model named nothing-here' }])
  })
})
