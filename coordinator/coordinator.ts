/**
 * The coordinator service: data dir → identity, database, block files, ingest, HTTP API.
 * `start()` listens; `stop()` closes the server and the database.
 */
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import type { ModelFile } from '../shared/model/types.ts'
import type { IngestResult, TokenRevoked } from '../shared/client/api-schemas.ts'
import { checkPartitionOptions, DEFAULT_PARTITION, type PartitionOptions } from '../shared/blocks/partition.ts'
import { claimDataDir, lockDataDir, type DataDirLock } from '../node-runtime/dir-lock.ts'
import { removeStaleTemporaries } from '../node-runtime/atomic-file.ts'

import { defaultReedSolomon, erasureCoder, shardLayoutError } from '../shared/blocks/erasure.ts'
import { openDatabase } from './store/database.ts'
import { repository, signedManifestOf, type Repository } from './store/repository.ts'
import { blockFiles } from './store/block-files.ts'
import { loadIdentity, type Identity } from './keys/identity.ts'
import { publisher, type IngestOptions } from './ingest/ingest.ts'
import { buildServer } from './http/server.ts'
import { tokenKeeper } from './tokens/keeper.ts'
import { roundStore } from './rounds/store.ts'
import { roundManager, type RoundEvent, type RoundManager } from './rounds/rounds.ts'
import { roundHub, type RoundHub } from './rounds/hub.ts'
import { readBaseModel } from './rounds/base-model.ts'
import { secureServerFor } from './rounds/secure/index.ts'
import { paillierOffer } from './rounds/secure/paillier.ts'
import { InvalidConfigError, InvalidInputError, UnavailableError } from '../shared/errors/errors.ts'
import { DECRYPTOR_TOKEN_PATTERN, DECRYPTOR_TOKEN_RULE, KEY_FILE as DECRYPTOR_KEY_FILE } from './decryptor/constants.ts'
import { roundRoutes } from './http/rounds-routes.ts'
import { ledgerRoutes } from './http/ledger-routes.ts'
import { tokenRoutes } from './http/token-routes.ts'
import { verdictRoutes } from './http/verdict-routes.ts'
import { verdictStore } from './store/verdicts.ts'
import { versionLog, type VersionLog } from './ledger/log.ts'
import { anchorExisting } from './ledger/anchor-existing.ts'
import { witnessCosigner, type WitnessEndpoint, type WitnessStatus } from './ledger/witnesses.ts'
import { answerAdmission, type AnswerAdmission } from './answers.ts'
import { createOrigin, type Origin, type OriginCounters } from './p2p/origin.ts'
import { keepListen, keptListen } from './p2p/kept-listen.ts'
import { failedListens } from '../shared/p2p/listen-failures.ts'
import type { IngestResult as Published } from '../shared/client/api-schemas.ts'
import { COORDINATOR_DATABASE, DEFAULT_ERASURE, DEFAULT_HOST, DEFAULT_MAX_SERVING_BYTES, DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_PORT, INGEST_DRAIN_MS, ROUND_HANDSHAKE_MS, ROUND_MAX_FRAME_BYTES, ROUND_PING_MS, SERVE_TIMEOUT_MS, WITNESS_GRACE_MS, WITNESS_RETRY_MS } from './constants.ts'
import { closeWithin } from './http/lifecycle.ts'
import { untilAborted } from '../shared/load/deadline.ts'

