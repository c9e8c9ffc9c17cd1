/**
 * Disk tier of the block cache for Node (DESIGN.md, "Cache"): one file per block under
 * `<dir>/blocks/`, named by its CID, written atomically (temp file in `<dir>/tmp/`, then rename),
 * and an index (size, sha-256, decayed access count, last access) in a `node:sqlite` database
 * `<dir>/index.sqlite`, so frequencies survive restarts. Eviction follows the shared score
 * (shared/cache/score.ts: decayed LFU combined with recency and size). Reads the memory tier
 * answered reach it as `touch`es: counted at once, written to the index in batches.
 *
 * Integrity: every `get` checks the file's size and sha-256 against the index, so a file
 * truncated, corrupted or removed behind the cache's back is dropped and answered as a miss —
 * never served. That check is also why writes need no fsync: a torn write after a crash is
 * caught the same way. On open the index and the files are reconciled (orphan and temp files
 * deleted, rows without a file or with the wrong size removed, over-capacity trimmed).
 *
 * One process per directory: the database is opened in SQLite's exclusive locking mode, so a
 * second opener (another worker, or the same process twice) fails at once with
 * UnavailableError instead of both keeping diverging views of the index. The OS releases the
 * lock when a process dies, so there is no stale lock file to clean up.
 *
 * Pins live in memory only: they describe what this process has loaded, and a pin persisted
 * across a crash would never be released.
 *
 * The frequency and recency weights adapt to the misses their evictions cause (shared/cache/
 * adapt.ts, after LeCaR and ARC's ghost lists) unless `adapt: false`. The weights reached are
 * kept in the index's `meta` table (row "score-weights", beside "schema": older code reads only
 * "schema", so the schema version stays 1) and resumed on open while the configured weights are
 * those they were adapted from; changing the configured weights starts afresh. The ghost history
 * is not kept: like pins it describes this run.
 */
