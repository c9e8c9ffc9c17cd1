/**
 * The Node edge runtime: AoE config in, a running model out. For each config it resolves the
 * coordinator's key, picks the version its policy asks for (pin, or the stable / canary channel),
 * proves that version is anchored in the version ledger, runs the load pipeline (signed manifest
 * → data keys → shards → verified, decrypted blocks, through a memory-over-disk cache under
 * `<data>/<modelDir>/`), builds the engine (tfjs or onnxruntime) and calls the model code's
 * `init`. A handle then upgrades (automatically, manually, or after local validation), checks
 * its local metric and rolls back on its own (node-runtime/versions/). Several models may share a tag.
 */
import { join, resolve } from 'node:path'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import type { AoeConfig } from '../shared/config/aoe.ts'
import { parseAoeConfig } from '../shared/config/aoe.ts'
import type { CacheTier } from '../shared/cache/types.ts'
import { memoryCache } from '../shared/cache/memory-lru.ts'
import { tieredCache } from '../shared/cache/tiered.ts'
import { coordinatorClient, type CoordinatorClient } from '../shared/client/coordinator-client.ts'
import { nodeHttpBlockSource } from './sources/http.ts'
import type { FetchedModel } from '../shared/load/fetch-model.ts'
import type { LoadReport } from '../shared/load/loader.ts'
import type { BlockSource } from '../shared/load/source.ts'
import { retrying } from '../shared/load/retry.ts'
import { withDeadline } from '../shared/load/deadline.ts'
import { infer, type LoadedEngine, type ModelCode } from '../shared/runtime/lifecycle.ts'
import { onnxPassthrough, tfjsPassthrough } from '../shared/runtime/passthrough.ts'
import { IntegrityError, InvalidConfigError, InvalidInputError, isUnreachable, LedgerSecurityError, UnauthenticatedError, UnavailableError } from '../shared/errors/errors.ts'
import { checkpointUnverified } from '../shared/ledger/verify.ts'
import { toHex, utf8ToBytes } from '../shared/crypto/bytes.ts'
import { ledgerClient } from '../shared/ledger/client.ts'
import { verifyChannels } from '../shared/ledger/channels.ts'
import { targetVersion, type Target } from '../shared/versions/policy.ts'
import { clientIdentity } from './fl/identity.ts'
import { localVersions, type LocalVersions } from './versions/local-store.ts'
import { sendKeptVerdicts, verdictPasses } from './versions/verdict-sender.ts'
import { afterMove, leftBehind, LeftBehindError, rollbackTarget, withRejected } from './versions/moves.ts'
import { checkLog, obtainVersion, pruneKept, type CheckedLog, type ObtainContext, type ObtainedVersion } from './versions/obtain.ts'
import type { Manifest } from '../shared/manifest/schema.ts'
import { diskCache } from './cache/disk-tier.ts'
import { loadAoeConfig } from './config/load.ts'
import { disposeTfjsEngine, loadTfjsEngine } from './engines/tfjs.ts'
import { loadOnnxEngine } from './engines/onnx.ts'
import { coordinatorKey } from './trust.ts'
import { swarmSource, type SwarmSource, type SwarmStats } from '../shared/p2p/swarm-source.ts'
import { createSwarm, type Swarm } from './p2p/swarm.ts'
import { runtimeMetricsText, type PrefetchCounters } from './metrics.ts'
import { prefetchBlocks } from '../shared/load/loader.ts'
import { verifySignedManifest } from '../shared/manifest/sign.ts'
import { defaultReedSolomon, erasureCoder } from '../shared/blocks/erasure.ts'
import { peerIdOfKey } from './p2p/peer-node.ts'
import { accessHistoryOptions, type AccessHistoryOptions } from '../shared/load/access-history.ts'
import { openAccessLog, type AccessLog } from './access-log.ts'
import { removeStaleTemporaries } from './atomic-file.ts'
import type { Verdict, VersionState } from './versions/local-store.ts'

/** HKDF-SHA256 (RFC 5869) info of the swarm node's seed, derived from the round client's secret key. */
const P2P_NODE_KEY_INFO = utf8ToBytes('blockfed/p2p-node-key/v1')

/**
 * The swarm node's Ed25519 seed: stable across restarts, yet its peer id is not the client id a
 * secagg roster shows, so swarm peers cannot tell who takes part in rounds, nor a roster's
 * reader find its clients on the DHT.
 */
function p2pNodeSeed (clientSecret: Uint8Array): Uint8Array {
  return hkdf(sha256, clientSecret, undefined, P2P_NODE_KEY_INFO, 32)
}

/** A prefetch (announced version, or access history) gives up after this long (the load or upgrade fetches the rest). */
const PREFETCH_DEADLINE_MS = 5 * 60_000
/** A verdict's report gives up after this long (it is advice; the runtime does not wait on it). */
const VERDICT_DEADLINE_MS = 10_000
/**
 * How long a replaced version's engine waits for the inferences still running on it before it
 * is disposed anyway (an inference stuck longer than this fails, rather than pinning a model).
 */
const RETIRE_WAIT_MS = 60_000

export interface NodeRuntimeOptions {
  /** The runtime's own folder: caches, pinned keys. */
  dataDir: string
  /** Model code by model name; models without code get the passthrough code. */
  codes?: Record<string, () => ModelCode<any, any, any, any>>
  /** Overrides the config's token (e.g. from the CLI). */
  token?: string
  /** How errors name `token` when the coordinator refuses it (the CLI: "--token"); default "the runtime's token option". */
  tokenFrom?: string
  /**
   * What an operator should know that is no failure: none of a config's bootstrap peers answered
   * (a stale address, the coordinator's node down), the load going on from known peers or HTTP.
   * Said once per bootstrap list; without a listener, on stderr.
   */
  onNotice?: (message: string) => void
  /** Overrides where blocks come from (p2p sources plug in here). */
  source?: (config: AoeConfig) => BlockSource
  onProgress?: (model: string, done: number, total: number) => void
  /**
   * The ledger refused what the coordinator offers (a rewritten or forked history, a version not
   * in the log). The runtime keeps serving the version it has; this is where to raise the alarm
   * (the error carries both checkpoints and the failing proof).
   */
  onSecurityError?: (model: string, error: LedgerSecurityError) => void
  /**
   * A kept key file or version anchor of `model` did not parse (a bad disk, a hand edit): it was
   * moved aside to `<path>.damaged` and treated as absent, so keys are granted and the version
   * verified again while the coordinator is reachable.
   */
  onStateDamaged?: (model: string, path: string, error: IntegrityError) => void
  /**
   * A model code's `release()` threw as the runtime retired a version it moved on from (an
   * upgrade, a rollback): the version's engine was freed all the same. Without it, a line on stderr.
   */
  onModelCodeError?: (model: string, version: number, error: Error) => void | Promise<void>
  /**
   * A new version of a loaded model was announced on the swarm's gossip by that model's
   * coordinator node, once per version (a hint: `update()` still verifies everything).
   */
  onVersionAnnounced?: (model: string, version: number) => void
  /**
   * After a load, fetch into the cache the sealed blocks of the models this runtime usually
   * loads next (its access history in `<data>/access-history.json`; shared/load/access-history.ts),
   * so their own loads read them locally. Only models whose config was loaded from a file are
   * prefetched. On by default; `false` turns it off.
   */
  accessHistory?: AccessHistoryOptions | false
  /** An access-history prefetch finished (`error` when it failed; prefetching is best effort). */
  onPrefetch?: (event: HistoryPrefetch) => void
  /**
   * Tell the coordinator when this runtime's validation rejects a version or `check()` rolls back
   * from one (the verdict and the runtime's client id, no score), so its operator sees a version
   * its fleet refuses (`blockfed versions NAME` with a token). A verdict the coordinator has not
   * taken yet (it was down, as it may be for an offline rollback) is kept in the model's folder
   * and sent at the next load, update or check. On by default.
   */
  reportVerdicts?: boolean
}

