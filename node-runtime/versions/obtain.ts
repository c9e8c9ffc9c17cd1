/**
 * Obtains one model version for a Node runtime, trusting nothing the coordinator says:
 *
 * - online: signed manifest → Ed25519 signature (pinned coordinator key) → the log's latest
 *   checkpoint, proved consistent with the one this runtime persisted → the version's entry and
 *   its inclusion proof under that checkpoint → keys → blocks (only those not cached: an upgrade
 *   fetches just the blocks whose CIDs changed). The anchor is kept locally.
 * - offline (coordinator unreachable): the locally kept manifest and anchor, re-verified
 *   (signature, entry, inclusion under the kept checkpoint's signed root), the locally kept
 *   keys and the cached blocks. A version never verified here cannot be obtained offline.
 */
import type { AoeConfig } from '../../shared/config/aoe.ts'
import type { CacheTier } from '../../shared/cache/types.ts'
import type { CoordinatorClient } from '../../shared/client/coordinator-client.ts'
import { fromBase64, toBase64 } from '../../shared/crypto/bytes.ts'
import { IntegrityError, isUnreachable, LedgerSecurityError, UnavailableError, WrongKeyError } from '../../shared/errors/errors.ts'
import type { LedgerClient } from '../../shared/ledger/client.ts'
import { parseEntry } from '../../shared/ledger/entry.ts'
import { checkEntry, checkInclusion, openTrusted, verifyAnchor, type LedgerTrust, type VerifiedCheckpoint } from '../../shared/ledger/verify.ts'
import type { BlockSource } from '../../shared/load/source.ts'
import { coordinatorKeys, fetchModel, type FetchedModel } from '../../shared/load/fetch-model.ts'
import type { Manifest, SignedManifest } from '../../shared/manifest/schema.ts'
import { advanceTrusted, ledgerTrust, type MonitoredCheckpoint } from './ledger-trust.ts'
import type { LocalVersions } from './local-store.ts'

export interface ObtainContext {
  dataDir: string
  config: AoeConfig
  client: CoordinatorClient
  ledger: LedgerClient
  coordinatorKey: Uint8Array
  local: LocalVersions
  source: BlockSource
  cache: CacheTier
  onBlock?: (done: number, total: number) => void
  /** A manifest passed every check and its blocks are about to load (the swarm indexes its shards). */
  onManifest?: (manifest: Manifest) => void
}

export interface ObtainedVersion extends FetchedModel {
  /** Ledger index of the version's entry. */
  ledgerIndex: number
  /** The checkpoint the version was verified under. */
  checkpoint: VerifiedCheckpoint
  /** True when the coordinator was unreachable and local state was used. */
  offline: boolean
  /** True when data keys were asked of the coordinator (with the token); false when every key was kept here. */
  keysFetched: boolean
}

/**
 * The data keys of every block the runtime may need offline, and the anchors it no longer needs
 * (local-store.ts): kept are this version, the one in use, its rollback target, versions newer
 * than it that were not refused (one on its way in through another load or process: anchored,
 * keys saved, its move not yet recorded) and those this process's operations hold (one an
 * explicit rollback or a fetch is obtaining). Dropping the keys of any of them left the version
 * then in use without its keys; keeping every version's grew without bound.
 */
async function keepKeys (local: LocalVersions, manifest?: Manifest): Promise<{ keyIds: Set<string>, dropAnchors: number[] }> {
  const state = await local.state()
  const keyIds = new Set(manifest?.blocks.map(b => b.keyId))
  const rejected = new Set(state.rejected)
  const held = local.held()
  const keeps = (v: number): boolean => v === manifest?.version || v === state.current || v === state.previous || held.has(v) ||
    (!rejected.has(v) && (state.current === null || v > state.current))
  const dropAnchors: number[] = []
  for (const v of await local.anchored()) {
    if (!keeps(v)) {
      dropAnchors.push(v)
      continue
    }
    const stored = await local.anchor(v)
    for (const b of stored?.signed.manifest.blocks ?? []) keyIds.add(b.keyId)
  }
  return { keyIds, dropAnchors }
}

/**
 * Drops the anchors and keys no longer kept (keepKeys) after a move was recorded: the save of
 * keys before it still counted the version moved from as the one in use.
 */
