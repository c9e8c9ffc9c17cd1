/**
 * The version ledger's log (coordinator/ledger/log.ts) under kill -9 and under tampering
 * (issue 4: "survives a kill -9 at any point without a fork"; "the log never signs two
 * checkpoints that are inconsistent with each other").
 *
 * Crash: a child process (tests/helpers/ledger-writer.ts) appends to a real SQLite file and
 * prints every checkpoint it gets; it is SIGKILLed at seeded-random moments and restarted on the
 * same file. Whatever the moments turn out to be, every printed checkpoint must be signed and
 * extend into the final log, and the stored leaves alone must rebuild every signed root and every
 * stored subtree hash (slow RFC 9162 §2.1.1 reference, independent of `ledger_nodes`).
 *
 * Tamper: history rewritten (one entry with its subtree hashes recomputed to match, or one stored
 * hash) or truncated in the database → `checkpoint()` throws IntegrityError and signs nothing.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sha256 } from '@noble/hashes/sha2.js'
import { openDatabase, type Database } from '../../coordinator/store/database.ts'
import { versionLog, type VersionLog } from '../../coordinator/ledger/log.ts'
import { openCheckpoint, type Checkpoint } from '../../shared/ledger/checkpoint.ts'
import { ed25519Verifier } from '../../shared/ledger/note.ts'
import { entryBytes } from '../../shared/ledger/entry.ts'
import { verifyConsistency } from '../../shared/ledger/merkle.ts'
import { generateSigningKey, type SigningKeyPair } from '../../shared/crypto/sign.ts'
import { concatBytes, toHex, utf8 } from '../../shared/crypto/bytes.ts'
import { IntegrityError } from '../../shared/errors/errors.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { CRASH_ORIGIN, crashEntry } from '../helpers/ledger-writer.ts'

const WRITER = fileURLToPath(new URL('../helpers/ledger-writer.ts', import.meta.url))
const KILLS = 6
const MIN_DELAY_MS = 50
const MAX_DELAY_MS = 400

let root: string
let key: SigningKeyPair
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-ledger-crash-'))
  key = generateSigningKey()
})
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

// ---- slow reference: RFC 9162 §2.1.1 MTH straight from the leaf bytes ----

/** MTH(D[start:end]) over `leaves`, memoised by range (a pure function of it). */
function referenceTree (leaves: readonly Uint8Array[]): (start: number, end: number) => Uint8Array {
  const memo = new Map<string, Uint8Array>()
  const mth = (start: number, end: number): Uint8Array => {
    const id = `${start}:${end}`
    const cached = memo.get(id)
    if (cached !== undefined) return cached
    const n = end - start
    let hash: Uint8Array
    if (n === 0) hash = sha256(new Uint8Array(0))
    else if (n === 1) hash = sha256(concatBytes(Uint8Array.of(0x00), leaves[start] as Uint8Array))
    else {
      let k = 1
      while (k * 2 < n) k *= 2
      hash = sha256(concatBytes(Uint8Array.of(0x01), mth(start, start + k), mth(start + k, end)))
    }
    memo.set(id, hash)
    return hash
  }
  return mth
}

// ---- helpers ----

function storedLeaves (database: Database): Uint8Array[] {
  const rows = database.db.prepare('SELECT idx, entry FROM ledger_leaves ORDER BY idx').all() as Array<{ idx: number, entry: Uint8Array }>
  rows.forEach((r, i) => { if (r.idx !== i) throw new Error(`leaf ${i} is missing (next stored index ${r.idx})`) })
  return rows.map(r => r.entry)
}

function storedNodes (database: Database): Array<{ level: number, idx: number, hash: Uint8Array }> {
  return database.db.prepare('SELECT level, idx, hash FROM ledger_nodes').all() as Array<{ level: number, idx: number, hash: Uint8Array }>
}

/** Number of complete subtrees of a tree of `n` leaves: Σ over levels of ⌊n / 2^level⌋. */
function completeSubtrees (n: number): number {
  let count = 0
  for (let width = 1; width <= n; width *= 2) count += Math.floor(n / width)
  return count
}

interface Run { seed: number, delayMs: number, notes: string[] }

/** Starts the writer, waits for its first checkpoint, lets it write for `delayMs`, then SIGKILLs it. */
async function killedRun (dir: string, seed: number, delayMs: number): Promise<Run> {
  const child = spawn(process.execPath, [WRITER, dir, String(seed)], {
    env: { ...process.env, LEDGER_SECRET_HEX: toHex(key.secretKey) },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  let out = ''
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.once('exit', (code, signal) => resolve({ code, signal })))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the writer printed nothing within 30 s')), 30_000)
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      if (out.includes('\n')) { clearTimeout(timer); resolve() }
    })
    void exited.then(e => { clearTimeout(timer); reject(new Error(`the writer exited early (${String(e.code ?? e.signal)})`)) })
  })
  await new Promise(resolve => setTimeout(resolve, delayMs))
  child.kill('SIGKILL')
  const { signal } = await exited
  if (signal !== 'SIGKILL') throw new Error(`the writer ended by ${String(signal)}, not by SIGKILL`)
  // A line cut by the kill has no newline yet: only complete lines count as printed.
  const lines = out.split('\n').slice(0, -1)
  return { seed, delayMs, notes: lines.map(l => (JSON.parse(l) as { note: string }).note) }
}

