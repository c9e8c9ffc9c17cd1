/**
 * The ledger client's error answers (shared/ledger/client.ts over shared/client/json-call.ts):
 * the coordinator answers 502 `{ error: 'IntegrityError' }` when its log is inconsistent, but a
 * reverse proxy in front of it answers 502 Bad Gateway when it is down (found by review: every
 * 502 became IntegrityError, so an outage read as a rewritten history and defeated the offline
 * fallback). A real coordinator behind a real proxy, over HTTP on 127.0.0.1.
 */
import { describe, it, expect, afterAll } from 'vitest'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../../coordinator/coordinator.ts'
import { ledgerClient } from '../../../shared/ledger/client.ts'
import { advanceCheckpoint } from '../../../shared/ledger/verify.ts'
import { ed25519Verifier } from '../../../shared/ledger/note.ts'
import { IntegrityError, isUnreachable, UnavailableError } from '../../../shared/errors/errors.ts'

let root: string | undefined
let proxy: http.Server | undefined
let coordinator: Coordinator | undefined

afterAll(async () => {
  await coordinator?.stop()
  proxy?.closeAllConnections()
  proxy?.close()
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

/**
 * A reverse proxy as nginx is commonly set up: requests go upstream; when the upstream cannot be
 * reached it answers 502 Bad Gateway (HTML), or serves the checkpoint from its cache if it has it.
 */
async function reverseProxy (upstream: string): Promise<string> {
  const cache = new Map<string, { status: number, type: string, body: Buffer }>()
  proxy = http.createServer((req, res) => {
    const url = req.url ?? '/'
    const answer = (a: { status: number, type: string, body: Buffer }): void => { res.writeHead(a.status, { 'content-type': a.type }); res.end(a.body) }
    fetch(`${upstream}${url}`).then(async up => {
      const a = { status: up.status, type: up.headers.get('content-type') ?? '', body: Buffer.from(await up.arrayBuffer()) }
      if (url === '/ledger/checkpoint' && up.ok) cache.set(url, a)
      answer(a)
    }, () => {
      answer(cache.get(url) ?? { status: 502, type: 'text/html', body: Buffer.from('<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>') })
    })
  })
  await new Promise<void>(resolve => proxy?.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
}

const entry = (version: number): { model: string, version: number, manifestCid: string, parent: number | null, time: string } =>
  ({ model: 'm', version, manifestCid: `bafy${version}`, parent: version === 1 ? null : version - 1, time: new Date(0).toISOString() })

describe('ledger client behind a reverse proxy', () => {
  it('keeps the coordinator\'s 502 IntegrityError, and reads the proxy\'s 502 Bad Gateway as the log being unreachable', async () => {
    root = await mkdtemp(join(tmpdir(), 'blockfed-ledger-client-'))
    const c = coordinator = await createCoordinator({ dataDir: root, port: 0, host: '127.0.0.1' })
    const url = await reverseProxy(await c.start())
    const client = ledgerClient({ baseUrl: url, timeoutMs: 5_000 })
    const trust = { log: ed25519Verifier(c.log.origin, c.identity.signing.publicKey), witnesses: [], minWitnesses: 0 }
    for (const v of [1, 2, 3]) c.log.append(entry(v))
    c.log.checkpoint()
    let saved: string | undefined
    const store = { load: async () => saved, save: async (note: string) => { saved = note } }
    expect((await advanceCheckpoint(client, trust, store)).checkpoint.size).toBe(3)
    c.log.append(entry(4))
    c.log.checkpoint()
    expect(await client.checkpoint()).toMatch(/\n4\n/) // the proxy has checkpoint 4 cached now

    // The coordinator's own 502: a stored entry that is not canonical JSON.
    const db = new DatabaseSync(join(root, 'coordinator.sqlite'))
    try {
      db.exec('PRAGMA busy_timeout = 5000')
      const leaf = (db.prepare('SELECT entry FROM ledger_leaves WHERE idx = 0').get() as { entry: Uint8Array }).entry
      db.prepare('UPDATE ledger_leaves SET entry = ? WHERE idx = 0').run(new TextEncoder().encode(` ${new TextDecoder().decode(leaf)}`))
    } finally {
      db.close()
    }
    await expect(client.entry(0)).rejects.toThrow(IntegrityError)

    await c.stop()
    coordinator = undefined
    for (const call of [async () => await client.key(), async () => await client.entry(0), async () => await client.inclusion(0, 4)]) {
      const err = await call().then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(UnavailableError)
      expect((err as Error).message).toMatch(/HTTP 502$/)
    }
    // The cached checkpoint 4 needs a consistency proof from 3 that the proxy cannot get: an
    // outage (fall back to what was verified), not a forked history.
    const err = await advanceCheckpoint(client, trust, store).then(() => undefined, (e: unknown) => e)
    expect((err as Error).name).toBe('UnavailableError')
    expect(isUnreachable(err)).toBe(true)
    expect(saved).toMatch(/\n3\n/)
  })
})

describe('ledger client reading a server that answers base64 no bytes have', () => {
  it('throws an IntegrityError naming the field, not the codec\'s bare SyntaxError', async () => {
    const hash = 'A'.repeat(43) + '='
    // 'Zm9=' and the hash ending "B=" have non-zero pad bits: no byte string encodes to them.
    const answers: Record<string, unknown> = {
      '/ledger/entries/0': { index: 0, entry: entry(1), leaf: 'Zm9=' },
      '/ledger/proof/inclusion?index=0&size=2': { index: 0, size: 2, hashes: [hash, `${'A'.repeat(42)}B=`] },
      '/ledger/proof/consistency?from=1&to=2': { from: 1, to: 2, hashes: [`${'A'.repeat(42)}B=`] }
    }
    const server = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(answers[req.url ?? ''] ?? {}))
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const client = ledgerClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, timeoutMs: 5_000 })
      const calls: Array<[() => Promise<unknown>, RegExp]> = [
        [async () => await client.entry(0), /ledger entry 0: leaf: not base64/],
        [async () => await client.inclusion(0, 2), /does not match the API schema: canonical base64 of a 32-byte hash/],
        [async () => await client.consistency(1, 2), /does not match the API schema: canonical base64 of a 32-byte hash/]
      ]
      for (const [call, message] of calls) {
        const err = await call().then(() => undefined, (e: unknown) => e)
        expect(err).toBeInstanceOf(IntegrityError)
        expect((err as Error).message).toMatch(message)
      }
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })
})
