/**
 * A transparency-log witness over HTTP (c2sp.org/tlog-witness) on fastify:
 *   POST /add-checkpoint            → 200 cosignature line(s), or 400/403/404/409/422 (witness.ts)
 *   GET  /<sha256(origin)>/checkpoint → the latest cosigned checkpoint (the monitoring API)
 * The submission and monitoring prefixes are both the server root. Bodies are raw bytes of at
 * most 64 KiB that must be UTF-8; every request has a deadline; a refusal never stops the server.
 */
import { mkdir, stat } from 'node:fs/promises'
import { claimDataDir } from '../dir-lock.ts'
import { join } from 'node:path'
import Fastify, { type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify'
import { ed25519 } from '@noble/curves/ed25519.js'
import { toHex, utf8 } from '../../shared/crypto/bytes.ts'
import { BlockfedError, InvalidConfigError, InvalidInputError } from '../../shared/errors/errors.ts'
import { cosignatureSigner, witnessVerifierKey } from '../../shared/ledger/cosignature.ts'
import { checkKeyName } from '../../shared/ledger/note.ts'
import {
  DEFAULT_WITNESS_HOST, DEFAULT_WITNESS_PORT, WITNESS_BODY_LIMIT, WITNESS_DB_FILE, WITNESS_KEY_FILE, WITNESS_REQUEST_TIMEOUT_MS
} from '../../shared/ledger/witness/constants.ts'
import { WitnessConflictError } from '../../shared/ledger/witness/errors.ts'
import { removeStaleTemporaries } from '../atomic-file.ts'
import { loadOrCreateWitnessKey } from './key.ts'
import { openWitnessStore, type WitnessStore } from './store.ts'
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
  // Its own dir: a witness whose key and memory sit in the log operator's dir watches nothing.
  await claimDataDir(options.dataDir, 'witness')
  // A crash between its key's write and link left a copy of the key.
  await removeStaleTemporaries([options.dataDir])
  const keyPath = join(options.dataDir, WITNESS_KEY_FILE)
  const dbPath = join(options.dataDir, WITNESS_DB_FILE)
  const [keyKept, dbKept] = await Promise.all([exists(keyPath), exists(dbPath)])
  // Refused before the store is opened, which would make an empty one that a next start took as its own.
  if (keyKept && !dbKept) {
    throw new InvalidConfigError(`${keyPath} was made before, but ${WITNESS_DB_FILE}, the record of what it cosigned, is missing: without it this witness would cosign a fork of a log it already cosigned. Restore ${WITNESS_DB_FILE} with the key (from one backup), or move the key away to start as a new witness (logs and clients must then be given its new vkey)`)
  }
  // The memory before the key: a first start stopped between the two then leaves a memory without
  // a key (a fresh start makes the key and binds it), never a key without a memory (refused above).
  const store = openWitnessStore(dbPath)
  let secret: Uint8Array
  try {
    secret = await loadOrCreateWitnessKey(keyPath)
  } catch (err) {
    store.close()
    throw err
  }
  const cosigner = cosignatureSigner(options.name, secret, options.now)
  const publicKey = ed25519.getPublicKey(secret)
  const vkey = witnessVerifierKey(options.name, publicKey)
  secret.fill(0)
  let core
  try {
    bindMemory(store, toHex(publicKey), options.dataDir)
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

async function exists (path: string): Promise<boolean> {
  return await stat(path).then(() => true, (err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return false; throw err })
}

/**
 * A witness's promise (one linear history per log, c2sp.org/tlog-witness) lives in its memory,
 * witness.sqlite, not in its key: a key that outlived its memory would cosign a fork of a log it
 * already cosigned, and the log learns that from the first 409 (size 0). So the memory records
 * its key, and a start refuses a memory of another key (here), or a key kept without its memory
 * (createWitness, before the store is opened). An older memory without the record is bound to
 * the key found beside it.
 * Not caught: a memory restored from an older backup of the same key (it forgets what came after).
 */
function bindMemory (store: WitnessStore, publicKeyHex: string, dataDir: string): void {
  const bound = store.boundKey()
  if (bound === undefined) return store.bindKey(publicKeyHex)
  if (bound !== publicKeyHex) {
    throw new InvalidConfigError(`${join(dataDir, WITNESS_DB_FILE)} records the checkpoints cosigned by another key than ${join(dataDir, WITNESS_KEY_FILE)}: a witness's key and memory go together; restore that key, or start with a new data dir`)
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