// ---- crash ----

describe('version ledger under kill -9', () => {
  it('signs no fork: every printed checkpoint extends into the final log, whose hashes the leaves rebuild', async () => {
    const dir = join(root, 'crash')
    await mkdir(dir)
    const rand = mulberry32(0x1ed6e4)
    const runs: Run[] = []
    for (let k = 0; k < KILLS; k++) {
      const delayMs = MIN_DELAY_MS + Math.floor(rand() * (MAX_DELAY_MS - MIN_DELAY_MS + 1))
      runs.push(await killedRun(dir, 1000 + k, delayMs))
    }

    const database = openDatabase(join(dir, 'coordinator.sqlite'))
    try {
      const verifier = ed25519Verifier(CRASH_ORIGIN, key.publicKey)
      const printed: Checkpoint[] = runs.flatMap(r => r.notes.map(note => openCheckpoint(note, verifier).checkpoint))
      for (const run of runs) expect(run.notes.length, `run ${run.seed} printed its start checkpoint`).toBeGreaterThan(0)
      printed.forEach(c => expect(c.origin).toBe(CRASH_ORIGIN))
      // The log only grows: in print order, across restarts too, sizes never go down.
      for (let i = 1; i < printed.length; i++) expect(printed[i]!.size).toBeGreaterThanOrEqual(printed[i - 1]!.size)

      // The leaves are exactly entries 0..n−1, none lost or repeated by a torn transaction.
      const leaves = storedLeaves(database)
      leaves.forEach((bytes, i) => expect(JSON.parse(utf8(bytes)), `leaf ${i}`).toEqual(crashEntry(i)))
      const n = leaves.length
      expect(n).toBeGreaterThanOrEqual(printed.at(-1)!.size)

      // After the last restart the log still signs, and what it signs is the leaves' own root.
      const log = versionLog({ database, signing: key, keyId: 'crash', origin: CRASH_ORIGIN })
      const final = log.checkpoint().checkpoint
      const mth = referenceTree(leaves)
      expect(final.size).toBe(n)
      expect(toHex(final.root)).toBe(toHex(mth(0, n)))

      // Every checkpoint ever signed — printed, or signed but cut off by the kill — has the root
      // the leaves give its size, and the final log proves that it extends it.
      const stored = (database.db.prepare('SELECT note FROM ledger_checkpoints').all() as Array<{ note: string }>)
        .map(r => openCheckpoint(r.note, verifier).checkpoint)
      const rootBySize = new Map<number, string>()
      for (const c of [...printed, ...stored]) {
        const rootHex = toHex(c.root)
        expect(rootBySize.get(c.size) ?? rootHex, `two checkpoints of size ${c.size} with different roots`).toBe(rootHex)
        rootBySize.set(c.size, rootHex)
        expect(rootHex, `checkpoint ${c.size}`).toBe(toHex(mth(0, c.size)))
        verifyConsistency(c.size, final.size, c.root, final.root, log.consistencyProof(c.size, final.size))
      }
      // Each printed note is one the log stored: nothing was signed that the database lost.
      const storedSizes = new Set(stored.map(c => c.size))
      for (const c of printed) expect(storedSizes.has(c.size), `printed checkpoint ${c.size} is in the database`).toBe(true)

      // ledger_nodes holds exactly the complete subtrees, each equal to the reference's.
      const nodes = storedNodes(database)
      expect(nodes.length).toBe(completeSubtrees(n))
      for (const { level, idx, hash } of nodes) expect(toHex(hash), `subtree ${level}/${idx}`).toBe(toHex(mth(idx * 2 ** level, (idx + 1) * 2 ** level)))

      // And it keeps going: one more append is signed consistently with everything before.
      database.transaction(() => log.append(crashEntry(n)))
      const after = log.checkpoint().checkpoint
      expect(after.size).toBe(n + 1)
      verifyConsistency(final.size, after.size, final.root, after.root, log.consistencyProof(final.size, after.size))
    } finally {
      database.close()
    }
  })
})

// ---- tamper ----

const SIZE = 21

