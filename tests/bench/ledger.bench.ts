/**
 * The version ledger (coordinator/ledger/log.ts, RFC 9162 Merkle log in SQLite; issue 4) against
 * plain SQLite, in one run.
 *
 * Append: 100,000 entries through `versionLog.append` into a real SQLite file (WAL, as the
 * coordinator opens it), batches of B appends in one transaction each followed by one signed
 * checkpoint, for B = 100 and B = 1,000. Reference: the same leaf rows (precomputed entry bytes)
 * inserted into `ledger_leaves` of a fresh database in the same batches, with no hashing, no
 * subtree rows, no checkpoint — so the ratio is the ledger's whole overhead (canonical JSON,
 * SHA-256, `ledger_nodes` rows, the signature); median of 3 reference runs. Target: ≥ 5,000
 * appends/s.
 *
 * Proofs: the filled B = 1,000 data dir is served by a coordinator in its own process
 * (`blockfed coordinator`); over loopback HTTP, for 1,000 seeded-random leaves, latency of
 *  - proof: GET the inclusion proof + verify it against the checkpoint root (leaf hash known);
 *  - anchor: GET the entry + GET the proof + parse the entry + verify (what a runtime does);
 *  - reference: GET /ledger/key on the same server through the same client (one request that
 *    does no ledger work), measured right before each proof, paired.
 * And proof size (hashes, bytes, JSON body) against ⌈log2 n⌉ at several tree sizes n.
 */
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openDatabase, type Database } from '../../coordinator/store/database.ts'
import { versionLog } from '../../coordinator/ledger/log.ts'
import { loadIdentity } from '../../coordinator/keys/identity.ts'
import { entryBytes, parseEntry, type LedgerEntry } from '../../shared/ledger/entry.ts'
import { leafHash, verifyInclusion } from '../../shared/ledger/merkle.ts'
import { ledgerClient } from '../../shared/ledger/client.ts'
import { openTrusted } from '../../shared/ledger/verify.ts'
import { parseVerifierKey } from '../../shared/ledger/note.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { spawnCoordinator } from '../helpers/coordinator-process.ts'
import { machine } from './machine.ts'

const ENTRIES = 100_000
const BATCHES = [100, 1000]
/** Runs of the raw-insert reference per batch size; the median counts. */
const RAW_RUNS = 3
const TARGET_APPENDS_PER_S = 5000
const SAMPLES = 1000
const WARMUP = 50
const PROOF_SIZES = [10, 100, 1000, 10_000, 65_536, 65_537, 100_000]
const SIZE_SAMPLES = 200

const log = (line: string): void => { console.error(`[ledger bench] ${line}`) }
const ms = (x: number): number => +x.toFixed(3)
const ratio = (x: number): number => +x.toFixed(3)
const quantile = (xs: number[], q: number): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
}
const latency = (xs: number[]): { p50: number, p95: number, mean: number } =>
  ({ p50: ms(quantile(xs, 0.5)), p95: ms(quantile(xs, 0.95)), mean: ms(xs.reduce((a, b) => a + b, 0) / xs.length) })

/** Entry `i` of the benchmark log: a plausible version record, ~150 bytes of canonical JSON. */
function benchEntry (i: number): LedgerEntry {
  return {
    model: `bench-model-${i % 10}`,
    version: Math.floor(i / 10) + 1,
    manifestCid: `bafkreib${String(i).padStart(52, '0')}`,
    parent: i < 10 ? null : Math.floor(i / 10),
    time: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString()
  }
}

async function fileBytes (database: string): Promise<number> {
  let total = 0
  for (const suffix of ['', '-wal']) total += await stat(`${database}${suffix}`).then(s => s.size, () => 0)
  return total
}

