/**
 * The coordinator's HTTP API on fastify. Every parameter, query and body is declared with the
 * zod schemas of shared/client/api-schemas.ts (validated on the way in, published at
 * `/openapi.json` by @fastify/swagger). Blocks and shards are immutable and served with
 * long-lived cache headers and their CID as ETag.
 */
import type { IncomingMessage, ServerOptions } from 'node:http'
import { Readable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import cors from '@fastify/cors'
import fresh from 'fresh'
import { corsOrigins } from './cors.ts'
import { refuseUnknownRoutes } from './lifecycle.ts'
import multipart from '@fastify/multipart'
import swagger from '@fastify/swagger'
import { withOpenAnswers, withRawAnswers, withShapeRefusals } from './openapi-raw.ts'
import { jsonSchemaTransform, serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { LRUCache } from 'lru-cache'
import type { ModelFile } from '../../shared/model/types.ts'
import {
  coordinatorInfoSchema, ingestResultSchema, MAX_ACCESS_UNITS, keyRequestSchema, keyResponseSchema, modelListSchema,
  modelNameSchema, versionListSchema, versionParamSchema, type IngestResult
} from '../../shared/client/api-schemas.ts'
import { accessPairs } from '../../shared/client/access-pairs.ts'
import { signedManifestSchema, type Manifest, type SignedManifest } from '../../shared/manifest/schema.ts'
import { parseCid } from '../../shared/crypto/cid.ts'
import { decodeBase64 } from '../../shared/crypto/bytes.ts'
import { wrapKeys } from '../../shared/crypto/wrap.ts'
import { AccessDeniedError, BusyError, InvalidInputError, NotFoundError, UnavailableError } from '../../shared/errors/errors.ts'
import { signedManifestOf, type Repository, type VersionRow } from '../store/repository.ts'
import type { BlockFiles } from '../store/block-files.ts'
import type { Identity } from '../keys/identity.ts'
import type { IngestOptions } from '../ingest/ingest.ts'
import { BUSY_RETRY_MS, MAX_PATH_PARAM_CHARS, MAX_UPLOAD_FILES, SERVE_TIMEOUT_MS } from '../constants.ts'
import type { AnswerAdmission } from '../answers.ts'
import { authenticate, authenticateAgain, callerCheck, mayRead, mayUseModel, needsToken } from './auth.ts'
import { BODY_REFUSALS, clientErrorHandler, errorHandler, refusals, WRITE_REFUSALS } from './errors.ts'
import { receiveFiles, withIngestBody } from './uploads.ts'
import { useJsonBodyParser } from './json-body.ts'

export interface ServerDeps {
  repo: Repository
  files: BlockFiles
  identity: Identity
  ingest: (name: string, files: ModelFile[], options?: IngestOptions) => Promise<IngestResult>
  erasure: { k: number, m: number }
  maxUploadBytes: number
  /** true: fastify's logger; 'errors': server errors (5xx) only, to stderr (the CLI's); default none. */
  logger?: boolean | 'errors'
  /** Counts the bytes of every block or shard answered over HTTP. */
  onServed?: (bytes: number) => void
  /** Admits and paces block and shard bodies (the coordinator's answer budget and upload cap, shared with its libp2p node). */
  answers?: AnswerAdmission
  /** Longest a block or shard answer may take to be read, from its admission; default SERVE_TIMEOUT_MS. */
  answerDeadlineMs?: number
  /** Called for a block request answered 503 "busy" (no room in the answer budget). */
  onBusy?: () => void
  /**
   * Web origins whose pages may call this API (CORS), `*` for any: browser runtimes are served
   * from their own origin. None by default. Tokens travel in the Authorization header, never
   * in cookies, so no credentials are allowed and `*` exposes nothing a token does not.
   */
  corsOrigins?: string[]
  /** The coordinator's libp2p node, when it runs one: where runtimes bootstrap from. */
  p2p?: () => { peerId: string, addresses: string[] } | undefined
}

const modelParams = z.object({ name: modelNameSchema })
const versionParams = z.object({ name: modelNameSchema, version: versionParamSchema })
const errors = refusals()
/** Chunk size of a paced block body. */
const PACED_CHUNK = 64 * 1024
/** Ingest uploads received at once (each buffered whole, up to the upload limit). */
const INGEST_UPLOADS = 2
/** Versions whose blocks the keys route keeps parsed (a few current versions are asked for by every runtime). */
const KEYED_BLOCKS_KEPT = 16

/** What the keys route reads of a version's manifest. */
interface KeyedBlocks {
  model: string
  version: number
  blocks: Array<Pick<Manifest['blocks'][number], 'cid' | 'keyId' | 'access'>>
}

export async function buildServer (deps: ServerDeps): Promise<FastifyInstance> {
  let receiving = 0
  const app = Fastify({
    logger: deps.logger === 'errors' ? { level: 'error', stream: process.stderr } : deps.logger ?? false,
    bodyLimit: 1 << 20,
    routerOptions: { maxParamLength: MAX_PATH_PARAM_CHARS },
    requestTimeout: 600_000,
    connectionTimeout: 600_000,
    // Only WebSocket upgrades go to the rounds hub's 'upgrade' listener: any other Upgrade
    // offer (h2c from `curl --http2`, a proxy's) is an ordinary request, answered as one.
    http: { shouldUpgradeCallback: (req: IncomingMessage) => /\bwebsocket\b/i.test(req.headers.upgrade ?? '') } as ServerOptions,
    clientErrorHandler,
    // A URL that is not one (bad percent-encoding) in the API's shape; others (414 for a path
    // parameter past the router's bound) keep fastify's status.
    frameworkErrors: (err, req, reply) => { errorHandler(err.code === 'FST_ERR_BAD_URL' ? new InvalidInputError(err.message, { cause: err }) : err, req, reply) }
  })
  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)
  app.setErrorHandler(errorHandler)
  // Answers given while the server closes end their connection: a keep-alive connection whose
  // request was under way when close() began was held open to its 72 s idle timeout, and the
  // coordinator with it, data dir lock included (review 46f: a SIGTERM took 70 s).
  let closing = false
  app.addHook('preClose', async () => { closing = true })
  app.addHook('onSend', async (req, reply) => {
    if (closing) void reply.header('connection', 'close')
    // An answer to a caller with a token is that caller's (a new token, its data keys, a token
    // list): no cache keeps it, unless the route said otherwise (immutable blocks; review 49b).
    if (req.headers.authorization !== undefined && !reply.hasHeader('cache-control')) void reply.header('cache-control', 'no-store')
  })
  useJsonBodyParser(app)
  await app.register(swagger, {
    openapi: {
      info: { title: 'blockfed coordinator', description: 'Models as sealed semantic blocks: ingest, manifests, blocks, data keys.', version: '1' },
      components: { securitySchemes: { token: { type: 'http', scheme: 'bearer' } } }
    },
    transform: jsonSchemaTransform,
    transformObject: doc => 'openapiObject' in doc ? withOpenAnswers(withShapeRefusals(withRawAnswers(withIngestBody(doc.openapiObject, deps.maxUploadBytes)), MAX_PATH_PARAM_CHARS)) : doc.swaggerObject
  })
  if ((deps.corsOrigins ?? []).length > 0) {
    const origins = corsOrigins(deps.corsOrigins as string[])
    await app.register(cors, {
      origin: origins.includes('*') ? '*' : origins,
      // PUT: release channels (ledger-routes.ts) are set from an operator's page too; DELETE revokes tokens.
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'],
      allowedHeaders: ['authorization', 'content-type', 'if-none-match'],
      exposedHeaders: ['retry-after', 'content-length', 'etag', 'www-authenticate'],
      maxAge: 600
    })
  }
  // Fastify's own answers for an unknown route or an unparsable URL, in the API's error shape;
  // after CORS's hook, so that a page can read the 404 (review 53c).
  refuseUnknownRoutes(app)
  // Routes that need a token check it before their input is read: a caller without one learns
  // nothing of what a valid body looks like (each handler still checks what its role may do).
  // Added after CORS's own onRequest hook, so that a refusal still carries its CORS headers.
  app.addHook('onRequest', async req => {
    if (req.routeOptions.schema?.security !== undefined) await authenticate(req, deps.repo)
  })
  // And again once the body is in (up to the request timeout later): a token revoked meanwhile
  // opens nothing (review 49e: a revoked admin token, its body trickled, minted a new admin token).
  app.addHook('preHandler', async req => {
    if (req.routeOptions.schema?.security !== undefined) await authenticateAgain(req, deps.repo)
  })
  await app.register(multipart, {
    // preservePath: a weight file may sit in a folder (model.json names "sub/w.bin"); without it
    // busboy cuts every name to its last segment, and the name check below would see no folders.
    preservePath: true,
    limits: { fileSize: deps.maxUploadBytes, files: MAX_UPLOAD_FILES, fields: 0, parts: MAX_UPLOAD_FILES, headerPairs: 200 }
  })

  const api = app.withTypeProvider<ZodTypeProvider>()
  const rowOf = (name: string, version: number | 'latest'): VersionRow => {
    const row = version === 'latest' ? deps.repo.latest(name) : deps.repo.version(name, version)
    if (row === undefined) throw new NotFoundError(version === 'latest' ? `no model named ${name}` : `model ${name} has no version ${version}`)
    return row
  }

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  api.get('/v1/coordinator', { schema: { operationId: 'getCoordinator', summary: 'Coordinator identity: the key that signs manifests', response: { 200: coordinatorInfoSchema } } }, async () => ({
    name: 'blockfed-coordinator' as const, version: '1', publicKey: deps.identity.publicKeyHex, keyId: deps.identity.keyId, erasure: deps.erasure
  }))

  api.get('/v1/p2p', {
    schema: { operationId: 'getP2p', summary: 'The coordinator\'s libp2p node: peer id and bootstrap addresses', response: { 200: z.object({ peerId: z.string(), addresses: z.array(z.string()) }), ...errors } }
  }, async () => {
    const info = deps.p2p?.()
    if (info === undefined) throw new NotFoundError('this coordinator runs no libp2p node (started without p2p)')
    return info
  })

  api.get('/v1/models', { schema: { operationId: 'listModels', summary: 'List models', response: { 200: modelListSchema } } }, async () => ({
    models: deps.repo.models().map(m => ({ name: m.name, latest: m.latest, versions: m.versions, format: m.format, createdAt: m.created_at }))
  }))

  api.get('/v1/models/:name/versions', { schema: { operationId: 'listVersions', summary: 'List a model\'s versions', params: modelParams, response: { 200: versionListSchema, ...errors } } }, async req => {
    const rows = deps.repo.versions(req.params.name)
    if (rows.length === 0) throw new NotFoundError(`no model named ${req.params.name}`)
    return {
      model: req.params.name,
      versions: rows.map(r => ({ version: r.version, parent: r.parent, manifestCid: r.manifest_cid, createdAt: r.created_at, blocks: r.blocks, weightBytes: r.weight_bytes, round: r.round, ledgerIndex: r.ledger_index }))
    }
  })

  api.get('/v1/models/:name/versions/:version/manifest', {
    schema: { operationId: 'getManifest', summary: 'The signed manifest of a version (`latest` allowed)', params: versionParams, response: { 200: signedManifestSchema, ...errors } }
  }, async (req, reply) => {
    const row = rowOf(req.params.name, req.params.version)
    // A numbered version never changes; `latest` does.
    void reply.header('cache-control', req.params.version === 'latest' ? 'no-cache' : 'public, max-age=31536000, immutable')
    // The stored text as is (checked when it was signed): parsing it, then checking and writing
    // it again through the response schema, held the event loop 2.5 s for a 12 MB manifest, on a
    // route without a token. fastify sends a string of a JSON content type without serialising it
    // (the cast: the typed reply expects the parsed value the schema describes).
    return await reply.type('application/json; charset=utf-8').send(row.signed_manifest as unknown as SignedManifest)
  })

  /**
   * What the keys route reads of a version (its blocks' CIDs, key IDs and access), by manifest
   * CID: a version's manifest never changes, and parsing a 12 MB one took ≈ 0.5 s per request.
   */
  const keyedBlocks = new LRUCache<string, KeyedBlocks>({ max: KEYED_BLOCKS_KEPT })
  const keyedBlocksOf = (row: VersionRow): KeyedBlocks => {
    let kept = keyedBlocks.get(row.manifest_cid)
    if (kept === undefined) {
      const { manifest } = signedManifestOf(row)
      kept = { model: manifest.model, version: manifest.version, blocks: manifest.blocks.map(({ cid, keyId, access }) => ({ cid, keyId, access })) }
      keyedBlocks.set(row.manifest_cid, kept)
    }
    return kept
  }

  api.post('/v1/models/:name/versions/:version/keys', {
    schema: {
      operationId: 'getKeys', summary: 'The data keys of a version that the caller\'s role may use, wrapped to the caller\'s X25519 key',
      ...needsToken(), params: versionParams, body: keyRequestSchema, response: { 200: keyResponseSchema, ...refusals(...BODY_REFUSALS, 502) }
    }
  }, async req => {
    const caller = await authenticate(req, deps.repo)
    mayUseModel(caller, req.params.name, 'get the data keys of')
    const manifest = keyedBlocksOf(rowOf(req.params.name, req.params.version))
    const allowed = manifest.blocks.filter(b => mayRead(caller, b.access))
    // A key both allowed and denied (equal bytes at two levels share one sealed block) is given:
    // its bytes are those of a block the caller may read (review 51b: it was in both lists).
    const given = new Set(allowed.map(b => b.keyId))
    const denied = [...new Set(manifest.blocks.filter(b => !given.has(b.keyId)).map(b => b.keyId))]
    // Blocks with equal plaintext share one sealed block and so one key: wrap each key once.
    const blockOfKey = new Map(allowed.map(b => [b.keyId, b.cid]))
    const wrapped = deps.repo.dataKeys([...blockOfKey.keys()])
    const keys = [...blockOfKey].map(([keyId, cid]) => {
      const blob = wrapped.get(keyId)
      if (blob === undefined) throw new NotFoundError(`data key ${keyId} of block ${cid} is missing from the key store`)
      return { keyId, key: deps.identity.unwrapDataKey(keyId, blob), aad: cid }
    })
    let out
    try {
      out = wrapKeys(decodeBase64(req.body.publicKey, 'publicKey', { bytes: 32 }), keys)
    } finally {
      for (const k of keys) k.key.fill(0)
    }
    return {
      model: manifest.model,
      version: manifest.version,
      ephemeralPublicKey: out.ephemeralPublicKey,
      keys: out.keys.map(k => ({ ...k, blockCid: blockOfKey.get(k.keyId) as string })),
      denied
    }
  })

  api.post('/v1/models/:name/ingest', {
    schema: {
      operationId: 'ingestModel', summary: 'Upload a model (multipart: model.json + weight files, or one .onnx + external data) and ingest it as a new version',
      ...needsToken('ingest'),
      params: modelParams,
      querystring: z.strictObject({
        access: z.union([z.string().max(1024), z.array(z.string().max(1024)).max(MAX_ACCESS_UNITS)]).optional()
          .describe('UNIT=LEVEL, repeated: those units\' blocks are sealed at that access level, whose data keys only tokens given the level (and admin and publisher tokens) get; units not named keep their level in the latest version, new ones get default')
      }),
      consumes: ['multipart/form-data'],
      response: { 200: ingestResultSchema, ...refusals(409, ...BODY_REFUSALS, 422, 502, 503, ...WRITE_REFUSALS) }
    }
  }, async req => {
    const caller = await authenticate(req, deps.repo)
    if (!caller.grants.ingest) throw new AccessDeniedError(`role ${caller.role} may not ingest models`)
    mayUseModel(caller, req.params.name, 'ingest')
    const given = req.query.access
    // Checked before the upload is read: a typo costs no upload.
    const access = given === undefined ? undefined : accessPairs(typeof given === 'string' ? [given] : given, 'querystring.access')
    if (!req.isMultipart()) throw new InvalidInputError('ingest expects multipart/form-data with one part per model file')
    // Uploads are buffered whole, then wait in the one-at-a-time ingest queue: an upload holds
    // its slot until its ingest settles, so memory stays within INGEST_UPLOADS × the upload limit.
    if (receiving >= INGEST_UPLOADS) throw new UnavailableError(`${receiving} uploads are being received; retry when one has finished`)
    receiving++
    try {
      const files = await receiveFiles(req.parts(), deps.maxUploadBytes)
      // The upload took its time, and the ingest queue may take more: a token revoked meanwhile
      // publishes nothing (checked again where the version would be recorded).
      const again = await callerCheck(req, deps.repo)
      const allowed = (): void => {
        const now = again()
        if (!now.grants.ingest) throw new AccessDeniedError(`role ${now.role} may not ingest models`)
        mayUseModel(now, req.params.name, 'ingest')
      }
      allowed()
      return await deps.ingest(req.params.name, files, { authorize: allowed, ...(access === undefined ? {} : { access }) })
    } finally {
      receiving--
    }
  })

  api.get('/v1/blocks/:cid', {
    schema: { operationId: 'getBlock', summary: 'A sealed block or shard by its CID (immutable); 503 with Retry-After when the coordinator is sending all it may at once', params: z.object({ cid: z.string().max(200) }), response: refusals(503) }
  }, async (req, reply) => {
    const cid = req.params.cid
    parseCid(cid)
    // Heard before any await: a client that leaves while the file is read gets its 'close' then,
    // and an admission taken after it would never be released (review 53a: with a budget of one
    // answer, every later request was refused busy for the coordinator's life).
    const gone = new AbortController()
    reply.raw.once('close', () => { gone.abort() })
    if (req.raw.socket.destroyed) gone.abort()
    const etag = `"${cid}"`
    // Cacheable for good only once the bytes are there and going out: a 404 or a busy 503 kept
    // by a shared cache under these headers would answer for a year.
    const immutable = (): void => { void reply.header('etag', etag).header('cache-control', 'public, max-age=31536000, immutable') }
    // The ETag is the CID: a revalidation needs only the file to be there, not read and hashed.
    // `fresh` weighs If-None-Match as RFC 9110 §13.1.2 says (lists, weak tags, *): an exact
    // match alone sent a client naming several tags the whole block again (review 47d). Its
    // Cache-Control: no-cache rule is left out: the bytes of a CID never change, and fetch()
    // adds that header to every request carrying If-None-Match.
    const noneMatch = req.headers['if-none-match']
    if (noneMatch !== undefined && fresh({ 'if-none-match': noneMatch }, { etag })) {
      if (!await deps.files.has(cid)) throw new NotFoundError(`no block or shard ${cid}`)
      immutable()
      return await reply.status(304).send(undefined as never)
    }
    const bytes = await deps.files.get(cid)
    // HEAD (fastify answers it with this handler and drops the body) sends nothing: not admitted, not counted as served.
    if (req.method === 'HEAD') {
      immutable()
      return await reply.type('application/octet-stream').send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) as never)
    }
    // Nobody to answer: nothing admitted, sent or counted.
    if (gone.signal.aborted) return reply
    const release = deps.answers === undefined ? () => {} : deps.answers.admit(bytes.length, gone.signal)
    if (release === undefined) {
      deps.onBusy?.()
      throw new BusyError(`${cid}: the coordinator is sending as much as it may at once; retry later`, BUSY_RETRY_MS)
    }
    immutable()
    // A reader that stops, socket open, holds its admission no longer than a libp2p answer may
    // take (pacing included): then its connection is cut and the admission released (review 53a).
    const cut = setTimeout(() => { req.raw.socket.destroy(); gone.abort() }, deps.answerDeadlineMs ?? SERVE_TIMEOUT_MS)
    cut.unref()
    // Released when the answer ends, sent or not (the client may leave mid-body).
    gone.signal.addEventListener('abort', () => { clearTimeout(cut); release() }, { once: true })
    deps.onServed?.(bytes.length)
    void reply.type('application/octet-stream').header('content-length', bytes.length)
    const pace = deps.answers?.pace
    if (pace === undefined) return await reply.send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) as never)
    // Under an upload cap the body goes out in paced chunks; a client that leaves stops it.
    return await reply.send(Readable.from((async function * () {
      for (let at = 0; at < bytes.length; at += PACED_CHUNK) {
        const chunk = bytes.subarray(at, at + PACED_CHUNK)
        await pace(chunk.length, gone.signal)
        yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      }
    })()) as never)
  })

  return app
}
