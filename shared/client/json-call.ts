/**
 * One JSON request over fetch, as blockfed's HTTP clients make them (coordinator, decryptor):
 * bearer token, a deadline, the answer parsed by the schema the service declares, and an error
 * answer (`{ error, message }`) turned into the typed error its status maps to, with the
 * service's message.
 */
import type { z } from 'zod'
import { BusyError, IntegrityError, ServiceFailedError, TooLargeError, UnavailableError, type BlockfedError } from '../errors/errors.ts'
import { readTextBounded } from './bounded-body.ts'
import { deadlineError, withDeadline } from '../load/deadline.ts'
import { errorBodyOf } from './api-schemas.ts'
import { retryAfterMs } from './retry-after.ts'

export interface JsonCallOptions {
  baseUrl: string
  token?: string
  /** Names the service in "unreachable" errors. */
  service: string
  /**
   * Typed error per HTTP status; other failing statuses become UnavailableError, and so does a
   * 5xx whose body is not the service's `{ error, message }` naming that error. `named` refines
   * a status by the body's error name (two refusals that share 409, say). A 503 the service
   * itself answered busy (`BusyError`, with Retry-After) is a BusyError: it is up, so waiting helps.
   */
  errors: Record<number, new (message: string) => BlockfedError>
  named?: Record<string, new (message: string) => BlockfedError>
  /** Largest answer body read (default 64 MiB); a larger one is cut off with TooLargeError. */
  maxBytes?: number
}

export const DEFAULT_MAX_ANSWER_BYTES = 64 << 20

/** Errors made from an answer whose body was the service's own error (`{ error, message }`). */
const saidByService = new WeakSet<object>()

/**
 * Whether `err` is a refusal the service itself answered (its error body), not a proxy's or a
 * load balancer's answer of the same status (an ingress's 404 while it deploys, nginx's 400 for
 * plain HTTP to its TLS port): only the service's own refusal is one to act on for good.
 */
export function answeredByService (err: unknown): boolean {
  return typeof err === 'object' && err !== null && saidByService.has(err)
}

export type JsonCall = <T>(path: string, schema: z.ZodType<T>, init: RequestInit, timeoutMs: number, signal?: AbortSignal) => Promise<T>
/** The same request for a text answer (e.g. a signed note): the body as it came. */
export type TextCall = (path: string, init: RequestInit, timeoutMs: number, signal?: AbortSignal) => Promise<string>

function request (options: JsonCallOptions): (path: string, init: RequestInit, timeoutMs: number, signal?: AbortSignal) => Promise<{ res: Response, text: string, what: string }> {
  const baseUrl = options.baseUrl.replace(/\/+$/, '')
  return async (path, init, timeoutMs, signal) => {
    const headers = new Headers(init.headers)
    if (options.token !== undefined) headers.set('authorization', `Bearer ${options.token}`)
    const what = `${init.method ?? 'GET'} ${path}`
    let res: Response
    let text: string
    try {
      res = await fetch(`${baseUrl}${path}`, { ...init, headers, signal: withDeadline(signal, timeoutMs) })
      text = await readTextBounded(res, options.maxBytes ?? DEFAULT_MAX_ANSWER_BYTES, `${options.service} ${what}`)
    } catch (err) {
      if (err instanceof TooLargeError) throw err
      if (signal?.aborted === true) throw signal.reason
      const timedOut = deadlineError(err, what, timeoutMs)
      if (timedOut !== err) throw timedOut
      // fetch says only "fetch failed"; its cause says why (ECONNREFUSED, ENOTFOUND, …).
      const why = ((err as Error).cause as { code?: unknown } | undefined)?.code
      throw new UnavailableError(`${options.service} ${baseUrl} unreachable: ${(err as Error).message}${typeof why === 'string' ? ` (${why})` : ''}`, { cause: err })
    }
    if (!res.ok) {
      const said = errorBodyOf(text)
      const after = res.status === 503 && said?.error === 'BusyError' ? retryAfterMs(res.headers.get('retry-after')) : undefined
      if (after !== undefined) throw new BusyError(`${what}: ${said?.message ?? 'busy'}`, after)
      const named = said === undefined ? undefined : options.named?.[said.error]
      const Err = named !== undefined && new named('').status === res.status ? named : options.errors[res.status]
      // A 5xx may come from a proxy in front of the service (502 Bad Gateway while it is down):
      // its typed error only when the service's own body names it, else the service is unreachable.
      const typed = Err !== undefined && (res.status < 500 || said?.error === new Err('').name)
      const Failed = res.status >= 500 && said !== undefined ? ServiceFailedError : UnavailableError
      const error = new (typed ? Err : Failed)(`${what}: ${said?.message ?? `HTTP ${res.status}`}`)
      if (said !== undefined) saidByService.add(error)
      throw error
    }
    return { res, text, what }
  }
}

export function jsonCall (options: JsonCallOptions): JsonCall {
  const send = request(options)
  return async (path, schema, init, timeoutMs, signal) => {
    const { res, text, what } = await send(path, init, timeoutMs, signal)
    let body: unknown
    try {
      body = text === '' ? undefined : JSON.parse(text)
    } catch {
      throw new IntegrityError(`${what}: HTTP ${res.status} with a body that is not JSON`)
    }
    const parsed = schema.safeParse(body)
    if (!parsed.success) throw new IntegrityError(`${what}: answer does not match the API schema: ${parsed.error.issues[0]?.message ?? ''}`)
    return parsed.data
  }
}

export function textCall (options: JsonCallOptions): TextCall {
  const send = request(options)
  return async (path, init, timeoutMs, signal) => (await send(path, init, timeoutMs, signal)).text
}
