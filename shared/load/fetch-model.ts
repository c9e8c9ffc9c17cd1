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
}

export interface FetchedModel {
  signed: SignedManifest
  manifest: Manifest
  weights: Uint8Array
  report: LoadReport
}

export async function fetchModel (options: FetchModelOptions): Promise<FetchedModel> {
  const signed = await verifySignedManifest(await options.client.manifest(options.model, options.version, options.signal), options.coordinatorKey)
  const { manifest } = signed
  if (manifest.model !== options.model || (options.version !== 'latest' && manifest.version !== options.version)) {
    throw new AccessDeniedError(`asked for ${options.model}@${options.version}, coordinator answered ${manifest.model}@${manifest.version}`)
  }
  const wrapKey = generateWrapKey()
  const { keys, denied } = await options.client.keys(manifest.model, manifest.version, wrapKey, options.signal)
  wrapKey.secretKey.fill(0)
  if (denied.length > 0) throw new AccessDeniedError(`this token may not read ${denied.length} block key(s) of ${manifest.model}@${manifest.version}`)
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
