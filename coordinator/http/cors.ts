/**
 * Which web origins may call the coordinator's HTTP API from a page (CORS, served by
 * @fastify/cors in server.ts): checked where they are configured.
 */
import { InvalidInputError } from '../../shared/errors/errors.ts'

/** `origins` if each is `*` or a web origin as browsers send it (`https://host[:port]`, nothing after). */
export function corsOrigins (origins: string[]): string[] {
  for (const o of origins) {
    let origin: string | undefined
    try { origin = new URL(o).origin } catch {}
    if (o !== '*' && (origin !== o || !/^https?:/.test(o))) throw new InvalidInputError(`CORS origin "${o.slice(0, 100)}": give * or an origin such as https://app.example:8443 (scheme, host and port only)`)
  }
  return origins
}
