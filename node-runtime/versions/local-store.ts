/**
 * What a runtime keeps per model (under `<data>/<modelDir>/`) so that it can decide and roll
 * back on its own, with the coordinator down:
 *  - `versions.json`: the version in use, the one before it (the rollback target) and the
 *    versions it rolled back from (never taken again);
 *  - `anchors/<v>.json`: a version's signed manifest with its ledger anchor (entry bytes,
 *    inclusion proof, checkpoint note), re-verified whenever it is read;
 *  - `keys.json` (mode 0600): the data keys of those versions' blocks. The sealed blocks sit in
 *    the block cache; without their keys an offline rollback could not decrypt them;
 *  - `verdicts-unsent.json`: this runtime's verdicts on versions (rejected, rolled back from)
 *    that have not reached the coordinator yet: a rollback is taken offline too, and its report
 *    then waits for the coordinator rather than being lost.
 * Anchors and keys are kept for the version in use, its rollback target, versions newer than it
 *    (one on its way in from another load or process) and those an operation of this process
 *    holds (`holding`: obtained, not yet recorded); each save of keys drops the rest, so a
 *    runtime that follows thousands of versions keeps a few files, not one per version. A
 *    version dropped is verified and granted again if it is ever asked for.
 * Every file is replaced atomically. A damaged `keys.json` or anchor (a bad disk, a hand edit)
 * is moved aside to `<file>.damaged`, reported, and treated as absent: keys are granted again,
 * a version is verified again. A damaged `versions.json` stops the model's loads instead, since
 * it holds the versions rolled back from (never to be taken again); its error says how to reset.
 */