/** Ledger appends, B per transaction, one checkpoint per batch, into `dir`'s coordinator database. */
async function ledgerAppends (dir: string, batch: number): Promise<{ seconds: number, checkpointMs: number[], fileBytes: number }> {
  const identity = await loadIdentity(dir)
  const path = join(dir, 'coordinator.sqlite')
  const database = openDatabase(path)
  const vlog = versionLog({ database, signing: identity.signing, keyId: identity.keyId })
  const entries = Array.from({ length: ENTRIES }, (_, i) => benchEntry(i))
  const checkpointMs: number[] = []
  const start = performance.now()
  for (let from = 0; from < ENTRIES; from += batch) {
    database.transaction(() => { for (let i = from; i < from + batch; i++) vlog.append(entries[i] as LedgerEntry) })
    const t = performance.now()
    vlog.checkpoint()
    checkpointMs.push(performance.now() - t)
  }
  const seconds = (performance.now() - start) / 1000
  if (vlog.size() !== ENTRIES || vlog.latest()?.checkpoint.size !== ENTRIES) throw new Error('the ledger did not end at the expected size')
  database.close()
  return { seconds, checkpointMs, fileBytes: await fileBytes(path) }
}

/** The same leaf rows, B per transaction, plain INSERTs of precomputed bytes into a fresh database. */
async function rawInserts (dir: string, batch: number, run: number): Promise<{ seconds: number, fileBytes: number }> {
  const path = join(dir, `raw-${run}.sqlite`)
  const database: Database = openDatabase(path)
  const rows = Array.from({ length: ENTRIES }, (_, i) => { const e = benchEntry(i); return { bytes: entryBytes(e), model: e.model, version: e.version } })
  const insert = database.db.prepare('INSERT INTO ledger_leaves (idx, entry, model, version) VALUES (?, ?, ?, ?)')
  const start = performance.now()
  for (let from = 0; from < ENTRIES; from += batch) {
    database.transaction(() => {
      for (let i = from; i < from + batch; i++) {
        const r = rows[i] as { bytes: Uint8Array, model: string, version: number }
        insert.run(i, r.bytes, r.model, r.version)
      }
    })
  }
  const seconds = (performance.now() - start) / 1000
  database.close()
  return { seconds, fileBytes: await fileBytes(path) }
}

/** Time of the canonical-JSON step alone (zod parse + RFC 8785), part of every append. */
function encodeSeconds (): number {
  const entries = Array.from({ length: ENTRIES }, (_, i) => benchEntry(i))
  const start = performance.now()
  for (const e of entries) entryBytes(e)
  return (performance.now() - start) / 1000
}

