/**
 * Wire schemas of the coordinator's HTTP API, shared by the server (request validation, OpenAPI)
 * and the client (response validation): one definition, so the two cannot drift apart.
 */
import { z } from 'zod'
import { BASE64_32_BYTES } from '../crypto/bytes.ts'
import { modelNameSchema } from '../manifest/schema.ts'

export { modelNameSchema }

export const errorBodySchema = z.object({
  error: z.string().describe('stable error name, e.g. InvalidInputError'),
  message: z.string().describe('what is wrong, for a person')
})

/** An error answer's body as the service sends it (`{ error, message }`), or undefined when it is not one (a proxy's page, a cut body). */
export function errorBodyOf (text: string): z.infer<typeof errorBodySchema> | undefined {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return undefined
  }
  const parsed = errorBodySchema.safeParse(body)
  return parsed.success ? parsed.data : undefined
}

export const coordinatorInfoSchema = z.object({
  name: z.literal('blockfed-coordinator'),
  version: z.string(),
  publicKey: z.string().regex(/^[0-9a-f]{64}$/).describe('Ed25519 public key (hex) that signs manifests'),
  keyId: z.string(),
  erasure: z.object({ k: z.number().int(), m: z.number().int() })
})

export const modelSummarySchema = z.object({
  name: modelNameSchema,
  latest: z.number().int().positive(),
  versions: z.number().int().positive(),
  format: z.string(),
  createdAt: z.string()
})

export const modelListSchema = z.object({ models: z.array(modelSummarySchema) })

export const versionSummarySchema = z.object({
  version: z.number().int().positive(),
  parent: z.number().int().positive().nullable(),
  manifestCid: z.string(),
  createdAt: z.string(),
  blocks: z.number().int().nonnegative(),
  weightBytes: z.number().int().nonnegative(),
  round: z.string().nullable(),
  ledgerIndex: z.number().int().nonnegative().nullable().describe('the version\'s entry in the version ledger (/ledger/entries/{index})')
})

export const versionListSchema = z.object({ model: modelNameSchema, versions: z.array(versionSummarySchema) })

export const ingestResultSchema = z.object({
  model: modelNameSchema,
  version: z.number().int().positive(),
  manifestCid: z.string(),
  created: z.boolean().describe('false when the upload equals the latest version (nothing stored)'),
  blocks: z.number().int().nonnegative(),
  newBlocks: z.number().int().nonnegative(),
  bytesStored: z.number().int().nonnegative(),
  ledgerIndex: z.number().int().nonnegative().nullable().describe('the version\'s entry in the version ledger')
})

/** A version in a URL: "latest", or its number spelt one way only (no "01", "1.0", "1e0", "0x1"). */
export const versionParamSchema = z.union([
  z.literal('latest'),
  z.string().regex(/^[1-9][0-9]{0,15}$/, 'a version number (a positive decimal integer without leading zeros) or "latest"').transform(Number).refine(Number.isSafeInteger, 'at most 2^53 − 1')
])

export const keyRequestSchema = z.object({
  publicKey: z.string().regex(BASE64_32_BYTES, 'canonical base64 of a 32-byte X25519 public key').describe('X25519 public key the data keys are wrapped to')
}).strict()

export const keyResponseSchema = z.object({
  model: modelNameSchema,
  version: z.number().int().positive(),
  ephemeralPublicKey: z.string(),
  keys: z.array(z.object({ keyId: z.string(), blockCid: z.string(), wrapped: z.string() })),
  /** Key ids of blocks this token's role may not read. */
  denied: z.array(z.string())
})

/**
 * Characters a token label may not hold: C0 and C1 controls and DEL (terminal escapes, CR and LF
 * that rewrite `blockfed token list` lines), bidi overrides and isolates, lone surrogates.
 */
export const LABEL_FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]|\p{Cs}/u

export const tokenLabelSchema = z.string().max(200)
  .refine(label => !LABEL_FORBIDDEN.test(label), 'a label is printable text: no control characters, bidi controls or lone surrogates')

/** The longest a token may be made to live for, in seconds: ten years (longer: make it never expire). */
export const TOKEN_MAX_LIFETIME_S = 10 * 366 * 24 * 3600

/**
 * A block access level (DESIGN.md, "Keys and access"): an edge token reads `default` and the
 * levels it was given; admin and publisher tokens read every level.
 */
export const accessLevelSchema = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'an access level: a lowercase letter, then up to 31 lowercase letters, digits or -')

/** Most levels a token may be given, and most units an ingest may name. */
export const MAX_TOKEN_LEVELS = 16
export const MAX_ACCESS_UNITS = 4096

/** Most entries a token's `models` holds. */
export const MAX_TOKEN_MODELS = 64

/**
 * What a token may be limited to: a model name, or a prefix ending in a separator and `*`
 * (`kiosk-*`): `kiosk*` would also open `kiosks-admin` (review 49d). Checked when a token is made;
 * tokens made before keep their scope.
 */