export async function pruneKept (local: LocalVersions): Promise<void> {
  await local.saveKeys(new Map(), async () => await keepKeys(local))
}

/**
 * `local: true` uses only what this runtime kept (as when offline) — for falling back to the
 * version in use when the log offers something it must refuse. `log`: the trust and checkpoint
 * `checkLog` just established, so they are not fetched and proved a second time.
 */
export async function obtainVersion (ctx: ObtainContext, version: number, signal?: AbortSignal, options: { local?: boolean, log?: CheckedLog } = {}): Promise<ObtainedVersion> {
  const { config, local } = ctx
  const label = `${config.modelName}@${version}`
  let trust: LedgerTrust | undefined
  let anchored: { index: number, checkpoint: VerifiedCheckpoint } | undefined
  let offline = false
  let manifestInput: unknown

  try {
    if (options.local === true) throw new UnavailableError('local versions only')
    trust = options.log?.trust ?? await ledgerTrust(ctx.dataDir, config, ctx.coordinatorKey, ctx.ledger, signal)
    manifestInput = await ctx.client.manifest(config.modelName, version, signal)
  } catch (err) {
    // The caller's own abort is not an outage: it must not end in a kept version served offline.
    if (signal?.aborted === true) throw signal.reason
    if (!isUnreachable(err)) throw err
    offline = true
  }

  const kept = offline ? await local.anchor(version) : undefined
  // Not "never verified here": only the version in use and the one before it keep their anchors
  // and keys (keepKeys), so an older one verified here once is not kept either (review 52a).
  if (offline && kept === undefined) throw new UnavailableError(`${label}: the coordinator is unreachable and this version is not kept here (a runtime keeps what verifies the version in use and the one before it, offline); reach the coordinator to go further back`)

  const verify = async (signed: SignedManifest): Promise<void> => {
    if (!offline) {
      const t = trust as LedgerTrust
      const checkpoint = options.log?.checkpoint ?? await advanceTrusted(ctx.dataDir, t, ctx.ledger, signal)
      const index = (await ctx.client.versions(config.modelName, signal)).find(v => v.version === version)?.ledgerIndex
      // A version offered without an entry that names it is a version not in the log: refused as
      // a ledger security failure, so a runtime keeps serving what it has and raises the alarm.
      const refuse = (message: string, cause?: unknown): LedgerSecurityError =>
        new LedgerSecurityError(`${message}; refusing it`, { offered: checkpoint.note }, { cause })
      if (index === undefined || index === null) throw refuse(`${label}: the coordinator names no ledger entry for this version`)
      let anchor
      try {
        anchor = await verifyAnchor(ctx.ledger, checkpoint, signed, index, signal)
      } catch (err) {
        // As in advanceCheckpoint: only an outage or the caller's abort passes through; a log that
        // will not give the entry or its proof under a checkpoint it signed (a rollback) is refused.
        if (isUnreachable(err) || signal?.aborted === true || err instanceof LedgerSecurityError) throw err
        const message = err instanceof Error ? err.message : String(err)
        throw refuse(message.startsWith(`${label}: `) ? message : `${label}: ${message}`, err)
      }
      // One version, one entry: a log that anchors a version twice can show each runtime a
      // different manifest under it, every proof sound. Every entry under the checkpoint was read
      // (ledger-trust.ts), so a second one is seen here, whichever index this runtime was given.
      const entries = checkpoint.entries.entriesOf(config.modelName, version)
      if (entries.length !== 1 || entries[0] !== index) {
        throw refuse(`${label}: the log anchors this version ${entries.length} times (entries ${entries.join(', ')}), so runtimes can be shown different manifests under it`)
      }
      // An entry off the model's chain of versions (monitor.ts): a parent it never had, or a
      // number out of turn, such as one far ahead that would freeze a channel's upgrades.
      const offChain = checkpoint.entries.offChain(config.modelName, index)
      if (offChain !== undefined) throw refuse(`${label}: its entry is off the model's chain of versions (${offChain})`)
      await local.saveAnchor(signed, { index, leaf: toBase64(anchor.leaf), proof: anchor.proof.map(toBase64), checkpoint: checkpoint.note })
      anchored = { index, checkpoint }
      return
    }
    const stored = kept as NonNullable<typeof kept>
    const t = trust ?? await ledgerTrust(ctx.dataDir, config, ctx.coordinatorKey, ctx.ledger, signal)
    const checkpoint = openTrusted(stored.anchor.checkpoint, t)
    const leaf = fromBase64(stored.anchor.leaf)
    checkEntry(parseEntry(leaf, `${label}: kept ledger entry`), signed)
    checkInclusion({ index: stored.anchor.index, leaf, proof: stored.anchor.proof.map(fromBase64), checkpoint }, label)
    anchored = { index: stored.anchor.index, checkpoint }
  }

  // Keys granted by the coordinator are kept only once every block they open has decrypted and
  // matched its plaintext hash (after fetchModel below), and a kept key is never replaced: one
  // bad key answer (a buggy coordinator, or a man in the middle wrapping random keys to our
  // public key) then fails this load only, instead of overwriting keys that work. A kept key
  // that does not open its block (damaged on disk) is asked for again, once, when online; the
  // granted one replaces it only after it has opened every block.
  let granted: { fetched: Map<string, Uint8Array>, manifest: Manifest } | undefined
  let askAgain = false
  /** The ids this load took from the kept keys: only those can be damaged ones. */
  let usedKept = new Set<string>()
  const keys = async (manifest: Manifest): Promise<Map<string, Uint8Array>> => {
    const ids = new Set(manifest.blocks.map(b => b.keyId))
    const kept = askAgain ? new Map<string, Uint8Array>() : await local.keptKeys([...ids])
    usedKept = new Set(kept.keys())
    if (kept.size === ids.size) return kept
    if (offline) throw new UnavailableError(`${label}: the coordinator is unreachable and this version's data keys are not kept here`)
    // Only this manifest's keys: an answer's extra ids opened nothing here, and must never be
    // kept (with a re-ask they would replace kept keys of other versions unchecked).
    const fetched = new Map([...await coordinatorKeys(ctx.client, manifest, signal)].filter(([id]) => ids.has(id)))
    granted = { fetched: new Map([...fetched].map(([id, k]) => [id, k.slice()])), manifest }
    return new Map([...fetched, ...kept])
  }

  const load = async (): Promise<FetchedModel> => await fetchModel({
    client: ctx.client,
    coordinatorKey: ctx.coordinatorKey,
    model: config.modelName,
    version,
    signedManifest: offline ? kept?.signed : manifestInput,
    verify: async signed => {
      await verify(signed)
      ctx.onManifest?.(signed.manifest)
    },
    keys,
    source: ctx.source,
    cache: ctx.cache,
    concurrency: config.fetch.concurrency,
    signal,
    onBlock: ctx.onBlock
  })
  let fetched: FetchedModel
  try {
    fetched = await load()
  } catch (err) {
    // Only a kept key can be damaged; a granted one that fails is the grant's fault.
    const keptKeyFailed = err instanceof WrongKeyError && usedKept.has(err.keyId)
    if (!keptKeyFailed || offline || signal?.aborted === true) throw err
    askAgain = true
    granted = undefined
    fetched = await load()
  }
  const a = anchored as { index: number, checkpoint: VerifiedCheckpoint } | undefined
  if (a === undefined) throw new IntegrityError(`${label}: not verified against the ledger`)
  const saving = granted
  if (saving !== undefined) await local.saveKeys(saving.fetched, async () => await keepKeys(local, saving.manifest), { replace: askAgain })
  return { ...fetched, ledgerIndex: a.index, checkpoint: a.checkpoint, offline, keysFetched: saving !== undefined }
}

/** The log's trust policy and the checkpoint this runtime now trusts. */
export interface CheckedLog {
  trust: LedgerTrust
  checkpoint: MonitoredCheckpoint
}

/**
 * Brings this runtime's trusted checkpoint forward (signature, witnesses, consistency) without
 * obtaining a version: run on every update, so a rewritten history is noticed even when the
 * channel offers nothing new — or offers something older.
 */
export async function checkLog (ctx: ObtainContext, signal?: AbortSignal): Promise<CheckedLog> {
  const trust = await ledgerTrust(ctx.dataDir, ctx.config, ctx.coordinatorKey, ctx.ledger, signal)
  return { trust, checkpoint: await advanceTrusted(ctx.dataDir, trust, ctx.ledger, signal) }
}
