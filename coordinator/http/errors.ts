/**
 * One error handler for every route: typed errors keep their status; fastify's validation and
 * body-size errors become 4xx; anything else is a 500 whose details stay in the log.
 * The body is always `{ error, message }` (api-schemas.ts `errorBodySchema`).
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { BlockfedError, BusyError } from '../../shared/errors/errors.ts'

export function errorHandler (err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply): void {
  if (err instanceof BusyError) {
    // RFC 9110 §10.2.3: Retry-After in whole seconds.
    void reply.status(503).header('retry-after', Math.ceil(err.retryAfterMs / 1000)).send({ error: err.name, message: err.message })
    return
  }
  if (err instanceof BlockfedError) {
    if (err.status >= 500) req.log.error({ err }, 'request failed')
    void reply.status(err.status).send({ error: err.name, message: err.message })
    return
  }
  const fe = err as FastifyError
  if (fe.validation !== undefined) {
    const detail = fe.validation.map(v => `${fe.validationContext ?? 'request'}${v.instancePath === '' ? '' : v.instancePath.replaceAll('/', '.')}: ${v.message ?? 'invalid'}`).join('; ')
    void reply.status(400).send({ error: 'InvalidInputError', message: detail })
    return
  }
  const status = fe.statusCode ?? 500
  if (status >= 400 && status < 500) {
    void reply.status(status).send({ error: fe.code ?? fe.name, message: fe.message })
    return
  }
  req.log.error({ err }, 'request failed')
  void reply.status(500).send({ error: 'InternalError', message: 'internal error; see the coordinator log' })
}
