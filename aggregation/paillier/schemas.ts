/**
 * JSON messages between the coordinator (or anyone holding the round's ciphertexts) and the
 * decryptor, shared by the service (request validation, OpenAPI) and the client (answer
 * validation), so the two cannot drift apart. Binary data is RFC 4648 base64; the ring sum is
 * little-endian uint32s, like every weight buffer in blockfed.
 */
import { z } from 'zod'
import { MAX_VECTOR_LENGTH } from './constants.ts'
import { modelNameSchema } from '../../shared/manifest/schema.ts'

/** A round id is also a file name on the decryptor: no path separators, no leading dot. */
export const roundIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'round id: 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit')

export const keyIdSchema = z.string().regex(/^[0-9a-f]{64}$/, 'a Paillier key id: 64 lowercase hex')

export const paillierKeyInfoSchema = z.object({
  scheme: z.literal('paillier-n+1').describe('Paillier with g = n + 1'),
  n: z.string().regex(/^[0-9a-f]+$/).max(8192).describe('the modulus n, big-endian hex'),
  bits: z.number().int().positive().describe('bit length of n'),
  keyId: keyIdSchema.describe('SHA-256 of n\'s big-endian bytes, hex: pin it out of band'),
  maxClients: z.number().int().positive().describe('most contributions one round may sum'),
  minClients: z.number().int().positive().describe('fewest contributions the decryptor accepts'),
  slotBits: z.number().int().positive(),
  slotsPerCiphertext: z.number().int().positive(),
  ciphertextBytes: z.number().int().positive().describe('bytes per ciphertext on the wire')
})
export type PaillierKeyInfo = z.infer<typeof paillierKeyInfoSchema>

/** A client id: its Ed25519 public key, 64 lowercase hex (contributions, and the decryptor's enrolled clients). */
export const clientIdSchema = z.string().regex(/^[0-9a-f]{64}$/, 'a client id: its Ed25519 public key, 64 lowercase hex')

export const contributionSchema = z.strictObject({
  clientId: clientIdSchema.describe('the client\'s Ed25519 public key, hex (blockfed client ids are their keys)'),
  ciphertexts: z.base64().describe('the client\'s ciphertexts, fixed-width big-endian, concatenated (wire.ts)'),
  signature: z.base64().describe('the client\'s Ed25519 signature of its upload: uploadSigningBytes(model, round, baseVersion, \'paillier\', SHA-256 of the ciphertexts), shared/rounds/messages.ts')
})

export const decryptRequestSchema = z.strictObject({
  model: modelNameSchema.describe('the model the round trained, as each upload signature covers it'),
  length: z.number().int().min(1).max(MAX_VECTOR_LENGTH).describe('ring values per update'),
  baseVersion: z.number().int().positive().describe('the model version the round trained, as each upload signature covers it'),
  keyId: keyIdSchema.optional().describe('the key id the round was offered under: a decryptor holding another key refuses (409 KeyMismatchError) before it claims the round'),
  maxClients: z.number().int().min(1).max(1_000_000).optional().describe('the packing layout\'s client count the round was offered with: a decryptor packing for another count refuses (409 KeyMismatchError) before it claims the round'),
  contributions: z.array(contributionSchema).min(1)
})
export type DecryptRequest = z.infer<typeof decryptRequestSchema>

export const decryptResponseSchema = z.object({
  roundId: roundIdSchema,
  clients: z.number().int().positive(),
  length: z.number().int().positive(),
  sum: z.base64().describe('the ring sum Σ x_i mod 2^32, little-endian uint32s')
})
export type DecryptResponse = z.infer<typeof decryptResponseSchema>

/** What `GET /v1/paillier/access` answers a caller the decryptor takes decrypt requests from. */
export const accessResponseSchema = z.object({ decrypt: z.literal(true) })