export interface HistoryPrefetch {
  /** The model whose load started the prefetch. */
  after: string
  model: string
  version?: number
  blocks?: number
  bytesFetched?: number
  error?: Error
}

/**
 * A handle's version move: an upgrade; a rollback to a version named; or a move back decided from
 * the folder's state (its previous), which must still be the state it was decided from (`afterMove`).
 */
type Move = 'upgrade' | 'rollback' | 'back'

export type VersionAction = 'none' | 'available' | 'upgraded' | 'rejected' | 'rolled-back'

/** What `update`, `check` and `rollback` did; each narrows `action` to what it can do. */
export interface VersionChange<Action extends VersionAction = VersionAction> {
  action: Action
  from: number
  to: number
  /** Local evaluation (model code's `evaluate`) of the versions involved, when it ran. */
  metrics?: { current?: number, candidate?: number }
  /** Why: the policy's reason, the validation outcome, the bound crossed. */
  reason: string
  /** Bytes fetched for the change (only blocks not already cached). */
  bytesFetched: number
  /**
   * Set when `update` stayed because the log's latest checkpoint could not be verified (short of
   * its witnesses, or garbled on the way): newer versions may exist that this runtime cannot
   * check, so a fleet can alert on it (the reason says why).
   */
  logUnverified?: true
}

export interface ModelHandle {
  readonly config: AoeConfig
  /** The manifest of the version now serving; changes on upgrade and rollback. */
  readonly manifest: Manifest
  readonly engine: LoadedEngine
  readonly report: LoadReport & {
    totalMs: number
    ledgerIndex: number
    offline: boolean
    /**
     * The version the config asked for (its `pin`, or its channel's) when this load could not
     * move to it and serves the version in use instead, with why (an outage, a ledger refusal).
     */
    notServed?: { version: number, reason: string }
  }
  infer: (input: any) => Promise<any>
  /** Follows the version policy: moves to the channel's version if the policy allows it. */
  update: (signal?: AbortSignal) => Promise<VersionChange<'none' | 'available' | 'upgraded' | 'rejected'>>
  /**
   * Evaluates the serving version; when the metric is below `rollback.below`, evaluates the
   * previous version too and rolls back to it if it scores higher (`metrics.candidate`).
   */
  check: (signal?: AbortSignal) => Promise<VersionChange<'none' | 'rolled-back'>>
  /** Switches to an earlier anchored version (default: the previous one) and stays off the current one. */
  rollback: (version?: number, signal?: AbortSignal) => Promise<VersionChange<'rolled-back'>>
  /**
   * Fetches into the cache the sealed blocks of the version the policy points at, if newer, so
   * that a later `update` reads them locally (signature checked, nothing decrypted; the ledger
   * is checked by `update`). Runs by itself when a swarm peer announces a version, unless
   * `peers.prefetch` is false.
   */
  prefetch: (signal?: AbortSignal) => Promise<{ version: number, blocks: number, bytesFetched: number }>
  release: () => Promise<void>
}

export interface NodeRuntime {
  load: (config: string | unknown, signal?: AbortSignal) => Promise<ModelHandle>
  /** One version's verified weights through the same pipeline and cache as `load` (no engine). */
  fetch: (config: string | unknown, version: number | 'latest', signal?: AbortSignal) => Promise<ObtainedVersion>
  /** Rolls a model back without loading it (the CLI's `rollback`): verify, fetch what is missing, record. */
  rollback: (config: string | unknown, version: number, signal?: AbortSignal) => Promise<VersionChange<'rolled-back'>>
  byTag: (tag: string) => ModelHandle[]
  cacheOf: (modelDir: string) => CacheTier | undefined
  /** This runtime's swarm node, once a config with `peers` was loaded. */
  swarm: () => Swarm | undefined
  /** What the swarm source fetched from whom, per coordinator URL. */
  swarmStats: () => Record<string, SwarmStats>
  /** Cache hit rates, bytes, evictions per model folder and tier, and swarm counters, as Prometheus text (format 0.0.4). */
  metricsText: () => string
  stop: () => Promise<void>
}

async function disposeEngine (engine: LoadedEngine): Promise<void> {
  if (engine.kind === 'onnx') await engine.session.release()
  else disposeTfjsEngine(engine)
}

async function buildEngine (fetched: FetchedModel): Promise<LoadedEngine> {
  const { manifest, weights } = fetched
  const topology = manifest.topology
  if (manifest.format === 'onnx' && topology.kind === 'onnx') return await loadOnnxEngine(topology, manifest.tensors, weights)
  if (manifest.format !== 'onnx' && topology.kind === 'tfjs') return await loadTfjsEngine(manifest.format, topology, weights)
  throw new InvalidInputError(`manifest ${manifest.model}@${manifest.version}: format ${manifest.format} with a ${topology.kind} topology`)
}

interface Serving {
  manifest: Manifest
  engine: LoadedEngine
  code: ModelCode<any, any, any, any>
  /** Inferences running on this version; it is disposed only once they are done. */
  inUse: number
  /** Resolves the wait of `retire` when the last inference ends. */
  idle?: () => void
}

/** Runs `task` on `serving`, counted so that a version replaced meanwhile is not disposed under it. */
async function using<T> (serving: Serving, task: () => Promise<T>): Promise<T> {
  serving.inUse++
  try {
    return await task()
  } finally {
    if (--serving.inUse === 0) serving.idle?.()
  }
}

/** The block CIDs of `versions` this runtime verified and kept (nulls skipped; none of a version it kept nothing of). */
async function keptBlocks (local: LocalVersions, versions: Array<number | null>): Promise<Set<string>> {
  const cids = new Set<string>()
  for (const v of new Set(versions)) {
    if (v === null) continue
    const kept = await local.anchor(v).catch(() => undefined)
    for (const b of kept?.signed.manifest.blocks ?? []) cids.add(b.cid)
  }
  return cids
}

/**
 * The version in use and its rollback target. A damaged versions.json names none: it must not
 * fail what only spares them (a cache's trim at open, a fetch's pins).
 */
async function wayBack (local: LocalVersions): Promise<Array<number | null>> {
  const state = await local.state().catch(() => undefined)
  return [state?.current ?? null, state?.previous ?? null]
}

/**
 * An environment variable's value, if it is set. Own keys only: `toString` or `__proto__` would
 * otherwise yield what process.env inherits (a function, Object.prototype) as a token.
 */
function fromEnv (name: string): string | undefined {
  const value: unknown = Object.hasOwn(process.env, name) ? process.env[name] : undefined
  return typeof value === 'string' ? value : undefined
}

/**
 * Says `message` to a listener (`call`), or on stderr without one. Called where nobody awaits
 * (a background task, a catch handler): a listener that throws, or rejects, is said on stderr
 * too, never let end the process or the operation (reviews 48f, 49a).
 */
function tell (message: string, name: string, call: (() => unknown) | undefined): void {
  if (call === undefined) console.error(`blockfed: ${message}`)
  else guarded(message, name, call)
}

