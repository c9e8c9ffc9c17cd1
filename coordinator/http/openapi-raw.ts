/**
 * The answers of routes that send raw bytes or text, which @fastify/swagger cannot derive from
 * their (zod) schemas: a block's octet stream and its 304, the ledger's signed note and key as
 * text/plain (review 38c: the block route listed only its refusals, the ledger's texts had no
 * content type). Added to the generated document, as withIngestBody adds the upload's body;
 * withShapeRefusals adds the refusals a route's shape implies.
 */
type Operation = { responses?: Record<string, unknown>, security?: unknown[] }
type Answer = { content?: Record<string, { schema?: unknown }> }
type Paths = Record<string, Record<string, Operation | undefined> | undefined>

const text = (description: string): unknown => ({ description, content: { 'text/plain': { schema: { type: 'string' } } } })

const RAW_ANSWERS: Record<string, Record<string, unknown>> = {
  '/v1/blocks/{cid}': {
    200: {
      description: 'The sealed block or shard, whose sha2-256 is its CID (check it before use). Immutable: ETag is the quoted CID.',
      headers: { etag: { schema: { type: 'string' } }, 'cache-control': { schema: { type: 'string' } } },
      content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } }
    },
    304: { description: 'Not modified: If-None-Match named this CID, whose bytes never change' }
  },
  '/ledger/checkpoint': { 200: text('The latest checkpoint as a signed note (C2SP tlog-checkpoint), witness cosignatures appended') },
  '/ledger/key': { 200: text('The log\'s verifier key: name+hexkeyid+base64(0x01‖pubkey), one line') }
}

export function withRawAnswers<T extends { paths?: object }> (doc: T): T {
  const paths = doc.paths as Paths | undefined
  for (const [path, answers] of Object.entries(RAW_ANSWERS)) {
    const get = paths?.[path]?.get
    // Over what swagger derived: for a route without a response schema, a bare "Default Response".
    if (get !== undefined) get.responses = { ...get.responses, ...answers }
  }
  return doc
}

/**
 * The refusals a route's shape implies, each in the error body's shape (which every route's 400
 * has): a path parameter past the router's bound is a 414; a route that needs a token may answer
 * 401 (no valid token: none, unknown, revoked or expired; get another) and 403 (the token's role
 * may not do this).
 */
export function withShapeRefusals<T extends { paths?: object }> (doc: T, maxParamChars: number): T {
  for (const [path, methods] of Object.entries((doc.paths ?? {}) as Paths)) {
    for (const operation of Object.values(methods ?? {})) {
      if (operation === undefined) continue
      const errorBody = operation.responses?.['400'] as { content?: unknown } | undefined
      if (path.includes('{')) {
        operation.responses = { ...operation.responses, 414: { description: `A path parameter longer than ${maxParamChars} characters`, content: errorBody?.content } }
      }
      if (operation.security === undefined || operation.security.length === 0) continue
      operation.responses = {
        ...operation.responses,
        401: {
          description: 'No valid API token (none, or one unknown, revoked or expired): the message says which; get a token (blockfed token create)',
          headers: { 'www-authenticate': { schema: { type: 'string' }, description: 'Bearer realm="blockfed", with error="invalid_token" when a token was sent' } },
          content: errorBody?.content
        },
        403: { description: 'The token\'s role may not do this (the message names the role)', content: errorBody?.content }
      }
    }
  }
  return doc
}

/** `schema` with every `additionalProperties: false` taken out, at any depth (in place). */
function opened (schema: unknown): void {
  if (typeof schema !== 'object' || schema === null) return
  if (Array.isArray(schema)) {
    for (const item of schema) opened(item)
    return
  }
  const o = schema as Record<string, unknown>
  if (o.additionalProperties === false) delete o.additionalProperties
  for (const value of Object.values(o)) opened(value)
}

/**
 * Answers may gain fields in a later coordinator: their schemas say so, by leaving out the
 * `additionalProperties: false` zod writes for every object (review 47d: a strictly generated
 * client would refuse a newer coordinator's answers). Request bodies stay closed: the server
 * refuses a field it does not know, and says which.
 */
export function withOpenAnswers<T extends { paths?: object }> (doc: T): T {
  for (const methods of Object.values((doc.paths ?? {}) as Paths)) {
    for (const operation of Object.values(methods ?? {})) {
      for (const answer of Object.values(operation?.responses ?? {}) as Answer[]) {
        for (const media of Object.values(answer.content ?? {})) opened(media.schema)
      }
    }
  }
  return doc
}