export interface CoordinatorOptions {
  dataDir: string
  port?: number
  host?: string
  maxUploadBytes?: number
  erasure?: { k: number, m: number }
  partition?: PartitionOptions
  /** true: fastify's logger; 'errors': server errors (5xx) only, to stderr; default none. */
  logger?: boolean | 'errors'
  /** Paillier rounds: the decryptor service (`blockfed decryptor`) that holds the private key. */
  decryptorUrl?: string
  /** The decryptor's bearer token, when it requires one (it must, unless it listens on loopback only). */
  decryptorToken?: string
  onRoundEvent?: (event: RoundEvent) => void
  /** Round protocol liveness: ping interval in ms (a client silent for two is cut). */
  pingMs?: number
  /** Text bytes a round client may send per 10 s before it is cut (coordinator/rounds/hub.ts, TEXT_BUDGET). */
  roundTextBudgetBytes?: number
  /** Round connections at once, handshakes included; more are refused 503 (hub.ts MAX_CONNECTIONS, 1024). */
  roundMaxConnections?: number
  /** Round connections one API token may hold; more are refused 429 (hub.ts MAX_CONNECTIONS_PER_TOKEN, 256). */
  roundMaxConnectionsPerToken?: number
  /** The version ledger's origin line (fixed when the log is created). Default `blockfed.local/<keyId>`. */
  ledgerOrigin?: string
  /** Witnesses asked to cosign every new checkpoint (`blockfed witness`). */
  witnesses?: WitnessEndpoint[]
  /** Deadline of one witness request, ms. */
  witnessTimeoutMs?: number
  /** How often witnesses that have not cosigned the latest checkpoint are asked again (default 30 s). */
  witnessRetryMs?: number
  /** A witness's state changed: it cosigned after failing (or for the first time), or failed after cosigning (or at its first request). */
  onWitness?: (status: WitnessStatus) => void
  /**
   * Run a libp2p node (the swarm's bootstrap peer and fallback origin, coordinator/p2p/origin.ts).
   * Off when absent; the CLI turns it on by default.
   */
  p2p?: { listen?: string[], superSeed?: boolean }
  /**
   * What an operator should know that did not stop the coordinator: the p2p node could not listen
   * where it did last time; a round client's leaving could not be stored (stderr by default).
   */
  onNotice?: (message: string) => void
  /** Cap on the bytes of blocks and shards the coordinator sends per second, HTTP and p2p together. */
  uploadBytesPerSecond?: number
  /** Bytes of block and shard answers under way at once, HTTP and p2p together; more are answered "busy". */
  maxServingBytes?: number
  /** Web origins (`https://app.example`) whose pages may call the HTTP API, or `*` (coordinator/http/server.ts). */
  corsOrigins?: string[]
}

/** Bytes of blocks and shards the coordinator answered, by channel. */
export interface ServedCounters {
  httpBytes: number
  /** HTTP block requests answered 503 "busy" (the answer budget had no room). */
  httpBusy: number
  /** Bytes of block and shard answers admitted and not yet ended, HTTP and libp2p together (0 when idle). */
  underway: number
  p2p?: OriginCounters
}

export interface Coordinator {
  readonly dataDir: string
  readonly identity: Identity
  readonly repo: Repository
  /** Admin token, created on first start and kept in `<data>/admin.token` (mode 0600); renewed when revoked. */
  readonly adminToken: string
  /** Base URL once started. */
  url: () => string
  ingest: (name: string, files: ModelFile[], options?: IngestOptions) => Promise<IngestResult>
  /**
   * Creates an API token for `role` without going through HTTP (for the CLI and tests). `models`:
   * the models it is limited to (names, `name-*` prefixes; every model when absent); `levels`: the
   * access levels it reads beyond its role's.
   */
  createToken: (role: string, options?: { models?: string[], levels?: string[] }) => Promise<string>
  /** Revokes the token with this id (see `blockfed token list`), as DELETE /v1/tokens/{id} does. */
  revokeToken: (id: string) => Promise<TokenRevoked>
  /** Training rounds: start on demand, schedule continuously, recover after a restart. */
  readonly rounds: RoundManager
  /** The version ledger. */
  readonly log: VersionLog
  /** Signs a checkpoint of the current log and asks the witnesses to cosign it. */
  anchor: () => Promise<void>
  /** The libp2p node's peer id and addresses once started with `p2p`. */
  p2p: () => { peerId: string, addresses: string[] } | undefined
  served: () => ServedCounters
  start: () => Promise<string>
  stop: () => Promise<void>
}

