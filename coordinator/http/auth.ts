/**
 * API tokens: random 256-bit bearer tokens, stored only as their SHA-256, each bound to a role.
 * A token is named by its id, the first TOKEN_ID_CHARS hex digits of that hash: listing and
 * revoking never show or need the token itself. A revoked token keeps its row and opens nothing.
 */
import type { FastifyRequest } from 'fastify'
import type { z } from 'zod'
import { toHex } from '../../shared/crypto/bytes.ts'
import { sha256Hex } from '../../shared/crypto/hash.ts'
import { AccessDeniedError, ConflictError, InvalidInputError, NotFoundError, UnauthenticatedError } from '../../shared/errors/errors.ts'
import { TOKEN_ID_CHARS, tokenIdSchema, tokenLevelsSchema, tokenModelsSchema } from '../../shared/client/api-schemas.ts'
import type { Repository, TokenRow } from '../store/repository.ts'
import { ROLES } from '../constants.ts'
import { inScope, readsLevel } from '../tokens/scope.ts'

function newToken (): string {
  return `bf_${toHex(globalThis.crypto.getRandomValues(new Uint8Array(32)))}`
}

export async function tokenHash (token: string): Promise<string> {
  return await sha256Hex(new TextEncoder().encode(token))
}

/** A token's id: the start of its hash. */
/** Every issue of a token's list field (`models`, `levels`), the list itself named `list`. */
const listIssues = (error: z.ZodError): string => error.issues.map(i => `${i.path.join('.') || 'list'}: ${i.message}`).join('; ')

/** "a publisher", "an admin", "an edge". */
const withArticle = (word: string): string => `${/^[aeiou]/.test(word) ? 'an' : 'a'} ${word}`

export function tokenIdOf (hash: string): string {
  return hash.slice(0, TOKEN_ID_CHARS)
}

/** A new token and its hash, stored nowhere yet. */
export async function mintToken (): Promise<{ token: string, hash: string }> {
  const token = newToken()
  return { token, hash: await tokenHash(token) }
}

/**
 * Creates a token for `role` (one of ROLES), stores its hash, and returns the token, its id and
 * when it expires (`expiresInSeconds` from now; never when absent).
 */
export async function issueToken (repo: Repository, role: string, label: string | null, expiresInSeconds?: number, scope: TokenScope = {}): Promise<{ token: string, id: string, expiresAt: string | null, models: string[] | null, levels: string[] }> {
  const { models = null, levels = [] } = scope
  if (!Object.hasOwn(ROLES, role)) throw new InvalidInputError(`unknown role "${role}"; roles: ${Object.keys(ROLES).join(', ')}`)
  if (levels.length > 0 && ROLES[role]?.access.includes('*') === true) throw new InvalidInputError(`levels: ${withArticle(role)} token reads every access level already`)
  const checkedLevels = levels.length === 0 ? undefined : tokenLevelsSchema.safeParse(levels)
  if (checkedLevels?.success === false) throw new InvalidInputError(`levels: ${listIssues(checkedLevels.error)}`)
  // A token that makes tokens could make one for every model: a limit on it would hold nothing.
  if (models !== null && ROLES[role]?.tokens === true) throw new InvalidInputError(`models: ${withArticle(role)} token makes tokens, which may open every model; it cannot be limited to models`)
  const checked = models === null ? undefined : tokenModelsSchema.safeParse(models)
  if (checked?.success === false) throw new InvalidInputError(`models: ${listIssues(checked.error)}`)
  const { token, hash } = await mintToken()
  const expiresAt = expiresInSeconds === undefined ? null : new Date(Date.now() + expiresInSeconds * 1000).toISOString()
  const limited = models === null ? null : [...new Set(models)].sort()
  const given = [...new Set(levels)].sort()
  repo.insertToken(hash, role, label, expiresAt, limited, given)
  return { token, id: tokenIdOf(hash), expiresAt, models: limited, levels: given }
}

/** What a token is limited to (`models`; null: every model) and the access levels it reads beyond its role's. */
export interface TokenScope {
  models?: string[] | null
  levels?: string[]
}

/** Refuses (403) a caller whose token is limited to other models than `model`; `what` says what it tried. */
export function mayUseModel (caller: Caller, model: string, what: string): void {
  if (!inScope(caller.models, model)) throw new AccessDeniedError(`this API token is limited to the models ${(caller.models ?? []).join(', ')}: it may not ${what} ${model}`)
}

/**
 * Why a stored token opens nothing (undefined: it may be used), in the words every refusal uses,
 * HTTP and rounds alike. A token is expired from its `expiresAt` on.
 */
