/**
 * What the coordinator's and the decryptor's HTTP servers share about requests that must not
 * hold them: an unknown route is refused before its body is read, and closing cuts what is
 * still open after a grace (review 53b: a body trickled a byte at a time to an unknown route,
 * no token needed, kept `stop()` waiting for the whole 10-minute request timeout).
 */
import type { FastifyInstance } from 'fastify'
import { NotFoundError } from '../../shared/errors/errors.ts'

/** How long `closeWithin` lets requests under way finish before it cuts their connections. */
export const CLOSE_GRACE_MS = 5_000

/**
 * Unknown routes answer 404 in the API's error shape, from the request's head: fastify runs a
 * not-found handler only once the body is in, so its refusal came after however long the client
 * took to send it. Refused before the body, the error handler's grace for an unread body applies.
 */
export function refuseUnknownRoutes (app: FastifyInstance): void {
  const refusal = (method: string, url: string): NotFoundError => new NotFoundError(`Route ${method}:${url.slice(0, 200)} not found`)
  app.addHook('onRequest', async req => { if (req.is404) throw refusal(req.method, req.url) })
  app.setNotFoundHandler(req => { throw refusal(req.method, req.url) })
}

/**
 * Closes `app`; connections still open `graceMs` after (a slow upload, a body that trickles) are
 * cut, so a stop ends within the grace instead of at the request timeout.
 */
export async function closeWithin (app: FastifyInstance, graceMs = CLOSE_GRACE_MS): Promise<void> {
  const timer = setTimeout(() => { app.server.closeAllConnections() }, graceMs)
  try {
    await app.close()
  } finally {
    clearTimeout(timer)
  }
}
