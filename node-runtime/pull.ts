/**
 * `blockfed pull`: one model version through the runtime's load pipeline (signed manifest →
 * keys → shards → verified, decrypted blocks, cached under `<home>/cache/<model>`), then written
 * back in its original format by shared/formats.
 */
import { join } from 'node:path'
import { coordinatorClient } from '../shared/client/coordinator-client.ts'
import { writeModel } from '../shared/formats/index.ts'
import { nodeHttpBlockSource } from './sources/http.ts'
import { fetchModel } from '../shared/load/fetch-model.ts'
import type { LoadReport } from '../shared/load/loader.ts'
import type { Manifest } from '../shared/manifest/schema.ts'
import type { ModelFile } from '../shared/model/types.ts'
import { parsePublicKeyHex } from '../shared/crypto/sign.ts'
import { diskCache } from './cache/disk-tier.ts'
import { coordinatorKey } from './trust.ts'
import { DEFAULT_DISK_CACHE_BYTES, DEFAULT_HALF_LIFE_HOURS } from './constants.ts'

export interface PullOptions {
  baseUrl: string
  token?: string
  model: string
  version: number | 'latest'
  home: string
  coordinatorKey?: string
  onBlock?: (done: number, total: number) => void
}

export async function pullModel (options: PullOptions): Promise<{ manifest: Manifest, files: ModelFile[], report: LoadReport }> {
  const client = coordinatorClient({ baseUrl: options.baseUrl, token: options.token })
  const pinned = options.coordinatorKey === undefined ? undefined : parsePublicKeyHex(options.coordinatorKey, '--coordinator-key')
  const key = pinned ?? await coordinatorKey(options.home, client)
  const cache = await diskCache({ dir: join(options.home, 'cache', options.model), capacityBytes: DEFAULT_DISK_CACHE_BYTES, halfLifeMs: DEFAULT_HALF_LIFE_HOURS * 3_600_000 })
  try {
    const fetched = await fetchModel({
      client,
      coordinatorKey: key,
      model: options.model,
      version: options.version,
      source: nodeHttpBlockSource({ baseUrl: options.baseUrl }),
      cache,
      onBlock: options.onBlock
    })
    return { manifest: fetched.manifest, files: writeModel({ topology: fetched.manifest.topology, tensors: fetched.manifest.tensors, weights: fetched.weights }), report: fetched.report }
  } finally {
    await cache.close()
  }
}
