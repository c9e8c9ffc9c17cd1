/**
 * Ingest (DESIGN.md, pipeline 1): files → normalised model → semantic blocks → sealed blocks
 * and shards → stored → signed manifest → new version. Each new block's files are written as
 * it is sealed and the database rows last, in one transaction. If any step fails the files this
 * ingest wrote are removed, so nothing half-done is kept. An upload equal to the latest version
 * stores nothing and returns that version.
 */
import type { ErasureCoder } from '../../shared/blocks/erasure.ts'
import type { ModelFile, NormalisedModel } from '../../shared/model/types.ts'
import type { IngestResult } from '../../shared/client/api-schemas.ts'
import { partition, type BlockPlan, type PartitionOptions } from '../../shared/blocks/partition.ts'
import { sealBlocks, type NewBlockData, type StoredBlock } from '../../shared/blocks/seal-blocks.ts'
import { readModel } from '../../shared/formats/index.ts'
import { canonicalBytes } from '../../shared/manifest/canonical.ts'
import { MANIFEST_SCHEMA, modelNameSchema, type Manifest } from '../../shared/manifest/schema.ts'
import { signManifest } from '../../shared/manifest/sign.ts'
import { ConflictError, IntegrityError, InvalidInputError } from '../../shared/errors/errors.ts'
import { equalBytes } from '../../shared/crypto/bytes.ts'
import type { Database } from '../store/database.ts'
import { signedManifestOf, type Repository } from '../store/repository.ts'
import type { BlockFiles } from '../store/block-files.ts'
import type { Identity } from '../keys/identity.ts'
import type { VersionLog } from '../ledger/log.ts'
import { DEFAULT_ACCESS_LEVEL } from '../constants.ts'
import { unitLevels } from './access-levels.ts'

export interface IngestDeps {
  database: Database
  repo: Repository
  files: BlockFiles
  identity: Identity
  coder: ErasureCoder
  partition: PartitionOptions
  /** The version ledger: every new version is appended in the transaction that records it. */
  log: VersionLog
  /** Runs after each new version's commit, outside the one-at-a-time queue: sign a checkpoint, gather cosignatures. */
  anchored?: () => Promise<void>
}

export interface IngestOptions {
  onProgress?: (stage: string, done: number, total: number) => void
  /**
   * Checked inside the transaction that would record the version, after the wait in the ingest
   * queue: throwing records nothing (a token revoked while its upload waited; review 49e).
   */
  authorize?: () => void
  /**
   * Access levels of units (unit → level): their blocks' data keys go only to tokens given that
   * level (and to admin and publisher tokens). Units not named keep their level in the latest
   * version, new units get `default`.
   */
  access?: Readonly<Record<string, string>>
}

/** A version produced by a training round rather than an upload. */
export interface PublishOptions extends IngestOptions {
  round: string
  /**
   * The version the round trained: the new version's parent. It must still be the latest when
   * the result is stored, or the new version (base + the round's step) would silently revert
   * whatever was published in between.
   */
  parent: number
  metrics: Record<string, number>
  /** The base version's block layout, kept as is so unchanged blocks are reused by CID. */
  plans: BlockPlan[]
  /** Runs inside the transaction that records the version (e.g. the round's move to published). */
  inTransaction?: (version: number) => void
}

export interface Publisher {
  /** Pipeline 1: model files → new version (or the latest, unchanged). */
  ingest: (name: string, files: ModelFile[], options?: IngestOptions) => Promise<IngestResult>
  /** Pipeline 5's end: a normalised model with new weights → new version (always new). */
  publish: (name: string, model: NormalisedModel, options: PublishOptions) => Promise<IngestResult>
  /** Settles once every version queued so far is stored or failed (a stopping coordinator waits for it before closing its database). */
  idle: () => Promise<void>
}

/** The parts of a manifest that define the model; equal parts mean an unchanged upload. */
function content (m: Manifest): Uint8Array {
  return canonicalBytes({ format: m.format, topology: m.topology, tensors: m.tensors, blocks: m.blocks, erasure: m.erasure })
}

