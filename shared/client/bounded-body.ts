/**
 * A fetch Response's body read with a byte cap that is enforced as the bytes arrive: a
 * Content-Length may be missing (chunked) or, under Content-Encoding, be the compressed size
 * while fetch hands over the inflated bytes; `res.text()` or `arrayBuffer()` would first hold it
 * all. Past the cap the stream is cancelled and TooLargeError names `what`.
 */
import { TooLargeError } from '../errors/errors.ts'

export async function readBodyBounded (res: Response, maxBytes: number, what: string): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? NaN)
  if (declared > maxBytes) {
    await res.body?.cancel()
    throw new TooLargeError(`${what}: ${declared} bytes exceeds the ${maxBytes}-byte bound`)
  }
  if (res.body === null) return new Uint8Array(0)
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    total += value.length
    if (total > maxBytes) {
      await reader.cancel()
      throw new TooLargeError(`${what}: the body passed the ${maxBytes}-byte bound`)
    }
    chunks.push(value)
  }
  return chunks.length === 1 ? chunks[0] as Uint8Array : joinChunks(chunks, total)
}

/**
 * `chunks` (`total` bytes in all) copied into one buffer, in a loop: spread as call arguments,
 * a body of some 100,000 small chunks (a trickle, or chunked encoding in single bytes)
 * overflowed the call stack within its bound.
 */
export function joinChunks (chunks: readonly Uint8Array[], total: number): Uint8Array {
  const body = new Uint8Array(total)
  let at = 0
  for (const chunk of chunks) {
    body.set(chunk, at)
    at += chunk.length
  }
  return body
}

/** The body as UTF-8 text, under the same cap (bytes, not characters). */
export async function readTextBounded (res: Response, maxBytes: number, what: string): Promise<string> {
  return new TextDecoder().decode(await readBodyBounded(res, maxBytes, what))
}
