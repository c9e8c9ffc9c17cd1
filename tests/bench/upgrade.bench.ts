/**
 * Upgrade cost (issue 4): a runtime on v1 of an MNIST MLP (784-1024-1024-1024-10, 11.6 MB of
 * float32) upgrades to the v2 that one real federated round produced by training only the head.
 * Every byte the runtime receives from the coordinator is counted by a loopback proxy in front of
 * it, by kind: block shards, manifest, ledger (checkpoint, consistency and inclusion proofs,
 * entry), version list and channels, keys. Figure: bytes fetched for the upgrade. References in
 * the same run: the changed blocks' sealed bytes, and the cold load of the full model. Target:
 * shard bytes ≤ 1.05 × changed blocks' bytes; the rest is manifest and proofs.
 */
import { createServer, request as httpRequest } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import { createNodeRuntime } from '../../node-runtime/runtime.ts'
import { mnistMlp, modelFiles } from '../../node-runtime/examples/mnist-mlp.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { startParticipants, stopParticipants } from '../helpers/fl.ts'
import { machine } from './machine.ts'

type Kind = 'shards' | 'manifest' | 'ledger' | 'versions+channels' | 'keys' | 'other'
const kindOf = (path: string): Kind =>
  path.startsWith('/v1/blocks/') ? 'shards'
    : path.endsWith('/manifest') ? 'manifest'
      : path.startsWith('/ledger/') ? 'ledger'
        : path.endsWith('/versions') || path.endsWith('/channels') ? 'versions+channels'
          : path.endsWith('/keys') ? 'keys' : 'other'

/** A counting reverse proxy: forwards everything to `target`, counts response body bytes by kind. */
async function countingProxy (target: string): Promise<{ url: string, counts: Map<Kind, number>, reset: () => void, close: () => Promise<void> }> {
  const to = new URL(target)
  const counts = new Map<Kind, number>()
  const server = createServer((req, res) => {
    const upstream = httpRequest({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, up => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      const kind = kindOf((req.url ?? '').split('?')[0] as string)
      up.on('data', (chunk: Buffer) => counts.set(kind, (counts.get(kind) ?? 0) + chunk.length))
      up.pipe(res)
    })
    upstream.on('error', () => { res.writeHead(502); res.end() })
    req.pipe(upstream)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    counts,
    reset: () => counts.clear(),
    close: async () => await new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}

const total = (counts: Map<Kind, number>): number => [...counts.values()].reduce((a, b) => a + b, 0)

await tfjsBackend()
const root = await mkdtemp(join(tmpdir(), 'blockfed-bench-upgrade-'))
const coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0 })
try {
  const url = await coordinator.start()
  const admin = coordinatorClient({ baseUrl: url, token: coordinator.adminToken })
  const edge = await admin.createToken('edge')
  const model = mnistMlp({ hidden: [1024, 1024, 1024], seed: 1 })
  await admin.ingest('mnist', await modelFiles(model))
  model.dispose()

  const proxy = await countingProxy(url)
  const runtime = await createNodeRuntime({ dataDir: join(root, 'runtime'), token: edge })
  const config = { version: '1', tag: 'digits', runtime: 'tensorflow', source: 'blockfed', modelDir: 'mnist', modelName: 'mnist', updateURL: proxy.url }
  const handle = await runtime.load(config)
  const cold = new Map(proxy.counts)
  const v1 = handle.manifest

  // One real round (3 runtimes; the secure mode does not change what the round publishes), training the head only.
  const participants = await startParticipants(url, edge, join(root, 'participants'), 3, { size: 200 })
  const round = await coordinator.rounds.run({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 3 } })
  await stopParticipants(participants)

  proxy.reset()
  const change = await handle.update()
  const v2 = handle.manifest
  const known = new Set(v1.blocks.map(b => b.cid))
  const changed = v2.blocks.filter(b => !known.has(b.cid))
  const changedBytes = changed.reduce((n, b) => n + b.sealedLength, 0)
  const modelBytes = v2.blocks.reduce((n, b) => n + b.sealedLength, 0)
  const upgrade = Object.fromEntries(proxy.counts)
  const shardBytes = proxy.counts.get('shards') ?? 0
  const overhead = total(proxy.counts) - shardBytes

  console.log(JSON.stringify({
    bench: 'upgrade',
    machine: machine(),
    round: { id: round.id, state: round.state, reason: round.reason, from: change.from, to: change.to, action: change.action },
    model: { blocks: v2.blocks.length, sealedBytes: modelBytes, changedBlocks: changed.length, changedBytes },
    coldLoad: { totalBytes: total(cold), byKind: Object.fromEntries(cold) },
    upgradeBytes: { total: total(proxy.counts), byKind: upgrade },
    shardsOverChanged: +(shardBytes / changedBytes).toFixed(4),
    manifestAndProofsBytes: overhead,
    upgradeOverFullModel: +(total(proxy.counts) / modelBytes).toFixed(4),
    target: 'shards ≤ 1.05 × changed blocks\' bytes (+ manifest and proofs)',
    met: shardBytes <= 1.05 * changedBytes
  }, null, 2))
  await runtime.stop()
  await proxy.close()
} finally {
  await coordinator.stop()
  await rm(root, { recursive: true, force: true })
}