export function publisher (deps: IngestDeps): Publisher {
  // One version at a time: version numbers and shared blocks are decided against a stable store.
  let queue: Promise<unknown> = Promise.resolve()

  async function store (name: string, model: NormalisedModel, plans: BlockPlan[], options: IngestOptions & Partial<Pick<PublishOptions, 'round' | 'metrics' | 'inTransaction' | 'parent'>>): Promise<IngestResult> {
    const parsedName = modelNameSchema.safeParse(name)
    if (!parsedName.success) throw new InvalidInputError(`model name "${name}": ${parsedName.error.issues[0]?.message ?? 'invalid'}`)
    // Read once: the queue (`serialised`) lets no other version in until this one is stored.
    const latest = deps.repo.latest(name)
    const previous = latest === undefined ? undefined : signedManifestOf(latest).manifest
    // A name keeps its format: runtimes configured for it run that format (AoE `runtime`), and
    // would take the new version as an upgrade they cannot run.
    if (previous !== undefined && previous.format !== model.format) {
      throw new ConflictError(`model ${name} is ${previous.format} (version ${previous.version}), this model is ${model.format}: runtimes configured for ${name} run ${previous.format}, so ingest it under another name`)
    }
    // New blocks go to disk as they are sealed (see SealOptions.write); the rows and the version
    // are recorded last, in one transaction. Until then any failure removes the files written.
    const written = new Set<string>()
    const created: Array<Omit<NewBlockData, 'sealed' | 'shards'> & { sealedLength: number, shardCids: string[] }> = []
    let bytesStored = 0
    let ledgerIndex = -1
    const write = async (block: NewBlockData): Promise<void> => {
      created.push({ cid: block.cid, plaintextSha256: block.plaintextSha256, keyId: block.keyId, key: block.key, sealedLength: block.sealed.length, shardCids: block.shards.map(s => s.cid) })
      for (const object of [{ cid: block.cid, bytes: block.sealed }, ...block.shards]) {
        if (written.has(object.cid)) continue
        await deps.files.put(object.cid, object.bytes)
        written.add(object.cid)
        bytesStored += object.bytes.length
      }
      // Blocks written so far, of the blocks planned (some of which may turn out to be stored already).
      options.onProgress?.('store', created.length, plans.length)
    }
    try {
      const sealed = await sealBlocks(model, plans, {
        coder: deps.coder,
        findStored: async sha => await storedWhole(deps, deps.repo.findBlock(sha)),
        access: plan => plan.access ?? DEFAULT_ACCESS_LEVEL,
        onBlock: (done, total) => options.onProgress?.('seal', done, total),
        write
      })
      if (options.parent !== undefined && latest?.version !== options.parent) {
        throw new ConflictError(`model ${name}: round ${options.round ?? ''} trained version ${options.parent}, but version ${latest?.version ?? '(none)'} is the latest now; its result would revert what came in between`)
      }
      const manifest: Manifest = {
        schema: MANIFEST_SCHEMA,
        model: name,
        version: (latest?.version ?? 0) + 1,
        parent: latest?.version ?? null,
        createdAt: new Date().toISOString(),
        format: model.format,
        topology: model.topology,
        metadata: model.metadata as unknown as Record<string, unknown>,
        tensors: model.tensors,
        erasure: { scheme: 'reed-solomon-gf8', ...deps.coder.params },
        partition: deps.partition,
        blocks: sealed.blocks,
        round: options.round ?? null,
        metrics: options.metrics ?? null
      }
      if (latest !== undefined && previous !== undefined && options.round === undefined) {
        if (equalBytes(content(previous), content(manifest))) {
          // A caller no longer allowed learns nothing more (review 49g).
          options.authorize?.()
          // Every block was found stored (equal plaintexts): nothing was written.
          return { model: name, version: latest.version, manifestCid: latest.manifest_cid, created: false, blocks: manifest.blocks.length, newBlocks: 0, bytesStored: 0, ledgerIndex: deps.log.indexOf(name, latest.version) ?? null }
        }
      }
      const signed = await signManifest(manifest, deps.identity.signing)
      await deps.files.sync(written)
      deps.database.transaction(() => {
        options.authorize?.()
        for (const block of created) {
          deps.repo.insertBlock({
            cid: block.cid,
            plaintextSha256: block.plaintextSha256,
            keyId: block.keyId,
            sealedLength: block.sealedLength,
            shardSize: deps.coder.shardSize(block.sealedLength),
            shardCids: block.shardCids
          })
          deps.repo.insertDataKey(block.keyId, deps.identity.wrapDataKey(block.keyId, block.key))
        }
        deps.repo.ensureModel(name, model.format)
        deps.repo.insertVersion(signed, model.weights.length)
        ledgerIndex = deps.log.append({ model: name, version: manifest.version, manifestCid: signed.cid, parent: manifest.parent, time: manifest.createdAt })
        options.inTransaction?.(manifest.version)
        // Signed in the version's own transaction: signed apart, a failed commit left the version
        // recorded and unanchored until the checkpoint was next asked for (review 46f); a log
        // that cannot be signed (its history rewritten) now records no version either.
        deps.log.checkpoint()
      })
      return { model: name, version: manifest.version, manifestCid: signed.cid, created: true, blocks: manifest.blocks.length, newBlocks: created.length, bytesStored, ledgerIndex }
    } catch (err) {
      await Promise.all([...written].map(async cid => await deps.files.remove(cid)))
      throw err
    } finally {
      for (const block of created) block.key.fill(0)
    }
  }

  async function serialised<T> (task: () => Promise<T>): Promise<T> {
    const run = queue.then(task)
    queue = run.catch(() => undefined)
    return await run
  }

  /** Anchors a new version after the queue lets go: a slow witness holds up its caller, not the next version. */
  const anchored = async (result: IngestResult): Promise<IngestResult> => {
    // Unchanged, it is anchored too when the log is ahead of its checkpoint: a retry after a
    // publish whose checkpoint failed to commit (review 46f) repairs it.
    if (result.created || deps.log.unsigned()) await deps.anchored?.()
    return result
  }

  return {
    ingest: async (name, files, options = {}) => await anchored(await serialised(async () => {
      const model = await readModel(files)
      const latest = deps.repo.latest(name)
      const levels = unitLevels(model.tensors, options.access, latest === undefined ? undefined : signedManifestOf(latest).manifest)
      return await store(name, model, partition(model.tensors, deps.partition, unit => levels.get(unit)), options)
    })),
    publish: async (name, model, options) => await anchored(await serialised(async () => await store(name, model, options.plans, options))),
    idle: async () => { await queue }
  }
}

/**
 * A stored block this ingest would reuse, once its files are found there: reuse is decided by
 * the database, and a version built on a block whose files were lost (a partial restore) was
 * published and could not be loaded. A reused block cannot be written again (its CID is of its
 * first sealing), so the ingest is refused, naming what to restore.
 */
async function storedWhole (deps: IngestDeps, stored: StoredBlock | undefined): Promise<StoredBlock | undefined> {
  if (stored === undefined) return undefined
  const cids = [stored.cid, ...stored.shards.cids]
  const missing = (await Promise.all(cids.map(async cid => await deps.files.has(cid) ? [] : [cid]))).flat()
  if (missing.length > 0) {
    throw new IntegrityError(`block ${stored.cid}, stored already and reused by this model, has ${missing.length} of its ${cids.length} files missing (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''}): restore the data dir's blocks folder from a backup`)
  }
  return stored
}
