/**
 * What this runtime has put into coordinators' sums, kept so that it never puts the same thing
 * into another one. Secure aggregation (masking or Paillier) hides an upload inside one round's
 * sum, and only there: two sums over client sets that differ by one client give that client's
 * upload by subtraction (Bonawitz et al., CCS 2017, protect a single aggregation; repeated ones
 * are left to differential privacy), and the coordinator chooses who takes part in which round.
 * A runtime therefore gives:
 *  - its NaiveMix class statistics (shared/training/mean-mix.ts) once per model and row size;
 *  - a model update once per base version, moving forward only (the rule and its reasons:
 *    shared/rounds/one-update.ts). Training is seeded from the base version, so a second
 *    upload from it would be (nearly) the same update.
 * Each record is written before the upload leaves, and kept in `dir` across restarts when one is
 * given; participants of one process may share a `dir`, processes may not (`holdStateDir`, taken
 * by a participant at start, refuses a second process). An unreadable record stops the runtime
 * from giving anything rather than letting it forget.
 */
import { mkdirSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { z } from 'zod'
import { IntegrityError } from '../../shared/errors/errors.ts'
import { parseJsonWith } from '../../shared/errors/parse-json.ts'
import { readIfExists, removeStaleTemporaries, writeFileAtomic } from '../atomic-file.ts'
import { lockDataDir, type DataDirLock } from '../dir-lock.ts'
import { afterUpload, type GivenUpload, type UploadOffer } from '../../shared/rounds/one-update.ts'

export const STATISTICS_GIVEN_FILE = 'class-statistics-given.json'
export const UPDATES_GIVEN_FILE = 'updates-given.json'

const MAX_ENTRIES = 100_000
const modelName = z.string().min(1).max(400)
const statisticsSchema = z.array(modelName).max(MAX_ENTRIES)
/** [model, newest base, whether an upload from it went into a secure sum]: pairs, not an object, so no model name is special. */
const updatesSchema = z.array(z.tuple([modelName, z.number().int().nonnegative(), z.boolean()])).max(MAX_ENTRIES)

export interface StatisticsGiven {
  has: (model: string, features: number) => Promise<boolean>
  record: (model: string, features: number) => Promise<void>
  /** Done with it (the participant stopped): the next one for this folder reads the file again. */
  release: () => void
}

export interface UpdatesGiven {
  /** The newest base version of `model` this runtime uploaded an update from, if any. */
  newest: (model: string) => Promise<GivenUpload | undefined>
  /** Records an upload (shared/rounds/one-update.ts, `afterUpload`). */
  record: (model: string, upload: UploadOffer) => Promise<void>
  /** Done with it (the participant stopped): the next one for this folder reads the file again. */
  release: () => void
}

/**
 * One value per key for this process while someone uses it: made by the first `take`, disposed
 * of when the last taker lets go (each taker's `release` counts once).
 */
function sharedByKey<T> (dispose: (value: T) => void = () => {}): (key: string, create: () => T) => { value: T, release: () => void } {
  const table = new Map<string, { value: T, users: number }>()
  return (key, create) => {
    let entry = table.get(key)
    if (entry === undefined) {
      entry = { value: create(), users: 0 }
      table.set(key, entry)
    }
    entry.users++
    const shared = entry
    let released = false
    return {
      value: shared.value,
      release () {
        if (released) return
        released = true
        if (--shared.users > 0 || table.get(key) !== shared) return
        table.delete(key)
        dispose(shared.value)
      }
    }
  }
}

/** State dirs held by this process, each until the last participant holding it lets go. */
const heldDirs = sharedByKey<DataDirLock>(lock => { lock.release() })

/**
 * Takes `dir` for this process (created if missing) until every participant that took it lets
 * go: each process keeps its own live copy of the records, so a second process on the same dir
 * would erase what this one recorded. Throws ConflictError naming the process that holds it.
 */
export function holdStateDir (dir: string): { release: () => void } {
  const path = resolve(dir)
  return heldDirs(path, () => {
    mkdirSync(path, { recursive: true })
    return lockDataDir(path, 'participant')
  })
}

interface KeptRecord<T> { get: () => Promise<T>, save: (value: T) => Promise<void>, release: () => void }

/**
 * Records by file, for this process, while some participant uses them: participants given one
 * `stateDir` (one per model, as the README's example has it) share one live value. Each kept its
 * own copy before, and wrote it whole, so one model's upload erased the other's record.
 */
const records = sharedByKey<KeptRecord<unknown>>()

/**
 * A JSON record in `dir/file` (in memory only without `dir`), read once and then kept: `get`
 * returns the live value, `save` writes it whole (atomically) after the caller changed it. Saves
 * run one after another, each writing the value as it is then, so the last one holds every change.
 */
function keptRecord<T> (dir: string | undefined, file: string, schema: z.ZodType<T>, empty: () => T, encode: (value: T) => unknown, what: string): KeptRecord<T> {
  const path = dir === undefined ? undefined : resolve(dir, file)
  if (path === undefined) return newRecord(undefined, schema, empty, encode, what)
  const { value, release } = records(path, () => newRecord(path, schema, empty, encode, what) as KeptRecord<unknown>)
  return { ...(value as KeptRecord<T>), release }
}

function newRecord<T> (path: string | undefined, schema: z.ZodType<T>, empty: () => T, encode: (value: T) => unknown, what: string): KeptRecord<T> {
  let value: Promise<T> | undefined
  let saving: Promise<void> = Promise.resolve()
  const load = async (): Promise<T> => {
    // Stale only: the folder's other records may be saving now, in this process.
    if (path !== undefined) await removeStaleTemporaries([dirname(path)])
    const text = path === undefined ? undefined : await readIfExists(path)
    return text === undefined ? empty() : parseJsonWith(schema, text, `${path} (${what})`, IntegrityError)
  }
  return {
    async get () {
      value ??= load()
      try {
        return await value
      } catch (err) {
        value = undefined
        throw err
      }
    },
    release () {},
    async save (current) {
      if (path === undefined) return
      const write = saving.catch(() => undefined).then(async () => { await writeFileAtomic(path, JSON.stringify(encode(current))) })
      saving = write
      await write
    }
  }
}

export function statisticsGiven (dir?: string): StatisticsGiven {
  const kept = keptRecord(dir, STATISTICS_GIVEN_FILE, statisticsSchema.transform(keys => new Set(keys)), () => new Set<string>(), set => [...set], 'class statistics are not given while it is unreadable')
  const key = (model: string, features: number): string => `${model}\n${features}`
  return {
    has: async (model, features) => (await kept.get()).has(key(model, features)),
    release: kept.release,
    async record (model, features) {
      const set = await kept.get()
      set.add(key(model, features))
      await kept.save(set)
    }
  }
}

export function updatesGiven (dir?: string): UpdatesGiven {
  const kept = keptRecord(dir, UPDATES_GIVEN_FILE, updatesSchema.transform(rows => new Map(rows.map(([model, base, secure]) => [model, { base, secure }]))), () => new Map<string, GivenUpload>(), map => [...map].map(([model, g]) => [model, g.base, g.secure]), 'no update is given while it is unreadable')
  return {
    newest: async model => (await kept.get()).get(model),
    release: kept.release,
    async record (model, upload) {
      const map = await kept.get()
      map.set(model, afterUpload(map.get(model), upload))
      await kept.save(map)
    }
  }
}
