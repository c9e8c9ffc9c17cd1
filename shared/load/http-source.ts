/**
 * A BlockSource over the coordinator's HTTP API (`GET /v1/blocks/{cid}`), with fetch, so it runs
 * in Node and browsers alike. Counts the bytes it fetched.
 */
import { errorBodyOf } from '../client/api-schemas.ts'
import { readBodyBounded, readTextBounded } from '../client/bounded-body.ts'
import { retryAfterMs } from '../client/retry-after.ts'
import { BlockfedError, BusyError, IntegrityError, NotFoundError, UnavailableError } from '../errors/errors.ts'
import type { BlockSource } from './source.ts'
import { deadlineError, untilAborted, withDeadline } from './deadline.ts'

export interface HttpBlockSourceOptions {
  baseUrl: string
  timeoutMs?: number
  /** Upper bound on one object's size; a larger answer is cut off and rejected. */
  maxBytes?: number
}

export interface HttpBlockSource extends BlockSource {
  readonly bytesFetched: number
  readonly requests: number
}

/**
 * How much of a 502 answer's body is read, and for how long: the coordinator's `{ error,
 * message }` fits many times over and comes with the headers. Other error answers are not read
 * (their status says all), so a body that stalls never holds a busy or unavailable answer up.
 */
export const ERROR_BODY_BYTES = 4096
export const ERROR_BODY_MS = 1_000

/**
 * The error for a block request answered `status` (not 200), with the start of its body: 404 is
 * final, a 503 with Retry-After means "busy, ask again then" (the coordinator's answer budget is
 * full), a 502 whose body is the coordinator's own IntegrityError is a file damaged on its disk
 * (final: asking again re-reads the same bytes), and anything else is the coordinator being
 * unavailable. A proxy's 502 (any other body) stays unavailable.
 */
export function statusError (status: number, retryAfter: string | null, url: string, cid: string, base: string, body = ''): BlockfedError {
  if (status === 404) return new NotFoundError(`${cid}: not at ${base}`)
  const after = status === 503 ? retryAfterMs(retryAfter) : undefined
  if (after !== undefined) return new BusyError(`GET ${url}: busy, retry in ${after} ms`, after)
  const said = errorBodyOf(body)
  const message = `GET ${url}: HTTP ${status}${said === undefined ? '' : `: ${said.message}`}`
  return status === 502 && said?.error === 'IntegrityError' ? new IntegrityError(message) : new UnavailableError(message)
}

export function httpBlockSource (options: HttpBlockSourceOptions): HttpBlockSource {
  const base = options.baseUrl.replace(/\/+$/, '')
  const timeoutMs = options.timeoutMs ?? 30_000
  const maxBytes = options.maxBytes ?? 64 << 20
  let bytesFetched = 0
  let requests = 0
  return {
    name: `http:${base}`,
    get bytesFetched () { return bytesFetched },
    get requests () { return requests },
    async get (cid, { signal, size }) {
      requests++
      const url = `${base}/v1/blocks/${encodeURIComponent(cid)}`
      // The body is read inside the deadline too: a stall or reset mid-body is the source being
      // unavailable (retried), like one before the headers, not a raw DOMException.
      try {
        const res = await fetch(url, { signal: withDeadline(signal, timeoutMs) })
        if (!res.ok) {
          // A 502's body past its bound or its time is not the coordinator's: read as none.
          const said = res.status === 502 ? await untilAborted(AbortSignal.timeout(ERROR_BODY_MS), readTextBounded(res, ERROR_BODY_BYTES, `GET ${url}`)).catch(() => '') : ''
          if (said === '') await res.body?.cancel().catch(() => {})
          throw statusError(res.status, res.headers.get('retry-after'), url, cid, base, said)
        }
        // No more than the object's own size, where the manifest gives it.
        const bytes = await readBodyBounded(res, Math.min(size ?? maxBytes, maxBytes), `GET ${url}`)
        bytesFetched += bytes.length
        return bytes
      } catch (err) {
        if (err instanceof BlockfedError) throw err
        if (signal?.aborted === true) throw signal.reason
        const timedOut = deadlineError(err, `GET ${url}`, timeoutMs)
        if (timedOut !== err) throw timedOut
        throw new UnavailableError(`GET ${url}: ${(err as Error).message}`, { cause: err })
      }
    }
  }
}
