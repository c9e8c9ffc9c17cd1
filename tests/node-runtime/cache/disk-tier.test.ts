import { mkdtemp, open as openFile, readdir, readFile, rm, unlink, writeFile, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync, StatementSync } from 'node:sqlite'
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest'
import { diskCache, type DiskCacheOptions, type DiskCacheTier } from '../../../node-runtime/cache/disk-tier.ts'
import { adaptiveWeights } from '../../../shared/cache/adapt.ts'
import { DEFAULT_SCORE_WEIGHTS } from '../../../shared/cache/constants.ts'
import type { ScoredEntry, ScoreWeights } from '../../../shared/cache/score.ts'
import type { CacheStats } from '../../../shared/cache/types.ts'
import { InvalidInputError, TooLargeError, UnavailableError } from '../../../shared/errors/errors.ts'
import { cacheTierContract, testBytes, testKey } from '../../shared/cache/contract.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

const dirs: string[] = []
async function freshDir (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'blockfed-disk-'))
  dirs.push(d)
  return d
}
afterAll(async () => {
  await Promise.all(dirs.map(async (d) => await rm(d, { recursive: true, force: true })))
})

cacheTierContract('diskCache', async ({ capacityBytes }) => await diskCache({ dir: await freshDir(), capacityBytes }))

/** A clock the test moves by hand. */
function fakeClock (start = 1_700_000_000_000) {
  let t = start
  return { now: () => t, advance: (ms: number) => { t += ms } }
}

