/**
 * Fetches one model version through the full load pipeline: manifest from the coordinator →
 * Ed25519 signature and CID checked against the pinned coordinator key → data keys (wrapped to
 * a fresh X25519 key of this load) → blocks via the BlockSource and cache (loader.ts).
 * Returns verified weights and the manifest; turning them into an engine is the caller's job.
 */
import type { CoordinatorClient } from '../client/coordinator-client.ts'
import { defaultReedSolomon, erasureCoder, type ReedSolomonFactory } from '../blocks/erasure.ts'
import type { CacheTier } from '../cache/types.ts'
import type { Manifest, SignedManifest } from '../manifest/schema.ts'
import { verifySignedManifest } from '../manifest/sign.ts'
import { generateWrapKey } from '../crypto/wrap.ts'
import { AccessDeniedError } from '../errors/errors.ts'
import type { BlockSource } from './source.ts'
import { loadModelWeights, type LoadReport } from './loader.ts'

export interface FetchModelOptions {
  /** The coordinator; used for the manifest and the keys unless `signedManifest` / `keys` supply them. */
  client: CoordinatorClient
  /** The coordinator's Ed25519 public key; manifests signed by any other key are refused. */
  coordinatorKey: Uint8Array
  model: string
  version: number | 'latest'
  source: BlockSource
  /** Reed-Solomon wasm factory; Node's default loads it from its package. */
  reedSolomon?: ReedSolomonFactory
  cache?: CacheTier
  concurrency?: number
  signal?: AbortSignal
  onBlock?: (done: number, total: number) => void
  /** A signed manifest obtained elsewhere (e.g. kept locally); still verified against `coordinatorKey`. */
  signedManifest?: unknown
  /** Checks the verified manifest before any key or block is fetched (e.g. its ledger anchor). */
  verify?: (signed: SignedManifest) => Promise<void>
  /** The data keys; by default asked from the coordinator, wrapped to a fresh key of this load. */
  keys?: (manifest: Manifest) => Promise<Map<string, Uint8Array>>
}

export interface FetchedModel {
  signed: SignedManifest
  manifest: Manifest
  weights: Uint8Array
  report: LoadReport
}

export async function fetchModel (options: FetchModelOptions): Promise<FetchedModel> {
  const served = options.signedManifest ?? await options.client.manifest(options.model, options.version, options.signal)
  const signed = await verifySignedManifest(served, options.coordinatorKey)
  const { manifest } = signed
  if (manifest.model !== options.model || (options.version !== 'latest' && manifest.version !== options.version)) {
    throw new AccessDeniedError(`asked for ${options.model}@${options.version}, coordinator answered ${manifest.model}@${manifest.version}`)
  }
  await options.verify?.(signed)
  const keys = options.keys === undefined ? await coordinatorKeys(options.client, manifest, options.signal) : await options.keys(manifest)
  try {
    const { weights, report } = await loadModelWeights(manifest, {
      source: options.source,
      coder: await erasureCoder(options.reedSolomon ?? defaultReedSolomon, manifest.erasure),
      keys,
      cache: options.cache,
      concurrency: options.concurrency,
      signal: options.signal,
      onBlock: options.onBlock
    })
    return { signed, manifest, weights, report }
  } finally {
    for (const key of keys.values()) key.fill(0)
  }
}

/** Asks the coordinator for a version's data keys, wrapped to a fresh X25519 key of this call. */
export async function coordinatorKeys (client: CoordinatorClient, manifest: Manifest, signal?: AbortSignal): Promise<Map<string, Uint8Array>> {
  const wrapKey = generateWrapKey()
  let answer: Awaited<ReturnType<CoordinatorClient['keys']>>
  try {
    answer = await client.keys(manifest.model, manifest.version, wrapKey, signal)
  } finally {
    wrapKey.secretKey.fill(0)
  }
  const { keys, denied } = answer
  if (denied.length > 0) {
    for (const key of keys.values()) key.fill(0)
    // Named with their levels and the fix (review 54b: the count alone left the operator guessing).
    const refused = new Set(denied)
    const levels = [...new Set(manifest.blocks.filter(b => refused.has(b.keyId)).map(b => b.access))].sort()
    const flags = levels.map(l => `--level ${l}`).join(' ')
    throw new AccessDeniedError(`this token may not read ${denied.length} block key(s) of ${manifest.model}@${manifest.version}` +
      (levels.length === 0 ? '' : ` (access level${levels.length === 1 ? '' : 's'} ${levels.join(', ')}: a token made with blockfed token create ROLE ${flags} may)`))
  }
  return keys
}
