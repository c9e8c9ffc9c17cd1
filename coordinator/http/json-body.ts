/**
 * The JSON body parser of the coordinator's and the decryptor's HTTP servers, in place of
 * fastify's: the same secure-json-parse (a `__proto__` key, or a `constructor` holding a
 * `prototype`, is refused as prototype poisoning), but a refused body is told why — where its
 * syntax breaks (line, column, what was expected: shared/config/json.ts) or which key poisons
 * it. Fastify's own parser answers every case "Body is not valid JSON but content-type is set
 * to 'application/json'".
 */
import { errorCodes, type FastifyInstance } from 'fastify'
import secureJson from 'secure-json-parse'
import { locateJsonSyntaxError } from '../../shared/config/json.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'

/**
 * A request body → its JSON value; InvalidInputError naming the problem otherwise.
 *
 * @example parseJsonBody('{"model": "mlp",}') // throws "body: not valid JSON at line 1, column 17: expected a property name in double quotes, found '}'"
 */
export function parseJsonBody (text: string): unknown {
  if (text.trim() === '') throw new InvalidInputError('body: empty, expected a JSON document (or send no content-type)')
  try {
    return secureJson.parse(text, null, { protoAction: 'error', constructorAction: 'error' })
  } catch (err) {
    const p = locateJsonSyntaxError(text)
    if (p !== undefined) throw new InvalidInputError(`body: not valid JSON at line ${p.line}, column ${p.column}: expected ${p.expected}, found ${p.found}`, { cause: err })
    // Valid JSON that secure-json-parse refused (it says the same for both keys).
    throw new InvalidInputError('body: a "__proto__" key, or a "constructor" key holding a "prototype", is refused (prototype poisoning)', { cause: err })
  }
}

/** The media type of a Content-Type header, lower case, without its parameters. */
const mediaTypeOf = (contentType: string): string => (contentType.split(';')[0] ?? '').trim().toLowerCase()

/**
 * Replaces fastify's application/json parser with parseJsonBody (body size limits unchanged),
 * and refuses any other content type on a route whose body is JSON with a 415 before the body is
 * read: fastify's text/plain parser, and the multipart parser registered for the ingest, took
 * such bodies and the schema then said "body: expected object", a 400 (review 47d).
 */
export function useJsonBodyParser (app: FastifyInstance): void {
  // preParsing: after the token hooks (onRequest), so that a caller without one learns nothing.
  app.addHook('preParsing', async req => {
    const type = req.headers['content-type']
    if (type === undefined || req.routeOptions.schema?.body === undefined || mediaTypeOf(type) === 'application/json') return
    throw new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(type.slice(0, 100))
  })
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    // No body where a route takes none (a DELETE from a client that names a content type on every
    // request): nothing to parse, not "body: empty" (review 47d: such a client could not revoke a token).
    if ((body as string).trim() === '' && req.routeOptions.schema?.body === undefined) {
      done(null, undefined)
      return
    }
    try {
      done(null, parseJsonBody(body as string))
    } catch (err) {
      done(err as Error, undefined)
    }
  })
}
