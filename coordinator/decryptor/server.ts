/**
 * The decryptor's HTTP API on fastify (same conventions as coordinator/http/server.ts: zod
 * schemas validate every request and are published at `/openapi.json`; errors are `{error, message}`).
 *
 *   GET  /v1/paillier/key                     public key, fingerprint and packing layout
 *   POST /v1/paillier/rounds/:roundId/decrypt all contributions of a round → their ring sum
 *
 * The decrypt route checks everything it can before it claims the round (count within
 * [minClients, maxClients], distinct client ids, distinct ciphertext blobs, lengths, ranges, and
 * each contribution's upload signature), so a malformed request does not burn a round; then it
 * claims the round on disk, sums, decrypts the sum only, and answers with the ring sum reduced
 * mod 2^32 (never the raw slot sums). The same request again (byte for byte the same round,
 * model, length, base version and contributions: a caller that timed out or restarted) gets the
 * same answer, from the round's record or from the decryption still running; any other is refused.
 *
 * The bearer token is checked before the body is read, and at most `DECRYPT_SLOTS` decrypt
 * requests are read and worked on at once: a caller without the token cannot make the decryptor
 * buffer and parse hundreds of MiB. A decryption holds its slot until it ends, whether or not
 * its caller is still there (slots.ts); closing the server aborts the decryptions still running.
 *
 * The caller's socket carries nothing while its decryption runs, which may take far longer than
 * the server's idle-socket timeout: that timeout is lifted for the time of the work (review 37a:
 * Node closed the socket at 10 minutes, the live round failed, and the sum was kept for nobody).
 *
 * Each contribution carries its client's Ed25519 signature over (model, round id, base version,
 * 'paillier', SHA-256 of the ciphertexts), the one the client made when it uploaded. The
 * decryptor checks it against the client id (the key) for the round id it is asked to decrypt,
 * so a coordinator cannot replay real uploads under fresh round ids and difference the sums:
 * each upload opens in the round it was made for, once. Nor can it run a second round from the
 * same base over a client set that differs by one and difference those: a client is in at most
 * one decrypted sum per base version of a model, moving forward only (rounds.ts), whether or not
 * the client keeps its own record.
 *
 * What this does NOT prevent — read before relying on it:
 * - Sybil contributions, unless `clients` is set: a coordinator can make up client keys, sign
 *   encryptions of zero with them, and send one real client's upload beside them. With
 *   `clients` (a list of client keys the decryptor gets from somewhere the coordinator does not
 *   control, e.g. the enrolment of silos in a cross-silo federation), contributions from any
 *   other key are refused.
 * - Key substitution: clients must pin this decryptor's keyId out of band; a coordinator that
 *   relays the key could hand out its own. Runtimes decline Paillier offers unless they do
 *   (secureClients paillierKeyId, node-runtime/fl/secure-client.ts).
 * - Collusion: a decryptor that colludes with the coordinator decrypts anything.
 * - Plain uploads: a client's upload in a round of mode none never reaches the decryptor, so a
 *   masked-then-plain or Paillier-then-plain pair from one base is the client's own record to
 *   refuse (node-runtime/fl/given.ts), not this one's.
 * - Malformed plaintexts: Paillier carries no proof that a client knows what it encrypted, so
 *   minClients counts contributions, not honest ones. An enrolled client colluding with the
 *   coordinator can upload c_H^−1·E(0), made from another client H's upload (which the
 *   coordinator relays), and cancel H out of the sum: with minClients = 3, one such colluder
 *   plus two honest clients decrypts to the other honest client's update alone. Each colluder
 *   removes one honest client from the sum, so choose minClients ≥ 2·colluders + 2, or add a
 *   proof of plaintext knowledge bound to (round, client) to each upload. A bad client can also
 *   spoil the sum (detected when a slot overflows, not always).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { Socket } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import swagger from '@fastify/swagger'
import { jsonSchemaTransform, serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBodySchema } from '../../shared/client/api-schemas.ts'
import { decodeBase64, fromHex, toBase64, toHex, utf8ToBytes } from '../../shared/crypto/bytes.ts'
import { AccessDeniedError, BusyError, InvalidInputError, UnauthenticatedError, UnavailableError } from '../../shared/errors/errors.ts'
import { sha256, sha256Hex } from '../../shared/crypto/hash.ts'
import { verify } from '../../shared/crypto/sign.ts'
import { uploadSigningBytes } from '../../shared/rounds/messages.ts'
import type { PaillierSecretKey } from '../../aggregation/paillier/keys.ts'
import { ciphertextCount, type PackingLayout } from '../../aggregation/paillier/layout.ts'
import { decodeCiphertexts, ringToBytes } from '../../aggregation/paillier/wire.ts'
import { decryptSum, sumCiphertexts } from '../../aggregation/paillier/aggregate.ts'
import { decryptAll } from './parallel-decrypt.ts'
import { accessResponseSchema, decryptRequestSchema, decryptResponseSchema, paillierKeyInfoSchema, roundIdSchema, type PaillierKeyInfo } from '../../aggregation/paillier/schemas.ts'
import { clientErrorHandler, errorHandler } from '../http/errors.ts'
import { refuseUnknownRoutes } from '../http/lifecycle.ts'
import { useJsonBodyParser } from '../http/json-body.ts'
import { bearerOf } from '../http/auth.ts'
import { withOpenAnswers } from '../http/openapi-raw.ts'
import { KeyMismatchError, RoundDecidedError } from '../../aggregation/paillier/errors.ts'
import type { RoundLog } from './rounds.ts'
import { CONNECTION_TIMEOUT_MS, DECRYPT_SLOTS, REQUEST_TIMEOUT_MS, STOP_DEADLINE_MS } from './constants.ts'
import { decryptSlots, type DecryptSlots, type Slot } from './slots.ts'
import { MAX_PATH_PARAM_CHARS } from '../constants.ts'

export interface DecryptorServerDeps {
  secretKey: PaillierSecretKey
  layout: PackingLayout
  keyInfo: PaillierKeyInfo
  minClients: number
  rounds: RoundLog
  maxBodyBytes: number
  /** When set, decrypt requests must carry `authorization: Bearer <token>`. */
  token?: string
  /** When set, only these client keys (hex) may contribute. */
  clients?: ReadonlySet<string>
  /** Threads a round's decryption runs on (default: one per core, at most 8). */
  threads?: number
  /**
   * The bound on decrypt requests and decryptions at once (default: `DECRYPT_SLOTS` of its own).
   * The decryptor passes its own, to know when no decryption can still write into its data dir.
   */
  slots?: DecryptSlots
  logger?: boolean
}

