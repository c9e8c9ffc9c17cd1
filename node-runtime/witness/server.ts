/**
 * A transparency-log witness over HTTP (c2sp.org/tlog-witness) on fastify:
 *   POST /add-checkpoint            → 200 cosignature line(s), or 400/403/404/409/422 (witness.ts)
 *   GET  /<sha256(origin)>/checkpoint → the latest cosigned checkpoint (the monitoring API)
 * The submission and monitoring prefixes are both the server root. Bodies are raw bytes of at
 * most 64 KiB that must be UTF-8; every request has a deadline; a refusal never stops the server.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import Fastify, { type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify'
import { ed25519 } from '@noble/curves/ed25519.js'
import { utf8 } from '../../shared/crypto/bytes.ts'
import { BlockfedError, InvalidConfigError, InvalidInputError } from '../../shared/errors/errors.ts'
import { cosignatureSigner, witnessVerifierKey } from '../../shared/ledger/cosignature.ts'
import { checkKeyName } from '../../shared/ledger/note.ts'
import {
  DEFAULT_WITNESS_HOST, DEFAULT_WITNESS_PORT, WITNESS_BODY_LIMIT, WITNESS_DB_FILE, WITNESS_KEY_FILE, WITNESS_REQUEST_TIMEOUT_MS
} from '../../shared/ledger/witness/constants.ts'
import { WitnessConflictError } from '../../shared/ledger/witness/errors.ts'
import { removeStaleTemporaries } from '../atomic-file.ts'
import { loadOrCreateWitnessKey } from './key.ts'
import { openWitnessStore } from './store.ts'
import { witnessCore, type WitnessLog } from './witness.ts'

export interface WitnessOptions {
  /** Holds the witness key (`witness.ed25519`, 0600) and its state (`witness.sqlite`). */
  dataDir: string
  /** The witness's key name, e.g. `witness.example/w1`. */
  name: string
  /** The logs it cosigns for. */
  logs: WitnessLog[]
  host?: string
  port?: number
  /** POSIX seconds for cosignature timestamps (default: the system clock); for tests. */
  now?: () => number
  logger?: boolean
}

export interface Witness {
  /** Base URL: the submission and monitoring prefix. */
  url: string
  /** The witness's cosignature/v1 verifier key, for logs and clients to trust. */
  vkey: string
  name: string
  /** Stops listening and closes the state file; safe to call twice. */
  close: () => Promise<void>
}

/**
 * Starts a witness: creates or loads its key, opens its state and listens.
 * @example
 *   const w = await createWitness({ dataDir, name: 'witness.example/w1', logs: [{ origin, vkey }] })
 *   const lines = await addCheckpoint(w.url, { old: 0, proof: [], note })
 */
export async function createWitness (options: WitnessOptions): Promise<Witness> {
  try {
    checkKeyName(options.name, 'name')
  } catch (err) {
    throw new InvalidConfigError((err as Error).message, { cause: err })
  }
  if (typeof options.dataDir !== 'string' || options.dataDir === '') throw new InvalidConfigError('dataDir: must be a directory path')
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 })
  // A crash between its key's write and link left a copy of the key.
  await removeStaleTemporaries([options.dataDir])
  const secret = await loadOrCreateWitnessKey(join(options.dataDir, WITNESS_KEY_FILE))
  const cosigner = cosignatureSigner(options.name, secret, options.now)
  const vkey = witnessVerifierKey(options.name, ed25519.getPublicKey(secret))
  secret.fill(0)
  const store = openWitnessStore(join(options.dataDir, WITNESS_DB_FILE))
  let core
  try {
    core = witnessCore({ store, cosigner, logs: options.logs })
  } catch (err) {
    store.close()
    throw err
  }

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: WITNESS_BODY_LIMIT,
    requestTimeout: WITNESS_REQUEST_TIMEOUT_MS,
    connectionTimeout: WITNESS_REQUEST_TIMEOUT_MS,
    keepAliveTimeout: 5_000
  })
  // The protocol names no content type: take any (or none) as raw bytes.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: WITNESS_BODY_LIMIT }, (_req, body, done) => { done(null, body) })
  app.setErrorHandler(witnessErrorHandler)

  app.post('/add-checkpoint', async (req, reply) => {
    const lines = core.addCheckpoint(bodyText(req.body))
    return await reply.type('text/plain; charset=utf-8').send(lines)
  })
  app.route({
    method: ['GET', 'PUT', 'DELETE', 'PATCH'],
    url: '/add-checkpoint',
    handler: async (_req, reply) => await reply.status(405).header('allow', 'POST').type('text/plain; charset=utf-8').send('add-checkpoint takes POST\n')
  })
  app.get<{ Params: { hash: string } }>('/:hash/checkpoint', async (req, reply) => {
    const note = /^[0-9a-f]{64}$/.test(req.params.hash) ? core.checkpoint(req.params.hash) : undefined
    if (note === undefined) return await reply.status(404).type('text/plain; charset=utf-8').send('no checkpoint cosigned for that origin hash\n')
    return await reply.type('text/plain; charset=utf-8').header('cache-control', 'no-cache').send(note)
  })

  try {
    await app.listen({ host: options.host ?? DEFAULT_WITNESS_HOST, port: options.port ?? DEFAULT_WITNESS_PORT })
  } catch (err) {
    store.close()
    throw err
  }
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : options.port
  const host = options.host ?? DEFAULT_WITNESS_HOST
  let closed: Promise<void> | undefined
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    vkey,
    name: options.name,
    close: async () => {
      closed ??= app.close().finally(() => { store.close() })
      await closed
    }
  }
}

function bodyText (body: unknown): string {
  if (!(body instanceof Uint8Array)) throw new InvalidInputError('request: empty body')
  try {
    return utf8(body)
  } catch (err) {
    throw new InvalidInputError('request: the body is not valid UTF-8', { cause: err })
  }
}

/** Typed errors keep their status, with the message as a text body; 409 is the size alone. */
function witnessErrorHandler (err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply): void {
  if (err instanceof WitnessConflictError) {
    void reply.status(409).type('text/x.tlog.size').send(`${err.size}\n`)
    return
  }
  if (err instanceof BlockfedError && err.status < 500) {
    void reply.status(err.status).type('text/plain; charset=utf-8').send(`${err.message}\n`)
    return
  }
  const status = (err as FastifyError).statusCode ?? 500
  if (status >= 400 && status < 500) {
    void reply.status(status).type('text/plain; charset=utf-8').send(`${err.message}\n`)
    return
  }
  req.log.error({ err }, 'witness request failed')
  void reply.status(500).type('text/plain; charset=utf-8').send('internal error; see the witness log\n')
}