describe('diskCache', () => {
  const open: DiskCacheTier[] = []
  async function make (options: Partial<DiskCacheOptions> & { dir: string }): Promise<DiskCacheTier> {
    const c = await diskCache({ capacityBytes: 10_000, ...options })
    open.push(c)
    return c
  }
  afterEach(async () => {
    await Promise.all(open.splice(0).map(async (c) => await c.close()))
  })

  describe('keys are file names', () => {
    it('accepts only base32-lower CIDs, on every operation', async () => {
      const c = await make({ dir: await freshDir() })
      const bad = ['../etc/passwd', 'a/b', 'a.b', 'ABC', 'bafy1', 'b' + 'a'.repeat(300), 'con', 'nul', '', ' bafy', 'bafy\n']
      for (const key of bad) {
        await expect(c.put(key, testBytes(1, 1)), key).rejects.toBeInstanceOf(InvalidInputError)
        await expect(c.get(key), key).rejects.toBeInstanceOf(InvalidInputError)
        await expect(c.has(key), key).rejects.toBeInstanceOf(InvalidInputError)
        await expect(c.delete(key), key).rejects.toBeInstanceOf(InvalidInputError)
        expect(() => { c.pin(key) }, key).toThrow(InvalidInputError)
      }
      await expect(c.put('../x', testBytes(1, 1))).rejects.toThrow(/base32 CID/)
      // A real CIDv1 (raw, sha2-256) in its default base32 form.
      await c.put('bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku', testBytes(3, 3))
      expect(c.stats().entries).toBe(1)
    })
  })

  describe('files', () => {
    it('writes one file per block under blocks/ and leaves no temp file', async () => {
      const dir = await freshDir()
      const c = await make({ dir })
      await Promise.all([0, 1, 2, 3].map(async (i) => await c.put(testKey(i), testBytes(100 + i, i))))
      expect((await readdir(join(dir, 'blocks'))).sort()).toEqual([0, 1, 2, 3].map(testKey).sort())
      expect(await readdir(join(dir, 'tmp'))).toEqual([])
      expect(new Uint8Array(await readFile(join(dir, 'blocks', testKey(2))))).toEqual(testBytes(102, 2))
      await c.delete(testKey(2))
      expect(await readdir(join(dir, 'blocks'))).not.toContain(testKey(2))
    })

    it('removes the files of evicted blocks', async () => {
      const dir = await freshDir()
      const c = await make({ dir, capacityBytes: 1000 })
      for (let i = 0; i < 10; i++) await c.put(testKey(i), testBytes(300, i))
      const files = await readdir(join(dir, 'blocks'))
      expect(files.length).toBe(c.stats().entries)
      expect(c.stats().entries).toBe(3)
    })
  })

  describe('eviction follows the shared score', () => {
    interface ReferencePolicy {
      weights: () => ScoreWeights
      onEvict?: (victims: ScoredEntry[], ranked: ScoredEntry[], now: number) => void
      onMiss?: (key: string) => void
      forget?: (key: string) => void
    }

    /**
     * A slow, independent model of the disk tier: entries in an array, the decayed count kept by
     * the formula as written in the brief, and the victim found by a linear scan for the lowest
     * score computed straight from the definition (with the decayed count, not in log form).
     * The weights come from `policy`, which is told of evictions, misses and stores the way the
     * disk tier is specified to tell its adaptation.
     */
    function referenceDisk (capacity: number, H: number, policy: ReferencePolicy) {
      let list: Array<{ key: string, size: number, seed: number, count: number, last: number }> = []
      const pins = new Map<string, number>()
      let evictions = 0
      const refScore = (e: { count: number, last: number, size: number }, now: number): number => {
        const w = policy.weights()
        const age = now - e.last
        const decayed = e.count * Math.pow(2, -age / H)
        return w.frequency * Math.log2(decayed) - w.recency * (age / H) - w.size * Math.log2(e.size)
      }
      const total = (): number => list.reduce((a, e) => a + e.size, 0)
      const pinned = (k: string): boolean => (pins.get(k) ?? 0) > 0
      return {
        list: () => list,
        total,
        evictions: () => evictions,
        pin (key: string) { pins.set(key, (pins.get(key) ?? 0) + 1) },
        unpin (key: string) {
          const n = pins.get(key) ?? 0
          if (n <= 1) pins.delete(key)
          else pins.set(key, n - 1)
        },
        clearPins () { pins.clear() },
        get (key: string, now: number) {
          const e = list.find((x) => x.key === key)
          if (e === undefined) {
            policy.onMiss?.(key)
            return undefined
          }
          e.count = e.count * Math.pow(2, -(now - e.last) / H) + 1
          e.last = now
          return e
        },
        put (key: string, size: number, seed: number, now: number): 'stored' | 'refused' {
          const old = list.find((x) => x.key === key)
          const others = list.filter((x) => x.key !== key)
          if (others.filter((x) => pinned(x.key)).reduce((a, x) => a + x.size, 0) + size > capacity) return 'refused'
          list = others
          const ranked = others.filter((x) => !pinned(x.key)).map((x) => ({ key: x.key, size: x.size, count: x.count, lastAccess: x.last }))
          const victims: typeof ranked = []
          while (total() + size > capacity) {
            let victim: typeof list[number] | undefined
            for (const e of list) {
              if (pinned(e.key)) continue
              if (victim === undefined) { victim = e; continue }
              const d = refScore(e, now) - refScore(victim, now)
              if (d < 0 || (d === 0 && (e.last < victim.last || (e.last === victim.last && e.size > victim.size)))) victim = e
            }
            list = list.filter((x) => x !== victim)
            victims.push(ranked.find((x) => x.key === victim?.key)!)
            evictions++
          }
          if (victims.length > 0) policy.onEvict?.(victims, ranked, now)
          policy.forget?.(key)
          const count = old === undefined ? 1 : old.count * Math.pow(2, -(now - old.last) / H) + 1
          list.push({ key, size, seed, count, last: now })
          return 'stored'
        }
      }
    }

    const cases = [11, 12, 13].flatMap((seed) => [{ seed, adapt: false }, { seed, adapt: true }])
    for (const { seed, adapt } of cases) {
      it(`matches a reference model with a fake clock, across a restart (seed ${seed}, ${adapt ? 'adaptive' : 'fixed'} weights)`, async () => {
        const rand = mulberry32(seed)
        const dir = await freshDir()
        const clock = fakeClock()
        const H = 10_000
        const capacity = 3000
        const options = { dir, capacityBytes: capacity, halfLifeMs: H, now: clock.now, adapt }
        let c = await diskCache(options)
        // Adaptive: the reference drives its own adaptiveWeights from its own evictions; after the
        // restart it continues from the weights reached, with an empty history (as specified).
        let refAdapt = adaptiveWeights({ initial: DEFAULT_SCORE_WEIGHTS, halfLifeMs: H })
        const policy: ReferencePolicy = adapt
          ? {
              weights: () => refAdapt.weights(),
              onEvict: (victims, ranked, now) => { refAdapt.onEvict(victims, ranked, now) },
              onMiss: (key) => { refAdapt.onMiss(key) },
              forget: (key) => { refAdapt.forget(key) }
            }
          : { weights: () => DEFAULT_SCORE_WEIGHTS }
        const ref = referenceDisk(capacity, H, policy)
        const keys = 30
        let refused = 0
        let evictionsBefore = 0
        for (let step = 0; step < 600; step++) {
          // Every step at a distinct time, so no two entries share a last access.
          clock.advance(1 + Math.floor(rand() * 3000))
          const key = testKey(Math.floor(Math.pow(rand(), 2) * keys)) // skewed: some keys hot
          const r = rand()
          if (r < 0.55) {
            const want = ref.get(key, clock.now())
            const got = await c.get(key)
            if (want === undefined) expect(got, `step ${step}`).toBeUndefined()
            else expect(got, `step ${step}`).toEqual(testBytes(want.size, want.seed))
          } else if (r < 0.93) {
            const size = 50 + Math.floor(rand() * 1200)
            if (ref.put(key, size, step, clock.now()) === 'refused') {
              refused++
              await expect(c.put(key, testBytes(size, step))).rejects.toBeInstanceOf(TooLargeError)
            } else {
              await c.put(key, testBytes(size, step))
            }
          } else if (r < 0.975) {
            ref.pin(key)
            c.pin(key)
          } else {
            ref.unpin(key)
            c.unpin(key)
          }
          if (step === 300) {
            // Restart: counts and times come back from the index; pins do not.
            evictionsBefore = c.stats().evictions
            await c.close()
            c = await diskCache(options)
            ref.clearPins()
            refAdapt = adaptiveWeights({ initial: DEFAULT_SCORE_WEIGHTS, halfLifeMs: H, resume: refAdapt.weights() })
          }
          const held = ref.list().map((e) => e.key).sort()
          const actual: string[] = []
          for (let k = 0; k < keys; k++) if (await c.has(testKey(k))) actual.push(testKey(k))
          expect(actual.sort(), `step ${step}`).toEqual(held)
          expect(c.stats().bytes).toBe(ref.total())
          expect(evictionsBefore + c.stats().evictions, `step ${step}`).toBe(ref.evictions())
          expect(c.stats().weights, `step ${step}`).toEqual(policy.weights())
        }
        expect(ref.evictions()).toBeGreaterThan(50)
        expect(refused).toBeGreaterThan(0)
        // The adaptive run did adapt (else it would only repeat the fixed one).
        if (adapt) expect(c.stats().weights).not.toEqual(DEFAULT_SCORE_WEIGHTS)
        await c.close()
      })
    }
  })

  it('a pin taken while a put is committing still protects its entry: the put is refused instead', async () => {
    // The clock calls back on the microtask after the put has chosen its victims, that is while
    // its file is being renamed into place (a load pinning its rollback target while a
    // background prefetch's put is in flight).
    let t = 1_700_000_000_000
    let onTick: (() => void) | undefined
    const c = await make({ dir: await freshDir(), capacityBytes: 1000, adapt: false, now: () => { const f = onTick; onTick = undefined; if (f !== undefined) queueMicrotask(f); return ++t } })
    await c.put(testKey(1), testBytes(600, 1))
    onTick = () => { c.pin(testKey(1)) }
    await expect(c.put(testKey(2), testBytes(600, 2))).rejects.toBeInstanceOf(TooLargeError)
    expect(await c.get(testKey(1))).toEqual(testBytes(600, 1))
    expect(await c.has(testKey(2))).toBe(false)
    expect(c.stats()).toMatchObject({ entries: 1, bytes: 600, evictions: 0 })
    expect((await readdir(join(c.dir, 'blocks'))).length).toBe(1)
  })

  describe('persistence', () => {
    /**
     * Keys 1, 2, 3 put 10 ms apart; then key 1 accessed five times and key 3 once (by `access`),
     * key 2 never again. Pure decayed LFU, so fixed: adaptation would keep recency at 5% at least.
     */
    async function usedUnevenly (access: 'get' | 'touch') {
      const clock = fakeClock()
      const H = 60_000
      const options = { dir: await freshDir(), capacityBytes: 1000, halfLifeMs: H, now: clock.now, weights: { frequency: 1, recency: 0, size: 0 }, adapt: false }
      const c = await make(options)
      for (const k of [1, 2, 3]) {
        if (k > 1) clock.advance(10)
        await c.put(testKey(k), testBytes(300, k))
      }
      for (const k of [1, 1, 1, 1, 1, 3]) {
        clock.advance(10)
        if (access === 'get') expect(await c.get(testKey(k))).toBeDefined()
        else expect(await c.touch(testKey(k))).toBe(true)
      }
      return { c, clock, H, options }
    }

    it('keeps contents and frequencies across close and reopen', async () => {
      const { clock, H, options, ...used } = await usedUnevenly('get')
      let c = used.c
      await c.close()

      clock.advance(H)
      c = await make(options)
      expect(c.stats()).toMatchObject({ entries: 3, bytes: 900, hits: 0, misses: 0, puts: 0 })
      expect(await c.get(testKey(2))).toEqual(testBytes(300, 2))
      // Decayed by one half-life: key 1 ≈ 3, key 3 ≈ 1, key 2 = 0.5 + 1 after that get.
      clock.advance(10)
      await c.put(testKey(4), testBytes(300, 4))
      expect(await c.has(testKey(3))).toBe(false)
      expect(await c.has(testKey(1))).toBe(true)
      expect(await c.has(testKey(2))).toBe(true)
    })

    it('counts touches (memory hits above it) as accesses, kept across close and reopen', async () => {
      const { clock, H, options, ...used } = await usedUnevenly('touch')
      let c = used.c
      expect(await c.touch(testKey(4))).toBe(false)
      expect(c.stats()).toMatchObject({ hits: 0, misses: 0 })
      await c.close()

      clock.advance(H)
      c = await make(options)
      clock.advance(10)
      await c.put(testKey(4), testBytes(300, 4))
      expect(await c.has(testKey(2))).toBe(false)
      expect(await c.has(testKey(1))).toBe(true)
      clock.advance(10)
      await c.put(testKey(5), testBytes(300, 5))
      expect(await c.has(testKey(3))).toBe(false)
      expect(await c.has(testKey(1))).toBe(true)
    })

    it('stores a put called before close: close waits for it, though its file was still being written', async () => {
      const dir = await freshDir()
      const c = await diskCache({ dir, capacityBytes: 10_000 })
      const puts = [c.put(testKey(1), testBytes(500, 1)), c.put(testKey(2), testBytes(600, 2))]
      await c.close()
      await Promise.all(puts)
      await expect(c.put(testKey(3), testBytes(10, 3))).rejects.toBeInstanceOf(UnavailableError)
      expect(await readdir(join(dir, 'tmp'))).toEqual([])
      const again = await make({ dir })
      expect(await again.get(testKey(1))).toEqual(testBytes(500, 1))
      expect(await again.get(testKey(2))).toEqual(testBytes(600, 2))
    })

    it('lets an entry used while the clock ran ahead decay once the clock is corrected (also across a reopen)', async () => {
      const DAY = 86_400_000
      for (const reopen of [false, true]) {
        const dir = await freshDir()
        const clock = fakeClock()
        const options = { dir, capacityBytes: 3000, now: clock.now, adapt: false }
        let c = await make(options)
        clock.advance(3650 * DAY) // ten years ahead
        await c.put(testKey(0), testBytes(1000, 0))
        for (let j = 0; j < 3; j++) await c.get(testKey(0))
        clock.advance(-3650 * DAY) // corrected
        if (reopen) {
          await c.close()
          c = await make(options)
        }
        // One block an hour, read once a minute later: by default weights key 0 (count 4) is worth
        // a few hours of idleness more than they (count 2) are, so it goes within a day.
        let goneAt = -1
        for (let i = 1; i <= 48 && goneAt < 0; i++) {
          clock.advance(60 * 60 * 1000)
          await c.put(testKey(i), testBytes(1000, i))
          clock.advance(60_000)
          await c.get(testKey(i))
          if (!(await c.has(testKey(0)))) goneAt = i
        }
        expect(goneAt, `reopen: ${reopen}`).toBeGreaterThan(0)
        expect(goneAt, `reopen: ${reopen}`).toBeLessThanOrEqual(24)
        expect(await c.has(testKey(goneAt)), `reopen: ${reopen}`).toBe(true)
      }
    })

    it('drops a block whose file was removed behind its back (at run time and on open)', async () => {
      const dir = await freshDir()
      let c = await make({ dir })
      await c.put(testKey(1), testBytes(100, 1))
      await c.put(testKey(2), testBytes(100, 2))
      await unlink(join(dir, 'blocks', testKey(1)))
      expect(await c.has(testKey(1))).toBe(true) // has() trusts the index
      expect(await c.get(testKey(1))).toBeUndefined()
      expect(await c.has(testKey(1))).toBe(false)
      expect(c.stats()).toMatchObject({ entries: 1, bytes: 100, misses: 1, hits: 0, evictions: 0 })
      await c.close()
      await unlink(join(dir, 'blocks', testKey(2)))
      c = await make({ dir })
      expect(c.stats()).toMatchObject({ entries: 0, bytes: 0 })
    })

    it('never serves a file corrupted behind its back: same size, truncated, replaced, or grown', async () => {
      const dir = await freshDir()
      const c = await make({ dir })
      for (let i = 1; i <= 4; i++) await c.put(testKey(i), testBytes(100, i))
      const flipped = testBytes(100, 1)
      flipped[50]! ^= 1
      await writeFile(join(dir, 'blocks', testKey(1)), flipped)
      await truncate(join(dir, 'blocks', testKey(2)), 40)
      await writeFile(join(dir, 'blocks', testKey(3)), testBytes(100, 4))
      // Grown (sparse) past what one read can hold: sized before it is read, a miss. Before, the
      // whole file was read first and the get failed with ERR_FS_FILE_TOO_LARGE.
      await truncate(join(dir, 'blocks', testKey(4)), 3 * 2 ** 30)
      for (let i = 1; i <= 4; i++) {
        expect(await c.get(testKey(i))).toBeUndefined()
        expect(await c.has(testKey(i))).toBe(false)
      }
      expect(await readdir(join(dir, 'blocks'))).toEqual([])
      expect(c.stats()).toMatchObject({ entries: 0, bytes: 0, misses: 4 })
      // And it stores the block again when the loader refetches it.
      await c.put(testKey(1), testBytes(100, 1))
      expect(await c.get(testKey(1))).toEqual(testBytes(100, 1))
    })

    it('reconciles on open: orphan and temp files go, rows with a wrong-size file go', async () => {
      const dir = await freshDir()
      let c = await make({ dir })
      await c.put(testKey(1), testBytes(100, 1))
      await c.put(testKey(2), testBytes(100, 2))
      await c.close()
      await writeFile(join(dir, 'blocks', testKey(9)), testBytes(10, 9)) // orphan
      await writeFile(join(dir, 'blocks', 'not-a-key.txt'), 'x')
      await writeFile(join(dir, 'tmp', `${testKey(5)}.abcdef`), testBytes(10, 5)) // interrupted write
      await writeFile(join(dir, 'blocks', testKey(2)), testBytes(120, 2)) // size no longer matches
      c = await make({ dir })
      expect((await readdir(join(dir, 'blocks'))).sort()).toEqual([testKey(1)])
      expect(await readdir(join(dir, 'tmp'))).toEqual([])
      expect(c.stats()).toMatchObject({ entries: 1, bytes: 100 })
      expect(await c.get(testKey(1))).toEqual(testBytes(100, 1))
    })

    /** A closed cache of 5 entries of 200 bytes, put 1 s apart, the first read again: 1 scores lowest, then 2, 3, 0, 4. */
    async function fiveScoredEntries (): Promise<{ dir: string, clock: ReturnType<typeof fakeClock> }> {
      const dir = await freshDir()
      const clock = fakeClock()
      const c = await make({ dir, capacityBytes: 1000, now: clock.now })
      for (let i = 0; i < 5; i++) {
        clock.advance(1000)
        await c.put(testKey(i), testBytes(200, i))
      }
      await c.get(testKey(0))
      await c.close()
      return { dir, clock }
    }

    it('trims to a capacity lowered between runs, by score', async () => {
      const { dir, clock } = await fiveScoredEntries()
      let c: DiskCacheTier
      c = await make({ dir, capacityBytes: 450, now: clock.now })
      expect(c.stats()).toMatchObject({ entries: 2, bytes: 400, evictions: 3 })
      expect(await c.has(testKey(0))).toBe(true)
      expect(await c.has(testKey(4))).toBe(true)
    })

    it('spares the keys it is told to keep when it trims at open, and trims the rest at later puts', async () => {
      const { dir, clock } = await fiveScoredEntries()
      let c: DiskCacheTier
      // The three lowest-scored entries (1, 2, 3: the way back, say) are kept; 0 and 4, which a
      // trim by score alone keeps (the test above), go instead.
      c = await make({ dir, capacityBytes: 450, now: clock.now, keepAtOpen: new Set([testKey(1), testKey(2), testKey(3)]) })
      for (const i of [1, 2, 3]) expect(await c.has(testKey(i))).toBe(true)
      // Kept keys hold 600 bytes of 450: 150 over the capacity for now.
      expect(c.stats()).toMatchObject({ entries: 3, bytes: 600, evictions: 2 })
      await c.close()
      // Nothing left to trim at open; the next put (nothing pinned now) trims to the capacity.
      c = await make({ dir, capacityBytes: 300, now: clock.now, keepAtOpen: new Set([testKey(1), testKey(2), testKey(3)]) })
      expect(c.stats().bytes).toBe(600)
      await c.put(testKey(5), testBytes(100, 5))
      expect(c.stats().bytes).toBeLessThanOrEqual(300)
    })

    it('starts afresh from an index that is not a database', async () => {
      const dir = await freshDir()
      let c = await make({ dir })
      await c.put(testKey(1), testBytes(100, 1))
      await c.close()
      await writeFile(join(dir, 'index.sqlite'), 'this is not sqlite'.repeat(100))
      await rm(join(dir, 'index.sqlite-wal'), { force: true })
      c = await make({ dir })
      expect(c.stats()).toMatchObject({ entries: 0, bytes: 0 })
      expect(await readdir(join(dir, 'blocks'))).toEqual([])
      await c.put(testKey(1), testBytes(100, 1))
      expect(await c.get(testKey(1))).toEqual(testBytes(100, 1))
    })

    it('starts afresh from an index with a damaged page past its first (found by a full check at open)', async () => {
      const dir = await freshDir()
      let c = await make({ dir, capacityBytes: 1 << 30 })
      for (let i = 0; i < 400; i++) await c.put(testKey(i), testBytes(3, i))
      await c.close()
      const path = join(dir, 'index.sqlite')
      const db = new DatabaseSync(path)
      db.exec('PRAGMA wal_checkpoint(TRUNCATE)')
      const { page_size: pageSize } = db.prepare('PRAGMA page_size').get() as { page_size: number }
      const { page_count: pages } = db.prepare('PRAGMA page_count').get() as { page_count: number }
      db.close()
      expect(pages).toBeGreaterThan(4)
      // The last page (a leaf of the blocks table) overwritten, as a bad sector would.
      const handle = await openFile(path, 'r+')
      await handle.write(Buffer.alloc(pageSize, 0xa5), 0, pageSize, (pages - 1) * pageSize)
      await handle.close()
      c = await make({ dir, capacityBytes: 1 << 30 })
      expect(c.stats()).toMatchObject({ entries: 0, bytes: 0 })
      expect(await readdir(join(dir, 'blocks'))).toEqual([])
      await c.put(testKey(1), testBytes(100, 1))
      expect(await c.get(testKey(1))).toEqual(testBytes(100, 1))
    })

    it('keeps no file the index did not take (a full disk at the index write)', async () => {
      const dir = await freshDir()
      const c = await make({ dir })
      await c.put(testKey(1), testBytes(3000, 1))
      // The index refuses every write from here, as SQLITE_FULL would.
      const run = StatementSync.prototype.run
      const failing = vi.spyOn(StatementSync.prototype, 'run').mockImplementation(function (this: StatementSync, ...args: Parameters<typeof run>) {
        if (this.sourceSQL.startsWith('INSERT INTO blocks')) throw Object.assign(new Error('database or disk is full'), { errcode: 13 })
        return run.apply(this, args)
      })
      try {
        await expect(c.put(testKey(2), testBytes(3000, 2))).rejects.toThrow(/cannot index/)
        // A replaced key: its old row named bytes that are gone, so it goes too.
        await expect(c.put(testKey(1), testBytes(3000, 3))).rejects.toThrow(UnavailableError)
      } finally {
        failing.mockRestore()
      }
      expect(c.stats()).toMatchObject({ entries: 0, bytes: 0 })
      expect(await readdir(join(dir, 'blocks'))).toEqual([])
      await c.put(testKey(4), testBytes(9000, 4))
      expect(c.stats().bytes).toBe(9000)
    })

    it('refuses a second opener of the same directory until the first closes', async () => {
      const dir = await freshDir()
      const c = await diskCache({ dir, capacityBytes: 1000 })
      await expect(diskCache({ dir, capacityBytes: 1000 })).rejects.toBeInstanceOf(UnavailableError)
      await expect(diskCache({ dir, capacityBytes: 1000 })).rejects.toThrow(/in use/)
      await c.close()
      const again = await make({ dir, capacityBytes: 1000 })
      expect(again.stats().entries).toBe(0)
    })
  })

  describe('adapted weights', () => {
    const recencyHeavy = { frequency: 0.2, recency: 2, size: 0.5 }
    const H = 60_000

    /**
     * The scan-heavy workload of tests/shared/cache/adapt.test.ts on the real tier: each cycle
     * reads a hot set of 8 blocks twice, then 12 blocks never read again; 16 blocks fit. A miss is
     * followed by a put, as the loader does. One request per fake second.
     */
    async function hotAndScan (c: DiskCacheTier, clock: ReturnType<typeof fakeClock>, cycles: number, firstScan = 0): Promise<void> {
      let scan = firstScan
      for (let cycle = 0; cycle < cycles; cycle++) {
        const keys = [...Array.from({ length: 16 }, (_, i) => i % 8), ...Array.from({ length: 12 }, () => 1000 + scan++)]
        for (const k of keys) {
          clock.advance(1000)
          if (await c.get(testKey(k)) === undefined) await c.put(testKey(k), testBytes(100, k))
        }
      }
    }

    it('lift the hit rate of a scan-heavy workload over fixed weights that start wrong', async () => {
      const results: Record<string, CacheStats> = {}
      for (const adapt of [false, true]) {
        const clock = fakeClock()
        const c = await make({ dir: await freshDir(), capacityBytes: 1600, halfLifeMs: H, now: clock.now, weights: recencyHeavy, adapt })
        await hotAndScan(c, clock, 60)
        results[String(adapt)] = c.stats()
      }
      // The same figures as the pure simulation of the shared score (adapt.test.ts): the tier
      // feeds its adaptation exactly the evictions and misses the model does.
      expect(results.false).toMatchObject({ hits: 598, misses: 1082, weights: recencyHeavy })
      expect(results.true).toMatchObject({ hits: 949, misses: 731 })
      expect(results.true?.weights?.frequency).toBeCloseTo(0.6032567145357827, 12)
    })

    it('persist across a restart, and start afresh when the configured weights change', async () => {
      const dir = await freshDir()
      const clock = fakeClock()
      const options = { dir, capacityBytes: 1600, halfLifeMs: H, now: clock.now, weights: recencyHeavy }
      let c = await make(options)
      await hotAndScan(c, clock, 10)
      const adapted = c.stats().weights
      expect(adapted?.frequency).toBeGreaterThan(recencyHeavy.frequency)
      await c.close()

      // The row beside "schema" in the meta table; the schema version is unchanged.
      const db = new DatabaseSync(join(dir, 'index.sqlite'))
      const rows = Object.fromEntries((db.prepare('SELECT k, v FROM meta').all() as Array<{ k: string, v: string }>).map((r) => [r.k, r.v]))
      db.close()
      expect(rows.schema).toBe('1')
      expect(JSON.parse(rows['score-weights']!)).toEqual({ initial: recencyHeavy, weights: adapted })

      c = await make(options)
      expect(c.stats().weights).toEqual(adapted)
      // And it keeps adapting from there (a fresh ghost history, fresh scan keys).
      await hotAndScan(c, clock, 10, 5000)
      const further = c.stats().weights!
      expect(further.frequency).toBeGreaterThanOrEqual(adapted!.frequency)
      await c.close()

      // Fixed weights ignore the row (and leave it for a later adaptive run).
      c = await make({ ...options, adapt: false })
      expect(c.stats().weights).toEqual(recencyHeavy)
      await c.close()
      c = await make(options)
      expect(c.stats().weights).toEqual(further)
      await c.close()

      // Other configured weights: the adapted ones no longer apply.
      c = await make({ ...options, weights: { ...recencyHeavy, size: 1 } })
      expect(c.stats().weights).toEqual({ ...recencyHeavy, size: 1 })
      await c.close()
    })

    it('start from the configured weights when the row is damaged', async () => {
      const dir = await freshDir()
      let c = await make({ dir })
      await c.close()
      for (const damaged of ['not json', '{"initial":{"frequency":1,"recency":0.5,"size":0.5}}', JSON.stringify({ initial: DEFAULT_SCORE_WEIGHTS, weights: { frequency: -1, recency: 1, size: 0 } })]) {
        const db = new DatabaseSync(join(dir, 'index.sqlite'))
        db.prepare('INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)').run('score-weights', damaged)
        db.close()
        c = await make({ dir })
        expect(c.stats().weights, damaged).toEqual(DEFAULT_SCORE_WEIGHTS)
        await c.close()
      }
    })
  })

  describe('options', () => {
    it('names the bad adaptation option, and leaves the directory usable', async () => {
      const dir = await freshDir()
      await expect(diskCache({ dir, capacityBytes: 10, adapt: 'yes' as unknown as boolean })).rejects.toThrow(/diskCache: adapt must be true, false or/)
      await expect(diskCache({ dir, capacityBytes: 10, adapt: null as unknown as boolean })).rejects.toThrow(InvalidInputError)
      await expect(diskCache({ dir, capacityBytes: 10, adapt: { rate: -1 } })).rejects.toThrow(/diskCache: adapt\.rate must be a positive finite number, got -1/)
      await expect(diskCache({ dir, capacityBytes: 10, adapt: { historySize: 0 } })).rejects.toThrow(/adapt\.historySize/)
      await expect(diskCache({ dir, capacityBytes: 10, adapt: { minShare: 0.7 } })).rejects.toThrow(/adapt\.minShare/)
      await expect(diskCache({ dir, capacityBytes: 10, adapt: { learningRate: 1 } as never })).rejects.toThrow(/adapt\.learningRate is not an option/)
      const c = await make({ dir, adapt: { rate: 0.2, historySize: 8, minShare: 0.25 }, weights: { frequency: 1, recency: 0, size: 0 } })
      // minShare applies from the start.
      expect(c.stats().weights).toEqual({ frequency: 0.75, recency: 0.25, size: 0 })
    })

    it('names the bad option', async () => {
      const dir = await freshDir()
      await expect(diskCache({ dir, capacityBytes: -1 })).rejects.toThrow(/capacityBytes/)
      await expect(diskCache({ dir, capacityBytes: 10, halfLifeMs: 0 })).rejects.toThrow(/halfLifeMs/)
      await expect(diskCache({ dir, capacityBytes: 10, weights: { size: -1 } })).rejects.toThrow(/weights\.size/)
      await expect(diskCache({ dir: '', capacityBytes: 10 })).rejects.toThrow(InvalidInputError)
    })
  })
})
