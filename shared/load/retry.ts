/**
 * A BlockSource that retries transient failures (UnavailableError, TimeoutError) up to
 * `retries` times with exponential backoff; a NotFoundError or an abort is final at once.
 * The backoff wait honours the caller's signal.
 */
import { isUnreachable } from '../errors/errors.ts'
import type { BlockSource } from './source.ts'
import { sleep } from './deadline.ts'

export function retrying (source: BlockSource, retries: number, baseDelayMs = 50): BlockSource {
  return {
    name: source.name,
    async get (cid, options) {
      for (let attempt = 0; ; attempt++) {
        try {
          return await source.get(cid, options)
        } catch (err) {
          if (options.signal.aborted) throw options.signal.reason
          if (!isUnreachable(err) || attempt >= retries) throw err
          await sleep(baseDelayMs * 2 ** attempt, options.signal)
        }
      }
    }
  }
}