const root = await mkdtemp(join(tmpdir(), 'blockfed-bench-ledger-'))
try {
  const append: Record<string, unknown> = {}
  let served = ''
  for (const batch of BATCHES) {
    const dir = join(root, `b${batch}`)
    await mkdir(dir)
    log(`reference: ${ENTRIES} raw inserts, ${batch} per transaction, ${RAW_RUNS} runs`)
    const rawRuns: Array<{ seconds: number, fileBytes: number }> = []
    for (let r = 0; r < RAW_RUNS; r++) rawRuns.push(await rawInserts(dir, batch, r))
    // The median run: the first one in a process runs cold and is the slowest by far.
    const raw = [...rawRuns].sort((a, b) => a.seconds - b.seconds)[Math.floor(RAW_RUNS / 2)] as (typeof rawRuns)[number]
    log(`ledger: ${ENTRIES} appends, ${batch} per transaction, a checkpoint per batch`)
    const ledger = await ledgerAppends(dir, batch)
    const perS = ENTRIES / ledger.seconds
    const rawPerS = ENTRIES / raw.seconds
    const checkpointTotal = ledger.checkpointMs.reduce((a, b) => a + b, 0)
    append[`batch${batch}`] = {
      batch,
      checkpoints: ledger.checkpointMs.length,
      ledger: { seconds: +ledger.seconds.toFixed(2), entriesPerS: Math.round(perS), fileMB: +(ledger.fileBytes / 1e6).toFixed(1) },
      checkpoint: { meanMs: ms(checkpointTotal / ledger.checkpointMs.length), shareOfTime: ratio(checkpointTotal / 1000 / ledger.seconds) },
      rawInserts: { seconds: +raw.seconds.toFixed(2), entriesPerS: Math.round(rawPerS), fileMB: +(raw.fileBytes / 1e6).toFixed(1), runsSeconds: rawRuns.map(r => +r.seconds.toFixed(2)) },
      ledgerVsRaw: ratio(perS / rawPerS),
      target: { appendsPerS: TARGET_APPENDS_PER_S, pass: perS >= TARGET_APPENDS_PER_S }
    }
    served = dir
  }
  const encode = encodeSeconds()

  log(`proofs over HTTP: coordinator on the ${BATCHES.at(-1)}-batch data dir`)
  const coordinator = await spawnCoordinator(served)
  try {
    const client = ledgerClient({ baseUrl: coordinator.url })
    const trust = { log: parseVerifierKey(await client.key()), witnesses: [], minWitnesses: 0 }
    const { size, root: treeRoot } = openTrusted(await client.checkpoint(), trust).checkpoint
    if (size !== ENTRIES) throw new Error(`the coordinator serves a checkpoint of ${size} entries, expected ${ENTRIES}`)

    const next = mulberry32(0x1ed6e4)
    const pick = (): number => Math.floor(next() * size)
    const proofMs: number[] = []
    const anchorMs: number[] = []
    const keyMs: number[] = []
    for (let s = -WARMUP; s < SAMPLES; s++) {
      const index = pick()
      const leaf = leafHash(entryBytes(benchEntry(index)))
      let t = performance.now()
      await client.key()
      const k = performance.now() - t

      t = performance.now()
      verifyInclusion(index, size, leaf, await client.inclusion(index, size), treeRoot)
      const p = performance.now() - t

      t = performance.now()
      const { leaf: bytes } = await client.entry(index)
      parseEntry(bytes)
      verifyInclusion(index, size, leafHash(bytes), await client.inclusion(index, size), treeRoot)
      const a = performance.now() - t
      if (s >= 0) { keyMs.push(k); proofMs.push(p); anchorMs.push(a) }
    }
    const proof = latency(proofMs)
    const anchor = latency(anchorMs)
    const reference = latency(keyMs)

    const sizes = []
    for (const n of PROOF_SIZES) {
      const hashes: number[] = []
      const bodyBytes: number[] = []
      const indices = [0, n - 1, ...Array.from({ length: SIZE_SAMPLES }, () => Math.floor(next() * n))]
      for (const index of indices) {
        const body = await (await fetch(`${coordinator.url}/ledger/proof/inclusion?index=${index}&size=${n}`)).text()
        hashes.push((JSON.parse(body) as { hashes: string[] }).hashes.length)
        bodyBytes.push(Buffer.byteLength(body))
      }
      const from = Math.floor(n / 2) + 1
      const consistency = (await client.consistency(from, n)).length
      sizes.push({
        n,
        ceilLog2n: Math.ceil(Math.log2(n)),
        inclusionHashes: { min: Math.min(...hashes), max: Math.max(...hashes), mean: +(hashes.reduce((a, b) => a + b, 0) / hashes.length).toFixed(2) },
        inclusionBytes: { max: Math.max(...hashes) * 32, jsonBodyMax: Math.max(...bodyBytes) },
        consistencyHashes: { from, to: n, hashes: consistency }
      })
    }

    console.log(JSON.stringify({
      bench: 'ledger',
      entries: ENTRIES,
      append,
      canonicalJsonShare: Object.fromEntries(BATCHES.map(b => [`batch${b}`, ratio(encode / ((append[`batch${b}`] as { ledger: { seconds: number } }).ledger.seconds))])),
      http: {
        samples: SAMPLES,
        treeSize: size,
        proofFetchVerifyMs: proof,
        anchorFetchVerifyMs: anchor,
        referenceKeyGetMs: reference,
        proofVsReferenceP50: ratio(proof.p50 / reference.p50),
        anchorVsReferenceP50: ratio(anchor.p50 / reference.p50)
      },
      proofSize: sizes,
      machine: machine(),
      date: new Date().toISOString().slice(0, 10)
    }, null, 2))
  } finally {
    await coordinator.kill('SIGTERM')
  }
} finally {
  await rm(root, { recursive: true, force: true })
}