export async function createCoordinator (options: CoordinatorOptions): Promise<Coordinator> {
  const { dataDir } = options
  const partitionOptions = checkPartitionOptions(options.partition ?? DEFAULT_PARTITION)
  // Checked before anything is created: fetch would refuse the header only at the first Paillier round.
  if (options.decryptorToken !== undefined && !DECRYPTOR_TOKEN_PATTERN.test(options.decryptorToken)) throw new InvalidConfigError(`decryptor token: use ${DECRYPTOR_TOKEN_RULE}`)
  // A decryptor's secret key beside the coordinator's keys would let whoever holds this dir
  // decrypt one client's update (review 49b): they keep dirs of their own.
  if (existsSync(join(dataDir, DECRYPTOR_KEY_FILE))) throw new InvalidConfigError(`data dir ${dataDir} holds a Paillier decryptor's key (${DECRYPTOR_KEY_FILE}): move it and the decryptor's rounds/ to a data dir of the decryptor's own, which the coordinator's user cannot read`)
  // Its own: the database and keys in it are its owner's alone (a dir that was there keeps its mode).
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  await claimDataDir(dataDir, 'coordinator')
  const lock = lockDataDir(dataDir, 'coordinator')
  // What a failed creation must close, newest first, before the lock goes.
  const opened: Array<() => void> = []
  try {
    return await openCoordinator(options, partitionOptions, lock, opened)
  } catch (err) {
    for (const close of opened.reverse()) close()
    lock.release()
    throw err
  }
}

