/**
 * Runtimes' verdicts on versions over HTTP (review 49f: a version every runtime rejected became
 * the next round's base, and nobody was told). A runtime reports what its own data said of a
 * version (its token must reach the model); an operator (a role with `rounds`) reads the counts.
 */
import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { modelNameSchema, verdictListSchema, verdictRecordedSchema, verdictRequestSchema } from '../../shared/client/api-schemas.ts'
import { AccessDeniedError, ConflictError, NotFoundError } from '../../shared/errors/errors.ts'
import type { Repository } from '../store/repository.ts'
import { MAX_VERDICTS, VERDICT_VERSIONS, type VerdictStore } from '../store/verdicts.ts'
import { authenticate, mayUseModel, needsToken } from './auth.ts'
import { BODY_REFUSALS, refusals, WRITE_REFUSALS } from './errors.ts'

export interface VerdictRoutesDeps {
  repo: Repository
  verdicts: VerdictStore
}

export async function verdictRoutes (app: FastifyInstance, deps: VerdictRoutesDeps): Promise<void> {
  const api = app.withTypeProvider<ZodTypeProvider>()

  api.post('/v1/models/:name/versions/:version/verdicts', {
    schema: {
      operationId: 'reportVerdict',
      summary: 'A runtime\'s verdict on a version from its own data (rejected by its validation, or rolled back from); one per client and version',
      ...needsToken(),
      params: z.object({ name: modelNameSchema, version: z.string().regex(/^[1-9][0-9]{0,8}$/, 'a version number').transform(Number) }),
      body: verdictRequestSchema,
      response: { 200: verdictRecordedSchema, ...refusals(409, ...BODY_REFUSALS, ...WRITE_REFUSALS) }
    }
  }, async req => {
    const caller = await authenticate(req, deps.repo)
    mayUseModel(caller, req.params.name, 'report a verdict on')
    const { name, version } = req.params
    if (deps.repo.version(name, version) === undefined) throw new NotFoundError(`model ${name} has no version ${version}`)
    const latest = deps.repo.latest(name)?.version ?? version
    const done = deps.verdicts.record(name, version, latest, req.body.clientId, req.body.verdict)
    if (done === 'old') throw new ConflictError(`${name}@${version}: only the ${VERDICT_VERSIONS} latest versions (from ${latest - VERDICT_VERSIONS + 1}) take verdicts`)
    if (done === 'full') throw new ConflictError(`${name}@${version} holds ${MAX_VERDICTS} verdicts already`)
    return { recorded: true as const }
  })

  api.get('/v1/models/:name/verdicts', {
    schema: { operationId: 'listVerdicts', summary: 'How many runtimes rejected, or rolled back from, each version of a model', ...needsToken('rounds'), params: z.object({ name: modelNameSchema }), response: { 200: verdictListSchema, ...refusals() } }
  }, async req => {
    const caller = await authenticate(req, deps.repo)
    if (!caller.grants.rounds) throw new AccessDeniedError(`role ${caller.role} may not read verdicts (an operator's: publisher or admin)`)
    mayUseModel(caller, req.params.name, 'read the verdicts on')
    if (deps.repo.latest(req.params.name) === undefined) throw new NotFoundError(`no model named ${req.params.name}`)
    return { model: req.params.name, versions: deps.verdicts.counts(req.params.name) }
  })
}
