/**
 * Rounds over HTTP: start one on demand, read a round's state, list a model's rounds, all for
 * roles with `rounds` (operators): a round names the clients that took part, which is nobody
 * else's business. The round itself runs over the WebSocket protocol (coordinator/rounds/hub.ts).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { roundRequestSchema } from '../../shared/rounds/config.ts'
import { clientCounts, roundListSchema, roundStartedSchema, roundSummarySchema, type RoundStatus } from '../../shared/rounds/api.ts'
import { modelNameSchema } from '../../shared/client/api-schemas.ts'
import { AccessDeniedError, NotFoundError } from '../../shared/errors/errors.ts'
import type { Repository } from '../store/repository.ts'
import type { RoundStore, RoundRow } from '../rounds/store.ts'
import type { RoundManager } from '../rounds/rounds.ts'
import { authenticate, mayUseModel, needsToken } from './auth.ts'
import { BODY_REFUSALS, refusals, WRITE_REFUSALS } from './errors.ts'

export interface RoundRoutesDeps {
  repo: Repository
  store: RoundStore
  manager: RoundManager
}

const errors = refusals(503)

/** Most rounds one list answer holds. */
const MAX_LIST = 200

/** Refuses a caller whose role may not run rounds, or whose token is limited to other models than `model`. */
async function operator (req: FastifyRequest, deps: RoundRoutesDeps, what: string, model: string | undefined): Promise<void> {
  const caller = await authenticate(req, deps.repo)
  if (!caller.grants.rounds) throw new AccessDeniedError(`role ${caller.role} may not ${what}`)
  if (model !== undefined) mayUseModel(caller, model, `${what} of`)
}

function status (store: RoundStore, row: RoundRow): RoundStatus {
  return {
    id: row.id, model: row.model, state: row.state, baseVersion: row.baseVersion, version: row.version, reason: row.reason,
    metrics: row.metrics, secure: row.config.secure.mode, clients: store.clients(row.id), createdAt: row.createdAt, updatedAt: row.updatedAt
  }
}

export async function roundRoutes (app: FastifyInstance, deps: RoundRoutesDeps): Promise<void> {
  const api = app.withTypeProvider<ZodTypeProvider>()
  api.post('/v1/rounds', {
    schema: { operationId: 'startRound', summary: 'Start a training round now (it runs over the WebSocket protocol at /v1/rounds/ws)', ...needsToken('rounds'), body: roundRequestSchema, response: { 202: roundStartedSchema, ...refusals(409, ...BODY_REFUSALS, 503, ...WRITE_REFUSALS) } }
  }, async (req, reply) => {
    await operator(req, deps, 'start rounds', req.body.model)
    const { id, done } = await deps.manager.start(req.body)
    done.catch(() => undefined)
    return await reply.status(202).send({ id, state: 'open' as const })
  })
  api.get('/v1/rounds/:id', {
    schema: { operationId: 'getRound', summary: 'A round: state, outcome, metrics, clients', ...needsToken('rounds'), params: z.object({ id: z.string().regex(/^r_[0-9a-f]{16}$/, 'a round id') }), response: { 200: roundSummarySchema, ...errors } }
  }, async req => {
    const row = deps.store.get(req.params.id)
    // Its role first: who may not read rounds learns nothing of which exist.
    await operator(req, deps, 'read rounds', row?.model)
    if (row === undefined) throw new NotFoundError(`no round ${req.params.id}`)
    return status(deps.store, row)
  })
  api.get('/v1/models/:name/rounds', {
    schema: { operationId: 'listRounds', summary: 'A model\'s latest rounds, newest first, with client counts per status', ...needsToken('rounds'), params: z.object({ name: modelNameSchema }), querystring: z.object({ limit: z.string().regex(/^[1-9][0-9]{0,5}$/, `a count from 1 to ${MAX_LIST} in decimal digits`).describe(`how many rounds, 1 to ${MAX_LIST} (default 50)`).transform(Number).pipe(z.number().max(MAX_LIST)).optional().transform(n => n ?? 50) }).strict(), response: { 200: roundListSchema, ...errors } }
  }, async req => {
    await operator(req, deps, 'read rounds', req.params.name)
    // As the model's other routes: a name with nothing behind it is a 404, not an empty list.
    if (deps.repo.latest(req.params.name) === undefined) throw new NotFoundError(`no model named ${req.params.name}`)
    const rounds = deps.store.list(req.params.name, req.query.limit).map(r => {
      const { clients, ...rest } = status(deps.store, r)
      return { ...rest, clientCounts: clientCounts(clients) }
    })
    return { model: req.params.name, rounds }
  })
}