export const modelScopeSchema = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$|^[a-z0-9][a-z0-9._-]{0,61}[._-]\*$/, 'a model name, or a prefix of one ending in a separator (- _ .) and * (kiosk-*: kiosk* would also match kiosks-admin)')

export const tokenModelsSchema = z.array(modelScopeSchema).min(1).max(MAX_TOKEN_MODELS)
  .describe('the models the token is limited to (names, or prefixes ending in a separator and *: kiosk-*): their data keys, ingests, rounds and channels; every model when absent. Not for admin tokens, which make tokens.')

export const tokenLevelsSchema = z.array(accessLevelSchema).min(1).max(MAX_TOKEN_LEVELS)
  .describe('block access levels the token reads beyond its role\'s (an edge token reads default): those blocks\' data keys. Not for admin and publisher tokens, which read every level.')

export const tokenRequestSchema = z.object({
  role: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/),
  models: tokenModelsSchema.optional(),
  levels: tokenLevelsSchema.optional(),
  label: tokenLabelSchema.optional(),
  expiresInSeconds: z.number().int().min(60).max(TOKEN_MAX_LIFETIME_S).optional()
    .describe('the token expires this many seconds from now (60 s to ten years); it never expires when absent')
}).strict()

/**
 * A runtime's verdict on a version, from its own data: `rejected` by its upgrade validation, or
 * `rolled-back` from by `check()` below its bound. Its client id is its round identity's public
 * key (hex): one verdict per client and version counts.
 */
export const verdictRequestSchema = z.strictObject({
  clientId: z.string().regex(/^[0-9a-f]{64}$/, 'a client id: 64 lowercase hex digits (the runtime\'s Ed25519 public key)'),
  verdict: z.enum(['rejected', 'rolled-back'])
})

export const verdictRecordedSchema = z.object({ recorded: z.literal(true) })

export const verdictListSchema = z.object({
  model: modelNameSchema,
  versions: z.array(z.object({
    version: z.number().int().positive(),
    rejected: z.number().int().nonnegative().describe('runtimes whose upgrade validation rejected it'),
    rolledBack: z.number().int().nonnegative().describe('runtimes that rolled back from it, their metric below their bound')
  })).describe('versions with at least one verdict, oldest first')
})

/** Hex digits of a token's SHA-256 that name it (coordinator/http/auth.ts). */
export const TOKEN_ID_CHARS = 16

export const tokenIdSchema = z.string().regex(new RegExp(`^[0-9a-f]{${TOKEN_ID_CHARS}}$`), `a token id: ${TOKEN_ID_CHARS} lowercase hex digits, as blockfed token list shows`)

export const tokenResponseSchema = z.object({
  token: z.string(),
  role: z.string(),
  id: tokenIdSchema.optional().describe("the token's id (coordinators before token revocation leave it out)"),
  expiresAt: z.string().nullable().optional().describe('when it stops opening anything; null: never (coordinators before token expiry leave it out)'),
  models: z.array(z.string()).nullable().optional().describe('the models it is limited to; null: every model (coordinators before model limits leave it out)'),
  levels: z.array(z.string()).optional().describe('the access levels it reads beyond its role\'s (coordinators before access levels leave it out)')
})

export const tokenInfoSchema = z.object({
  id: tokenIdSchema.describe('the first hex digits of the token\'s SHA-256; the token itself is never shown again'),
  role: z.string(),
  label: z.string().nullable(),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
  // Optional: coordinators before token expiry leave these out.
  expiresAt: z.string().nullable().optional().describe('when it stops opening anything; null: never'),
  lastUsedAt: z.string().nullable().optional().describe('its last use, to about a minute; null: not used since it was made'),
  adminFile: z.boolean().optional().describe('it is the token in the coordinator\'s data dir (admin.token), which --data commands use'),
  models: z.array(z.string()).nullable().optional().describe('the models it is limited to; null: every model'),
  levels: z.array(z.string()).optional().describe('the access levels it reads beyond its role\'s')
})

export const tokenListSchema = z.object({ tokens: z.array(tokenInfoSchema) })

export const tokenRevokedSchema = tokenInfoSchema.extend({
  replacedAdminToken: z.boolean().describe('the token was the coordinator\'s own admin.token, which now holds a new one'),
  closedConnections: z.number().int().nonnegative().describe('round connections opened with the token, closed now')
})

export type TokenInfo = z.infer<typeof tokenInfoSchema>
export type TokenRevoked = z.infer<typeof tokenRevokedSchema>
export type CoordinatorInfo = z.infer<typeof coordinatorInfoSchema>
export type IngestResult = z.infer<typeof ingestResultSchema>
export type VersionSummary = z.infer<typeof versionSummarySchema>
export type ModelSummary = z.infer<typeof modelSummarySchema>
export type KeyResponse = z.infer<typeof keyResponseSchema>
