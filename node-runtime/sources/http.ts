/**
 * The Node adapter of the HTTP BlockSource: same contract and URL scheme as
 * shared/load/http-source.ts, on node:http(s) with a keep-alive agent, reading each body into
 * one buffer sized from Content-Length. fetch's WHATWG streams allocate per chunk; on this
 * path (hundreds of ~0.5 MB shards a second) that garbage was the load pipeline's bottleneck.
 */
import http from 'node:http'
import https from 'node:https'
import { joinChunks } from '../../shared/client/bounded-body.ts'
import { BlockfedError, TimeoutError, TooLargeError, UnavailableError } from '../../shared/errors/errors.ts'
import { withDeadline } from '../../shared/load/deadline.ts'
import { ERROR_BODY_BYTES, ERROR_BODY_MS, statusError, type HttpBlockSource, type HttpBlockSourceOptions } from '../../shared/load/http-source.ts'

export function nodeHttpBlockSource (options: HttpBlockSourceOptions & { maxSockets?: number }): HttpBlockSource & { close: () => void } {
  const base = options.baseUrl.replace(/\/+$/, '')
  const secure = base.startsWith('https:')
  const timeoutMs = options.timeoutMs ?? 30_000
  const maxBytes = options.maxBytes ?? 64 << 20
  const agent = new (secure ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: options.maxSockets ?? 16 })
  const request = secure ? https.request : http.request
  let bytesFetched = 0
  let requests = 0

  function get (cid: string, signal: AbortSignal, bound: number): Promise<Uint8Array> {
    const url = `${base}/v1/blocks/${encodeURIComponent(cid)}`
    return new Promise((resolve, reject) => {
      const req = request(url, { agent, signal }, res => {
        const status = res.statusCode ?? 0
        if (status !== 200) {
          // Not drained: an error body may be endless, and would hold the socket till the
          // deadline. A 502's first ERROR_BODY_BYTES, for ERROR_BODY_MS at most, say whether it
          // is the coordinator's own (a damaged file) or a proxy's.
          const retryAfter = res.headers['retry-after']
          const chunks: Buffer[] = []
          let kept = 0
          let answered = false
          const answer = (complete: boolean): void => {
            if (answered) return
            answered = true
            clearTimeout(patience)
            res.destroy()
            // Complete only when it ended within ERROR_BODY_BYTES (past them it is answered at once).
            const said = complete ? Buffer.concat(chunks).toString('utf8') : ''
            reject(statusError(status, typeof retryAfter === 'string' ? retryAfter : null, url, cid, base, said))
          }
          const patience = status === 502 ? setTimeout(() => answer(false), ERROR_BODY_MS) : undefined
          if (patience === undefined) {
            answer(false)
            return
          }
          res.on('data', (chunk: Buffer) => {
            chunks.push(chunk)
            kept += chunk.length
            if (kept > ERROR_BODY_BYTES) answer(false)
          })
          res.on('end', () => answer(true))
          res.on('error', () => answer(false))
          return
        }
        // Sized from Content-Length when there is one (one buffer, no copies); without one (a
        // chunked answer: a proxy may re-chunk) the chunks are gathered within the same bound.
        const declared = res.headers['content-length']
        const length = declared === undefined ? undefined : Number(declared)
        if (length !== undefined && (!Number.isSafeInteger(length) || length > bound)) {
          res.destroy()
          reject(Number.isSafeInteger(length)
            ? new TooLargeError(`GET ${url}: ${length} bytes exceeds the ${bound}-byte bound`)
            : new UnavailableError(`GET ${url}: Content-Length ${declared ?? ''}`))
          return
        }
        const body = length === undefined ? undefined : new Uint8Array(length)
        const chunks: Buffer[] = []
        let at = 0
        res.on('data', (chunk: Buffer) => {
          if (at + chunk.length > (length ?? bound)) {
            res.destroy(length === undefined
              ? new TooLargeError(`GET ${url}: the body passed the ${bound}-byte bound`)
              : new UnavailableError(`GET ${url}: body longer than its Content-Length`))
            return
          }
          if (body === undefined) chunks.push(chunk)
          else body.set(chunk, at)
          at += chunk.length
        })
        res.on('end', () => {
          if (length !== undefined && at !== length) { reject(new UnavailableError(`GET ${url}: body cut short (${at} of ${length} bytes)`)); return }
          bytesFetched += at
          resolve(body ?? joinChunks(chunks, at))
        })
        // A connection reset mid-body is the network's fault like one before the answer: retryable.
        res.on('error', err => reject(typed(err)))
      })
      const typed = (err: Error): Error => {
        if (err instanceof BlockfedError) return err
        if (signal.aborted) {
          if (signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError') return new TimeoutError(`GET ${url}: no answer within ${timeoutMs} ms`, { cause: err })
          // The caller's own reason, as the fetch source (and any awaited signal) rejects with;
          // node:http says only "The operation was aborted".
          if (signal.reason instanceof Error) return signal.reason
        }
        return err.name === 'AbortError' ? err : new UnavailableError(`GET ${url}: ${err.message}`, { cause: err })
      }
      req.on('error', err => reject(typed(err)))
      req.end()
    })
  }

  return {
    name: `http:${base}`,
    get bytesFetched () { return bytesFetched },
    get requests () { return requests },
    async get (cid, { signal, size }) {
      requests++
      // No more than the object's own size, where the manifest gives it.
      return await get(cid, withDeadline(signal, timeoutMs), Math.min(size ?? maxBytes, maxBytes))
    },
    close: () => agent.destroy()
  }
}