export function tokenRefusal (row: { role: string, revokedAt: string | null, expiresAt: string | null } | undefined, now = Date.now()): string | undefined {
  if (row === undefined || !Object.hasOwn(ROLES, row.role)) return 'unknown API token'
  if (row.revokedAt !== null) return `this API token was revoked at ${row.revokedAt}`
  // An expiry that does not parse (a hand-edited row) counts as passed: NaN compared false, for ever.
  if (row.expiresAt !== null && !(Date.parse(row.expiresAt) > now)) return `this API token expired at ${row.expiresAt}; make another (blockfed token create)`
  return undefined
}

/**
 * Revokes the token with this id (call inside a transaction): NotFoundError when no token has
 * it, ConflictError when it was revoked already or names more than one (64 bits of hash: two
 * tokens sharing an id is a 2^-64 event per pair, still never resolved by guessing).
 */
export function revokeToken (repo: Repository, id: string): TokenRow {
  if (!tokenIdSchema.safeParse(id).success) throw new InvalidInputError(`not a token id: ${TOKEN_ID_CHARS} lowercase hex digits`)
  const rows = repo.tokensByPrefix(id)
  const [row] = rows
  if (row === undefined) throw new NotFoundError(`no API token has the id ${id} (blockfed token list shows them)`)
  if (rows.length > 1) throw new ConflictError(`${rows.length} API tokens have the id ${id}; nothing was revoked`)
  if (row.revokedAt !== null) throw new ConflictError(`API token ${id} (${row.role}) was revoked already, at ${row.revokedAt}`)
  return { ...row, revokedAt: repo.revokeToken(row.hash) }
}

export interface Caller {
  role: string
  grants: (typeof ROLES)[string]
  /** The models its token is limited to (names, `name-*` prefixes); null: every model. */
  models: string[] | null
  /** Access levels its token reads beyond its role's (`grants.access`). */
  levels: string[]
}

/** The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive, RFC 9110 §11.1), or undefined when there is none of that form. */
export function bearerOf (header: string | undefined): string | undefined {
  return header === undefined ? undefined : /^Bearer +(\S{1,200})$/i.exec(header)?.[1]
}

/** Each request's caller, looked up once (the onRequest hook and the handler both ask). */
const callers = new WeakMap<FastifyRequest, Promise<Caller>>()

/** The caller behind the request's bearer token; UnauthenticatedError (401) when absent, unknown, revoked or expired. */
export async function authenticate (req: FastifyRequest, repo: Repository): Promise<Caller> {
  let caller = callers.get(req)
  if (caller === undefined) {
    caller = lookUp(req, repo)
    callers.set(req, caller)
  }
  return await caller
}

/** The caller looked up again, and kept as the request's from now on (its body read since the first). */
export async function authenticateAgain (req: FastifyRequest, repo: Repository): Promise<Caller> {
  const caller = lookUp(req, repo)
  callers.set(req, caller)
  return await caller
}

/**
 * A synchronous look-up of the request's caller, to run later (inside a transaction, after a
 * queue): for a request that runs long after its token was checked (an upload), so that a token
 * revoked meanwhile publishes nothing.
 */
export async function callerCheck (req: FastifyRequest, repo: Repository): Promise<() => Caller> {
  const hash = await hashOf(req)
  return () => callerOf(hash, repo)
}

async function hashOf (req: FastifyRequest): Promise<string> {
  const token = bearerOf(req.headers.authorization)
  if (token === undefined) throw new UnauthenticatedError('this endpoint needs an API token: Authorization: Bearer <token>')
  return await tokenHash(token)
}

function callerOf (hash: string, repo: Repository): Caller {
  const row = repo.token(hash)
  const refused = tokenRefusal(row)
  if (refused !== undefined || row === undefined) throw new UnauthenticatedError(refused ?? 'unknown API token')
  repo.noteTokenUse(hash)
  return { role: row.role, grants: ROLES[row.role] as Caller['grants'], models: row.models ?? null, levels: row.levels }
}

async function lookUp (req: FastifyRequest, repo: Repository): Promise<Caller> {
  return callerOf(await hashOf(req), repo)
}

/**
 * A route's OpenAPI `security`, with the roles whose tokens it takes said in its description
 * (OpenAPI 3.0 lets a bearer scheme name no scopes; review 47d: the roles were named nowhere).
 * Without a grant, any role's token (each then gets what its role allows).
 */
export function needsToken (grant?: 'ingest' | 'tokens' | 'rounds'): { security: Array<Record<string, string[]>>, description: string } {
  const roles = Object.entries(ROLES).filter(([, g]) => grant === undefined || g[grant]).map(([role]) => role)
  return { security: [{ token: [] }], description: `Needs an API token (Authorization: Bearer) of role ${roles.join(' or ')}.` }
}

export function mayRead (caller: Caller, access: string): boolean {
  return readsLevel(caller.grants.access, access) || readsLevel(caller.levels, access)
}
