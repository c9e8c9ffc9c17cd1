/**
 * A reverse proxy's forwarding, for tests that stand a proxy in front of a real coordinator:
 * the request (path, method, headers, body) goes to `upstream`, and its answer comes back whole,
 * with its length. `unreachable` answers when the upstream cannot be reached.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

export function forward (upstream: string, req: IncomingMessage, res: ServerResponse, unreachable: () => void): void {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !['host', 'connection', 'content-length'].includes(k)) headers[k] = v
    fetch(`${upstream}${req.url ?? '/'}`, { method: req.method, headers, body: chunks.length === 0 ? undefined : Buffer.concat(chunks) }).then(async up => {
      const body = Buffer.from(await up.arrayBuffer())
      res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? 'application/octet-stream', 'content-length': body.length })
      res.end(body)
    }, unreachable)
  })
}
