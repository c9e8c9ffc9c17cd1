/**
 * The log monitor (shared/ledger/monitor.ts): reads every entry under a checkpoint once, checks
 * them against its signed root from a compact range, and finds a version anchored twice.
 *
 * - Roots rebuilt from the compact range agree with the stored-subtree tree (merkle.ts) and with
 *   a slow RFC 9162 reference, at every size from 0 to 300 and across random page lengths.
 * - Entries served other than signed are refused with an inclusion proof a third party can check;
 *   nothing is kept. A leaf that is not an entry, under a root that covers it, is refused too.
 * - A second entry for one version is found whichever advance brings it, and kept across runs.
 * - A damaged state file is rebuilt from the log, and so is one of another history than the
 *   trusted checkpoint's (at its size, beyond or below it); a checkpoint far ahead is refused unread.
 * - Entries off a model's chain of versions (parent, version order) are recorded and kept.
 * - Over HTTP against a real coordinator whose log holds 600 entries: pages of 256.
 */
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator } from '../../../coordinator/coordinator.ts'
import { openDatabase } from '../../../coordinator/store/database.ts'
import { loadIdentity } from '../../../coordinator/keys/identity.ts'
import { versionLog } from '../../../coordinator/ledger/log.ts'
import { fromBase64, toBase64 } from '../../../shared/crypto/bytes.ts'
import { IntegrityError, LedgerSecurityError } from '../../../shared/errors/errors.ts'
import { ledgerClient } from '../../../shared/ledger/client.ts'
import { openCheckpoint, type Checkpoint } from '../../../shared/ledger/checkpoint.ts'
import { entryBytes, type LedgerEntry } from '../../../shared/ledger/entry.ts'
import { leafHash, verifyInclusion } from '../../../shared/ledger/merkle.ts'
import { memoryTree } from '../../../shared/ledger/memory-tree.ts'
import { monitorLog, type MonitorStore } from '../../../shared/ledger/monitor.ts'
import { parseVerifierKey } from '../../../shared/ledger/note.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'
import { entry, treeClient } from '../../helpers/ledger-fake-log.ts'
import { referenceTree } from '../../helpers/merkle-reference.ts'

const ORIGIN = 'blockfed.test/monitor'

function memoryStore (): MonitorStore & { text: string | undefined, saves: number } {
  const store = {
    text: undefined as string | undefined,
    saves: 0,
    load: async () => store.text,
    async save (text: string) { store.text = text; store.saves++ }
  }
  return store
}

/** A log of entries the test appends, served with pages of seeded-random length (1 to 7). */
function log (seed = 1) {
  const tree = memoryTree()
  const leaves: Uint8Array[] = []
  const next = mulberry32(seed)
  const base = treeClient(tree, leaves, { checkpoint: async () => '', key: async () => '' })
  const asked: Array<[number, number]> = []
  const client = {
    ...base,
    entries: async (from: number, to: number) => {
      asked.push([from, to])
      return (await base.entries(from, to)).slice(0, 1 + Math.floor(next() * 7))
    }
  }
  return {
    tree,
    leaves,
    client,
    asked,
    append (e: LedgerEntry | Uint8Array): number {
      const bytes = e instanceof Uint8Array ? e : entryBytes(e)
      leaves.push(bytes)
      return tree.append(bytes)
    },
    checkpoint: (size = tree.size): Checkpoint => ({ origin: ORIGIN, size, root: tree.root(size), extensions: [] })
  }
}

