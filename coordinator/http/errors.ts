/**
 * One error handler for every route: typed errors keep their status; fastify's validation and
 * body-size errors become 4xx; anything else is a 500 whose details stay in the log.
 * The body is always `{ error, message }` (api-schemas.ts `errorBodySchema`).
 */
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { BlockfedError, BusyError, UnauthenticatedError } from '../../shared/errors/errors.ts'
import { bearerOf } from './auth.ts'
import { errorBodySchema } from '../../shared/client/api-schemas.ts'
// Request bodies with an unknown key are told the key they likely meant (installed on import).
import '../../shared/errors/suggest.ts'

/**
 * OpenAPI: the refusals a route may answer, each in the error body's shape. Every route may say
 * 400 (bad parameters) and 404; `more` adds the route's own, such as 413 and 415 for a route with
 * a body (over its size limit, another content type). A route that needs a token gets its 401
 * and 403 from its `security`, and one with path parameters its 414 (openapi-raw.ts, withShapeRefusals).
 */
export function refusals (...more: number[]): Record<number, typeof errorBodySchema> {
  return Object.fromEntries([400, 404, ...more].map(status => [status, errorBodySchema]))
}

/** A route with a JSON body: over the 1 MiB body limit (413), or not JSON (415). */
export const BODY_REFUSALS = [413, 415]

/** A route that writes: the disk is full (507, nothing of the request kept; review 47d: it was documented nowhere). */
export const WRITE_REFUSALS = [507]

/**
 * Characters of an error message an answer carries. Messages quote what was sent (a weight's
 * dtype, a path, a tensor name), and a 30 MB dtype came back as a 30 MB refusal (review 46c).
 */
export const MAX_MESSAGE_CHARS = 2000

/** `message`, cut to MAX_MESSAGE_CHARS with a note of how much was left out. */
export function boundedMessage (message: string): string {
  if (message.length <= MAX_MESSAGE_CHARS) return message
  return `${message.slice(0, MAX_MESSAGE_CHARS)}… (${message.length - MAX_MESSAGE_CHARS} more characters)`
}

/** How long a refused request may go on sending its body (Node reads and drops it meanwhile). */
export const REFUSED_BODY_GRACE_MS = 10_000

/** Seconds a 503 (unavailable for now) asks the client to wait before retrying. */
export const UNAVAILABLE_RETRY_S = 5

/** SQLite's result code for a full database or disk (https://sqlite.org/rescode.html#full). */
const SQLITE_FULL = 13

/** A full disk under `err` or its causes: the file system's ENOSPC, or SQLite's SQLITE_FULL. */
function diskFull (err: unknown, depth = 0): boolean {
  if (typeof err !== 'object' || err === null || depth > 4) return false
  const e = err as { code?: unknown, errcode?: unknown, cause?: unknown }
  return e.code === 'ENOSPC' || e.errcode === SQLITE_FULL || diskFull(e.cause, depth + 1)
}

/**
 * A 401's challenge (RFC 9110 §11.6.1 requires one; RFC 6750 §3): the Bearer scheme, and
 * `invalid_token` when a bearer token was sent but opens nothing (RFC 6750 §3.1 names no error
 * when none was sent).
 */
export function bearerChallenge (authorization: string | undefined): string {
  return bearerOf(authorization) === undefined ? 'Bearer realm="blockfed"' : 'Bearer realm="blockfed", error="invalid_token"'
}

export function errorHandler (err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply): void {
  // Whatever a route set for its answer (an ETag, an immutable cache-control) is not this answer's:
  // a cache must not keep a refusal in place of what the route would serve.
  void reply.removeHeader('etag').header('cache-control', 'no-store')
  // A request refused before its body was read (no token, too large): Node reads and drops the
  // rest, so the client can finish sending and then read the refusal (closed at once, an upload
  // with a wrong token failed as "fetch failed"), but only for REFUSED_BODY_GRACE_MS: a body
  // trickled a byte at a time held the connection for the whole 10-minute request timeout.
  if (!req.raw.complete) {
    const socket = req.raw.socket
    const timer = setTimeout(() => { if (!req.raw.complete) socket.destroy() }, REFUSED_BODY_GRACE_MS)
    timer.unref()
    req.raw.once('end', () => { clearTimeout(timer) })
    socket.once('close', () => { clearTimeout(timer) })
  }
  if (err instanceof BusyError) {
    // RFC 9110 §10.2.3: Retry-After in whole seconds.
    void reply.status(503).header('retry-after', Math.ceil(err.retryAfterMs / 1000)).send({ error: err.name, message: boundedMessage(err.message) })
    return
  }
  if (diskFull(err)) {
    // Said as such (RFC 4918 §11.5), not as an internal error: the operator's fix is space (review 46f).
    req.log.error({ err }, 'request failed: the disk is full')
    void reply.status(507).send({ error: 'InsufficientStorage', message: 'the coordinator\'s disk is full, so nothing of this request was stored; free space where its data dir is, then retry' })
    return
  }
  if (err instanceof BlockfedError) {
    if (err.status === 503) {
      // Unavailable for now (too few clients connected, uploads being received, the decryptor
      // down): an answer to retry, not a fault; a client polling to start a round filled the
      // error log with stack traces (review 47d). RFC 9110 §10.2.3: Retry-After in seconds.
      req.log.warn({ message: err.message }, 'request refused for now')
      void reply.header('retry-after', UNAVAILABLE_RETRY_S)
    } else if (err.status >= 500) {
      req.log.error({ err }, 'request failed')
    } else if (err instanceof UnauthenticatedError) {
      void reply.header('www-authenticate', bearerChallenge(req.headers.authorization))
    }
    void reply.status(err.status).send({ error: err.name, message: boundedMessage(err.message) })
    return
  }
  const fe = err as FastifyError
  if (fe.validation !== undefined) {
    // The root is '' or '/' depending on the validator: either names the whole body or query.
    const detail = fe.validation.map(v => `${fe.validationContext ?? 'request'}${v.instancePath === '' || v.instancePath === '/' ? '' : v.instancePath.replaceAll('/', '.')}: ${v.message ?? 'invalid'}`).join('; ')
    void reply.status(400).send({ error: 'InvalidInputError', message: boundedMessage(detail) })
    return
  }
  if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    const type = String(req.headers['content-type'] ?? '').slice(0, 100)
    void reply.status(415).send({ error: 'UnsupportedMediaType', message: `content-type ${JSON.stringify(type)} is not accepted: send application/json (an ingest takes multipart/form-data)` })
    return
  }
  const status = fe.statusCode ?? 500
  if (status >= 400 && status < 500) {
    void reply.status(status).send({ error: fe.code ?? fe.name, message: boundedMessage(fe.message) })
    return
  }
  req.log.error({ err }, 'request failed')
  void reply.status(500).send({ error: 'InternalError', message: 'internal error; see the coordinator log' })
}

/**
 * Requests Node's HTTP parser refuses before any route sees them (a raw non-ASCII byte in the
 * target, a broken request line, oversized headers): answered as every other error, with what
 * was wrong, instead of fastify's default "Client Error". As fastify's default: nothing is
 * written to a socket that is gone, and the connection is closed after the answer.
 */
export function clientErrorHandler (err: Error & { code?: string, reason?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [status, message] = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    ? [408, 'the request did not arrive in time']
    : err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'the request headers are too large']
      : [400, `the request is not valid HTTP/1.1 (${err.reason ?? err.code ?? 'unparsable'}); a request target must be ASCII, with other bytes percent-encoded`]
  const body = JSON.stringify({ error: 'InvalidInputError', message })
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy()
}