const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 409: errorBodySchema, 413: errorBodySchema, 502: errorBodySchema }

function requireToken (req: FastifyRequest, token: string | undefined): void {
  if (token === undefined) return
  // The scheme is case-insensitive (RFC 9110 §11.1), as on the coordinator.
  const given = bearerOf(req.headers.authorization) ?? ''
  // Digests compared, not the strings: equalBytes returns early on a length mismatch, which
  // timed told the token's length (review 49b).
  if (!timingSafeEqual(createHash('sha256').update(given).digest(), createHash('sha256').update(token).digest())) throw new UnauthenticatedError('decrypt requires the decryptor\'s bearer token')
}

export async function buildDecryptorServer (deps: DecryptorServerDeps): Promise<FastifyInstance> {
  const app = Fastify({ logger: deps.logger ?? false, bodyLimit: deps.maxBodyBytes, routerOptions: { maxParamLength: MAX_PATH_PARAM_CHARS }, requestTimeout: REQUEST_TIMEOUT_MS, connectionTimeout: CONNECTION_TIMEOUT_MS, clientErrorHandler })
  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)
  app.setErrorHandler(errorHandler)
  refuseUnknownRoutes(app)
  useJsonBodyParser(app)
  await app.register(swagger, {
    openapi: { info: { title: 'blockfed Paillier decryptor', description: 'Decrypts the sum of a round\'s Paillier-encrypted updates, once per round.', version: '1' } },
    transform: jsonSchemaTransform,
    // Answers may gain fields in a later decryptor, as the coordinator's may (review 48f).
    transformObject: doc => 'openapiObject' in doc ? withOpenAnswers(doc.openapiObject) : doc.swaggerObject
  })
  const api = app.withTypeProvider<ZodTypeProvider>()
  const { secretKey, layout, minClients } = deps
  const publicKey = secretKey.publicKey

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  api.get('/v1/paillier/key', {
    schema: { operationId: 'getPaillierKey', summary: 'The Paillier public key (g = n + 1), its fingerprint and the packing layout clients must use', response: { 200: paillierKeyInfoSchema } }
  }, async () => deps.keyInfo)

  // The token's check alone, with nothing decrypted: so a coordinator can tell an operator at its
  // start that its token is wrong, not at its first Paillier round.
  api.get('/v1/paillier/access', {
    schema: { operationId: 'checkDecryptAccess', summary: 'Whether the caller\'s bearer token may send decrypt requests (401 if not)', response: { 200: accessResponseSchema, 401: errorBodySchema } },
    onRequest: async req => { requireToken(req, deps.token) }
  }, async () => ({ decrypt: true as const }))

  const slots = deps.slots ?? decryptSlots(DECRYPT_SLOTS)
  /** Each decrypt request's slot, from its onRequest hook to its handler. */
  const slotOf = new WeakMap<FastifyRequest, Slot>()
  /** Decryptions running in this process, by round id, with the hash of the request each answers. */
  const running = new Map<string, { requestSha256: string, answer: Promise<string> }>()
  // Before the server waits for its open requests: a decryption may run for hours. Its callers
  // get the abort as an error; its round stays decided (failed), as after a crash.
  app.addHook('preClose', async () => {
    slots.stop()
    await slots.ended(STOP_DEADLINE_MS)
  })

  api.post('/v1/paillier/rounds/:roundId/decrypt', {
    schema: {
      operationId: 'decryptRound', summary: 'Sum all contributions of a round homomorphically and decrypt only the sum (at most once per round)',
      params: z.object({ roundId: roundIdSchema }),
      body: decryptRequestSchema,
      response: { 200: decryptResponseSchema, 503: errorBodySchema, ...errors }
    },
    // Before the body is read: a refused caller costs no buffering or parsing.
    onRequest: async (req, reply) => {
      requireToken(req, deps.token)
      const slot = slots.take()
      if (slot === undefined) throw new BusyError(`the decryptor is working on ${slots.held} decrypt requests; try again shortly`, 1_000)
      slotOf.set(req, slot)
      reply.raw.once('close', slot.release)
    }
  }, async req => {
    const slot = slotOf.get(req)
    if (slot === undefined) throw new UnavailableError('decrypt request without a slot')
    const socket = req.raw.socket
    // Silent until the answer: no idle timeout may cut the caller off while the work runs.
    socket.setTimeout(0)
    try {
      return await decryptRound(req.params.roundId, req.body, slot, socket)
    } finally {
      if (!socket.destroyed) socket.setTimeout(app.server.timeout)
    }
  })

  async function decryptRound (roundId: string, body: z.infer<typeof decryptRequestSchema>, slot: Slot, socket: Socket): Promise<z.infer<typeof decryptResponseSchema>> {
    const { model, length, baseVersion, contributions } = body
    // First: a round offered under another key claims nothing here (its sum would be noise).
    if (body.keyId !== undefined && body.keyId !== deps.keyInfo.keyId) {
      throw new KeyMismatchError(`round ${roundId} was offered under Paillier key ${body.keyId}; this decryptor holds ${deps.keyInfo.keyId}. Nothing was claimed: restart it on the data dir of the round's key, or run the round again`)
    }
    // The same key packed for another client count (a restart with another maxClients): its
    // slots would not line up, and the round would be claimed and then fail (review 47c).
    if (body.maxClients !== undefined && body.maxClients !== layout.maxClients) {
      throw new KeyMismatchError(`round ${roundId} was offered with a packing layout for ${body.maxClients} clients; this decryptor packs for ${layout.maxClients}. Nothing was claimed: restart it with the round's maxClients, or run the round again`)
    }
    if (contributions.length < minClients) throw new InvalidInputError(`round ${roundId}: ${contributions.length} contributions; this decryptor decrypts sums of at least ${minClients}`)
    if (contributions.length > layout.maxClients) throw new InvalidInputError(`round ${roundId}: ${contributions.length} contributions; the packing layout holds at most ${layout.maxClients}`)
    const ids = new Set<string>()
    const blobs = new Set<string>()
    for (const [i, c] of contributions.entries()) {
      if (ids.has(c.clientId)) throw new InvalidInputError(`contributions[${i}]: client ${c.clientId} appears twice`)
      if (blobs.has(c.ciphertexts)) throw new InvalidInputError(`contributions[${i}]: same ciphertexts as an earlier contribution`)
      ids.add(c.clientId)
      blobs.add(c.ciphertexts)
    }
    const count = ciphertextCount(layout, length)
    const bytes = contributions.map((c, i) => decodeBase64(c.ciphertexts, `contributions[${i}].ciphertexts`, { canonical: true }))
    const digests: Array<[string, string]> = []
    for (const [i, c] of contributions.entries()) {
      if (deps.clients !== undefined && !deps.clients.has(c.clientId)) throw new AccessDeniedError(`contributions[${i}]: client ${c.clientId} is not one of this decryptor's enrolled clients`)
      const digest = await sha256(bytes[i] as Uint8Array)
      digests.push([c.clientId, toHex(digest)])
      const signed = uploadSigningBytes(model, { roundId, baseVersion, encoding: 'paillier' }, digest)
      if (!verify(decodeBase64(c.signature, `contributions[${i}].signature`, { canonical: true }), signed, fromHex(c.clientId))) {
        throw new AccessDeniedError(`contributions[${i}] (client ${c.clientId}): its signature does not verify for round ${roundId} of ${model} at base version ${baseVersion}`)
      }
    }
    const vectors = bytes.map((b, i) => decodeCiphertexts(b, publicKey, count, `contributions[${i}] (client ${contributions[i]?.clientId ?? ''})`))
    const requestSha256 = await sha256Hex(utf8ToBytes(JSON.stringify([roundId, model, length, baseVersion, digests.sort(([a], [b]) => a < b ? -1 : 1)])))
    const answer = (sum: string): { roundId: string, clients: number, length: number, sum: string } => ({ roundId, clients: contributions.length, length, sum })

    // A caller that has gone does not get a round decided for nobody.
    if (socket.destroyed) throw new InvalidInputError(`round ${roundId}: the caller closed the request before the decryption started`)
    const record = { roundId, keyId: deps.keyInfo.keyId, model, baseVersion, length, clients: [...ids], claimedAt: new Date().toISOString(), requestSha256 }
    // The same request again gets the same answer; any other request for the round, nothing.
    const fromRecord = async (err: unknown): Promise<string> => {
      if (!(err instanceof RoundDecidedError)) throw err
      const decided = await deps.rounds.read(roundId)
      if (decided?.outcome === 'decrypted' && decided.requestSha256 === requestSha256 && decided.sum !== undefined) return decided.sum
      throw err
    }
    // Looked up and registered with no await in between, before the claim: a twin request that
    // arrives while the claim is being written waits for this one instead of getting 409.
    const inFlight = running.get(roundId)
    if (inFlight !== undefined) {
      if (inFlight.requestSha256 !== requestSha256) throw new RoundDecidedError(`round ${roundId} was already decided; the decryptor decrypts each round at most once`)
      return answer(await inFlight.answer.catch(fromRecord))
    }
    // On the request's slot, which it keeps until it ends: a caller that hangs up does not free it.
    const work = slot.run(async signal => {
      await deps.rounds.claim(record)
      try {
        signal.throwIfAborted()
        const sums = sumCiphertexts(vectors, publicKey)
        const sum = ringToBytes(await decryptSum(secretKey, sums, layout, length, contributions.length, async s => await decryptAll(secretKey, s, deps.threads, signal)))
        await deps.rounds.finish(record, { sum })
        return toBase64(sum)
      } catch (err) {
        await deps.rounds.finish(record, { reason: (err as Error).message }).catch(() => undefined)
        throw err
      }
    })
    running.set(roundId, { requestSha256, answer: work })
    try {
      return answer(await work.catch(fromRecord))
    } finally {
      running.delete(roundId)
    }
  }

  return app
}
