/**
 * The Paillier decryptor: a separate process role that holds the Paillier secret key and
 * decrypts the sum of a round's updates, never an individual update, at most once per round
 * (see server.ts for what that does and does not guarantee). `start()` loads or creates the key
 * in the data dir and listens; `stop()` closes the server, aborting the decryptions still running,
 * and drops the key from this object. It lets the data dir go only once each of those decryptions
 * has recorded how it ended: a decryption whose caller had hung up used to write its round's
 * record after the lock was released (review 37a).
 */
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { InvalidConfigError, TimeoutError, UnavailableError } from '../../shared/errors/errors.ts'
import { DEFAULT_MAX_CLIENTS } from '../../aggregation/paillier/constants.ts'
import { describeKey } from '../../aggregation/paillier/key-info.ts'
import { packingLayout } from '../../aggregation/paillier/layout.ts'
import { clientIdSchema } from '../../aggregation/paillier/schemas.ts'
import { loadOrCreateKey } from './key-file.ts'
import { roundLog } from './rounds.ts'
import { claimDataDir, lockDataDir, type DataDirLock } from '../../node-runtime/dir-lock.ts'
import { removeStaleTemporaries } from '../../node-runtime/atomic-file.ts'
import { buildDecryptorServer } from './server.ts'
import { decryptSlots, type DecryptSlots } from './slots.ts'
import { COORDINATOR_DATABASE } from '../constants.ts'
import { DEFAULT_DECRYPTOR_HOST, DEFAULT_DECRYPTOR_PORT, ROUNDS_DIR, DEFAULT_MAX_BODY_BYTES, DEFAULT_MIN_CLIENTS, DECRYPTOR_TOKEN_ENV, DECRYPTOR_TOKEN_PATTERN, DECRYPTOR_TOKEN_RULE, DECRYPT_SLOTS, STOP_DEADLINE_MS } from './constants.ts'
import { closeWithin } from '../http/lifecycle.ts'

export interface DecryptorOptions {
  dataDir: string
  port?: number
  host?: string
  /** Size of n for a new key (default 2048); must match an existing key if given. */
  keyBits?: number
  /** Fewest contributions decrypted together (default 3, at least 2). */
  minClients?: number
  /** Most contributions per round; sets the packing guard bits (default 1024). */
  maxClients?: number
  /** Largest decrypt request body in bytes (default 256 MiB). */
  maxBodyBytes?: number
  /**
   * Bearer token required on decrypt requests, so that only the coordinator asks (round ids are
   * no secret: every selected client sees them). Required unless `host` is a loopback address.
   */
  token?: string
  /**
   * Enrolled client keys (64-hex Ed25519 public keys): when given, contributions from any other
   * key are refused, so a coordinator cannot make up clients to isolate a real one.
   */
  clients?: readonly string[]
  /** Threads a round's decryption runs on (default: one per core, at most 8). */
  threads?: number
  logger?: boolean
}

export interface Decryptor {
  readonly dataDir: string
  /** Base URL; only after `start()`. */
  readonly url: string
  /** SHA-256 fingerprint of the public key, for clients to pin; only after `start()`. */
  readonly keyId: string
  /** Loads or creates the key, listens, and resolves to the base URL. */
  start: () => Promise<string>
  /**
   * Closes the server and aborts the decryptions still running; throws TimeoutError, keeping the
   * data dir locked, if one has not recorded its end within STOP_DEADLINE_MS (call it again).
   */
  stop: () => Promise<void>
}

function enrolled (keys: readonly string[]): ReadonlySet<string> {
  for (const [i, key] of keys.entries()) {
    if (!clientIdSchema.safeParse(key).success) throw new InvalidConfigError(`clients[${i}]: expected a client key, 64 lowercase hex, got ${JSON.stringify(key.slice(0, 80))}`)
  }
  if (keys.length === 0) throw new InvalidConfigError('clients: an empty list would refuse every contribution; leave it out to accept any signed client')
  return new Set(keys)
}

/** 127.0.0.0/8, ::1 and localhost: only this machine can connect. */
function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host)
}

function checkCount (name: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw new InvalidConfigError(`${name}: expected an integer ≥ ${min}, got ${value}`)
}

/**
 * @example
 * const decryptor = createDecryptor({ dataDir: '/var/lib/blockfed-decryptor', port: 7071 })
 * console.log(await decryptor.start(), decryptor.keyId)
 */