import { createHash, randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { lstat, mkdir, open, readdir, rename, rm, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { z } from 'zod'
import { InvalidInputError, TooLargeError, UnavailableError } from '../../shared/errors/errors.ts'
import { checkBytes, checkCapacity } from '../../shared/cache/_checks.ts'
import { pinCounter } from '../../shared/cache/_pins.ts'
import { adaptiveWeights, checkAdaptOptions, type AdaptiveWeights, type AdaptOptions } from '../../shared/cache/adapt.ts'
import { DEFAULT_HALF_LIFE_MS, DEFAULT_SCORE_WEIGHTS } from '../../shared/cache/constants.ts'
import { checkScoreParams, pickVictims, recordAccess, type ScoredEntry, type ScoreParams, type ScoreWeights } from '../../shared/cache/score.ts'
import type { CacheStats, CacheTier } from '../../shared/cache/types.ts'

export interface DiskCacheOptions {
  /** The cache's own directory (created if missing). Nothing else should write there. */
  dir: string
  /** Bound on the total bytes of the block files. */
  capacityBytes: number
  /** Half-life of an access in the frequency count. Default one day. */
  halfLifeMs?: number
  /**
   * Eviction score weights (see score.ts); missing ones take the defaults. With adaptation on,
   * these are the starting point: frequency and recency then move, their sum and `size` do not.
   */
  weights?: Partial<ScoreWeights>
  /**
   * Adapt the frequency and recency weights to the misses evictions cause (shared/cache/adapt.ts).
   * Default on (`true` or an object of knobs: rate 0.45, historySize 1024, minShare 0.05);
   * `false` keeps `weights` fixed.
   */
  adapt?: boolean | AdaptOptions
  /**
   * Keys the trim at open (to a capacity lowered since the last run) must not evict: what the
   * caller will pin once open (the version in use and its rollback target). Pins live in memory
   * and come after opening, so without this the trim went by score alone and could drop the
   * way back while keeping a version refused. What cannot be trimmed now goes at later puts.
   */
  keepAtOpen?: ReadonlySet<string>
  /** Clock in milliseconds; inject a fake one in tests. Default `Date.now`. */
  now?: () => number
  /** Default "disk". */
  name?: string
}

export interface DiskCacheTier extends CacheTier {
  readonly dir: string
}

/**
 * Keys are file names, so only base32-lower CIDs (RFC 4648 alphabet, as CIDv1 prints by
 * default) are accepted: no separators, dots or case tricks can reach the file system.
 * Windows device names are refused too, since a key must be a usable file name there.
 */
const KEY_PATTERN = /^[a-z2-7]{1,200}$/
const RESERVED_NAMES = /^(con|prn|aux|nul|com[1-9]|lpt[1-9])$/

const SCHEMA_VERSION = 1

/**
 * Touches (accesses reported by the tier above, one per memory hit) are applied at once in memory
 * and written to the index in one transaction this long after the first: the memory hit path
 * stays a map update. A crash loses at most this much frequency, which is only a heuristic.
 */
const TOUCH_FLUSH_MS = 1000

/**
 * How long `close` waits for puts called before it to finish. A put writes its file before it
 * joins the queue of mutations, so close waits for the call, not the queue; bounded, since a
 * file system that hangs must not keep close from ending (such a put then rejects).
 */
const CLOSE_WAIT_FOR_PUTS_MS = 10_000

/** The `meta` row holding the adapted weights and the configured ones they started from. */
const WEIGHTS_ROW = 'score-weights'
const weightsSchema = z.strictObject({
  frequency: z.number().finite().nonnegative(),
  recency: z.number().finite().nonnegative(),
  size: z.number().finite().nonnegative()
})
const weightsRowSchema = z.strictObject({ initial: weightsSchema, weights: weightsSchema })

const sameWeights = (a: ScoreWeights, b: ScoreWeights): boolean =>
  a.frequency === b.frequency && a.recency === b.recency && a.size === b.size

/** The weights a previous run adapted from `initial`, or undefined (none, damaged, or from other settings). */
function resumableWeights (text: unknown, initial: ScoreWeights): ScoreWeights | undefined {
  if (typeof text !== 'string') return undefined
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return undefined
  }
  const row = weightsRowSchema.safeParse(json)
  // A damaged row is not worth refusing to start for: the weights just adapt again.
  if (!row.success || !sameWeights(row.data.initial, initial) || row.data.weights.frequency + row.data.weights.recency === 0) return undefined
  return row.data.weights
}

interface Entry {
  key: string
  size: number
  sha256: string
  count: number
  lastAccess: number
  /** Bumped on every store: a corruption drop only removes the entry it found corrupt. */
  gen: number
}

interface Row {
  key: unknown
  size: unknown
  sha256: unknown
  count: unknown
  last_access: unknown
}

function checkDiskKey (tier: string, key: unknown): asserts key is string {
  if (typeof key !== 'string' || !KEY_PATTERN.test(key) || RESERVED_NAMES.test(key)) {
    const shown = typeof key === 'string' ? JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key) : typeof key
    throw new InvalidInputError(`cache tier "${tier}": key must be a base32 CID ([a-z2-7]{1,200}), got ${shown}`)
  }
}

