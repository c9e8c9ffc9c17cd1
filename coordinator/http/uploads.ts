/**
 * The ingest route's upload: a multipart body of model files, read into memory within one
 * total limit (the parser's own `fileSize` limit bounds each part; this bounds their sum as the
 * bytes arrive), and its OpenAPI description.
 */
import type { Multipart } from '@fastify/multipart'
import type { ModelFile } from '../../shared/model/types.ts'
import { relativeFilePathSchema } from '../../shared/manifest/schema.ts'
import { BlockfedError, InvalidInputError, TooLargeError } from '../../shared/errors/errors.ts'
import { MAX_UPLOAD_FILES } from '../constants.ts'

/**
 * OpenAPI: the ingest route's body. The multipart parser reads it in the handler, so it has no
 * zod body schema (one would be checked against a body the parser never sets), and it is added
 * to the document once the routes are in.
 */
export function withIngestBody<T extends { paths?: object }> (doc: T, maxBytes: number): T {
  const ingest = (doc.paths as Record<string, { post?: Record<string, unknown> } | undefined> | undefined)?.['/v1/models/{name}/ingest']?.post
  if (ingest !== undefined) {
    ingest.requestBody = {
      required: true,
      description: `One file part per model file (at most ${MAX_UPLOAD_FILES}, ${maxBytes} bytes in all), each part's filename its path in the model folder: model.json and the weight files it names, or one .onnx file and its external data.`,
      content: { 'multipart/form-data': { schema: { type: 'object', properties: { file: { type: 'array', items: { type: 'string', format: 'binary' } } } } } }
    }
  }
  return doc
}

/**
 * A part's bytes when they fit in `room`, else undefined. The part is read to its end either
 * way (the parser hands over the next part only then), but past `room` nothing more is kept:
 * read whole first, the part that crossed the limit was held beside all the others, up to
 * twice the limit in all.
 */
async function readPart (file: AsyncIterable<Buffer>, room: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of file) {
    size += chunk.length
    if (size <= room) chunks.push(chunk)
    else chunks.length = 0
  }
  return size <= room ? Buffer.concat(chunks, size) : undefined
}

/**
 * The uploaded model files, each checked for a safe relative name, sent once, within the
 * total limit. Malformed multipart (truncated, no boundary) is the client's error: a 400 that
 * says so, where busboy's bare errors would have been a 500.
 */
export async function receiveFiles (parts: AsyncIterable<Multipart>, maxBytes: number): Promise<ModelFile[]> {
  const files: ModelFile[] = []
  let total = 0
  try {
    for await (const part of parts) {
      if (part.type !== 'file') throw new InvalidInputError(`unexpected form field "${part.fieldname}": send only files`)
      // A part with a body but no filename is a file to the parser, yet has no name to keep.
      if (typeof part.filename !== 'string' || part.filename === '') {
        await readPart(part.file, 0).catch(() => undefined)
        throw new InvalidInputError(`form part "${part.fieldname}" has no filename: send each model file with its file name`)
      }
      // The names a manifest may carry, so what is accepted here can be pulled back out anywhere.
      const name = relativeFilePathSchema.safeParse(part.filename)
      if (!name.success) {
        await readPart(part.file, 0).catch(() => undefined)
        throw new InvalidInputError(`file name ${JSON.stringify(part.filename.slice(0, 100))} is not a safe relative path: ${name.error.issues[0]?.message ?? 'refused'}`)
      }
      const buffer = await readPart(part.file, maxBytes - total)
      // Cut at the parser's per-file limit, a part ends short rather than failing.
      if (part.file.truncated) throw new TooLargeError(`a file exceeds the ${maxBytes}-byte upload limit`)
      if (buffer === undefined) throw new TooLargeError(`upload exceeds the ${maxBytes}-byte limit`)
      total += buffer.length
      if (files.some(f => f.path === part.filename)) throw new InvalidInputError(`file "${part.filename}" sent twice`)
      files.push({ path: part.filename, bytes: new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength) })
    }
  } catch (err) {
    // Text fields are refused by the parser's limit (fields: 0), which calls it "too large".
    if ((err as { code?: string }).code === 'FST_FIELDS_LIMIT') throw new InvalidInputError('unexpected form field: send only files', { cause: err })
    // The parser's own limit errors say "request file too large" / "reach parts limit": name the limit.
    if ((err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') throw new TooLargeError(`a file exceeds the ${maxBytes}-byte upload limit`, { cause: err })
    if ((err as { code?: string }).code === 'FST_PARTS_LIMIT' || (err as { code?: string }).code === 'FST_FILES_LIMIT') throw new TooLargeError(`more than ${MAX_UPLOAD_FILES} files in one upload`, { cause: err })
    if (err instanceof BlockfedError || (err as { statusCode?: number }).statusCode !== undefined) throw err
    throw new InvalidInputError(`malformed multipart body: ${(err as Error).message}`, { cause: err })
  }
  if (files.length === 0) throw new InvalidInputError('no files in the upload')
  return files
}