export function createDecryptor (options: DecryptorOptions): Decryptor {
  const minClients = options.minClients ?? DEFAULT_MIN_CLIENTS
  const maxClients = options.maxClients ?? DEFAULT_MAX_CLIENTS
  checkCount('minClients', minClients, 2)
  checkCount('maxClients', maxClients, minClients)
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  checkCount('maxBodyBytes', maxBodyBytes, 1024)
  if (options.threads !== undefined) checkCount('threads', options.threads, 1)
  const clients = options.clients === undefined ? undefined : enrolled(options.clients)
  const host = options.host ?? DEFAULT_DECRYPTOR_HOST
  if (options.token === undefined && !isLoopback(host)) {
    throw new InvalidConfigError(`host ${host}: a decryptor reachable from other machines needs a token, or anyone who learns a round id could claim the round first (and, without clients, decrypt one client's update beside made-up ones); blockfed decryptor takes it from --token or ${DECRYPTOR_TOKEN_ENV}`)
  }
  if (options.token !== undefined && !DECRYPTOR_TOKEN_PATTERN.test(options.token)) throw new InvalidConfigError(`token: use ${DECRYPTOR_TOKEN_RULE}`)
  let app: FastifyInstance | undefined
  let lock: DataDirLock | undefined
  let slots: DecryptSlots | undefined
  let url: string | undefined
  let keyId: string | undefined
  const started = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new UnavailableError(`decryptor ${what}: not started`)
    return value
  }

  return {
    dataDir: options.dataDir,
    get url () { return started(url, 'url') },
    get keyId () { return started(keyId, 'keyId') },
    async start () {
      if (app !== undefined) throw new InvalidConfigError('decryptor: already started')
      if (lock !== undefined) throw new InvalidConfigError('decryptor: its last stop() is waiting for decryptions to end; call stop() again')
      // The secret key must not sit beside the coordinator's: whoever holds that dir (its user, its
      // backups) could then decrypt one client's update, which the decryptor exists to prevent (review 49b).
      if (existsSync(join(options.dataDir, COORDINATOR_DATABASE))) throw new InvalidConfigError(`data dir ${options.dataDir} is a coordinator's (${COORDINATOR_DATABASE}): give the decryptor a data dir of its own, which the coordinator's user cannot read`)
      await mkdir(options.dataDir, { recursive: true, mode: 0o700 })
      await claimDataDir(options.dataDir, 'decryptor')
      // Its index of whose sums it decrypted (rounds.ts) is this process's: a second decryptor on
      // the dir would keep its own, and neither would see the other's sums.
      const taken = lockDataDir(options.dataDir, 'decryptor')
      let server: Awaited<ReturnType<typeof buildDecryptorServer>> | undefined
      const ownSlots = decryptSlots(DECRYPT_SLOTS)
      try {
        await removeStaleTemporaries([options.dataDir, join(options.dataDir, ROUNDS_DIR)])
        const { key } = await loadOrCreateKey(options.dataDir, options.keyBits)
        const layout = packingLayout(key.publicKey, maxClients)
        const keyInfo = await describeKey(key.publicKey, layout, minClients)
        server = await buildDecryptorServer({
          secretKey: key, layout, keyInfo, minClients, rounds: await roundLog(options.dataDir), maxBodyBytes, token: options.token, threads: options.threads, slots: ownSlots, logger: options.logger,
          ...(clients === undefined ? {} : { clients })
        })
        await server.listen({ port: options.port ?? DEFAULT_DECRYPTOR_PORT, host })
        keyId = keyInfo.keyId
      } catch (err) {
        await server?.close()
        taken.release()
        throw err
      }
      lock = taken
      slots = ownSlots
      const address = server.server.address() as AddressInfo
      const bound = address.family === 'IPv6' ? `[${address.address}]` : address.address
      app = server
      url = `http://${bound}:${address.port}`
      return url
    },
    async stop () {
      const server = app
      app = undefined
      url = undefined
      keyId = undefined
      try {
        if (server !== undefined) await closeWithin(server) // its preClose hook aborts the decryptions still running
      } finally {
        slots?.stop()
        // Another process may take the dir once it is let go: no decryption may still write there.
        if (slots === undefined || await slots.ended(STOP_DEADLINE_MS)) {
          slots = undefined
          lock?.release()
          lock = undefined
        }
      }
      if (lock !== undefined) throw new TimeoutError(`decryptor stop: decryptions still running ${STOP_DEADLINE_MS} ms after they were aborted; the data dir ${options.dataDir} stays locked until stop() finds them ended`)
    }
  }
}
