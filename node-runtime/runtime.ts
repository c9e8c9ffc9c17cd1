/**
 * The Node edge runtime: AoE config in, a running model out. For each config it resolves the
 * coordinator's key, runs the load pipeline (signed manifest → data keys → shards → verified,
 * decrypted blocks, through a memory-over-disk cache under `<data>/<modelDir>/`), builds the
 * engine (tfjs or onnxruntime) and calls the model code's `init`. Several models may share a tag.
 */
import { join } from 'node:path'
import type { AoeConfig } from '../shared/config/aoe.ts'
import { parseAoeConfig } from '../shared/config/aoe.ts'
import type { CacheTier } from '../shared/cache/types.ts'
import { memoryCache } from '../shared/cache/memory-lru.ts'
import { tieredCache } from '../shared/cache/tiered.ts'
import { coordinatorClient } from '../shared/client/coordinator-client.ts'
import { nodeHttpBlockSource } from './sources/http.ts'
import { fetchModel, type FetchedModel } from '../shared/load/fetch-model.ts'
import type { LoadReport } from '../shared/load/loader.ts'
import type { BlockSource } from '../shared/load/source.ts'
import { retrying } from '../shared/load/retry.ts'
import { infer, type LoadedEngine, type ModelCode } from '../shared/runtime/lifecycle.ts'
import { onnxPassthrough, tfjsPassthrough } from '../shared/runtime/passthrough.ts'
import { InvalidConfigError, InvalidInputError } from '../shared/errors/errors.ts'
import type { Manifest } from '../shared/manifest/schema.ts'
import { diskCache } from './cache/disk-tier.ts'
import { loadAoeConfig } from './config/load.ts'
import { disposeTfjsEngine, loadTfjsEngine } from './engines/tfjs.ts'
import { loadOnnxEngine } from './engines/onnx.ts'
import { coordinatorKey } from './trust.ts'

export interface NodeRuntimeOptions {
  /** The runtime's own folder: caches, pinned keys. */
  dataDir: string
  /** Model code by model name; models without code get the passthrough code. */
  codes?: Record<string, () => ModelCode<any, any, any, any>>
  /** Overrides the config's token (e.g. from the CLI). */
  token?: string
  /** Overrides where blocks come from (p2p sources plug in here). */
  source?: (config: AoeConfig) => BlockSource
  onProgress?: (model: string, done: number, total: number) => void
}

export interface ModelHandle {
  readonly config: AoeConfig
  readonly manifest: Manifest
  readonly engine: LoadedEngine
  readonly report: LoadReport & { totalMs: number }
  infer: (input: any) => Promise<any>
  release: () => Promise<void>
}

export interface NodeRuntime {
  load: (config: string | unknown, signal?: AbortSignal) => Promise<ModelHandle>
  /** One version's verified weights through the same pipeline and cache as `load` (no engine). */
  fetch: (config: string | unknown, version: number | 'latest', signal?: AbortSignal) => Promise<FetchedModel>
  byTag: (tag: string) => ModelHandle[]
  cacheOf: (modelDir: string) => CacheTier | undefined
  stop: () => Promise<void>
}

async function buildEngine (fetched: FetchedModel): Promise<LoadedEngine> {
  const { manifest, weights } = fetched
  const topology = manifest.topology
  if (manifest.format === 'onnx' && topology.kind === 'onnx') return await loadOnnxEngine(topology, manifest.tensors, weights)
  if (manifest.format !== 'onnx' && topology.kind === 'tfjs') return await loadTfjsEngine(manifest.format, topology, weights)
  throw new InvalidInputError(`manifest ${manifest.model}@${manifest.version}: format ${manifest.format} with a ${topology.kind} topology`)
}

export async function createNodeRuntime (options: NodeRuntimeOptions): Promise<NodeRuntime> {
  const handles = new Set<ModelHandle>()
  const caches = new Map<string, CacheTier>()

  async function cacheFor (config: AoeConfig): Promise<CacheTier> {
    let cache = caches.get(config.modelDir)
    if (cache === undefined) {
      cache = tieredCache({
        memory: memoryCache({ capacityBytes: config.cache.memoryBytes }),
        disk: await diskCache({ dir: join(options.dataDir, config.modelDir, 'blocks'), capacityBytes: config.cache.diskBytes, halfLifeMs: config.cache.halfLifeHours * 3_600_000 })
      })
      caches.set(config.modelDir, cache)
    }
    return cache
  }

  async function fetchVersion (config: AoeConfig, version: number | 'latest', signal?: AbortSignal): Promise<FetchedModel> {
    const token = options.token ?? config.token ?? (config.tokenEnv === undefined ? undefined : process.env[config.tokenEnv])
    if (token === undefined) throw new InvalidConfigError(`aoe config for ${config.modelName}: no API token (set "token", or "tokenEnv" naming an environment variable)`)
    const client = coordinatorClient({ baseUrl: config.updateURL, token, timeoutMs: config.fetch.timeoutMs })
    const key = await coordinatorKey(options.dataDir, client, config.coordinatorKey, signal)
    const source = retrying(options.source?.(config) ?? nodeHttpBlockSource({ baseUrl: config.updateURL, timeoutMs: config.fetch.timeoutMs }), config.fetch.retries)
    return await fetchModel({
      client,
      coordinatorKey: key,
      model: config.modelName,
      version,
      source,
      cache: await cacheFor(config),
      concurrency: config.fetch.concurrency,
      signal,
      onBlock: (done, total) => options.onProgress?.(config.modelName, done, total)
    })
  }

  const parse = async (input: string | unknown): Promise<AoeConfig> => typeof input === 'string' ? await loadAoeConfig(input) : parseAoeConfig(input)

  return {
    fetch: async (input, version, signal) => await fetchVersion(await parse(input), version, signal),
    async load (input, signal) {
      const started = performance.now()
      const config = await parse(input)
      const fetched = await fetchVersion(config, config.pin ?? 'latest', signal)
      const wanted = config.engine === 'onnx' ? 'onnx' : 'tfjs'
      if ((fetched.manifest.format === 'onnx') !== (wanted === 'onnx')) {
        throw new InvalidConfigError(`aoe config for ${config.modelName}: runtime "${config.runtime}" cannot run a ${fetched.manifest.format} model`)
      }
      const engine = await buildEngine(fetched)
      const code: ModelCode<any, any, any, any> = options.codes?.[config.modelName]?.() ?? (engine.kind === 'onnx' ? onnxPassthrough() : tfjsPassthrough())
      await code.init({ config, manifest: fetched.manifest, engine })
      const handle: ModelHandle = {
        config,
        manifest: fetched.manifest,
        engine,
        report: { ...fetched.report, totalMs: performance.now() - started },
        infer: async value => await infer(code, value),
        async release () {
          if (!handles.delete(handle)) return
          await code.release()
          if (engine.kind === 'onnx') await engine.session.release()
          else disposeTfjsEngine(engine)
        }
      }
      handles.add(handle)
      return handle
    },
    byTag: tag => [...handles].filter(h => h.config.tag === tag),
    cacheOf: modelDir => caches.get(modelDir),
    async stop () {
      for (const h of [...handles]) await h.release()
      for (const c of caches.values()) await c.close()
      caches.clear()
    }
  }
}
