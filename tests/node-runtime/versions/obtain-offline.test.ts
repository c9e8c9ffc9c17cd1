/**
 * When obtainVersion (node-runtime/versions/obtain.ts) may take its offline path, and when it
 * must not (found by review): a reverse proxy's 502 Bad Gateway is an outage, so a runtime works
 * from its pinned log key and kept versions; a caller's abort is not an outage, so it rejects
 * with the caller's reason instead of serving a kept version; and a log restored from a backup,
 * which cannot prove the checkpoint the runtime already trusts, is refused as a ledger security
 * failure. A real coordinator with a real model, behind a real proxy, over HTTP on 127.0.0.1.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { copyFile, mkdtemp, rm } from 'node:fs/promises'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../../coordinator/coordinator.ts'
import { checkLog, obtainVersion, type ObtainContext } from '../../../node-runtime/versions/obtain.ts'
import { ledgerTrust } from '../../../node-runtime/versions/ledger-trust.ts'
import { localVersions } from '../../../node-runtime/versions/local-store.ts'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import { coordinatorClient } from '../../../shared/client/coordinator-client.ts'
import { parseAoeConfig } from '../../../shared/config/aoe.ts'
import { LedgerSecurityError, UnavailableError } from '../../../shared/errors/errors.ts'
import { ledgerClient } from '../../../shared/ledger/client.ts'
import { httpBlockSource } from '../../../shared/load/http-source.ts'
import { denseModelFiles } from '../../helpers/dense-model.ts'
import { forward } from '../../helpers/forward.ts'

let root: string
let coordinator: Coordinator | undefined
let upstream: string
/** up: forward; bad-gateway: the upstream "is down" (nginx's 502 page); hang: accept, never answer. */
let mode: 'up' | 'bad-gateway' | 'hang' = 'up'
let ctx: ObtainContext
const BAD_GATEWAY = '<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>'

const proxy = http.createServer((req, res) => {
  const badGateway = (): void => { res.writeHead(502, { 'content-type': 'text/html' }); res.end(BAD_GATEWAY) }
  if (mode === 'hang') return
  if (mode === 'bad-gateway') { badGateway(); return }
  forward(upstream, req, res, badGateway)
})

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-obtain-offline-'))
  const dataDir = join(root, 'coordinator')
  coordinator = await createCoordinator({ dataDir, port: 0, host: '127.0.0.1' })
  upstream = await coordinator.start()
  await coordinator.ingest('m', await denseModelFiles(16, [['a', 8, 1]]))
  const db = new DatabaseSync(join(dataDir, 'coordinator.sqlite'))
  db.exec(`VACUUM INTO '${join(root, 'backup.sqlite')}'`) // a backup holding version 1 only
  db.close()
  await coordinator.ingest('m', await denseModelFiles(16, [['a', 8, 2]]))
  const token = await coordinator.createToken('edge')
  await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
  const config = parseAoeConfig({ version: '1', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: url, token })
  const runtimeDir = join(root, 'runtime')
  ctx = {
    dataDir: runtimeDir,
    config,
    client: coordinatorClient({ baseUrl: url, token, timeoutMs: 10_000 }),
    ledger: ledgerClient({ baseUrl: url, timeoutMs: 10_000 }),
    coordinatorKey: coordinator.identity.signing.publicKey,
    local: localVersions(join(runtimeDir, 'm')),
    source: httpBlockSource({ baseUrl: url, timeoutMs: 10_000 }),
    cache: memoryCache({ name: 'obtain-offline' })
  }
}, 60_000)

afterAll(async () => {
  proxy.closeAllConnections()
  proxy.close()
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('obtainVersion: offline or not', () => {
  it('works from the pinned log key and the kept version while a proxy answers 502 Bad Gateway', async () => {
    mode = 'up'
    expect((await obtainVersion(ctx, 1)).offline).toBe(false)
    mode = 'bad-gateway'
    const trust = await ledgerTrust(ctx.dataDir, ctx.config, ctx.coordinatorKey, ctx.ledger)
    expect(trust.log.name).toBe(coordinator?.log.origin)
    const kept = await obtainVersion(ctx, 1)
    expect(kept.offline).toBe(true)
    expect(kept.manifest.version).toBe(1)
  })

  it('rejects with the caller\'s abort reason, never as an outage', async () => {
    mode = 'hang'
    // A plain cancel, and the UnavailableError a released model handle aborts with; version 2 was
    // never verified here, so the offline path would answer "the coordinator is unreachable".
    for (const reason of [new Error('cancelled by the caller'), new UnavailableError('m: this model handle was released')]) {
      for (const version of [1, 2]) {
        const controller = new AbortController()
        setTimeout(() => controller.abort(reason), 100)
        await expect(obtainVersion(ctx, version, controller.signal)).rejects.toBe(reason)
      }
    }
  })

  it('refuses a log restored from a backup, which cannot prove the checkpoint already trusted, as a ledger security failure', async () => {
    mode = 'up'
    const checked = await checkLog(ctx)
    expect(checked.checkpoint.checkpoint.size).toBe(2)
    // The coordinator comes back from the backup: same key, version 1 only.
    const dataDir = join(root, 'coordinator')
    await coordinator?.stop()
    coordinator = undefined
    for (const f of ['coordinator.sqlite-wal', 'coordinator.sqlite-shm']) await rm(join(dataDir, f), { force: true })
    await copyFile(join(root, 'backup.sqlite'), join(dataDir, 'coordinator.sqlite'))
    coordinator = await createCoordinator({ dataDir, port: 0, host: '127.0.0.1' })
    upstream = await coordinator.start()
    expect(coordinator.log.size()).toBe(1)

    // Moving the trusted checkpoint: the consistency proof from 1 to 2 is answered 400.
    await expect(obtainVersion(ctx, 1)).rejects.toThrow(LedgerSecurityError)
    // With the checkpoint checkLog established before the restore: the inclusion proof under 2 is answered 400.
    const err = await obtainVersion(ctx, 1, undefined, { log: checked }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(LedgerSecurityError)
    expect((err as Error).message).toMatch(/^m@1: GET \/ledger\/proof\/inclusion\?index=0&size=2: size 2 is beyond the log's size 1; refusing it$/)
  })
})