function sha256Hex (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

function errnoCode (err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined
}

async function unlinkQuietly (path: string): Promise<void> {
  try {
    await unlink(path)
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err
  }
}

/** SQLite result codes seen through node:sqlite's `errcode`. */
const SQLITE_BUSY = 5
const SQLITE_CORRUPT = 11
const SQLITE_NOTADB = 26

function sqliteCode (err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && 'errcode' in err && typeof err.errcode === 'number' ? err.errcode : undefined
}

/**
 * Opens the index and takes its exclusive lock. An index that is not a database or is corrupt
 * is thrown away and started afresh: it is a cache, every block file then counts as an orphan
 * and the blocks are fetched again — better than a runtime that cannot start. Opening reads
 * only the first page and `meta`, so the whole file is checked (PRAGMA quick_check: every page,
 * without the index-content cross-checks of integrity_check): one damaged page of `blocks`
 * was found only when reconciling read it, and then failed every start until the file was
 * deleted by hand.
 */
function openIndex (name: string, dir: string): DatabaseSync {
  const path = join(dir, 'index.sqlite')
  for (let attempt = 0; ; attempt++) {
    let db: DatabaseSync | undefined
    try {
      db = new DatabaseSync(path)
      db.exec('PRAGMA locking_mode = EXCLUSIVE')
      db.exec('PRAGMA journal_mode = WAL')
      db.exec('PRAGMA synchronous = NORMAL')
      // Takes the exclusive lock now (held until close), so a second opener fails here.
      db.exec('BEGIN EXCLUSIVE')
      db.exec(`CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS blocks (
          key TEXT PRIMARY KEY, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
          count REAL NOT NULL, last_access REAL NOT NULL) WITHOUT ROWID`)
      const version = db.prepare('SELECT v FROM meta WHERE k = ?').get('schema') as { v?: unknown } | undefined
      if (version === undefined) {
        db.prepare('INSERT INTO meta (k, v) VALUES (?, ?)').run('schema', String(SCHEMA_VERSION))
      } else if (version.v !== String(SCHEMA_VERSION)) {
        throw new UnavailableError(`cache tier "${name}": index schema ${String(version.v)} in ${path} is not ${SCHEMA_VERSION}`)
      }
      const check = db.prepare('PRAGMA quick_check(1)').get() as { quick_check?: unknown } | undefined
      if (check?.quick_check !== 'ok') throw Object.assign(new Error(`index ${path}: ${String(check?.quick_check)}`), { errcode: SQLITE_CORRUPT })
      db.exec('COMMIT')
      return db
    } catch (err) {
      try { db?.close() } catch {}
      if (err instanceof UnavailableError) throw err
      const code = sqliteCode(err)
      if ((code === SQLITE_NOTADB || code === SQLITE_CORRUPT) && attempt === 0) {
        for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(path + suffix, { force: true })
        continue
      }
      throw new UnavailableError(code === SQLITE_BUSY
        ? `cache tier "${name}": ${dir} is in use by another cache (one process per directory)`
        : `cache tier "${name}": cannot open the index ${path}`, { cause: err })
    }
  }
}

/**
 * Opens (creating if needed) a disk cache tier in `options.dir`, reconciling its index with the
 * files found there.
 *
 * @example
 * const disk = await diskCache({ dir: '/var/lib/blockfed/cache', capacityBytes: 2 << 30 })
 * await disk.put(cid, bytes)
 * await disk.close()
 */
export async function diskCache (options: DiskCacheOptions): Promise<DiskCacheTier> {
  const name = options.name ?? 'disk'
  if (typeof options.dir !== 'string' || options.dir === '') {
    throw new InvalidInputError(`diskCache: dir must be a non-empty path, got ${JSON.stringify(options.dir)}`)
  }
  const { dir, capacityBytes } = options
  checkCapacity('diskCache', capacityBytes)
  const params: ScoreParams = {
    halfLifeMs: options.halfLifeMs ?? DEFAULT_HALF_LIFE_MS,
    weights: { ...DEFAULT_SCORE_WEIGHTS, ...options.weights }
  }
  checkScoreParams('diskCache', params)
  const adaptOption = options.adapt === undefined ? true : options.adapt
  if (typeof adaptOption !== 'boolean') {
    if (typeof adaptOption !== 'object' || adaptOption === null) {
      throw new InvalidInputError(`diskCache: adapt must be true, false or { rate, historySize, minShare }, got ${adaptOption === null ? 'null' : typeof adaptOption}`)
    }
    checkAdaptOptions('diskCache: adapt.', adaptOption)
  }
  const now = options.now ?? Date.now

  const blocksDir = join(dir, 'blocks')
  const tmpDir = join(dir, 'tmp')
  await mkdir(blocksDir, { recursive: true })
  await mkdir(tmpDir, { recursive: true })

  const db = openIndex(name, dir)
  const sql = {
    upsert: db.prepare(`INSERT INTO blocks (key, size, sha256, count, last_access) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (key) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256,
        count = excluded.count, last_access = excluded.last_access`),
    touch: db.prepare('UPDATE blocks SET count = ?, last_access = ? WHERE key = ?'),
    remove: db.prepare('DELETE FROM blocks WHERE key = ?'),
    all: db.prepare('SELECT key, size, sha256, count, last_access FROM blocks'),
    getMeta: db.prepare('SELECT v FROM meta WHERE k = ?'),
    setMeta: db.prepare('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v')
  } satisfies Record<string, StatementSync>

  const entries = new Map<string, Entry>()
  const pins = pinCounter()
  const counters = { hits: 0, misses: 0, evictions: 0, puts: 0, rejected: 0 }
  let bytes = 0
  let gen = 0
  let state: 'open' | 'closing' | 'closed' = 'open'

  const initialWeights = { ...params.weights }
  const adapt = ((): AdaptiveWeights | undefined => {
    if (adaptOption === false) return undefined
    try {
      return adaptiveWeights({
        ...(adaptOption === true ? {} : adaptOption),
        initial: initialWeights,
        halfLifeMs: params.halfLifeMs,
        resume: resumableWeights((sql.getMeta.get(WEIGHTS_ROW) as { v?: unknown } | undefined)?.v, initialWeights)
      })
    } catch (err) {
      db.close() // releases the lock, so a retry can open the directory
      throw err
    }
  })()
  /** The score parameters as of now (the weights move with adaptation). */
  const currentParams = (): ScoreParams => adapt === undefined ? params : { halfLifeMs: params.halfLifeMs, weights: adapt.weights() }

  /**
   * An eviction as the adaptation sees it: the victims among the unpinned `candidates` the
   * eviction ranked at `at`. Copied now, since a concurrent `get` may touch the entries before the
   * eviction is done; the returned function records it once it is (a failed write evicts nothing).
   */
  function evictionNote (victims: readonly Entry[], candidates: Iterable<Entry>, at: number): () => void {
    if (adapt === undefined || victims.length === 0) return () => {}
    const copy = (e: Entry): ScoredEntry => ({ key: e.key, size: e.size, count: e.count, lastAccess: e.lastAccess })
    const ranked: ScoredEntry[] = []
    for (const e of candidates) if (!pins.isPinned(e.key)) ranked.push(copy(e))
    const gone = victims.map(copy)
    return () => { adapt.onEvict(gone, ranked, at) }
  }

  const blockPath = (key: string): string => join(blocksDir, key)

  function assertOpen (): void {
    if (state !== 'open') throw new UnavailableError(`cache tier "${name}" is closed`)
  }

  // Mutations (put, delete, eviction, corruption drops) run one at a time, so an eviction plan
  // stays valid while its files are written. Reads run concurrently.
  let tail: Promise<unknown> = Promise.resolve()
  function exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const run = tail.then(fn, fn)
    tail = run.catch(() => {})
    return run
  }

  function inTransaction (fn: () => void): void {
    db.exec('BEGIN')
    try {
      fn()
      db.exec('COMMIT')
    } catch (err) {
      db.exec('ROLLBACK')
      throw err
    }
  }

  /** Forgets entries (index first, files after: a crash in between leaves orphans, cleaned on open). */
  async function forget (victims: Entry[]): Promise<void> {
    if (victims.length === 0) return
    inTransaction(() => {
      for (const v of victims) sql.remove.run(v.key)
    })
    for (const v of victims) {
      entries.delete(v.key)
      bytes -= v.size
    }
    await Promise.all(victims.map(async (v) => await unlinkQuietly(blockPath(v.key))))
  }

  /** Counts one access on `e`, in memory (the caller writes it to the index). */
  function countAccess (e: Entry): void {
    const access = recordAccess(e, now(), params.halfLifeMs)
    e.count = access.count
    e.lastAccess = access.lastAccess
  }

  /** Keys touched since the last flush of touches to the index. */
  const touched = new Set<string>()
  let touchTimer: ReturnType<typeof setTimeout> | undefined

  /** Writes the touched entries' counts and times to the index, in one transaction. */
  function flushTouches (): void {
    clearTimeout(touchTimer)
    touchTimer = undefined
    if (touched.size === 0) return
    const keys = [...touched]
    touched.clear()
    try {
      inTransaction(() => {
        for (const key of keys) {
          const e = entries.get(key)
          if (e !== undefined) sql.touch.run(e.count, e.lastAccess, key)
        }
      })
    } catch {
      // Only frequencies are lost (nothing else in the index changes); memory keeps the right ones.
    }
  }

  /** Drops an entry found unreadable or corrupt, unless it was replaced meanwhile. */
  async function dropIfUnchanged (key: string, seen: number): Promise<void> {
    await exclusive(async () => {
      const current = entries.get(key)
      if (current !== undefined && current.gen === seen && state !== 'closed') await forget([current])
    })
  }

  /**
   * Makes the index and the files agree: rows that do not parse, rows without a regular file of
   * the recorded size, files without a row, and leftover temp files all go. Contents are not
   * hashed here (that would read the whole cache at start-up); `get` checks each on use.
   */
  async function reconcile (): Promise<void> {
    await Promise.all((await readdir(tmpDir)).map(async (f) => await rm(join(tmpDir, f), { recursive: true, force: true })))
    const bad: string[] = []
    for (const row of sql.all.all() as unknown as Row[]) {
      const { key, size, sha256, count, last_access: lastAccess } = row
      if (typeof key !== 'string' || !KEY_PATTERN.test(key) || RESERVED_NAMES.test(key) ||
          typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 ||
          typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256) ||
          typeof count !== 'number' || !Number.isFinite(count) ||
          typeof lastAccess !== 'number' || !Number.isFinite(lastAccess)) {
        if (typeof key === 'string') bad.push(key)
        continue
      }
      entries.set(key, { key, size, sha256, count: Math.max(count, 1), lastAccess, gen: ++gen })
    }
    clampToNow(entries.values(), now())
    const files = await readdir(blocksDir, { withFileTypes: true })
    const onDisk = new Set<string>()
    await Promise.all(files.map(async (f) => {
      if (f.isFile() && entries.has(f.name)) {
        onDisk.add(f.name)
      } else {
        await rm(join(blocksDir, f.name), { recursive: true, force: true })
      }
    }))
    await Promise.all([...entries.values()].map(async (e) => {
      if (!onDisk.has(e.key)) {
        bad.push(e.key)
        return
      }
      const st = await lstat(blockPath(e.key))
      if (st.size !== e.size) {
        bad.push(e.key)
        await unlinkQuietly(blockPath(e.key))
      }
    }))
    inTransaction(() => {
      for (const key of bad) sql.remove.run(key)
    })
    for (const key of bad) entries.delete(key)
    for (const e of entries.values()) bytes += e.size
    // The capacity may have been lowered since the last run.
    if (bytes > capacityBytes) {
      const at = now()
      const keep = options.keepAtOpen ?? new Set<string>()
      // Fewer than needed when kept keys hold too much: trim what may go, the rest at later puts.
      const loose = [...entries.values()].filter(e => !keep.has(e.key))
      const needed = Math.min(bytes - capacityBytes, loose.reduce((n, e) => n + e.size, 0))
      const victims = pickVictims(loose, needed, at, currentParams()) ?? []
      const note = evictionNote(victims, entries.values(), at)
      await forget(victims)
      note()
      counters.evictions += victims.length
    }
  }

  /**
   * Redates entries accessed "after" `at` (while the clock ran ahead, then was corrected) to `at`:
   * the score clamps their age to 0, so left as they were they would not decay until the clock
   * caught up — years, for a clock that was years ahead (found by review). The index keeps the
   * later time until the next write of the row; every open clamps it again.
   */
  function clampToNow (all: Iterable<Entry>, at: number): void {
    for (const e of all) if (e.lastAccess > at) e.lastAccess = at
  }

  /** The unpinned entries a put of `size` bytes under `key` must evict now (undefined: no room). */
  function plan (key: string, size: number, at: number): { old: Entry | undefined, others: Entry[], victims: Entry[] | undefined } {
    clampToNow(entries.values(), at)
    const old = entries.get(key)
    const others = [...entries.values()].filter((e) => e !== old)
    const need = bytes - (old?.size ?? 0) + size - capacityBytes
    return { old, others, victims: pickVictims(others, need, at, currentParams(), pins.isPinned) }
  }

  function noRoom (key: string, size: number): TooLargeError {
    let pinned = 0
    for (const e of entries.values()) if (e.key !== key && pins.isPinned(e.key)) pinned += e.size
    return new TooLargeError(`cache tier "${name}": no room for ${key} (${size} bytes): ` +
      `${pinned} of ${capacityBytes} bytes are held by pinned entries`)
  }

  /** Stores a value whose file is already written at `tmp` (done outside the lock, so writes overlap). */
  async function commit (key: string, size: number, sha256: string, tmp: string): Promise<void> {
    if (state === 'closed') {
      await unlinkQuietly(tmp)
      throw new UnavailableError(`cache tier "${name}" is closed`)
    }
    if (plan(key, size, now()).victims === undefined) {
      await unlinkQuietly(tmp)
      throw noRoom(key, size)
    }
    try {
      // The file is in place before the index names it, so a reader that finds the row finds
      // this file (or, for a replaced key, the old file: its hash then fails, and the reader
      // answers a miss without dropping the newer entry — never wrong bytes).
      await rename(tmp, blockPath(key))
    } catch (err) {
      await unlinkQuietly(tmp)
      throw new UnavailableError(`cache tier "${name}": cannot write ${key}`, { cause: err })
    }
    // Planned again after the rename and applied without an await in between: `pin` takes no
    // lock, so a pin that arrived while the file moved still protects its entry.
    const at = now()
    const { old, others, victims } = plan(key, size, at)
    if (victims === undefined) {
      await forget(old === undefined ? [] : [old]) // its file was just replaced
      await unlinkQuietly(blockPath(key))
      throw noRoom(key, size)
    }
    const note = evictionNote(victims, others, at)
    const access = recordAccess(old, now(), params.halfLifeMs)
    const entry: Entry = { key, size, sha256, count: access.count, lastAccess: access.lastAccess, gen: ++gen }
    try {
      inTransaction(() => {
        for (const v of victims) sql.remove.run(v.key)
        sql.upsert.run(key, size, sha256, entry.count, entry.lastAccess)
      })
    } catch (err) {
      // The index did not take it (a full disk, an I/O error): the file just put in place would
      // be counted nowhere, and a replaced key's old row would name bytes no longer there.
      await forget(old === undefined ? [] : [old]).catch(() => undefined)
      await unlinkQuietly(blockPath(key))
      throw new UnavailableError(`cache tier "${name}": cannot index ${key}`, { cause: err })
    }
    note()
    adapt?.forget(key)
    for (const v of victims) {
      entries.delete(v.key)
      bytes -= v.size
    }
    bytes += size - (old?.size ?? 0)
    entries.set(key, entry)
    counters.evictions += victims.length
    counters.puts++
    await Promise.all(victims.map(async (v) => await unlinkQuietly(blockPath(v.key))))
  }

  /** A value larger than the whole capacity: not stored, counted, and any older value dropped. */
  async function reject (key: string): Promise<void> {
    if (state === 'closed') throw new UnavailableError(`cache tier "${name}" is closed`)
    const old = entries.get(key)
    if (old !== undefined) await forget([old])
    counters.rejected++
  }

  let closing: Promise<void> | undefined
  const putsInFlight = new Set<Promise<void>>()

  /** Waits for the puts called so far, at most CLOSE_WAIT_FOR_PUTS_MS. */
  async function waitForPuts (): Promise<void> {
    if (putsInFlight.size === 0) return
    let timer: ReturnType<typeof setTimeout> | undefined
    const deadline = new Promise<void>((resolve) => { timer = setTimeout(resolve, CLOSE_WAIT_FOR_PUTS_MS) })
    try {
      await Promise.race([Promise.allSettled([...putsInFlight]), deadline])
    } finally {
      clearTimeout(timer)
    }
  }

  try {
    await reconcile()
  } catch (err) {
    db.close() // releases the lock, so a retry can open the directory
    throw new UnavailableError(`cache tier "${name}": cannot reconcile ${dir}`, { cause: err })
  }

  return {
    name,
    dir,

    async get (key, options) {
      assertOpen()
      checkDiskKey(name, key)
      const peek = options?.peek === true
      const seen = entries.get(key)
      if (seen === undefined) {
        if (peek) return undefined
        counters.misses++
        // A miss on a key evicted lately is a regret: the weights move, and are kept at once
        // (this is rare — at most once per eviction — and followed by a fetch anyway).
        if (adapt?.onMiss(key) === true) sql.setMeta.run(WEIGHTS_ROW, JSON.stringify({ initial: initialWeights, weights: adapt.weights() }))
        return undefined
      }
      let data: Buffer | undefined
      try {
        // Sized before it is read: a file grown behind the index is not read whole to be refused.
        const file = await open(blockPath(key), 'r')
        try {
          if ((await file.stat()).size === seen.size) data = await file.readFile()
        } finally {
          await file.close()
        }
      } catch (err) {
        const code = errnoCode(err)
        if (code !== 'ENOENT' && code !== 'EISDIR') {
          throw new UnavailableError(`cache tier "${name}": cannot read ${key}`, { cause: err })
        }
        await dropIfUnchanged(key, seen.gen)
        if (!peek) counters.misses++
        return undefined
      }
      if (data === undefined || data.byteLength !== seen.size || sha256Hex(data) !== seen.sha256) {
        await dropIfUnchanged(key, seen.gen)
        if (!peek) counters.misses++
        return undefined
      }
      if (peek) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      // The entry may have been replaced or evicted while reading; count the access on what is
      // there now (the bytes read were valid for the entry seen).
      const current = entries.get(key)
      if (current !== undefined && state !== 'closed') {
        countAccess(current)
        sql.touch.run(current.count, current.lastAccess, key)
      }
      counters.hits++
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    },

    async put (key, value) {
      assertOpen()
      checkDiskKey(name, key)
      checkBytes(name, value)
      if (value.byteLength > capacityBytes) {
        await exclusive(async () => await reject(key))
        return false
      }
      // Copied before the first await: the caller may reuse its buffer meanwhile.
      const copy = new Uint8Array(value)
      const sha256 = sha256Hex(copy)
      const tmp = join(tmpDir, `${key}.${randomBytes(6).toString('hex')}`)
      const done = (async () => {
        try {
          await writeFile(tmp, copy)
        } catch (err) {
          await unlinkQuietly(tmp)
          throw new UnavailableError(`cache tier "${name}": cannot write ${key}`, { cause: err })
        }
        await exclusive(async () => await commit(key, copy.byteLength, sha256, tmp))
      })()
      // Counted from the call: its file is still being written when close() may be called.
      putsInFlight.add(done)
      try {
        await done
      } finally {
        putsInFlight.delete(done)
      }
      return true
    },

    async has (key) {
      assertOpen()
      checkDiskKey(name, key)
      return entries.has(key)
    },

    async touch (key) {
      assertOpen()
      checkDiskKey(name, key)
      const e = entries.get(key)
      if (e === undefined) return false
      countAccess(e) // in the index at the next flush
      touched.add(key)
      if (touchTimer === undefined) {
        touchTimer = setTimeout(flushTouches, TOUCH_FLUSH_MS)
        touchTimer.unref?.()
      }
      return true
    },

    async delete (key) {
      assertOpen()
      checkDiskKey(name, key)
      return await exclusive(async () => {
        const entry = entries.get(key)
        if (entry === undefined || state === 'closed') return false
        await forget([entry])
        return true
      })
    },

    pin (key) {
      assertOpen()
      checkDiskKey(name, key)
      pins.pin(key)
    },

    unpin (key) {
      assertOpen()
      checkDiskKey(name, key)
      pins.unpin(key)
    },

    stats (): CacheStats {
      return { ...counters, entries: entries.size, bytes, capacityBytes, weights: { ...currentParams().weights } }
    },

    async close () {
      closing ??= (async () => {
        state = 'closing'
        // Work called before close finishes (puts still writing their files included); new calls
        // are refused.
        await waitForPuts()
        await tail
        state = 'closed'
        flushTouches()
        pins.clear()
        db.close()
      })()
      await closing
    }
  }
}
