/**
 * The decryptor's HTTP API on fastify (same conventions as coordinator/http/server.ts: zod
 * schemas validate every request and are published at `/openapi.json`; errors are `{error, message}`).
 *
 *   GET  /v1/paillier/key                     public key, fingerprint and packing layout
 *   POST /v1/paillier/rounds/:roundId/decrypt all contributions of a round → their ring sum
 *
 * The decrypt route checks everything it can before it claims the round (count within
 * [minClients, maxClients], distinct client ids, distinct ciphertext blobs, lengths, ranges),
 * so a malformed request does not burn a round; then it claims the round on disk, sums, decrypts
 * the sum only, and answers with the ring sum reduced mod 2^32 (never the raw slot sums).
 *
 * What this does NOT prevent — read before relying on it:
 * - Sybil contributions: the decryptor cannot tell a real client from one the caller made up.
 *   A coordinator that sends one real client's ciphertexts next to minClients − 1 encryptions of
 *   zero it made itself (or re-randomised copies, c·s^n, which differ byte-wise) learns that
 *   client's update. Closing this needs client authentication the decryptor checks itself:
 *   each contribution signed by a client key from a registry the coordinator does not control.
 * - Key substitution: clients must pin this decryptor's keyId out of band; a coordinator that
 *   relays the key could hand out its own.
 * - Collusion: a decryptor that colludes with the coordinator decrypts anything.
 * - Malformed plaintexts: Paillier carries no proof that a client encrypted a valid packing; a
 *   bad client can spoil the sum (detected when a slot overflows, not always) but learns nothing.
 */
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import swagger from '@fastify/swagger'
import { jsonSchemaTransform, serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBodySchema } from '../../shared/client/api-schemas.ts'
import { equalBytes, fromBase64, toBase64, utf8ToBytes } from '../../shared/crypto/bytes.ts'
import { AccessDeniedError, InvalidInputError } from '../../shared/errors/errors.ts'
import type { PaillierSecretKey } from '../../aggregation/paillier/keys.ts'
import { ciphertextCount, type PackingLayout } from '../../aggregation/paillier/layout.ts'
import { decodeCiphertexts, ringToBytes } from '../../aggregation/paillier/wire.ts'
import { decryptSum, sumCiphertexts } from '../../aggregation/paillier/aggregate.ts'
import { decryptRequestSchema, decryptResponseSchema, paillierKeyInfoSchema, roundIdSchema, type PaillierKeyInfo } from '../../aggregation/paillier/schemas.ts'
import { errorHandler } from '../http/errors.ts'
import type { RoundLog } from './rounds.ts'

export interface DecryptorServerDeps {
  secretKey: PaillierSecretKey
  layout: PackingLayout
  keyInfo: PaillierKeyInfo
  minClients: number
  rounds: RoundLog
  maxBodyBytes: number
  /** When set, decrypt requests must carry `authorization: Bearer <token>`. */
  token?: string
  logger?: boolean
}

const errors = { 400: errorBodySchema, 403: errorBodySchema, 409: errorBodySchema, 413: errorBodySchema, 502: errorBodySchema }

function requireToken (req: FastifyRequest, token: string | undefined): void {
  if (token === undefined) return
  const header = req.headers.authorization ?? ''
  const given = header.startsWith('Bearer ') ? header.slice(7) : ''
  if (!equalBytes(utf8ToBytes(given), utf8ToBytes(token))) throw new AccessDeniedError('decrypt requires the decryptor\'s bearer token')
}

export async function buildDecryptorServer (deps: DecryptorServerDeps): Promise<FastifyInstance> {
  const app = Fastify({ logger: deps.logger ?? false, bodyLimit: deps.maxBodyBytes, requestTimeout: 600_000, connectionTimeout: 600_000 })
  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)
  app.setErrorHandler(errorHandler)
  await app.register(swagger, {
    openapi: { info: { title: 'blockfed Paillier decryptor', description: 'Decrypts the sum of a round\'s Paillier-encrypted updates, once per round.', version: '1' } },
    transform: jsonSchemaTransform
  })
  const api = app.withTypeProvider<ZodTypeProvider>()
  const { secretKey, layout, minClients } = deps
  const publicKey = secretKey.publicKey

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  api.get('/v1/paillier/key', {
    schema: { summary: 'The Paillier public key (g = n + 1), its fingerprint and the packing layout clients must use', response: { 200: paillierKeyInfoSchema } }
  }, async () => deps.keyInfo)

  api.post('/v1/paillier/rounds/:roundId/decrypt', {
    schema: {
      summary: 'Sum all contributions of a round homomorphically and decrypt only the sum (at most once per round)',
      params: z.object({ roundId: roundIdSchema }),
      body: decryptRequestSchema,
      response: { 200: decryptResponseSchema, ...errors }
    }
  }, async req => {
    requireToken(req, deps.token)
    const { roundId } = req.params
    const { length, contributions } = req.body
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
    const vectors = contributions.map((c, i) => decodeCiphertexts(fromBase64(c.ciphertexts), publicKey, count, `contributions[${i}] (client ${c.clientId})`))

    const record = { roundId, keyId: deps.keyInfo.keyId, length, clients: [...ids], claimedAt: new Date().toISOString() }
    await deps.rounds.claim(record)
    try {
      const sum = await decryptSum(secretKey, sumCiphertexts(vectors, publicKey), layout, length, contributions.length)
      await deps.rounds.finish(record, 'decrypted')
      return { roundId, clients: contributions.length, length, sum: toBase64(ringToBytes(sum)) }
    } catch (err) {
      await deps.rounds.finish(record, 'failed', (err as Error).message).catch(() => undefined)
      throw err
    }
  })

  return app
}
