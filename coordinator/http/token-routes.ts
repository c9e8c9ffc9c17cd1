/**
 * API tokens over HTTP, for a role that grants `tokens` (admin): make one, list them (ids and
 * roles, never the tokens), revoke one. The work is the token keeper's (coordinator/tokens/keeper.ts):
 * a revoke also closes the round connections opened with the token and renews admin.token when it held it.
 */
import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { tokenIdSchema, tokenListSchema, tokenRequestSchema, tokenResponseSchema, tokenRevokedSchema } from '../../shared/client/api-schemas.ts'
import { AccessDeniedError } from '../../shared/errors/errors.ts'
import type { Repository } from '../store/repository.ts'
import type { TokenKeeper } from '../tokens/keeper.ts'
import { authenticate, needsToken, type Caller } from './auth.ts'
import { BODY_REFUSALS, refusals, WRITE_REFUSALS } from './errors.ts'

export interface TokenRoutesDeps {
  repo: Repository
  tokens: Pick<TokenKeeper, 'issue' | 'list' | 'revoke'>
}

function mayManage (caller: Caller, what: string): void {
  if (!caller.grants.tokens) throw new AccessDeniedError(`role ${caller.role} may not ${what} tokens (an admin token may)`)
}

export async function tokenRoutes (app: FastifyInstance, deps: TokenRoutesDeps): Promise<void> {
  const api = app.withTypeProvider<ZodTypeProvider>()

  api.post('/v1/tokens', {
    schema: { operationId: 'createToken', summary: 'Create an API token for a role', ...needsToken('tokens'), body: tokenRequestSchema, response: { 200: tokenResponseSchema, ...refusals(...BODY_REFUSALS, ...WRITE_REFUSALS) } }
  }, async req => {
    mayManage(await authenticate(req, deps.repo), 'create')
    const { token, id, expiresAt, models, levels } = await deps.tokens.issue(req.body.role, req.body.label ?? null, req.body.expiresInSeconds, { models: req.body.models ?? null, levels: req.body.levels ?? [] })
    return { token, role: req.body.role, id, expiresAt, models, levels }
  })

  api.get('/v1/tokens', {
    schema: { operationId: 'listTokens', summary: 'List API tokens by id, revoked ones too', ...needsToken('tokens'), response: { 200: tokenListSchema, ...refusals() } }
  }, async req => {
    mayManage(await authenticate(req, deps.repo), 'list')
    return { tokens: deps.tokens.list() }
  })

  api.delete('/v1/tokens/:tokenId', {
    schema: { operationId: 'revokeToken', summary: 'Revoke an API token: it opens nothing from now on, and its round connections are closed', ...needsToken('tokens'), params: z.object({ tokenId: tokenIdSchema }), response: { 200: tokenRevokedSchema, ...refusals(409, ...WRITE_REFUSALS) } }
  }, async req => {
    mayManage(await authenticate(req, deps.repo), 'revoke')
    return await deps.tokens.revoke(req.params.tokenId)
  })
}