/** Calls a caller's listener so that its throw or rejection is said on stderr (after `context`) and never ends the process. */
function guarded (context: string, name: string, call: () => unknown): void {
  const listenerFailed = (listener: unknown): void => { console.error(`blockfed: ${context}; ${name} threw: ${listener instanceof Error ? listener.message : String(listener)}`) }
  try {
    Promise.resolve(call()).catch(listenerFailed)
  } catch (listener) {
    listenerFailed(listener)
  }
}

export async function createNodeRuntime (options: NodeRuntimeOptions): Promise<NodeRuntime> {
  // Checked here, where the caller hears of it: the history itself opens in the background.
  if (options.accessHistory !== undefined && options.accessHistory !== false) accessHistoryOptions(options.accessHistory)
  for (const [name, make] of Object.entries(options.codes ?? {})) {
    if (typeof make !== 'function') throw new InvalidConfigError(`codes["${name}"]: expected a function that makes the model's code (one instance per load), got ${typeof make}`)
  }
  // What crashes left of the runtime's own state files (model folders: at their claim). Other
  // processes may share the dir, so only stale ones.
  await removeStaleTemporaries(['', 'keys', 'trust', 'ledger', 'p2p'].map(dir => join(options.dataDir, dir)))
  const handles = new Set<ModelHandle>()
  /** The peer id of each handle's coordinator node: the one source of version announcements it heeds. */
  const originOf = new WeakMap<ModelHandle, string>()
  /** The highest version announced so far, per coordinator node and model ("<peer id> <model>"). */
  const announced = new Map<string, number>()
  const handlesOf = (model: string): ModelHandle[] => [...handles].filter(h => h.config.modelName === model)
  /** Open caches by model folder, and the opens under way or done with the `cache` settings each was opened with (JSON; cacheFor). */
  const caches = new Map<string, CacheTier>()
  const opening = new Map<string, { settings: string, cache: Promise<CacheTier> }>()
  let swarm: Promise<Swarm> | undefined
  let swarmNow: Swarm | undefined
  /** Bootstrap lists none of whose peers answered, said once each (onNotice). */
  const unreachedBootstrap = new Set<string>()
  const swarmSources = new Map<string, SwarmSource>()
  const httpSources = new Map<string, ReturnType<typeof nodeHttpBlockSource>>()

  /** The runtime's one libp2p node, started by the first config with `peers`; joins every config's bootstrap peers. */
  async function swarmFor (config: AoeConfig, signal?: AbortSignal): Promise<Swarm> {
    const peers = config.peers
    if (peers === undefined) throw new InvalidConfigError(`aoe config for ${config.modelName}: no "peers"`)
    swarm ??= clientIdentity(options.dataDir).then(async identity => await createSwarm({
      seed: p2pNodeSeed(identity.secretKey),
      dir: join(options.dataDir, 'p2p'),
      listen: peers.listen,
      uploadBytesPerSecond: peers.uploadBytesPerSecond,
      onVersion: (model, version, _manifestCid, from) => {
        // Only the coordinator's own node announces versions (gossip messages are signed by their
        // author, relayed or not), and each version once: anyone can publish on a topic, and each
        // announcement acted on costs the coordinator ledger and manifest requests.
        // Keyed by the announcing node as well: two coordinators may serve models of one name.
        const heeded = handlesOf(model).filter(h => originOf.get(h) === from)
        const key = `${from} ${model}`
        if (heeded.length === 0 || version <= (announced.get(key) ?? 0)) return
        announced.set(key, version)
        // From a gossip listener: a throw there would end the process (review 53b).
        const heard = options.onVersionAnnounced
        if (heard !== undefined) guarded(`${model}@${version} was announced`, 'onVersionAnnounced', () => heard(model, version))
        for (const h of heeded) {
          if (h.config.peers?.prefetch === false || version <= h.manifest.version) continue
          void h.prefetch(AbortSignal.timeout(PREFETCH_DEADLINE_MS)).catch(() => {})
        }
      }
    }))
    const s = await swarm
    swarmNow = s
    await s.join(peers.bootstrap, withDeadline(signal, config.fetch.timeoutMs)).catch((err: unknown) => {
      // The coordinator's node may be down: peers already known (DHT, gossip) can still serve. Said
      // once, since a stale address loaded on without a word (review 52a).
      const said = peers.bootstrap.join(' ')
      if (peers.bootstrap.length === 0 || unreachedBootstrap.has(said) || signal?.aborted === true) return
      unreachedBootstrap.add(said)
      const notice = `${config.modelName}: none of the peers in its aoe config's peers.bootstrap answered (${(err as Error)?.message ?? String(err)}); loading goes on from peers already known, else from the coordinator over HTTP (the coordinator prints its p2p addresses at start)`
      const listener = options.onNotice
      tell(notice, 'onNotice', listener === undefined ? undefined : () => listener(notice))
    })
    return s
  }

  /**
   * One HTTP source per coordinator and deadline, so its keep-alive sockets are reused from load
   * to load, and closed by `stop`.
   */
  function httpFor (config: AoeConfig): BlockSource {
    const key = `${config.fetch.timeoutMs} ${config.updateURL}`
    let http = httpSources.get(key)
    if (http === undefined) {
      http = nodeHttpBlockSource({ baseUrl: config.updateURL, timeoutMs: config.fetch.timeoutMs })
      httpSources.set(key, http)
    }
    return http
  }

  /** One swarm source per coordinator (and deadline and fallback), so peer scores carry over from load to load. */
  async function sourceFor (config: AoeConfig, key: Uint8Array, signal?: AbortSignal): Promise<{ source: BlockSource, swarm?: Swarm }> {
    if (options.source !== undefined) return { source: options.source(config) }
    const http = httpFor(config)
    if (config.peers === undefined) return { source: http }
    const s = await swarmFor(config, signal)
    // Per coordinator and the settings it is made with: a config with another deadline or fallback got the first's.
    const sourceKey = `${config.fetch.timeoutMs} ${config.peers.fallback} ${config.updateURL}`
    let source = swarmSources.get(sourceKey)
    if (source === undefined) {
      source = swarmSource({
        network: s.network,
        origin: peerIdOfKey(key).toString(),
        fallback: config.peers.fallback === 'http' ? http : undefined,
        requestTimeoutMs: config.fetch.timeoutMs,
        onReceived: (cid, bytes, from) => s.keepRecent(cid, bytes, from),
        onFetching: (cid, result) => s.fetching(cid, result)
      })
      swarmSources.set(sourceKey, source)
    }
    return { source, swarm: s }
  }

  /**
   * The model folder's cache, opened once. The open is in `opening` before its first await: two
   * operations on one model at once (two loads, a load and a fetch, a load during the history's
   * prefetch of it) would otherwise both open the disk tier, and the second fail on its lock.
   */
  async function cacheFor (config: AoeConfig, local: LocalVersions): Promise<CacheTier> {
    const dir = config.modelDir
    const settings = JSON.stringify(config.cache)
    const open = opening.get(dir)
    // A folder has one cache: a second config of the model with other settings would silently get the first's.
    if (open !== undefined && open.settings !== settings) {
      throw new InvalidConfigError(`aoe config for ${config.modelName}: its modelDir ${dir} has a cache open with other settings (${open.settings}; this config: ${settings}); give the configs of one model folder the same "cache" (a folder's cache stays open until the runtime stops)`)
    }
    if (open !== undefined) return await open.cache
    const cache = openCache(config, local).then(opened => {
      caches.set(dir, opened)
      return opened
    }, (err: unknown) => {
      opening.delete(dir) // the next operation tries again
      throw err
    })
    opening.set(dir, { settings, cache })
    return await cache
  }

  async function openCache (config: AoeConfig, local: LocalVersions): Promise<CacheTier> {
    // The way back, spared by a trim at open (a capacity lowered since the last run).
    const keepAtOpen = await keptBlocks(local, await wayBack(local))
    return tieredCache({
      memory: memoryCache({ capacityBytes: config.cache.memoryBytes }),
      disk: await diskCache({
        dir: join(options.dataDir, config.modelDir, 'blocks'),
        capacityBytes: config.cache.diskBytes,
        keepAtOpen,
        halfLifeMs: config.cache.halfLifeHours * 3_600_000,
        weights: config.cache.weights,
        adapt: config.cache.adapt
      })
    })
  }

  /** Model folders claimed by this runtime: folder → model. */
  const claims = new Map<string, string>()

  /** The model's local versions, its folder claimed for it first (LocalVersions.claim). */
  async function claimed (config: AoeConfig): Promise<LocalVersions> {
    const dir = join(options.dataDir, config.modelDir)
    const local = localVersions(dir, { onDamaged: (path, err) => options.onStateDamaged?.(config.modelName, path, err) })
    if (claims.get(config.modelDir) !== config.modelName) {
      await local.claim(config.modelName)
      await removeStaleTemporaries([dir, join(dir, 'anchors')])
      claims.set(config.modelDir, config.modelName)
    }
    return local
  }

  /**
   * `tokenOptional`: a missing token is said only if the data keys are asked for (a rollback to a
   * version whose blocks and keys this runtime kept needs none, and works offline: review 40a);
   * otherwise it is said before any request.
   */
  async function contextFor (config: AoeConfig, signal?: AbortSignal, tokenOptional = false): Promise<ObtainContext> {
    const token = options.token ?? config.token ?? (config.tokenEnv === undefined ? undefined : fromEnv(config.tokenEnv))
    const noToken = (): InvalidConfigError => new InvalidConfigError(config.tokenEnv === undefined
      ? `aoe config for ${config.modelName}: no API token (set "token", or "tokenEnv" naming an environment variable)`
      : `aoe config for ${config.modelName}: no API token: its "tokenEnv" names ${config.tokenEnv}, which is not set in this process's environment`)
    if (token === undefined && !tokenOptional) throw noToken()
    const reached = coordinatorClient({ baseUrl: config.updateURL, token, timeoutMs: config.fetch.timeoutMs })
    // A refused token is named by where it came from: the coordinator's "unknown API token" alone
    // left the operator guessing which of three places to fix (review 49f).
    const tokenFrom = options.token !== undefined ? options.tokenFrom ?? 'the runtime\'s token option' : config.token !== undefined ? 'the aoe config\'s "token"' : `${config.tokenEnv ?? ''}, the aoe config's "tokenEnv"`
    const keys: CoordinatorClient['keys'] = async (...args) => await reached.keys(...args).catch((err: unknown) => {
      if (!(err instanceof UnauthenticatedError)) throw err
      throw new UnauthenticatedError(`${config.modelName}: the coordinator refused the API token (from ${tokenFrom}): ${err.message}`, { cause: err })
    })
    const client = { ...reached, keys: token !== undefined ? keys : async () => { throw noToken() } }
    const key = await coordinatorKey(options.dataDir, client, config.coordinatorKey, signal)
    // Claimed before anything in the folder (its cache included) is opened.
    const local = await claimed(config)
    const { source, swarm: s } = await sourceFor(config, key, signal)
    const cache = await cacheFor(config, local)
    return {
      dataDir: options.dataDir,
      config,
      client,
      ledger: ledgerClient({ baseUrl: config.updateURL, timeoutMs: config.fetch.timeoutMs }),
      coordinatorKey: key,
      local,
      source: retrying(source, config.fetch.retries),
      // With a swarm, every block stored is announced and provided, and every manifest's shards indexed.
      cache: s === undefined ? cache : s.watch(cache),
      onManifest: s === undefined ? undefined : manifest => s.register(manifest, cache),
      onBlock: (done, total) => options.onProgress?.(config.modelName, done, total)
    }
  }

  type Wanted = Target | undefined | 'offline' | { untrusted: LedgerSecurityError }

  /**
   * The policy's version now; undefined when it is one this runtime rolled back from; 'offline'
   * when the coordinator cannot be asked; `untrusted` when its channels answer cannot be trusted
   * while a version is in use (not signed by the coordinator key, or older than one accepted
   * here: the alarm is raised, a start stays on the version in use, an update throws; a first
   * start refuses it).
   */
  async function target (ctx: ObtainContext, signal?: AbortSignal): Promise<Wanted> {
    const { config } = ctx
    // A pinned version this runtime rolled back from (a rollback, or check() below rollback.below)
    // is not taken again: the next update or start moved straight back onto it and un-rejected it,
    // so a pin with rollback.below swung between two versions (review 42a L2). Changing the pin moves.
    if (config.pin !== undefined) return (await ctx.local.state()).rejected.includes(config.pin) ? undefined : { version: config.pin, reason: 'pin' }
    let answer
    try {
      answer = await ctx.ledger.channels(config.modelName, signal)
    } catch (err) {
      if (isUnreachable(err)) return 'offline'
      throw err
    }
    let channels
    try {
      channels = verifyChannels(answer, ctx.coordinatorKey, { model: config.modelName, seenSeq: await ctx.local.channelsSeen() })
    } catch (err) {
      if (!(err instanceof LedgerSecurityError)) throw err
      if ((await ctx.local.state()).current !== null) return { untrusted: err }
      options.onSecurityError?.(config.modelName, err)
      throw err
    }
    await ctx.local.sawChannels(channels.seq)
    const state = await ctx.local.state()
    const clientId = toHex((await clientIdentity(options.dataDir)).publicKey)
    return targetVersion({ channel: config.channel ?? 'stable' }, channels, clientId, new Set(state.rejected))
  }

  async function serve (config: AoeConfig, fetched: FetchedModel): Promise<Serving> {
    const wanted = config.engine === 'onnx' ? 'onnx' : 'tfjs'
    if ((fetched.manifest.format === 'onnx') !== (wanted === 'onnx')) {
      throw new InvalidConfigError(`aoe config for ${config.modelName}: runtime "${config.runtime}" cannot run a ${fetched.manifest.format} model`)
    }
    const engine = await buildEngine(fetched)
    // Own keys only: a model named "constructor" found Object.prototype's and ran it as its code.
    const own = options.codes !== undefined && Object.hasOwn(options.codes, config.modelName) ? options.codes[config.modelName] : undefined
    let code: ModelCode<any, any, any, any>
    try {
      // Inside: a factory that throws left the engine built for it (review 48d: 6 tensors a try).
      code = own?.() ?? (engine.kind === 'onnx' ? onnxPassthrough() : tfjsPassthrough())
      await code.init({ config, manifest: fetched.manifest, engine })
    } catch (err) {
      await disposeEngine(engine)
      throw err
    }
    return { manifest: fetched.manifest, engine, code, inUse: 0 }
  }

  async function retire (serving: Serving): Promise<void> {
    if (serving.inUse > 0) {
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, RETIRE_WAIT_MS)
        serving.idle = () => { clearTimeout(timer); resolve() }
      })
    }
    // The engine goes whatever the model code's release does: one that threw kept every old
    // version's engine alive, upgrade after upgrade (review 48d: 6 tensors each).
    try {
      await serving.code.release()
    } finally {
      await disposeEngine(serving.engine)
    }
  }

  /**
   * What in the config's version policy runs the model code's evaluate(), if anything: checked at
   * load, so a runtime whose code cannot score is refused then, not at every later update
   * (review 52a: it loaded, served, and never upgraded).
   */
  function scoredBy (config: AoeConfig): string | undefined {
    if (typeof config.upgrade === 'object' && config.upgrade.validate !== undefined && config.pin === undefined) return 'upgrade.validate'
    return config.rollback?.below === undefined ? undefined : 'rollback.below'
  }

  async function evaluate (serving: Serving, config: AoeConfig, why: string): Promise<number> {
    if (serving.code.evaluate === undefined) throw new InvalidConfigError(`aoe config for ${config.modelName}: ${why} needs model code with evaluate()`)
    const score = await serving.code.evaluate()
    if (typeof score !== 'number') throw new InvalidInputError(`${config.modelName}@${serving.manifest.version}: its model code's evaluate() returned ${String(score)}, not a number (${why})`)
    return score
  }

  /**
   * Whether `score` beats `current` by `margin`. A score that is not a finite number (NaN, the
   * mark of a broken model) never does, and any finite one beats it: NaN compares false both
   * ways, so a candidate scoring it was taken and check() went back to one (review 51a), and a
   * serving version scoring it must not keep its place (review 51b).
   */
  function beats (score: number, current: number, margin = 0): boolean {
    return Number.isFinite(score) && (!Number.isFinite(current) || score >= current + margin)
  }

  /** Records a move from `from` to `to` (see `afterMove`), then drops what no version kept needs. */
  async function record (ctx: ObtainContext, from: number | null, to: number, rejectFrom: boolean, fromCurrent = false): Promise<void> {
    await ctx.local.updateState(state => afterMove(ctx.config, state, from, to, { rejectFrom, fromCurrent }))
    // Housekeeping only: the move stands whatever happens here, and the next save of keys prunes again.
    await pruneKept(ctx.local).catch(() => {})
  }

  async function rejectVersion (ctx: ObtainContext, version: number): Promise<void> {
    await ctx.local.updateState(state => withRejected(state, version))
  }

  /**
   * Keeps what this runtime's data said of a version until the coordinator has it, and sends it
   * (verdict-sender.ts). Kept first: a rollback is taken offline too, and its verdict then goes
   * at a later contact.
   */
  async function reportVerdict (ctx: ObtainContext, version: number, verdict: Verdict['verdict']): Promise<void> {
    if (options.reportVerdicts === false) return
    // Unwritable (a full disk): this verdict is lost, as all were before they were kept; the move stands.
    await ctx.local.keepVerdict({ version, verdict }).catch(() => {})
    sendVerdicts(ctx)
  }

  /** Sends the verdicts kept for `ctx`'s model in the background: after a new one, and at each load, update and check. */
  function sendVerdicts (ctx: ObtainContext): void {
    if (options.reportVerdicts === false || stopping.signal.aborted) return
    verdictPass(ctx.config.modelDir, async () => {
      if (stopping.signal.aborted) return
      const clientId = toHex((await clientIdentity(options.dataDir)).publicKey)
      await sendKeptVerdicts(ctx.local, async v => {
        await ctx.client.reportVerdict(ctx.config.modelName, v.version, { clientId, verdict: v.verdict }, AbortSignal.any([stopping.signal, AbortSignal.timeout(VERDICT_DEADLINE_MS)]))
      })
    })
  }

  /**
   * Pins the blocks of the version in use and of its rollback target, so eviction never takes
   * them (rollback stays local); releases pins of versions that are neither any more. `pins`
   * is the handle's own set: pins are reference counts, so handles sharing a cache keep theirs.
   */
  async function repin (ctx: ObtainContext, serving: Manifest, pins: Set<string>): Promise<void> {
    const state = await ctx.local.state()
    const keep = new Set(serving.blocks.map(b => b.cid))
    if (state.previous !== serving.version) {
      for (const cid of await keptBlocks(ctx.local, [state.previous])) keep.add(cid)
    }
    for (const cid of keep) if (!pins.has(cid)) ctx.cache.pin(cid)
    for (const cid of pins) if (!keep.has(cid)) ctx.cache.unpin(cid)
    pins.clear()
    for (const cid of keep) pins.add(cid)
  }

  /** Pins the kept blocks of `versions` (nulls skipped); returns the CIDs pinned, one pin each. */
  async function pinKept (ctx: ObtainContext, versions: Array<number | null>): Promise<Set<string>> {
    const pinned = await keptBlocks(ctx.local, versions)
    for (const cid of pinned) ctx.cache.pin(cid)
    return pinned
  }

  /**
   * Runs `fn` with the version in use and its rollback target pinned, so that what it fetches
   * cannot evict the way back (a model with no handle here has no pins of its own).
   */
  async function keepingTheWayBack<T> (ctx: ObtainContext, fn: () => Promise<T>): Promise<T> {
    const guard = await pinKept(ctx, await wayBack(ctx.local))
    try {
      return await fn()
    } finally {
      for (const cid of guard) ctx.cache.unpin(cid)
    }
  }

  /**
   * The version a cold start serves: a pin or an automatic policy takes the policy's version;
   * otherwise the version in use stays until `update` decides. Offline, the version in use.
   */
  const startVersion = (config: AoeConfig, state: VersionState, wanted: Wanted): number | null => {
    if (wanted === 'offline' || wanted === undefined) return state.current
    if ('untrusted' in wanted) {
      options.onSecurityError?.(config.modelName, wanted.untrusted)
      return state.current
    }
    if (state.current === null || config.pin !== undefined) return wanted.version
    // As in `update`: a channel never moves a runtime backwards, restarted or not.
    return config.upgrade === 'auto' && wanted.version > state.current ? wanted.version : state.current
  }

  /** Fetches a version's missing sealed blocks into the cache: signature checked, nothing decrypted. */
  async function prefetchVersion (ctx: ObtainContext, version: number, signal?: AbortSignal): Promise<{ version: number, blocks: number, bytesFetched: number }> {
    const { manifest } = await verifySignedManifest(await ctx.client.manifest(ctx.config.modelName, version, signal), ctx.coordinatorKey)
    // Signed, but it must also be the manifest asked for (a signed manifest of another model or
    // version replayed here would fill the cache, and the swarm's index, with blocks nobody loads).
    if (manifest.model !== ctx.config.modelName || manifest.version !== version) {
      throw new IntegrityError(`prefetch of ${ctx.config.modelName}@${version}: the coordinator answered with the manifest of ${manifest.model}@${manifest.version}`)
    }
    ctx.onManifest?.(manifest)
    const coder = await erasureCoder(defaultReedSolomon, manifest.erasure)
    return { version, ...await keepingTheWayBack(ctx, async () => await prefetchBlocks(manifest, { source: ctx.source, coder, cache: ctx.cache, signal })) }
  }

  // Access history: what usually follows a load is prefetched in the background, one model at a
  // time; a load of a model being prefetched stops that prefetch and takes over (blocks already
  // cached are read from the cache). Everything in flight ends with `stop`.
  const stopping = new AbortController()
  /** A model code's failure nobody awaits (see `onModelCodeError`). */
  const codeFailed = (model: string, version: number, err: unknown): void => {
    const error = err instanceof Error ? err : new Error(String(err))
    const listener = options.onModelCodeError
    tell(`${model}@${version}: its model code's release() failed (its engine was freed): ${error.message}`, 'onModelCodeError', listener === undefined ? undefined : () => listener(model, version, error))
  }
  const background = new Set<Promise<void>>()
  /** Tracks `task` until it settles, so that `stop` waits for it. */
  const inBackground = (task: Promise<void>): void => {
    background.add(task)
    void task.finally(() => background.delete(task))
  }
  /** Verdict passes, one at a time per model folder (verdict-sender.ts). */
  const verdictPass = verdictPasses(inBackground)
  /**
   * Runs a caller's fetch, rollback or load so that `stop` ends it (its signal aborts with the
   * runtime's) and waits for it; after `stop` none starts. A load `stop` overtook used to finish
   * afterwards, leaving a live model and a reopened cache behind.
   */
  const operations = new Set<Promise<unknown>>()
  async function operation<T> (what: string, signal: AbortSignal | undefined, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (stopping.signal.aborted) throw new UnavailableError(`${what}: the runtime has stopped`)
    const task = run(signal === undefined ? stopping.signal : AbortSignal.any([signal, stopping.signal]))
    operations.add(task)
    try {
      return await task
    } finally {
      operations.delete(task)
    }
  }
  const historyPrefetches = new Map<string, AbortController>()
  const prefetchCounters: PrefetchCounters = { prefetches: 0, failures: 0, blocks: 0, bytesFetched: 0 }
  const loading = new Map<string, number>()
  let accessLog: Promise<AccessLog> | undefined

  function afterLoad (model: string, configFile: string | undefined): void {
    const historyOptions = options.accessHistory
    if (historyOptions === false || stopping.signal.aborted) return
    const task = (async () => {
      accessLog ??= openAccessLog(options.dataDir, historyOptions).catch((err: unknown) => { accessLog = undefined; throw err })
      const log = await accessLog
      await log.record(model, configFile)
      for (const next of log.likelyNext(model)) {
        if (next.config === undefined || loading.has(next.model) || historyPrefetches.has(next.model) || handlesOf(next.model).length > 0) continue
        const controller = new AbortController()
        historyPrefetches.set(next.model, controller)
        try {
          const signal = AbortSignal.any([controller.signal, stopping.signal, AbortSignal.timeout(PREFETCH_DEADLINE_MS)])
          const config = await loadAoeConfig(next.config)
          const ctx = await contextFor(config, signal)
          const version = startVersion(config, await ctx.local.state(), await target(ctx, signal))
          if (version === null) continue
          const done = await prefetchVersion(ctx, version, signal)
          prefetchCounters.prefetches++
          prefetchCounters.blocks += done.blocks
          prefetchCounters.bytesFetched += done.bytesFetched
          options.onPrefetch?.({ after: model, model: next.model, ...done })
        } catch (err) {
          prefetchCounters.failures++
          options.onPrefetch?.({ after: model, model: next.model, error: err instanceof Error ? err : new Error(String(err)) })
        } finally {
          historyPrefetches.delete(next.model)
        }
      }
    })().catch(() => {
      // The history file could not be written: the next load tries again.
    })
    inBackground(task)
  }

  async function loadParsed (config: AoeConfig, started: number, signal?: AbortSignal): Promise<ModelHandle> {
    const ctx = await contextFor(config, signal)
    const state = await ctx.local.state()
    const version = startVersion(config, state, await target(ctx, signal))
    if (version === null) throw new UnavailableError(`${config.modelName}: the coordinator is unreachable and no version was ever loaded here`)
    // What a rollback needs is pinned before any block arrives, so that the blocks fetched now
    // cannot evict it: on a move, the version in use (it becomes the rollback target); staying
    // on it, its blocks and the rollback target's. repin below settles the pins once serving.
    const pins = await pinKept(ctx, state.current === version ? [state.current, state.previous] : [state.current])
    // Held until recorded: another load's save of keys keeps this version's anchor and keys.
    const loaded = await ctx.local.holding(version, async () => {
      let serving: Serving
      let fetched: ObtainedVersion
      let notServed: { version: number, reason: string } | undefined
      try {
        try {
          fetched = await obtainVersion(ctx, version, signal)
          serving = await serve(config, fetched)
        } catch (err) {
          // Refuse to move, keep serving: a cold start falls back to the version in use, from
          // what this runtime verified and kept, and reports a refusal. A checkpoint short of its
          // witnesses (one down, or cosignatures stripped on the way) is no reason to stop either,
          // nor a checkpoint answer garbled or given a bad signature line on the way (review 42a
          // L3). Nor is anything that keeps a new version from serving: one that cannot be
          // fetched while the channel naming it answers (a partial outage: a full one already
          // serves the version in use offline), or that fails once fetched (its model code's
          // init, an engine that cannot be built, a key or a hash that does not open it): every
          // restart failed the same way until the channel moved (review 46e).
          const cannotMove = signal?.aborted !== true && version !== state.current
          if (!(err instanceof LedgerSecurityError || checkpointUnverified(err) || cannotMove) || state.current === null) throw err
          if (err instanceof LedgerSecurityError) options.onSecurityError?.(config.modelName, err)
          notServed = { version, reason: (err as Error).message }
          fetched = await obtainVersion(ctx, state.current, signal, { local: true })
          serving = await serve(config, fetched)
        }
      } catch (err) {
        for (const cid of pins) ctx.cache.unpin(cid)
        throw err
      }
      const scoring = scoredBy(config)
      if (scoring !== undefined && serving.code.evaluate === undefined) {
        for (const cid of pins) ctx.cache.unpin(cid)
        await retire(serving)
        throw new InvalidConfigError(`aoe config for ${config.modelName}: ${scoring} scores versions with the model code's evaluate(), and this model's code has none (give createNodeRuntime a codes["${config.modelName}"] whose code has evaluate(), or leave ${scoring} out)`)
      }
      try {
        if (state.current !== fetched.manifest.version) await record(ctx, state.current, fetched.manifest.version, false)
        await repin(ctx, serving.manifest, pins)
      } catch (err) {
        // No handle holds what was set up (engine, model code, pins), so nothing else would free it.
        await retire(serving)
        for (const cid of pins) ctx.cache.unpin(cid)
        throw err
      }
      return { serving, fetched, notServed }
    })
    let serving = loaded.serving
    const { fetched, notServed } = loaded
    let report: ModelHandle['report'] = { ...fetched.report, totalMs: performance.now() - started, ledgerIndex: fetched.ledgerIndex, offline: fetched.offline, ...(notServed === undefined ? {} : { notServed }) }
    // Version moves run one at a time, and `release` queues behind them: it aborts the one in
    // flight, waits for it to settle, then frees whatever version ended up serving.
    const released = new AbortController()
    const refuseReleased = (): void => {
      if (released.signal.aborted) throw released.signal.reason
    }
    let lock: Promise<unknown> = Promise.resolve()
    const exclusive = async <T>(signal: AbortSignal | undefined, task: (signal: AbortSignal) => Promise<T>): Promise<T> => {
      const run = lock.then(async () => {
        refuseReleased()
        return await task(signal === undefined ? released.signal : AbortSignal.any([signal, released.signal]))
      })
      lock = run.catch(() => undefined)
      return await run
    }

    /**
     * A verified version with its engine and code ready, not yet serving. Going back (`kept`), a
     * checkpoint short of its witnesses or garbled on the way is met as an outage is: the version
     * comes from what this runtime verified and kept (review 51a: check() threw instead).
     */
    const prepare = async (to: number, signal?: AbortSignal, log?: CheckedLog, kept = false): Promise<{ next: ObtainedVersion, candidate: Serving }> => {
      let next: ObtainedVersion
      try {
        next = await obtainVersion(ctx, to, signal, { log })
      } catch (err) {
        if (!kept || !checkpointUnverified(err)) throw err
        // Not kept here either: the checkpoint's error says what is wrong, not "offline".
        next = await obtainVersion(ctx, to, signal, { local: true }).catch(() => { throw err })
      }
      return { next, candidate: await serve(config, next) }
    }

    /**
     * Scores a prepared version (`score` runs the model code's evaluate), then refuses a handle
     * released meanwhile; the candidate is retired if either fails, since nothing else holds it.
     */
    const scoring = async <T>(prepared: { candidate: Serving }, score: () => Promise<T>): Promise<T> => {
      try {
        const scores = await score()
        refuseReleased()
        return scores
      } catch (err) {
        await retire(prepared.candidate)
        throw err
      }
    }

    /** Records the move to `candidate`, makes it the serving version and frees the old one. */
    const swapIn = async ({ next, candidate }: { next: ObtainedVersion, candidate: Serving }, move: Move): Promise<{ from: number, to: number }> => {
      // A handle released while the candidate was prepared moves nowhere: before, the move was
      // recorded and reported as done for a handle nobody could use (review 48d).
      if (released.signal.aborted) {
        await retire(candidate)
        throw released.signal.reason
      }
      const old = serving
      // Recorded before it serves: if versions.json cannot be written, the handle stays on the
      // version the file names, and the candidate is freed.
      try {
        await record(ctx, old.manifest.version, candidate.manifest.version, move !== 'upgrade', move === 'back')
      } catch (err) {
        await retire(candidate)
        throw err
      }
      serving = candidate
      report = { ...next.report, totalMs: next.report.ms, ledgerIndex: next.ledgerIndex, offline: next.offline }
      await repin(ctx, candidate.manifest, pins)
      // Inferences still running on the old version finish on it; it is disposed after them,
      // without holding up the move (stop() waits for it).
      inBackground(retire(old).catch((err: unknown) => { codeFailed(config.modelName, old.manifest.version, err) }))
      return { from: old.manifest.version, to: candidate.manifest.version }
    }

    /** Prepares `to` and swaps it in; the caller names the action (an upgrade or a rollback). */
    const switchTo = async (to: number, reason: string, move: Move, signal?: AbortSignal, log?: CheckedLog): Promise<Omit<VersionChange, 'action'>> => await ctx.local.holding(to, async () => {
      const prepared = await prepare(to, signal, log, move !== 'upgrade')
      const moved = await swapIn(prepared, move)
      return { ...moved, reason, bytesFetched: prepared.next.report.bytesFetched }
    })

    const reporting = async <T>(task: () => Promise<T>): Promise<T> => {
      try {
        return await task()
      } catch (err) {
        if (err instanceof LedgerSecurityError) options.onSecurityError?.(config.modelName, err)
        throw err
      }
    }

    const handle: ModelHandle = {
      config,
      get manifest () { return serving.manifest },
      get engine () { return serving.engine },
      get report () { return report },
      infer: async value => {
        refuseReleased()
        const current = serving
        return await using(current, async () => await infer(current.code, value))
      },
      update: async signal => await exclusive(signal, async signal => await reporting(async () => {
        sendVerdicts(ctx)
        const from = serving.manifest.version
        const t = await target(ctx, signal)
        if (t === 'offline') return { action: 'none', from, to: from, reason: 'coordinator unreachable', bytesFetched: 0 }
        if (t !== undefined && 'untrusted' in t) {
          // The log first: a coordinator that changed its key, or forked its log, is said in those words.
          await checkLog(ctx, signal)
          throw t.untrusted
        }
        let log: CheckedLog
        try {
          log = await checkLog(ctx, signal)
        } catch (err) {
          // As at a start: a checkpoint short of its witnesses, or garbled on the way, is no
          // evidence of a fork, so no alarm, but nothing can be verified past it (review 49f: this threw).
          if (!checkpointUnverified(err)) throw err
          return { action: 'none', from, to: from, reason: `staying on ${from}: the log's latest checkpoint cannot be verified (${err.message})`, bytesFetched: 0, logUnverified: true }
        }
        // A second entry for the version served here, appended since it was verified: the log
        // can now show other runtimes another manifest under it. Raised while nothing newer is
        // offered to move to; the version moved to is checked on its own (obtain.ts).
        const anchored = log.checkpoint.entries.entriesOf(config.modelName, from)
        const staying = t === undefined || t.version === from || (t.version < from && t.reason !== 'pin')
        if (anchored.length > 1 && staying) {
          throw new LedgerSecurityError(`${config.modelName}@${from}, served here: the log now anchors it ${anchored.length} times (entries ${anchored.join(', ')}), so runtimes can be shown different manifests under it`, { offered: log.checkpoint.note })
        }
        if (t === undefined || t.version === from) return { action: 'none', from, to: from, reason: t === undefined ? (config.pin === undefined ? 'the channel\'s version was rolled back from, or failed validation, here: it is not taken again (a newer one is)' : `the pinned version ${config.pin} was rolled back from here; pin another to move`) : `on the ${t.reason} version`, bytesFetched: 0 }
        // A channel never moves a runtime backwards: going back is a rollback, decided here.
        if (t.version < from && t.reason !== 'pin') return { action: 'none', from, to: from, reason: `the ${t.reason} channel points at ${t.version}, older than ${from}; only a rollback goes back`, bytesFetched: 0 }
        if (config.upgrade === 'manual' && config.pin === undefined) return { action: 'available', from, to: t.version, reason: `${t.reason} channel offers ${t.version}`, bytesFetched: 0 }
        const validate = typeof config.upgrade === 'object' ? config.upgrade.validate : undefined
        // Held like every other move (local-store.ts): another operation's prune must not drop
        // the anchor of the version this one is about to record as in use (review 40b).
        if (validate !== undefined && config.pin === undefined) return await ctx.local.holding(t.version, async (): Promise<VersionChange<'upgraded' | 'rejected'>> => {
          const { margin } = validate
          const prepared = await prepare(t.version, signal, log)
          const bytesFetched = prepared.next.report.bytesFetched
          const { current, score } = await scoring(prepared, async () => ({
            current: await evaluate(serving, config, 'upgrade.validate'),
            score: await evaluate(prepared.candidate, config, 'upgrade.validate')
          }))
          const metrics = { current, candidate: score }
          if (!beats(score, current, margin)) {
            await retire(prepared.candidate)
            await rejectVersion(ctx, t.version)
            await reportVerdict(ctx, t.version, 'rejected')
            return { action: 'rejected', from, to: from, metrics, reason: `${t.version} scored ${score.toFixed(4)} locally, needs ≥ ${(current + margin).toFixed(4)} (current ${current.toFixed(4)} + margin ${margin})`, bytesFetched }
          }
          return { action: 'upgraded', ...await swapIn(prepared, 'upgrade'), metrics, reason: `${t.version} scored ${score.toFixed(4)} locally vs ${current.toFixed(4)}`, bytesFetched }
        })
        return { action: 'upgraded', ...await switchTo(t.version, `${t.reason} channel`, 'upgrade', signal, log) }
      })),
      check: async signal => await exclusive(signal, async signal => {
        sendVerdicts(ctx)
        const from = serving.manifest.version
        const metric = await evaluate(serving, config, 'check')
        const bound = config.rollback?.below
        const state = await ctx.local.state()
        const previous = state.previous !== null && state.rejected.includes(state.previous) ? null : state.previous
        const moved = leftBehind(ctx.config, state, from)
        if (bound === undefined || metric >= bound || previous === null || previous >= from || moved !== undefined) {
          return { action: 'none', from, to: from, metrics: { current: metric }, reason: bound === undefined ? 'no rollback bound configured' : metric >= bound ? `metric ${metric.toFixed(4)} ≥ bound ${bound}` : moved ?? 'no earlier version to roll back to', bytesFetched: 0 }
        }
        try {
          // The previous version is scored before going back to it: it may do worse on this
          // runtime's data than the one failing the bound (review 49f), and then staying is better.
          return await ctx.local.holding(previous, async (): Promise<VersionChange<'none' | 'rolled-back'>> => {
            const prepared = await prepare(previous, signal, undefined, true)
            const bytesFetched = prepared.next.report.bytesFetched
            const score = await scoring(prepared, async () => await evaluate(prepared.candidate, config, 'check'))
            const metrics = { current: metric, candidate: score }
            if (!beats(score, metric) || score === metric) {
              await retire(prepared.candidate)
              return { action: 'none', from, to: from, metrics, reason: `metric ${metric.toFixed(4)} < bound ${bound}, but ${previous} scores ${score.toFixed(4)}, no better: staying`, bytesFetched }
            }
            const moved = await swapIn(prepared, 'back')
            await reportVerdict(ctx, from, 'rolled-back')
            return { action: 'rolled-back', ...moved, metrics, reason: `metric ${metric.toFixed(4)} < bound ${bound}; ${previous} scores ${score.toFixed(4)}`, bytesFetched }
          })
        } catch (err) {
          if (!(err instanceof LeftBehindError)) throw err
          return { action: 'none', from, to: from, metrics: { current: metric }, reason: err.message, bytesFetched: 0 }
        }
      }),
      rollback: async (version, signal) => await exclusive(signal, async signal => {
        const to = rollbackTarget(ctx.config, await ctx.local.state(), version, serving.manifest.version)
        // With no version named, "back" is the folder's previous, which another handle may move.
        return { action: 'rolled-back', ...await switchTo(to, `rolled back to ${to} on request`, version === undefined ? 'back' : 'rollback', signal) }
      }),
      // An operation, so that `stop` ends and waits for it: a prefetch an announcement started
      // ran on after `stop`, into a closed cache.
      prefetch: async signal => await operation(`prefetch of ${config.modelName}`, signal, async signal => {
        const from = serving.manifest.version
        const t = await target(ctx, signal)
        if (t === 'offline' || t === undefined || 'untrusted' in t || t.version <= from) return { version: from, blocks: 0, bytesFetched: 0 }
        return await prefetchVersion(ctx, t.version, signal)
      }),
      async release () {
        if (!handles.delete(handle)) return
        released.abort(new UnavailableError(`${config.modelName}: this model handle was released`))
        await lock
        for (const cid of pins) ctx.cache.unpin(cid)
        pins.clear()
        await retire(serving)
      }
    }
    handles.add(handle)
    // Verdicts this runtime kept while the coordinator was out of reach (or before a restart).
    sendVerdicts(ctx)
    originOf.set(handle, peerIdOfKey(ctx.coordinatorKey).toString())
    return handle
  }

  const parse = async (input: string | unknown): Promise<AoeConfig> => typeof input === 'string' ? await loadAoeConfig(input) : parseAoeConfig(input)

  return {
    fetch: async (input, version, outer) => await operation('fetch', outer, async signal => {
      const config = await parse(input)
      const ctx = await contextFor(config, signal)
      const resolved = version === 'latest' ? (await ctx.client.versions(config.modelName, signal)).at(-1)?.version : version
      if (resolved === undefined) throw new InvalidInputError(`${config.modelName}: the coordinator lists no versions`)
      return await ctx.local.holding(resolved, async () => await keepingTheWayBack(ctx, async () => await obtainVersion(ctx, resolved, signal)))
    }),

    rollback: async (input, version, outer) => await operation('rollback', outer, async signal => {
      const config = await parse(input)
      // A handle serving the model would go on serving what this refuses, and later roll back into it.
      if (handlesOf(config.modelName).length > 0) throw new InvalidInputError(`${config.modelName} is loaded in this runtime: roll it back through its handle (handle.rollback), which switches what it serves`)
      // Checked before anything is fetched: a runtime that never ran the model (a wrong data dir,
      // most likely) has nothing to roll back from, and nothing to refuse afterwards.
      if ((await localVersions(join(options.dataDir, config.modelDir)).state()).current === null) {
        throw new InvalidInputError(`${config.modelName}: this runtime has no version of it recorded in ${join(options.dataDir, config.modelDir)}, so there is nothing to roll back from (is that the runtime's data dir?)`)
      }
      const ctx = await contextFor(config, signal, true)
      const to = rollbackTarget(ctx.config, await ctx.local.state(), version)
      const from = (await ctx.local.state()).current
      const fetched = await ctx.local.holding(to, async () => {
        const obtained = await keepingTheWayBack(ctx, async () => await obtainVersion(ctx, to, signal))
        await record(ctx, from, to, true)
        return obtained
      })
      return { action: 'rolled-back' as const, from: from ?? to, to, reason: `rolled back to ${to} on request`, bytesFetched: fetched.report.bytesFetched }
    }),

    load: async (input, outer) => await operation('load', outer, async signal => {
      const started = performance.now()
      const config = await parse(input)
      loading.set(config.modelName, (loading.get(config.modelName) ?? 0) + 1)
      historyPrefetches.get(config.modelName)?.abort(new Error(`${config.modelName} is being loaded`))
      try {
        const handle = await loadParsed(config, started, signal)
        if (stopping.signal.aborted) {
          // Finished as the runtime stopped: nobody is left to release it.
          await handle.release()
          throw new UnavailableError(`load ${config.modelName}: the runtime stopped`)
        }
        afterLoad(config.modelName, typeof input === 'string' ? resolve(input) : undefined)
        return handle
      } finally {
        const left = (loading.get(config.modelName) ?? 1) - 1
        if (left === 0) loading.delete(config.modelName)
        else loading.set(config.modelName, left)
      }
    }),
    byTag: tag => [...handles].filter(h => h.config.tag === tag),
    cacheOf: modelDir => caches.get(modelDir),
    swarm: () => swarmNow,
    metricsText: () => runtimeMetricsText({ caches: [...caches].map(([modelDir, cache]) => ({ modelDir, cache })), swarm: swarmNow?.counters(), prefetch: { ...prefetchCounters } }),
    swarmStats: () => Object.fromEntries([...swarmSources].map(([url, s]) => [url, s.stats()])),
    async stop () {
      // Not an UnavailableError: that would read as "coordinator offline", and a load under way
      // would fall back to its local version instead of ending.
      stopping.abort(new Error('the runtime is stopping'))
      await Promise.allSettled([...operations])
      await Promise.all([...background])
      // Every handle, then everything else, whatever a model code's release throws (review 48d:
      // the first throw left the caches open, their data dir locked for the next runtime).
      const released = await Promise.allSettled([...handles].map(async h => {
        const what = `${h.config.modelName}@${h.manifest.version}`
        await h.release().catch((err: unknown) => { throw new Error(`${what}: its model code's release() failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }) })
      }))
      const s = await swarm?.catch(() => undefined)
      swarm = undefined
      await s?.stop()
      for (const c of caches.values()) await c.close()
      caches.clear()
      opening.clear()
      for (const http of httpSources.values()) http.close()
      httpSources.clear()
      const failed = released.flatMap(r => r.status === 'rejected' ? [r.reason as unknown] : [])
      if (failed.length === 1) throw failed[0]
      if (failed.length > 1) throw new AggregateError(failed, `${failed.length} model codes failed at release (their engines were freed): ${failed.map(e => (e as Error).message).join('; ')}`)
    }
  }
}
