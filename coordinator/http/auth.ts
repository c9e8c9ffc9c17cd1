/**
 * API tokens: random 256-bit bearer tokens, stored only as their SHA-256, each bound to a role.
 */
import type { FastifyRequest } from 'fastify'
import { toHex } from '../../shared/crypto/bytes.ts'
import { sha256Hex } from '../../shared/crypto/hash.ts'
import { AccessDeniedError, InvalidInputError } from '../../shared/errors/errors.ts'
import type { Repository } from '../store/repository.ts'
import { ROLES } from '../constants.ts'

function newToken (): string {
  return `bf_${toHex(globalThis.crypto.getRandomValues(new Uint8Array(32)))}`
}

export async function tokenHash (token: string): Promise<string> {
  return await sha256Hex(new TextEncoder().encode(token))
}

/** Creates a token for `role` (one of ROLES), stores its hash, and returns the token itself. */
export async function issueToken (repo: Repository, role: string, label: string | null): Promise<string> {
  if (!Object.hasOwn(ROLES, role)) throw new InvalidInputError(`unknown role "${role}"; roles: ${Object.keys(ROLES).join(', ')}`)
  const token = newToken()
  repo.insertToken(await tokenHash(token), role, label)
  return token
}

export interface Caller {
  role: string
  grants: (typeof ROLES)[string]
}

/** The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive, RFC 9110 §11.1), or undefined when there is none of that form. */
export function bearerOf (header: string | undefined): string | undefined {
  return header === undefined ? undefined : /^Bearer +(\S{1,200})$/i.exec(header)?.[1]
}

/** Each request's caller, looked up once (the onRequest hook and the handler both ask). */
const callers = new WeakMap<FastifyRequest, Promise<Caller>>()

/** The caller behind the request's bearer token; AccessDeniedError when absent or unknown. */
export async function authenticate (req: FastifyRequest, repo: Repository): Promise<Caller> {
  let caller = callers.get(req)
  if (caller === undefined) {
    caller = lookUp(req, repo)
    callers.set(req, caller)
  }
  return await caller
}

async function lookUp (req: FastifyRequest, repo: Repository): Promise<Caller> {
  const token = bearerOf(req.headers.authorization)
  if (token === undefined) throw new AccessDeniedError('this endpoint needs an API token: Authorization: Bearer <token>')
  const role = repo.tokenRole(await tokenHash(token))
  const grants = role === undefined || !Object.hasOwn(ROLES, role) ? undefined : ROLES[role]
  if (role === undefined || grants === undefined) throw new AccessDeniedError('unknown API token')
  return { role, grants }
}

export function mayRead (caller: Caller, access: string): boolean {
  return caller.grants.access.includes('*') || caller.grants.access.includes(access)
}