async function openCoordinator (options: CoordinatorOptions, partitionOptions: PartitionOptions, lock: DataDirLock, opened: Array<() => void>): Promise<Coordinator> {
  const { dataDir } = options
  await removeStaleTemporaries([dataDir, join(dataDir, 'keys')])
  const database = openDatabase(join(dataDir, COORDINATOR_DATABASE))
  opened.push(() => { database.close() })
  const repo = repository(database)
  // The database first: whether it holds data keys decides if a missing master key may be made.
  const identity = await loadIdentity(dataDir, repo.firstDataKey(), repo.models().length > 0)
  const files = blockFiles(join(dataDir, 'blocks'))
  await files.sweep(cid => repo.isStored(cid))
  const erasure = options.erasure ?? DEFAULT_ERASURE
  const coder = await erasureCoder(defaultReedSolomon, erasure)
  // Stored blocks are reused by plaintext across versions, so the data dir's parameters are fixed.
  const first = repo.firstBlock()
  const mismatch = first === undefined ? undefined : shardLayoutError(erasure, first.sealedLength, first.shards)
  if (mismatch !== undefined) {
    throw new InvalidInputError(`coordinator: erasure ${erasure.k}+${erasure.m} was asked for, but ${dataDir} keeps blocks sharded otherwise (block ${first?.cid ?? ''}: ${mismatch}); a data dir keeps the erasure parameters it was created with`)
  }
  const log = versionLog({ database, signing: identity.signing, keyId: identity.keyId, origin: options.ledgerOrigin })
  // Versions recorded before the ledger existed (an older data dir) are anchored first, in order.
  anchorExisting(database, repo, log)
  const cosigner = witnessCosigner({ log, witnesses: options.witnesses ?? [], timeoutMs: options.witnessTimeoutMs, onStatus: options.onWitness })
  const anchor = async (): Promise<void> => {
    log.checkpoint()
    await cosigner.cosign()
  }
  /**
   * After a publish: the checkpoint is signed at once; the caller waits for the cosignatures at
   * most WITNESS_GRACE_MS (witnesses on a LAN answer in milliseconds), and a slow or hanging
   * witness finishes, or fails, in the background and is asked again by the retry timer.
   */
  const anchorPublished = async (): Promise<void> => {
    log.checkpoint()
    let timer: ReturnType<typeof setTimeout> | undefined
    const grace = new Promise<void>(resolve => { timer = setTimeout(resolve, Math.min(WITNESS_GRACE_MS, options.witnessTimeoutMs ?? WITNESS_GRACE_MS)) })
    await Promise.race([cosigner.cosign(), grace])
    clearTimeout(timer)
  }
  const published = publisher({ database, repo, files, identity, coder, partition: partitionOptions, log, anchored: anchorPublished })
  let origin: Origin | undefined
  /** The answer budget, from the start on. */
  let answers: AnswerAdmission | undefined
  let witnessRetry: ReturnType<typeof setInterval> | undefined
  let stopped = false
  let httpBytes = 0
  let httpBusy = 0
  /** A new version is announced on its model's topic and its blocks provided in the DHT. */
  const spread = async (result: Published): Promise<Published> => {
    if (origin !== undefined && result.created) {
      const row = repo.version(result.model, result.version)
      if (row !== undefined) origin.provide(signedManifestOf(row).manifest.blocks.map(b => b.cid))
      await origin.announce(result.model, result.version, result.manifestCid)
    }
    return result
  }
  const versions = {
    ingest: async (...args: Parameters<typeof published.ingest>) => await spread(await published.ingest(...args)),
    publish: async (...args: Parameters<typeof published.publish>) => await spread(await published.publish(...args))
  }
  const tokens = await tokenKeeper({ dataDir, database, repo, cut: (id, reason) => hub.cutToken(id, reason) })
  opened.push(() => { tokens.stop() })
  const maxUploadBytes = options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES
  let app: FastifyInstance | undefined
  let url = ''
  const store = roundStore(database)
  const hub: RoundHub = roundHub({
    trainer: tokens.trainer,
    handlers: { message: async (c, m) => await rounds.handlers.message(c, m), upload: async (c, f) => await rounds.handlers.upload(c, f), disconnect: c => rounds.handlers.disconnect(c), connected: (c, holds) => rounds.handlers.connected(c, holds), uploadAllowance: c => rounds.handlers.uploadAllowance(c) },
    maxPayload: ROUND_MAX_FRAME_BYTES,
    pingMs: options.pingMs ?? ROUND_PING_MS,
    handshakeMs: ROUND_HANDSHAKE_MS,
    textBudgetBytes: options.roundTextBudgetBytes,
    maxConnections: options.roundMaxConnections,
    maxConnectionsPerToken: options.roundMaxConnectionsPerToken,
    onError: options.onNotice
  })
  const rounds = roundManager({
    store,
    repo,
    hub: () => hub,
    readBase: async (name, version) => await readBaseModel({ repo, files, identity }, name, version),
    publish: versions.publish,
    secureServer: async (config, snapshot, how) => await secureServerFor(config, snapshot, { decryptorUrl: options.decryptorUrl, decryptorToken: options.decryptorToken }, how),
    offerExtras: async secure => {
      if (secure.mode !== 'paillier') return {}
      if (options.decryptorUrl === undefined) throw new UnavailableError('Paillier rounds need a decryptor: start the coordinator with --decryptor URL')
      return { paillier: await paillierOffer({ baseUrl: options.decryptorUrl, token: options.decryptorToken }) }
    },
    onEvent: options.onRoundEvent
  })

  return {
    dataDir,
    identity,
    repo,
    get adminToken () { return tokens.adminToken },
    url: () => url,
    ingest: versions.ingest,
    createToken: async (role, options) => (await tokens.issue(role, null, undefined, { models: options?.models ?? null, levels: options?.levels ?? [] })).token,
    revokeToken: tokens.revoke,
    rounds,
    log,
    anchor,
    p2p: () => origin === undefined ? undefined : { peerId: origin.peerId, addresses: origin.addresses() },
    served: () => ({ httpBytes, httpBusy, underway: answers?.underway ?? 0, p2p: origin?.counters() }),
    async start () {
      try {
        return await startServing()
      } catch (err) {
        // Half-started (the port taken, a recovery that failed): stop what did start, the
        // libp2p node above all, whose sockets would otherwise keep the process alive.
        await stop().catch(() => {})
        throw err
      }
    },
    stop
  }

  async function stop (): Promise<void> {
    if (stopped) return
    stopped = true
    clearInterval(witnessRetry)
    try {
      await rounds.stop()
      await hub.stop()
      if (app !== undefined) await closeWithin(app)
      app = undefined
      // Versions already being stored finish before the database closes (49e: an ingest whose
      // request the stop cut failed at the closed database), within a deadline.
      await untilAborted(AbortSignal.timeout(INGEST_DRAIN_MS), published.idle()).catch(() => {})
      await origin?.stop()
      origin = undefined
      // Before the log's database closes: a run ending after it was reported as the witness failing.
      await cosigner.stop()
      tokens.stop()
      database.close()
    } finally {
      // Whatever failed above, the data dir is free for the next start.
      lock.release()
    }
  }

  /**
   * The p2p node, on the addresses given, else on those of the last start (kept-listen.ts), else
   * on OS-chosen ports; the addresses it then listens on are kept for the next start.
   */
  async function startOrigin (p2p: NonNullable<CoordinatorOptions['p2p']>, answers: ReturnType<typeof answerAdmission>): Promise<Origin> {
    const start = async (listen: string[] | undefined): Promise<Origin> => await createOrigin({ seed: identity.signing.secretKey, files, answers, ...p2p, listen })
    if (p2p.listen !== undefined) return await start(p2p.listen)
    const kept = await keptListen(dataDir)
    let started: Origin
    try {
      started = await start(kept)
    } catch (err) {
      if (kept === undefined) throw err
      // libp2p's message is a paragraph with stack traces: the failing addresses' lines alone.
      const message = (err as Error).message
      const why = failedListens(message).map(({ address, why }) => `${address}: Error: ${why}`).join('; ')
      options.onNotice?.(`p2p: the addresses of the last start (${kept.join(', ')}) cannot be listened on (${why === '' ? message.split('\n')[0] : why}); it listens on new ports: runtimes whose peers.bootstrap names the old ones need the new addresses (or give --p2p-listen)`)
      started = await start(undefined)
    }
    await keepListen(dataDir, started.addresses())
    return started
  }

  async function startServing (): Promise<string> {
    answers = answerAdmission({ maxBytes: options.maxServingBytes ?? DEFAULT_MAX_SERVING_BYTES, bytesPerSecond: options.uploadBytesPerSecond, deadlineMs: SERVE_TIMEOUT_MS })
    if (options.p2p !== undefined) origin = await startOrigin(options.p2p, answers)
    app = await buildServer({
      repo,
      files,
      identity,
      ingest: async (n, f, o) => await versions.ingest(n, f, o),
      erasure,
      maxUploadBytes,
      logger: options.logger,
      onServed: n => { httpBytes += n },
      onBusy: () => { httpBusy++ },
      answers,
      corsOrigins: options.corsOrigins,
      p2p: () => origin === undefined ? undefined : { peerId: origin.peerId, addresses: origin.addresses() }
    })
    await roundRoutes(app, { repo, store, manager: rounds })
    await ledgerRoutes(app, { repo, log, signing: identity.signing })
    await tokenRoutes(app, { repo, tokens })
    await verdictRoutes(app, { repo, verdicts: verdictStore(database) })
    // Witnesses are asked in the background: one that is down must not hold up the start. Those
    // that have not cosigned the latest checkpoint (down at a publish, say) are asked again.
    log.checkpoint()
    void cosigner.cosign()
    if ((options.witnesses ?? []).length > 0) {
      witnessRetry = setInterval(() => { void cosigner.cosign() }, options.witnessRetryMs ?? WITNESS_RETRY_MS)
      witnessRetry.unref()
    }
    // Rounds a killed or stopped coordinator left half-done: masking rounds resumed with their uploaders
    // before listening (a reconnecting runtime must find its round named in its welcome); the
    // rest finished from what was accepted, or failed, once listening.
    await rounds.resumeInterrupted()
    hub.attach(app.server)
    await app.listen({ port: options.port ?? DEFAULT_PORT, host: options.host ?? DEFAULT_HOST })
    const address = app.server.address() as AddressInfo
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
    url = `http://${host}:${address.port}`
    await rounds.recover()
    return url
  }
}