import { mkdir, readdir, rename, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { z } from 'zod'
import { decodeBase64, toBase64 } from '../../shared/crypto/bytes.ts'
import { signedManifestSchema, type SignedManifest } from '../../shared/manifest/schema.ts'
import { verdictRequestSchema } from '../../shared/client/api-schemas.ts'
import { IntegrityError, InvalidConfigError } from '../../shared/errors/errors.ts'
import { parseJsonWith } from '../../shared/errors/parse-json.ts'
import { keyedQueue } from '../keyed-queue.ts'
import { createFileAtomic, readIfExists, writeFileAtomic } from '../atomic-file.ts'

export interface VersionState {
  current: number | null
  previous: number | null
  rejected: number[]
}

const stateSchema = z.strictObject({
  current: z.number().int().positive().nullable(),
  previous: z.number().int().positive().nullable(),
  rejected: z.array(z.number().int().positive())
})

/** A runtime's verdict on a version, as the coordinator's verdict route takes it. */
export interface Verdict {
  version: number
  verdict: z.infer<typeof verdictRequestSchema>['verdict']
}

/** Most verdicts kept unsent: one per version, and a runtime turns down only a few. */
export const MAX_UNSENT_VERDICTS = 32

const verdictsSchema = z.array(z.strictObject({ version: z.number().int().positive(), verdict: verdictRequestSchema.shape.verdict })).max(MAX_UNSENT_VERDICTS)

export interface StoredAnchor {
  index: number
  /** base64 of the entry bytes. */
  leaf: string
  /** base64 hashes. */
  proof: string[]
  /** The checkpoint note the proof is under. */
  checkpoint: string
}

const storedSchema = z.strictObject({
  signed: signedManifestSchema,
  anchor: z.strictObject({ index: z.number().int().nonnegative(), leaf: z.string(), proof: z.array(z.string()), checkpoint: z.string() })
})

export interface LocalVersions {
  state: () => Promise<VersionState>
  saveState: (state: VersionState) => Promise<void>
  /** Reads the state, changes it and writes it back, with no other write to this folder in between. */
  updateState: (change: (state: VersionState) => VersionState) => Promise<VersionState>
  anchor: (version: number) => Promise<{ signed: SignedManifest, anchor: StoredAnchor } | undefined>
  saveAnchor: (signed: SignedManifest, anchor: StoredAnchor) => Promise<void>
  /** The kept keys among `keyIds`. */
  keptKeys: (keyIds: readonly string[]) => Promise<Map<string, Uint8Array>>
  /** The versions with a kept anchor, in no order. */
  anchored: () => Promise<number[]>
  /** Runs `task` with `version` held: its anchor and keys are kept while it runs (see above). */
  holding: <T>(version: number, task: () => Promise<T>) => Promise<T>
  /** The versions operations of this process hold in this folder now. */
  held: () => ReadonlySet<number>
  /**
   * Stores the keys of `add` not kept yet (a kept key is replaced only with `replace`: keys
   * proven on the blocks they open, after a kept one failed to), keeps only the keys `keep`
   * lists and removes the anchors of its `dropAnchors`. `keep` runs inside this folder's write
   * queue, so the state it reads cannot move before the keys are written (read outside, a
   * version move in between lost the keys of the new version in use).
   */
  saveKeys: (add: Map<string, Uint8Array>, keep: () => Promise<{ keyIds: ReadonlySet<string>, dropAnchors: readonly number[] }>, options?: { replace?: boolean }) => Promise<void>
  /**
   * Marks the folder as `model`'s (`owner.json`, first claim wins) or refuses, with
   * InvalidConfigError, a folder another model claimed: two models in one folder would read
   * each other's versions, anchors and keys as their own.
   */
  claim: (model: string) => Promise<void>
  /** The highest `seq` of a signed channels answer accepted for this model (shared/ledger/channels.ts); 0 before any. */
  channelsSeen: () => Promise<number>
  /** Keeps `seq` when it is higher than the one kept. */
  sawChannels: (seq: number) => Promise<void>
  /** Verdicts not yet taken by the coordinator, oldest first. */
  unsentVerdicts: () => Promise<Verdict[]>
  /** Keeps `verdict` until `verdictSent` (one per version: a later one replaces it; past MAX_UNSENT_VERDICTS the oldest goes). */
  keepVerdict: (verdict: Verdict) => Promise<void>
  /** Drops `verdict`, sent (or refused for good); a newer verdict on the same version stays. */
  verdictSent: (verdict: Verdict) => Promise<void>
}

const ownerSchema = z.strictObject({ model: z.string() })

/** A kept key's bytes; undefined when absent or not a 256-bit key (damaged: then granted again). */
function keyOf (text: string | undefined): Uint8Array | undefined {
  if (text === undefined) return undefined
  try {
    return decodeBase64(text, 'kept key', { bytes: 32 })
  } catch {
    return undefined
  }
}

export interface LocalVersionsOptions {
  /** A damaged file was moved aside to `<path>.damaged` and treated as absent. */
  onDamaged?: (path: string, error: IntegrityError) => void
}

/**
 * Writes per folder, for this process: every LocalVersions of one model dir (each handle and each
 * call makes its own) queues behind the same writes, so two read-change-writes cannot interleave
 * and lose one another's change (a version refused by one handle, say).
 */
const inFolder = keyedQueue()

/** Per folder, the versions operations of this process hold (`holding`), with their hold counts. */
const holds = new Map<string, Map<number, number>>()

export function localVersions (dir: string, options: LocalVersionsOptions = {}): LocalVersions {
  const statePath = join(dir, 'versions.json')
  const keysPath = join(dir, 'keys.json')
  const anchorPath = (v: number): string => join(dir, 'anchors', `${v}.json`)
  const ownerPath = join(dir, 'owner.json')
  const channelsPath = join(dir, 'channels-seen.json')
  const verdictsPath = join(dir, 'verdicts-unsent.json')
  const channelsSchema = z.strictObject({ seq: z.number().int().nonnegative() })
  // A damaged file is moved aside and reads as 0: the next signed answer is taken as a first one.
  const channelsSeen = async (): Promise<number> => (await readRecoverable(channelsPath, channelsSchema))?.seq ?? 0
  const folder = resolve(dir)
  const serial = async <T>(task: () => Promise<T>): Promise<T> => await inFolder(folder, task)
  /** Parses `path` with `schema`; damaged, the file is moved aside and reads as absent. */
  const readRecoverable = async <T>(path: string, schema: z.ZodType<T>): Promise<T | undefined> => {
    const text = await readIfExists(path)
    if (text === undefined) return undefined
    try {
      return parseJsonWith(schema, text, path, IntegrityError)
    } catch (err) {
      if (!(err instanceof IntegrityError)) throw err
      await rename(path, `${path}.damaged`).catch((renameErr: NodeJS.ErrnoException) => {
        if (renameErr.code !== 'ENOENT') throw renameErr // ENOENT: a concurrent read moved it already
      })
      options.onDamaged?.(path, err)
      return undefined
    }
  }
  const readKeys = async (): Promise<Record<string, string>> => await readRecoverable(keysPath, z.record(z.string(), z.string())) ?? {}
  // Damaged, the file is moved aside and the verdicts in it are lost: they are advice to the operator.
  const unsentVerdicts = async (): Promise<Verdict[]> => await readRecoverable(verdictsPath, verdictsSchema) ?? []
  const writeVerdicts = async (verdicts: Verdict[]): Promise<void> => {
    await mkdir(dir, { recursive: true })
    if (verdicts.length === 0) await rm(verdictsPath, { force: true })
    else await writeFileAtomic(verdictsPath, `${JSON.stringify(verdicts)}\n`)
  }

  const readState = async (): Promise<VersionState> => {
    const text = await readIfExists(statePath)
    if (text === undefined) return { current: null, previous: null, rejected: [] }
    try {
      return parseJsonWith(stateSchema, text, statePath, IntegrityError)
    } catch (err) {
      if (!(err instanceof IntegrityError)) throw err
      throw new IntegrityError(`${err.message} (to start this model again from its channel's version, remove the file: ` +
        'this forgets the rollback target and the versions rolled back from)', { cause: err })
    }
  }
  const writeState = async (state: VersionState): Promise<void> => {
    await mkdir(dir, { recursive: true })
    await writeFileAtomic(statePath, `${JSON.stringify(stateSchema.parse(state))}\n`)
  }

  return {
    channelsSeen,
    sawChannels: async seq => await serial(async () => {
      if (seq <= await channelsSeen()) return
      await mkdir(dir, { recursive: true })
      await writeFileAtomic(channelsPath, `${JSON.stringify({ seq })}\n`)
    }),
    unsentVerdicts,
    keepVerdict: async verdict => await serial(async () => {
      const kept = (await unsentVerdicts()).filter(v => v.version !== verdict.version)
      await writeVerdicts([...kept, verdict].slice(-MAX_UNSENT_VERDICTS))
    }),
    verdictSent: async verdict => await serial(async () => {
      const kept = await unsentVerdicts()
      const left = kept.filter(v => v.version !== verdict.version || v.verdict !== verdict.verdict)
      if (left.length !== kept.length) await writeVerdicts(left)
    }),
    state: readState,
    saveState: async state => { await serial(async () => { await writeState(state) }) },
    updateState: async change => await serial(async () => {
      const next = change(await readState())
      await writeState(next)
      return next
    }),
    anchor: async version => await readRecoverable(anchorPath(version), storedSchema),
    saveAnchor: async (signed, anchor) => await serial(async () => {
      await mkdir(join(dir, 'anchors'), { recursive: true })
      await writeFileAtomic(anchorPath(signed.manifest.version), JSON.stringify({ signed, anchor }))
    }),
    async keptKeys (keyIds) {
      const all = await readKeys()
      const out = new Map<string, Uint8Array>()
      for (const id of keyIds) {
        const key = keyOf(all[id])
        if (key !== undefined) out.set(id, key)
      }
      return out
    },
    anchored: async () => {
      const names = await readdir(join(dir, 'anchors')).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return [] as string[]
        throw err
      })
      return names.flatMap(name => /^[1-9][0-9]{0,15}\.json$/.test(name) ? [Number(name.slice(0, -5))] : [])
    },
    holding: async (version, task) => {
      const counts = holds.get(folder) ?? new Map<number, number>()
      holds.set(folder, counts)
      counts.set(version, (counts.get(version) ?? 0) + 1)
      try {
        return await task()
      } finally {
        const n = (counts.get(version) ?? 1) - 1
        if (n > 0) counts.set(version, n)
        else counts.delete(version)
        // Taken and counted synchronously above, so `counts` is still this folder's map here.
        if (counts.size === 0) holds.delete(folder)
      }
    },
    held: () => new Set(holds.get(folder)?.keys()),
    saveKeys: async (add, keep, saveOptions) => await serial(async () => {
      const all = await readKeys()
      for (const [id, key] of add) {
        if (saveOptions?.replace === true || keyOf(all[id]) === undefined) all[id] = toBase64(key)
      }
      const { keyIds, dropAnchors } = await keep()
      const kept = Object.fromEntries(Object.entries(all).filter(([id]) => keyIds.has(id)))
      await mkdir(dir, { recursive: true })
      await writeFileAtomic(keysPath, JSON.stringify(kept), 0o600)
      // After the keys: a crash in between leaves anchors whose keys are gone, dropped next time.
      for (const v of dropAnchors) {
        await rm(anchorPath(v), { force: true })
      }
    }),
    claim: async model => await serial(async () => {
      await mkdir(dir, { recursive: true })
      if (await createFileAtomic(ownerPath, `${JSON.stringify({ model })}\n`)) return
      const owner = await readRecoverable(ownerPath, ownerSchema)
      if (owner === undefined) {
        await writeFileAtomic(ownerPath, `${JSON.stringify({ model })}\n`) // damaged, moved aside: claimed again
        return
      }
      if (owner.model !== model) {
        throw new InvalidConfigError(`aoe config for ${model}: its modelDir ${dir} holds the state of model ${owner.model}; ` +
          'give each model its own modelDir (two models in one folder would take each other\'s versions and keys)')
      }
    })
  }
}