describe('monitorLog', () => {
  it('rebuilds every root from 0 to 300 entries, read in random pages and advances, as the stored-subtree tree and the RFC 9162 reference do', async () => {
    const l = log(7)
    const store = memoryStore()
    const next = mulberry32(3)
    const reference = referenceTree(l.leaves)
    let read = 0
    for (let v = 1; v <= 300; v++) {
      l.append(entry('m', v))
      // Advance at random moments, so that every kind of compact range is carried over a save.
      if (next() < 0.3 || v === 300) {
        const cp = l.checkpoint()
        expect(cp.root).toEqual(reference.root(v))
        const view = await monitorLog(l.client, cp, 'note', store)
        expect(view.size).toBe(v)
        read = v
      }
    }
    expect(read).toBe(300)
    // Every version once, at its own index; nothing else.
    const view = await monitorLog(l.client, l.checkpoint(), 'note', store)
    for (let v = 1; v <= 300; v++) expect(view.entriesOf('m', v)).toEqual([v - 1])
    expect(view.entriesOf('m', 301)).toEqual([])
    expect(view.entriesOf('other', 1)).toEqual([])
    // Each entry was asked for once: the pages start where the previous one ended.
    const starts = l.asked.map(([from]) => from)
    expect(new Set(starts).size).toBe(starts.length)
  })

  it('finds a version anchored twice, whichever advance brings the second entry, and keeps it across runs', async () => {
    const l = log()
    for (let v = 1; v <= 4; v++) l.append(entry('m', v))
    l.append(entry('n', 1))
    const store = memoryStore()
    expect((await monitorLog(l.client, l.checkpoint(), 'note', store)).entriesOf('m', 4)).toEqual([3])
    // m@4 again, naming another manifest, two advances later.
    l.append(entry('n', 2))
    await monitorLog(l.client, l.checkpoint(), 'note', store)
    l.append({ ...entry('m', 4), manifestCid: 'bafyOTHER' })
    l.append({ ...entry('m', 4), manifestCid: 'bafyTHIRD' })
    const view = await monitorLog(l.client, l.checkpoint(), 'note', store)
    expect(view.entriesOf('m', 4)).toEqual([3, 6, 7])
    expect(view.entriesOf('m', 3)).toEqual([2])
    expect(view.entriesOf('n', 1)).toEqual([4])
    // A later run reads the kept state: nothing is fetched again, the duplicate is still known.
    const asked = l.asked.length
    const again = await monitorLog(l.client, l.checkpoint(), 'note', store)
    expect(l.asked.length).toBe(asked)
    expect(again.entriesOf('m', 4)).toEqual([3, 6, 7])
    // A stale checkpoint (older than what was read) adds nothing and takes nothing away.
    expect((await monitorLog(l.client, l.checkpoint(5), 'note', store)).entriesOf('m', 4)).toEqual([3, 6, 7])
  })

  it('refuses entries served other than signed, with an inclusion proof that checks out for a third party, and keeps nothing', async () => {
    const l = log()
    for (let v = 1; v <= 9; v++) l.append(entry('m', v))
    const store = memoryStore()
    await monitorLog(l.client, l.checkpoint(4), 'note-4', store)
    const kept = store.text
    const signed = l.checkpoint()
    // Entry 6 as served names another manifest; the tree (and so the signed root) has the original.
    const original = l.leaves[6] as Uint8Array
    const served = entryBytes({ ...entry('m', 7), manifestCid: 'bafyEVIL' })
    l.leaves[6] = served
    const err = await monitorLog(l.client, signed, 'note-9', store).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(LedgerSecurityError)
    expect((err as Error).message).toMatch(/log blockfed\.test\/monitor: entries 4–8 as served do not hash to the root of checkpoint 9: entry 6 is not the one it signed/)
    const { offered, proof } = (err as LedgerSecurityError).evidence
    expect(offered).toBe('note-9')
    expect(proof).toMatchObject({ kind: 'inclusion', index: 6, size: 9 })
    const hashes = (proof as { hashes: string[] }).hashes.map(fromBase64)
    verifyInclusion(6, 9, leafHash(original), hashes, signed.root)
    expect(() => verifyInclusion(6, 9, leafHash(served), hashes, signed.root)).toThrow(IntegrityError)
    expect(store.text).toBe(kept)
    // Served as signed again, it is read, and the version has one entry.
    l.leaves[6] = original
    expect((await monitorLog(l.client, signed, 'note-9', store)).entriesOf('m', 7)).toEqual([6])
  })

  it('refuses a leaf that is not a ledger entry even when the signed root covers it', async () => {
    const l = log()
    l.append(entry('m', 1))
    l.append(new TextEncoder().encode('{"model":"m","version":2}'))
    const store = memoryStore()
    await expect(monitorLog(l.client, l.checkpoint(), 'note', store)).rejects.toThrow(/checkpoint 2 covers an entry that is not a ledger entry \(log blockfed\.test\/monitor: entry 1/)
    expect(store.saves).toBe(0)
  })

  it('reads a long log part by part, keeping each part proved of the signed tree, so a failure later loses nothing before it', async () => {
    const l = log(5)
    for (let v = 1; v <= 25; v++) l.append(entry('m', v))
    const signed = l.checkpoint()
    // Entry 17 as served names another manifest: parts 0–9 and 10–19 are read; the second fails.
    const original = l.leaves[17] as Uint8Array
    l.leaves[17] = entryBytes({ ...entry('m', 18), manifestCid: 'bafyEVIL' })
    const store = memoryStore()
    const err = await monitorLog(l.client, signed, 'note', store, undefined, 10).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(LedgerSecurityError)
    expect((err as Error).message).toMatch(/entries 10–19 as served do not hash to the root of checkpoint 25: entry 17 is not the one it signed/)
    // The first part, proved a prefix of the signed tree, was kept.
    expect(store.saves).toBe(1)
    expect(JSON.parse(store.text ?? '{}')).toMatchObject({ size: 10 })
    // Served as signed again, reading goes on from entry 10: saved at 20 (doubled) and at the end.
    l.leaves[17] = original
    const asked = l.asked.length
    const view = await monitorLog(l.client, signed, 'note', store, undefined, 10)
    expect(Math.min(...l.asked.slice(asked).map(([from]) => from))).toBe(10)
    expect(store.saves).toBe(3)
    expect(view.size).toBe(25)
    for (let v = 1; v <= 25; v++) expect(view.entriesOf('m', v)).toEqual([v - 1])
    expect(view.offChain('m', 24)).toBeUndefined()
  })

  it('writes its store when what it holds has doubled and at the end, not at every part; a failed read keeps every part it proved', async () => {
    const l = log(6)
    for (let v = 1; v <= 1000; v++) l.append(entry('m', v))
    const written: number[] = []
    const store = memoryStore()
    const counted: MonitorStore = { load: store.load, save: async text => { written.push(text.length); await store.save(text) } }
    const view = await monitorLog(l.client, l.checkpoint(), 'note', counted, undefined, 10)
    expect(view.size).toBe(1000)
    // Saved at 10, 20, 40, …, 640 and at 1000: 8 writes, where a write per part made 100 of a
    // growing state (≈ 50 × the final state's bytes).
    expect(written).toHaveLength(8)
    const total = written.reduce((a, b) => a + b, 0)
    expect(total).toBeLessThan(2.5 * (written.at(-1) as number))
    // The log goes away at entry 300: what was proved before it (0–299) is kept, though the
    // last doubling saved only 0–159.
    const m = log(7)
    for (let v = 1; v <= 500; v++) m.append(entry('m', v))
    const failing = { ...m.client, entries: async (from: number, to: number) => { if (from >= 300) throw new Error('connection reset'); return await m.client.entries(from, to) } }
    const kept = memoryStore()
    await expect(monitorLog(failing, m.checkpoint(), 'note', kept, undefined, 10)).rejects.toThrow('connection reset')
    expect(JSON.parse(kept.text ?? '{}')).toMatchObject({ size: 300 })
    const asked = m.asked.length
    expect((await monitorLog(m.client, m.checkpoint(), 'note', kept, undefined, 10)).size).toBe(500)
    expect(Math.min(...m.asked.slice(asked).map(([from]) => from))).toBe(300)
  })

  it('reads a kept state of another history again from entry 0 when the first part read does not match, part by part', async () => {
    const h = log(2)
    const f = log(3)
    for (let v = 1; v <= 12; v++) h.append(entry('m', v))
    for (let v = 1; v <= 23; v++) f.append({ ...entry('m', v), manifestCid: `bafyF${v}` })
    const store = memoryStore()
    await monitorLog(h.client, h.checkpoint(), 'note', store, undefined, 5)
    const view = await monitorLog(f.client, f.checkpoint(), 'note', store, undefined, 5)
    expect(view.size).toBe(23)
    for (let v = 1; v <= 23; v++) expect(view.entriesOf('m', v)).toEqual([v - 1])
  })

  it('hands out views that later advances leave as they were, and follows its store, not what it parsed before', async () => {
    const l = log()
    for (let v = 1; v <= 3; v++) l.append(entry('m', v))
    const store = memoryStore()
    const before = await monitorLog(l.client, l.checkpoint(), 'note', store)
    const savedAt3 = store.text
    l.append({ ...entry('m', 2), manifestCid: 'bafyAGAIN' })
    l.append(entry('n', 1))
    const after = await monitorLog(l.client, l.checkpoint(), 'note', store)
    expect(after.entriesOf('m', 2)).toEqual([1, 3])
    expect(before.size).toBe(3)
    expect(before.entriesOf('m', 2)).toEqual([1])
    expect(before.entriesOf('n', 1)).toEqual([])
    // The store put back to its state at 3 entries (another process, a restored backup): the
    // entries after it are read again, not taken from the state parsed last.
    store.text = savedAt3
    const asked = l.asked.length
    const reread = await monitorLog(l.client, l.checkpoint(), 'note', store)
    expect(l.asked.length).toBeGreaterThan(asked)
    expect(l.asked[asked]?.[0]).toBe(3)
    expect(reread.entriesOf('m', 2)).toEqual([1, 3])
    // And a state file for which nothing new is read is served from what was parsed: same answers.
    const unchanged = await monitorLog(l.client, l.checkpoint(), 'note', store)
    expect(unchanged.entriesOf('m', 2)).toEqual([1, 3])
    expect(unchanged.entriesOf('n', 1)).toEqual([4])
  })

  it('rebuilds a damaged or foreign state file from the log', async () => {
    const l = log()
    for (let v = 1; v <= 5; v++) l.append(entry('m', v))
    l.append({ ...entry('m', 2), manifestCid: 'bafyAGAIN' })
    const store = memoryStore()
    await monitorLog(l.client, l.checkpoint(), 'note', store)
    const good = JSON.parse(store.text as string) as { frontier: string[] }
    for (const text of ['', 'not json', '{"format":"blockfed-log-monitor/1"}', JSON.stringify({ ...good, frontier: good.frontier.slice(1) }), JSON.stringify({ ...good, format: 'other' })]) {
      store.text = text
      const asked = l.asked.length
      const view = await monitorLog(l.client, l.checkpoint(), 'note', store)
      expect(l.asked.length, text).toBeGreaterThan(asked)
      expect(view.entriesOf('m', 2)).toEqual([1, 5])
      expect(JSON.parse(store.text)).toEqual(good)
    }
  })

  it('records entries off a model\'s chain of versions (a parent it never had, a number out of turn, a first entry with a parent); the chain goes on from its last good entry', async () => {
    const l = log()
    const at = (model: string, version: number, parent: number | null): LedgerEntry => ({ ...entry(model, version), parent })
    l.append(at('m', 1, null))
    l.append(at('m', 2, 1))
    l.append(at('m', 3, 1)) // 2: a parent the chain does not end at
    l.append(at('m', 1000, 2)) // 3: a number far ahead
    l.append(at('m', 3, 2)) // 4: the next honest version
    l.append(at('m', 2, 1)) // 5: goes back (and anchors m@2 twice)
    l.append(at('n', 2, 1)) // 6: a first entry that is not version 1
    l.append(at('n', 1, null))
    const store = memoryStore()
    const view = await monitorLog(l.client, l.checkpoint(), 'note', store)
    const off = (model: string): Array<string | undefined> => Array.from({ length: l.tree.size }, (_, i) => view.offChain(model, i))
    expect(off('m')).toEqual([
      undefined,
      undefined,
      'entry 2: m@3 with parent 1, where the model\'s chain ends at @2 (entry 1) and @3 with parent 2 comes next',
      'entry 3: m@1000 with parent 2, where the model\'s chain ends at @2 (entry 1) and @3 with parent 2 comes next',
      undefined,
      'entry 5: m@2 with parent 1, where the model\'s chain ends at @3 (entry 4) and @4 with parent 3 comes next',
      undefined,
      undefined
    ])
    expect(view.offChain('n', 6)).toBe('entry 6: n@2 with parent 1, where the model\'s first entry and @1 with parent none comes next')
    expect(view.offChain('n', 7)).toBeUndefined()
    // Kept with the state, and later entries are checked against the kept chain.
    l.append(at('m', 4, 3))
    l.append(at('m', 4, 3))
    const later = await monitorLog(l.client, l.checkpoint(), 'note', store)
    expect(later.offChain('m', 8)).toBeUndefined()
    expect(later.offChain('m', 9)).toMatch(/^entry 9: m@4 with parent 3, where the model's chain ends at @4 \(entry 8\)/)
    expect(later.offChain('m', 3)).toMatch(/^entry 3: m@1000/)
    expect(JSON.parse(store.text as string).offChain.m.map((e: { index: number }) => e.index)).toEqual([2, 3, 5, 9])
  })

  it('reads again from the start a kept state of another history than the trusted checkpoint, at its size, beyond it or below it', async () => {
    // H and a fork F that agrees on entries 0–7 and rewrites 8–9 (m@9 twice), both signed by one log.
    const h = log()
    const f = log()
    for (let v = 1; v <= 10; v++) h.append(entry('m', v))
    for (let v = 1; v <= 8; v++) f.append(entry('m', v))
    f.append({ ...entry('m', 9), manifestCid: 'bafyEVILa' })
    f.append({ ...entry('m', 9), manifestCid: 'bafyEVILb' })
    // At the same size: the state read from H is not F's; F is read whole, and m@9 twice is seen.
    const store = memoryStore()
    await monitorLog(h.client, h.checkpoint(), 'note', store)
    const forked = await monitorLog(f.client, f.checkpoint(), 'note', store)
    expect(forked.entriesOf('m', 9)).toEqual([8, 9])
    expect(forked.offChain('m', 9)).toMatch(/^entry 9: m@9/)
    // Beyond it: a kept state at 10 of H, under F's checkpoint of 9 (entry 8 differs), fails the consistency proof.
    const beyond = memoryStore()
    await monitorLog(h.client, h.checkpoint(), 'note', beyond)
    const stale = await monitorLog(f.client, f.checkpoint(9), 'note', beyond)
    expect(stale.size).toBe(9)
    expect(stale.entriesOf('m', 9)).toEqual([8])
    expect(stale.entriesOf('m', 10)).toEqual([])
    // Below it: a state of 4 entries from another history is read again, not blamed on the log.
    const other = log()
    for (let v = 1; v <= 4; v++) other.append({ ...entry('m', v), manifestCid: `bafyOTHER${v}` })
    const below = memoryStore()
    await monitorLog(other.client, other.checkpoint(), 'note', below)
    const read = await monitorLog(h.client, h.checkpoint(), 'note', below)
    expect(read.size).toBe(10)
    expect(read.entriesOf('m', 1)).toEqual([0])
    expect(JSON.parse(below.text as string).size).toBe(10)
  })
})

describe('monitorLog over HTTP, against a real coordinator', () => {
  let root: string | undefined
  afterAll(async () => { if (root !== undefined) await rm(root, { recursive: true, force: true }) })

  it('reads a log of 600 entries in pages of 256 and agrees with its signed root; bad ranges get a 400 that says why', async () => {
    root = await mkdtemp(join(tmpdir(), 'blockfed-monitor-'))
    const dataDir = join(root, 'coordinator')
    let coordinator = await createCoordinator({ dataDir, port: 0 })
    await coordinator.stop()
    // 600 entries written through the coordinator's own log, as if 600 versions were published.
    const database = openDatabase(join(dataDir, 'coordinator.sqlite'))
    try {
      const log = versionLog({ database, signing: (await loadIdentity(dataDir)).signing, keyId: coordinator.identity.keyId })
      database.transaction(() => { for (let v = 1; v <= 600; v++) log.append(entry('m', v)) })
      log.checkpoint()
    } finally {
      database.close()
    }
    coordinator = await createCoordinator({ dataDir, port: 0 })
    try {
      const url = await coordinator.start()
      const http = ledgerClient({ baseUrl: url, timeoutMs: 10_000 })
      const pages: number[] = []
      const client = { ...http, entries: async (from: number, to: number, signal?: AbortSignal) => { const got = await http.entries(from, to, signal); pages.push(got.length); return got } }
      const checkpoint = openCheckpoint(await http.checkpoint(), parseVerifierKey(coordinator.log.vkey)).checkpoint
      expect(checkpoint.size).toBe(600)
      const view = await monitorLog(client, checkpoint, 'note', memoryStore())
      expect(pages).toEqual([256, 256, 88])
      expect(view.entriesOf('m', 600)).toEqual([599])
      // The range answer holds the very bytes the one-entry answer does.
      const one = await (await fetch(`${url}/ledger/entries/300`)).json() as { leaf: string }
      expect(toBase64((await http.entries(300, 301))[0] as Uint8Array)).toBe(one.leaf)

      const cases: Array<[string, RegExp]> = [
        ['?from=5&to=5', /from 5 is not below to 5/],
        ['?from=6&to=5', /from 6 is not below to 5/],
        ['?from=0&to=601', /to 601 is beyond the log's size 600/],
        ['?from=0', /to/],
        ['?to=3', /from/],
        ['?from=-1&to=3', /from.*non-negative decimal integer/],
        ['?from=01&to=3', /from.*leading zeros/],
        ['?from=0&to=99999999999999999999', /to/],
        ['?from=0&to=3&index=1', /index/]
      ]
      for (const [query, message] of cases) {
        const res = await fetch(`${url}/ledger/entries${query}`)
        expect({ query, status: res.status }).toEqual({ query, status: 400 })
        expect(((await res.json()) as { message: string }).message, query).toMatch(message)
      }
      expect((await fetch(`${url}/ledger/checkpoint`)).status).toBe(200)
    } finally {
      await coordinator.stop()
    }
  }, 60_000)
})
