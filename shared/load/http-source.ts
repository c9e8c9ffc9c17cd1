/**
 * A BlockSource over the coordinator's HTTP API (`GET /v1/blocks/{cid}`), with fetch, so it runs
 * in Node and browsers alike. Counts the bytes it fetched.
 */
import { NotFoundError, UnavailableError } from '../errors/errors.ts'
import type { BlockSource } from './source.ts'
import { deadlineError, withDeadline } from './deadline.ts'

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
    async get (cid, { signal }) {
      requests++
      const url = `${base}/v1/blocks/${encodeURIComponent(cid)}`
      let res: Response
      try {
        res = await fetch(url, { signal: withDeadline(signal, timeoutMs) })
      } catch (err) {
        const timedOut = deadlineError(err, `GET ${url}`, timeoutMs)
        if (timedOut !== err) throw timedOut
        throw new UnavailableError(`GET ${url}: ${(err as Error).message}`, { cause: err })
      }
      if (res.status === 404) throw new NotFoundError(`${cid}: not at ${base}`)
      if (!res.ok) throw new UnavailableError(`GET ${url}: HTTP ${res.status}`)
      const length = Number(res.headers.get('content-length') ?? NaN)
      if (length > maxBytes) {
        await res.body?.cancel()
        throw new UnavailableError(`GET ${url}: ${length} bytes exceeds the ${maxBytes}-byte bound`)
      }
      const bytes = new Uint8Array(await res.arrayBuffer())
      bytesFetched += bytes.length
      return bytes
    }
  }
}