/** A fresh log of SIZE entries with checkpoints signed at 8, 13 and SIZE. */
function signedLog (name: string): { database: Database, log: VersionLog } {
  const database = openDatabase(join(root, `${name}.sqlite`))
  const log = versionLog({ database, signing: key, keyId: 'tamper', origin: CRASH_ORIGIN })
  for (const upTo of [8, 13, SIZE]) {
    database.transaction(() => { while (log.size() < upTo) log.append(crashEntry(log.size())) })
    log.checkpoint()
  }
  return { database, log }
}

function checkpointRows (database: Database): Array<{ size: number, note: string }> {
  return database.db.prepare('SELECT size, note FROM ledger_checkpoints ORDER BY size').all() as Array<{ size: number, note: string }>
}

/** `checkpoint()` throws IntegrityError and leaves the signed checkpoints as they were. */
function expectRefusal (database: Database, log: VersionLog, message: RegExp): void {
  const before = checkpointRows(database)
  expect(() => log.checkpoint()).toThrow(IntegrityError)
  expect(() => log.checkpoint()).toThrow(message)
  expect(checkpointRows(database)).toEqual(before)
}

/** Replaces leaf `index`'s entry and recomputes every stored subtree hash over it, so the tree is whole but different. */
function rewriteEntry (database: Database, index: number): void {
  const forged = entryBytes({ ...crashEntry(index), manifestCid: 'bafkforged' })
  database.db.prepare('UPDATE ledger_leaves SET entry = ? WHERE idx = ?').run(forged, index)
  const mth = referenceTree(storedLeaves(database))
  const update = database.db.prepare('UPDATE ledger_nodes SET hash = ? WHERE level = ? AND idx = ?')
  for (const { level, idx } of storedNodes(database)) {
    const start = idx * 2 ** level
    const end = start + 2 ** level
    if (start <= index && index < end) update.run(mth(start, end), level, idx)
  }
}

describe('version ledger refuses to sign a database whose history changed', () => {
  it('a rewritten entry, its subtree hashes recomputed to match: refused at the same size and after a new append', () => {
    const { database, log } = signedLog('rewrite')
    try {
      rewriteEntry(database, 5)
      // The forged tree is internally consistent: its root is the reference root of the forged leaves.
      const forgedRoot = referenceTree(storedLeaves(database))(0, SIZE)
      expect(toHex(forgedRoot)).not.toBe(toHex(log.latest()!.checkpoint.root))
      expectRefusal(database, log, /rewritten/)
      database.transaction(() => log.append(crashEntry(SIZE)))
      expectRefusal(database, log, /rewritten/)
    } finally {
      database.close()
    }
  })

  it('one stored subtree hash changed: refused', () => {
    const { database, log } = signedLog('node')
    try {
      // Subtree 4/0 (leaves 0..15) is part of the root of every size above 16.
      const row = database.db.prepare('SELECT hash FROM ledger_nodes WHERE level = 4 AND idx = 0').get() as { hash: Uint8Array }
      const flipped = row.hash.slice()
      flipped[0] = (flipped[0] as number) ^ 1
      database.db.prepare('UPDATE ledger_nodes SET hash = ? WHERE level = 4 AND idx = 0').run(flipped)
      expectRefusal(database, log, /rewritten/)
      database.transaction(() => log.append(crashEntry(SIZE)))
      expectRefusal(database, log, /rewritten/)
    } finally {
      database.close()
    }
  })

  it('the last entry deleted: refused as truncated', () => {
    const { database, log } = signedLog('truncate')
    try {
      database.db.prepare('DELETE FROM ledger_leaves WHERE idx = ?').run(SIZE - 1)
      expectRefusal(database, log, /truncated/)
    } finally {
      database.close()
    }
  })

  it('the last entry deleted with its hashes and replaced by another (a fork of the same size): refused', () => {
    const { database, log } = signedLog('fork')
    try {
      database.transaction(() => {
        database.db.prepare('DELETE FROM ledger_leaves WHERE idx = ?').run(SIZE - 1)
        // Leaf 20 completes only itself (20 is even), so its level-0 hash is the only subtree to go.
        database.db.prepare('DELETE FROM ledger_nodes WHERE level = 0 AND idx = ?').run(SIZE - 1)
        log.append({ ...crashEntry(SIZE - 1), manifestCid: 'bafkfork' })
      })
      expect(log.size()).toBe(SIZE)
      expectRefusal(database, log, /rewritten/)
    } finally {
      database.close()
    }
  })
})

describe('the coordinator database', () => {
  it('syncs every commit (WAL, synchronous = FULL), so a leaf that a signed checkpoint covers survives a power cut', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blockfed-sync-'))
    const database = openDatabase(join(dir, 'c.sqlite'))
    try {
      expect(database.db.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' })
      expect(database.db.prepare('PRAGMA synchronous').get()).toEqual({ synchronous: 2 }) // 2 = FULL
    } finally {
      database.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
