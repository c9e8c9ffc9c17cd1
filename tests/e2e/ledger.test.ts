/**
 * The version ledger under attack (issue 4, "Tamper and fork"): a real coordinator, real
 * runtimes, the coordinator's real SQLite edited behind its back with `node:sqlite`.
 *
 * - The HTTP API checked from outside: checkpoint signature, entries, and every inclusion and
 *   consistency proof compared with a slow RFC 9162 reference; bad parameters get a 4xx that
 *   says why.
 * - An edited manifest, an edited ledger entry, a history rewritten by a coordinator that holds
 *   the key, a checkpoint signed by another key: every runtime refuses, keeps serving the version
 *   it has, and a rewritten history is reported as a LedgerSecurityError carrying both signed
 *   checkpoints and the failing proof. Each refusal is paired with the untampered case working,
 *   so a refusal cannot come from something else.
 *
 * Versions are small untrained MLPs (seeded, one per version), so nothing here trains.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { openDatabase } from '../../coordinator/store/database.ts'
import { loadIdentity } from '../../coordinator/keys/identity.ts'
import { versionLog } from '../../coordinator/ledger/log.ts'
import { createNodeRuntime, type ModelHandle, type NodeRuntime } from '../../node-runtime/runtime.ts'
import { mnistDigitsCode } from '../../node-runtime/examples/mnist-mlp.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { IMAGE_SIZE } from '../../node-runtime/data/mnist.ts'
import { ledgerClient } from '../../shared/ledger/client.ts'
import { openCheckpoint } from '../../shared/ledger/checkpoint.ts'
import { parseVerifierKey, verifierKey } from '../../shared/ledger/note.ts'
import { entryBytes, parseEntry, type LedgerEntry } from '../../shared/ledger/entry.ts'
import { leafHash, verifyConsistency, verifyInclusion } from '../../shared/ledger/merkle.ts'
import { advanceCheckpoint, openTrusted, type CheckpointStore } from '../../shared/ledger/verify.ts'
import { signManifest } from '../../shared/manifest/sign.ts'
import { canonicalBytes } from '../../shared/manifest/canonical.ts'
import { jsonCid } from '../../shared/crypto/cid.ts'
import { keyId, generateSigningKey } from '../../shared/crypto/sign.ts'
import { fromBase64, toBase64 } from '../../shared/crypto/bytes.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import type { SignedManifest } from '../../shared/manifest/schema.ts'
import { IntegrityError, LedgerSecurityError } from '../../shared/errors/errors.ts'
import { referenceTree } from '../helpers/merkle-reference.ts'
import { seededVersionFiles } from '../helpers/seeded-versions.ts'

let root: string
let coordinatorDir: string
let coordinator: Coordinator
let url: string
let port: number
let edgeToken: string
const runtimes: NodeRuntime[] = []
/** Every checkpoint note the log served, by size. */
const seen = new Map<number, string>()
/** Three fixed inputs (seeded pixels) to compare a runtime's answers before and after an attack. */
const images = Float32Array.from({ length: 3 * IMAGE_SIZE }, mulberry32(99))

async function ingest (seed: number): Promise<number> {
  const result = await coordinator.ingest('digits', await seededVersionFiles(seed))
  expect(result.created).toBe(true)
  const note = await (await fetch(`${url}/ledger/checkpoint`)).text()
  seen.set(result.version, note)
  return result.version
}

const config = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  version: '1.0.0', tag: 'digits', runtime: 'tensorflow', source: 'blockfed', modelDir: 'digits', modelName: 'digits', updateURL: url, token: edgeToken, ...extra
})

async function runtime (name: string): Promise<NodeRuntime> {
  const rt = await createNodeRuntime({ dataDir: join(root, name), codes: { digits: mnistDigitsCode } })
  runtimes.push(rt)
  return rt
}

/** The checkpoint note a runtime persisted (node-runtime/versions/ledger-trust.ts), as bytes on disk. */
async function persistedCheckpoint (name: string): Promise<string> {
  const dir = join(root, name, 'ledger')
  const files = (await readdir(dir)).filter(f => f.endsWith('.checkpoint'))
  expect(files).toHaveLength(1)
  return await readFile(join(dir, files[0] as string), 'utf8')
}

async function startCoordinator (dataDir = coordinatorDir): Promise<void> {
  coordinator = await createCoordinator({ dataDir, port, partition: { targetBytes: 16 << 10, maxBytes: 64 << 10 } })
  url = await coordinator.start()
}

/** Runs `edit` on the coordinator's database through a second connection, as an intruder would. */
function editDatabase (edit: (db: DatabaseSync) => void): void {
  const db = new DatabaseSync(join(coordinatorDir, 'coordinator.sqlite'))
  try {
    db.exec('PRAGMA busy_timeout = 5000')
    edit(db)
  } finally {
    db.close()
  }
}

const manifestRow = (version: number): string => {
  let text = ''
  editDatabase(db => { text = (db.prepare('SELECT signed_manifest FROM versions WHERE model = ? AND version = ?').get('digits', version) as { signed_manifest: string }).signed_manifest })
  return text
}
const setManifestRow = (version: number, text: string): void => {
  editDatabase(db => { db.prepare('UPDATE versions SET signed_manifest = ? WHERE model = ? AND version = ?').run(text, 'digits', version) })
}
const leafRow = (index: number): Uint8Array => {
  let bytes = new Uint8Array()
  editDatabase(db => { bytes = new Uint8Array((db.prepare('SELECT entry FROM ledger_leaves WHERE idx = ?').get(index) as { entry: Uint8Array }).entry) })
  return bytes
}
const setLeafRow = (index: number, bytes: Uint8Array): void => {
  editDatabase(db => { db.prepare('UPDATE ledger_leaves SET entry = ? WHERE idx = ?').run(bytes, index) })
}

/** Asserts the handle still serves `version` and answers exactly as it did (`before`). */
async function stillServes (handle: ModelHandle, version: number, before: Int32Array): Promise<void> {
  expect(handle.manifest.version).toBe(version)
  expect(Array.from(await handle.infer(images) as Int32Array)).toEqual(Array.from(before))
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-ledger-'))
  coordinatorDir = join(root, 'coordinator')
  await tfjsBackend()
  port = 0
  await startCoordinator()
  port = Number(new URL(url).port)
  edgeToken = await coordinator.createToken('edge')
  for (const seed of [1, 2, 3, 4]) await ingest(seed)
}, 60_000)

afterAll(async () => {
  for (const rt of runtimes) await rt.stop()
  await coordinator?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('ledger HTTP API, checked from outside', () => {
  it('the checkpoint opens with /ledger/key; entries, inclusion and consistency proofs agree with an RFC 9162 reference', async () => {
    const vkey = (await (await fetch(`${url}/ledger/key`)).text()).trim()
    const verifier = parseVerifierKey(vkey)
    expect(verifier.type).toBe('ed25519')
    expect(verifier.name).toBe(coordinator.log.origin)
    const checkpoints = [...seen.values()].map(note => openCheckpoint(note, verifier).checkpoint)
    expect(checkpoints.map(c => c.size)).toEqual([1, 2, 3, 4])
    for (const c of checkpoints) expect(c.origin).toBe(verifier.name)

    const versions = (await (await fetch(`${url}/v1/models/digits/versions`, { headers: { authorization: `Bearer ${edgeToken}` } })).json()) as { versions: Array<{ version: number, parent: number | null, manifestCid: string, createdAt: string, ledgerIndex: number }> }
    const leaves: Uint8Array[] = []
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${url}/ledger/entries/${i}`)
      expect(res.status).toBe(200)
      const body = await res.json() as { index: number, entry: LedgerEntry, leaf: string }
      const leaf = fromBase64(body.leaf)
      // The leaf is the entry's canonical JSON, and names the version the coordinator lists at that index.
      expect(parseEntry(leaf)).toEqual(body.entry)
      const listed = versions.versions.find(v => v.ledgerIndex === i)
      expect(body.entry).toEqual({ model: 'digits', version: listed?.version, manifestCid: listed?.manifestCid, parent: listed?.parent, time: listed?.createdAt })
      leaves.push(leaf)
    }
    const reference = referenceTree(leaves)
    for (const c of checkpoints) expect(toBase64(c.root)).toBe(toBase64(reference.root(c.size)))

    for (const c of checkpoints) {
      for (let i = 0; i < c.size; i++) {
        const body = await (await fetch(`${url}/ledger/proof/inclusion?index=${i}&size=${c.size}`)).json() as { hashes: string[] }
        expect(body.hashes).toEqual(reference.inclusion(i, c.size).map(toBase64))
        verifyInclusion(i, c.size, leafHash(leaves[i] as Uint8Array), body.hashes.map(fromBase64), c.root)
      }
      for (const d of checkpoints.filter(d => d.size >= c.size)) {
        const body = await (await fetch(`${url}/ledger/proof/consistency?from=${c.size}&to=${d.size}`)).json() as { from: number, to: number, hashes: string[] }
        expect(body).toMatchObject({ from: c.size, to: d.size })
        expect(body.hashes).toEqual(reference.consistency(c.size, d.size).map(toBase64))
        verifyConsistency(c.size, d.size, c.root, d.root, body.hashes.map(fromBase64))
      }
    }
    // The proofs are not vacuous: a proof for the wrong leaf fails.
    const proof = (await (await fetch(`${url}/ledger/proof/inclusion?index=1&size=4`)).json() as { hashes: string[] }).hashes.map(fromBase64)
    expect(() => verifyInclusion(1, 4, leafHash(leaves[2] as Uint8Array), proof, checkpoints[3]?.root as Uint8Array)).toThrow(IntegrityError)
  })

  it('bad or out-of-range parameters get a 4xx whose message says what is wrong, and the server keeps serving', async () => {
    const huge = '99999999999999999999'
    const cases: Array<[string, number, RegExp]> = [
      ['/ledger/entries/abc', 400, /index.*non-negative decimal integer/],
      ['/ledger/entries/-1', 400, /index.*non-negative decimal integer/],
      ['/ledger/entries/01', 400, /index.*without leading zeros/],
      ['/ledger/entries/1.5', 400, /index.*non-negative decimal integer/],
      [`/ledger/entries/${huge}`, 400, /index/],
      ['/ledger/entries/9007199254740992', 400, /index.*2\^53/],
      ['/ledger/entries/4', 404, /no entry 4 \(size 4\)/],
      ['/ledger/entries/1000000', 404, /no entry 1000000/],
      ['/ledger/proof/inclusion?index=abc&size=4', 400, /index.*non-negative decimal integer/],
      ['/ledger/proof/inclusion?index=-1&size=4', 400, /index/],
      ['/ledger/proof/inclusion?index=01&size=4', 400, /index.*leading zeros/],
      ['/ledger/proof/inclusion?index=1.5&size=4', 400, /index/],
      [`/ledger/proof/inclusion?index=0&size=${huge}`, 400, /size/],
      ['/ledger/proof/inclusion?index=4&size=4', 400, /index 4 is not below size 4/],
      ['/ledger/proof/inclusion?index=0&size=0', 400, /index 0 is not below size 0/],
      ['/ledger/proof/inclusion?index=0&size=5', 400, /size 5 is beyond the log's size 4/],
      ['/ledger/proof/inclusion?size=4', 400, /index/],
      ['/ledger/proof/inclusion?index=0', 400, /size/],
      ['/ledger/proof/inclusion?index=0&size=4&extra=1', 400, /extra/],
      ['/ledger/proof/inclusion?index=0&index=1&size=4', 400, /index/],
      ['/ledger/proof/consistency?from=3&to=2', 400, /from 3 is greater than to 2/],
      ['/ledger/proof/consistency?from=1&to=5', 400, /to 5 is beyond the log's size 4/],
      ['/ledger/proof/consistency?from=abc&to=4', 400, /from.*non-negative decimal integer/],
      ['/ledger/proof/consistency?from=1&to=04', 400, /to.*leading zeros/],
      [`/ledger/proof/consistency?from=${huge}&to=4`, 400, /from/],
      ['/ledger/proof/consistency?to=4', 400, /from/],
      ['/ledger/proof/consistency?from=1', 400, /to/],
      ['/ledger/proof/consistency?from=1&to=4&index=2', 400, /index/]
    ]
    for (const [path, status, message] of cases) {
      const res = await fetch(`${url}${path}`)
      const body = await res.json() as { error: string, message: string }
      expect({ path, status: res.status }).toEqual({ path, status })
      expect(body.error).toBe(status === 404 ? 'NotFoundError' : 'InvalidInputError')
      expect(body.message, path).toMatch(message)
    }
    // Edge cases that are valid: the empty prefix and equal sizes need no hashes.
    expect(await (await fetch(`${url}/ledger/proof/consistency?from=0&to=4`)).json()).toEqual({ from: 0, to: 4, hashes: [] })
    expect(await (await fetch(`${url}/ledger/proof/consistency?from=4&to=4`)).json()).toEqual({ from: 4, to: 4, hashes: [] })
    const after = await fetch(`${url}/ledger/checkpoint`)
    expect(after.status).toBe(200)
    expect(await after.text()).toBe(seen.get(4))
  })
})

describe('tampering and forks: every runtime refuses and keeps serving what it has', () => {
  let watcherRuntime: NodeRuntime
  let watcher: ModelHandle
  let early: ModelHandle
  let watcherOut: Int32Array
  let earlyOut: Int32Array
  let earlyRuntime: NodeRuntime
  let otherKey: ReturnType<typeof generateSigningKey>

  it('two runtimes load v4 and persist checkpoint 4', async () => {
    watcherRuntime = await runtime('watcher')
    watcher = await watcherRuntime.load(config())
    earlyRuntime = await runtime('early')
    early = await earlyRuntime.load(config())
    expect(watcher.manifest.version).toBe(4)
    expect(early.manifest.version).toBe(4)
    watcherOut = await watcher.infer(images)
    earlyOut = await early.infer(images)
    expect(openCheckpoint(await persistedCheckpoint('early'), parseVerifierKey(coordinator.log.vkey)).checkpoint.size).toBe(4)
    otherKey = generateSigningKey()
  })

  it('an edited manifest (kept signature, recomputed CID, or re-signed by another key) is refused; restored, it is taken', async () => {
    expect(await ingest(5)).toBe(5)
    const original = manifestRow(5)
    const signed = JSON.parse(original) as SignedManifest
    const coordinatorKeyId = await keyId(coordinator.identity.signing.publicKey)
    const withMetric = { ...signed.manifest, metrics: { accuracy: 0.999 } }
    // A block swapped for v4's block in the same place: a real block, just not this version's.
    const [first, ...rest] = signed.manifest.blocks as [SignedManifest['manifest']['blocks'][number], ...SignedManifest['manifest']['blocks']]
    const v4Cid = (JSON.parse(manifestRow(4)) as SignedManifest).manifest.blocks[0]?.cid as string
    expect(v4Cid).not.toBe(first.cid)
    const withBlock = { ...signed.manifest, blocks: [{ ...first, cid: v4Cid }, ...rest] }
    const resignedByOther = await signManifest(withMetric, otherKey)
    const forgedKeyId = { ...resignedByOther, signature: { ...resignedByOther.signature, keyId: coordinatorKeyId } }
    const edits: Array<[string, unknown, RegExp]> = [
      ['a metric changed, signature and CID kept', { ...signed, manifest: withMetric }, /content hashes to .*, not the claimed/],
      ['a block CID changed, signature and CID kept', { ...signed, manifest: withBlock }, /content hashes to .*, not the claimed/],
      ['a block CID changed, CID recomputed', { ...signed, manifest: withBlock, cid: await jsonCid(canonicalBytes(withBlock)) }, /signature does not verify/],
      ['re-signed by another key', resignedByOther, /signed by key .*, expected the coordinator key/],
      ['re-signed by another key under the coordinator\'s key id', forgedKeyId, /signature does not verify/],
      // The schema's alphabet lets "AB" through; no bytes encode to it (was the codec's bare SyntaxError).
      ['a signature that is not base64', { ...signed, signature: { ...signed.signature, value: 'AB' } }, /signature.value: not base64/]
    ]
    const fresh = await runtime('fresh-manifest')
    for (const [what, edited, message] of edits) {
      setManifestRow(5, JSON.stringify(edited))
      await expect(watcher.update(), what).rejects.toThrow(message)
      await expect(watcher.update(), what).rejects.toBeInstanceOf(IntegrityError)
      await expect(fresh.load(config()), what).rejects.toThrow(message)
      await expect(fresh.fetch(config(), 5), what).rejects.toBeInstanceOf(IntegrityError)
      await stillServes(watcher, 4, watcherOut)
    }
    setManifestRow(5, original)
    expect(await watcher.update()).toMatchObject({ action: 'upgraded', from: 4, to: 5 })
    watcherOut = await watcher.infer(images)
    expect((await fresh.load(config())).manifest.version).toBe(5)
  })

  it('an edited ledger entry is refused with a LedgerSecurityError carrying the checkpoint and the failing inclusion proof; restored, it is taken', async () => {
    expect(await ingest(6)).toBe(6)
    const index = 5
    const original = leafRow(index)
    const entry = parseEntry(original)
    const verifier = parseVerifierKey(coordinator.log.vkey)
    const fresh = await runtime('fresh-entry')

    // The time moved by a second: still a valid, canonical entry naming the same manifest.
    const retimed = entryBytes({ ...entry, time: new Date(Date.parse(entry.time) + 1000).toISOString() })
    setLeafRow(index, retimed)
    const err = await watcher.update().then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(LedgerSecurityError)
    const evidence = (err as LedgerSecurityError).evidence
    expect(evidence.offered).toBe(seen.get(6))
    expect(evidence.proof).toMatchObject({ kind: 'inclusion', index, size: 6 })
    // The evidence checks out for a third party: the offered checkpoint is the log's, the proof
    // includes the original entry under its root and not the served one.
    const offered = openCheckpoint(evidence.offered, verifier).checkpoint
    const proof = (evidence.proof?.hashes ?? []).map(fromBase64)
    verifyInclusion(index, 6, leafHash(original), proof, offered.root)
    expect(() => verifyInclusion(index, 6, leafHash(retimed), proof, offered.root)).toThrow(IntegrityError)
    await expect(fresh.load(config())).rejects.toBeInstanceOf(LedgerSecurityError)
    await stillServes(watcher, 5, watcherOut)

    // The entry now names another manifest (v5's): a runtime reading the log finds it is not the
    // entry the log signed before it compares it with what is loaded (obtain-ledger.test has an
    // entry naming another manifest in a log that signed it so).
    setLeafRow(index, entryBytes({ ...entry, manifestCid: (JSON.parse(manifestRow(5)) as SignedManifest).cid }))
    await expect(watcher.update()).rejects.toThrow(/entries 5–5 as served do not hash to the root of checkpoint 6: entry 5 is not the one it signed/)
    // A version whose entry names something else is a version not in the log: a security refusal.
    await expect(fresh.load(config())).rejects.toBeInstanceOf(LedgerSecurityError)
    await stillServes(watcher, 5, watcherOut)

    // Bytes that are not canonical JSON: the coordinator will not serve them as an entry (502),
    // and the runtime refuses. (It reports the coordinator's message, as an UnavailableError.)
    setLeafRow(index, new TextEncoder().encode(`${new TextDecoder().decode(original)} `))
    const res = await fetch(`${url}/ledger/entries/${index}`)
    expect(res.status).toBe(502)
    expect(((await res.json()) as { message: string }).message).toMatch(/not the entry's canonical JSON/)
    await expect(watcher.update()).rejects.toThrow(/not the entry's canonical JSON/)
    await stillServes(watcher, 5, watcherOut)

    setLeafRow(index, original)
    expect(await watcher.update()).toMatchObject({ action: 'upgraded', from: 5, to: 6 })
    watcherOut = await watcher.infer(images)
    expect((await fresh.load(config())).manifest.version).toBe(6)
  })

  it('a coordinator that holds the key rewrites history: runtimes that persisted a checkpoint detect it and refuse to move', async () => {
    const persisted = { watcher: await persistedCheckpoint('watcher'), early: await persistedCheckpoint('early') }
    const verifier = parseVerifierKey(coordinator.log.vkey)
    expect(openCheckpoint(persisted.watcher, verifier).checkpoint.size).toBe(6)
    expect(openCheckpoint(persisted.early, verifier).checkpoint.size).toBe(4)

    await coordinator.stop()
    const database = openDatabase(join(coordinatorDir, 'coordinator.sqlite'))
    const originalLeaves: Uint8Array[] = []
    try {
      for (const row of database.db.prepare('SELECT entry FROM ledger_leaves ORDER BY idx').all() as Array<{ entry: Uint8Array }>) originalLeaves.push(new Uint8Array(row.entry))
      // v2 was recorded a minute later, as far as the new history is concerned.
      const rewritten = originalLeaves.map(leaf => {
        const e = parseEntry(leaf)
        return e.version === 2 ? { ...e, time: new Date(Date.parse(e.time) + 60_000).toISOString() } : e
      })
      const log = versionLog({ database, signing: (await loadIdentity(coordinatorDir)).signing, keyId: coordinator.identity.keyId })
      database.transaction(() => {
        database.db.exec('DELETE FROM ledger_nodes; DELETE FROM ledger_leaves;')
        for (const e of rewritten) log.append(e)
      })
      // With the signed checkpoints still in place the log itself refuses to vouch for the new tree…
      expect(() => log.checkpoint()).toThrow(IntegrityError)
      // …so the operator deletes them too and signs a fresh checkpoint of the rewritten history.
      database.db.exec('DELETE FROM ledger_cosignatures; DELETE FROM ledger_checkpoints;')
      expect(log.checkpoint().checkpoint.size).toBe(6)
    } finally {
      database.close()
    }
    await startCoordinator()
    expect(await ingest(7)).toBe(7)

    for (const [name, handle, out, trustedSize] of [['watcher', watcher, watcherOut, 6], ['early', early, earlyOut, 4]] as const) {
      const err = await handle.update().then(() => undefined, (e: unknown) => e)
      expect(err, name).toBeInstanceOf(LedgerSecurityError)
      const { trusted, offered, proof } = (err as LedgerSecurityError).evidence
      // Both checkpoints, each signed by the log's key: together they prove the fork.
      expect(trusted).toBe(persisted[name])
      expect(offered).toBe(seen.get(7))
      const a = openCheckpoint(trusted as string, verifier).checkpoint
      const b = openCheckpoint(offered, verifier).checkpoint
      expect([a.size, b.size]).toEqual([trustedSize, 7])
      expect(toBase64(a.root)).toBe(toBase64(referenceTree(originalLeaves).root(trustedSize)))
      expect(proof).toMatchObject({ kind: 'consistency', from: trustedSize, to: 7 })
      const hashes = (proof as { hashes: string[] }).hashes
      expect(hashes.length).toBeGreaterThan(0)
      expect(() => verifyConsistency(trustedSize, 7, a.root, b.root, hashes.map(fromBase64))).toThrow(IntegrityError)
      // The runtime did not move: same version, same answers, same persisted checkpoint.
      await stillServes(handle, name === 'watcher' ? 6 : 4, out)
      expect(await persistedCheckpoint(name)).toBe(persisted[name])
      await expect(handle.update(), `${name}, asked again`).rejects.toBeInstanceOf(LedgerSecurityError)
    }
    // Restarted, a runtime that persisted a checkpoint still refuses to move: it comes back on the
    // version it verified before, from what it kept, and reports the refusal.
    await earlyRuntime.stop()
    const reported: LedgerSecurityError[] = []
    const restarted = await createNodeRuntime({ dataDir: join(root, 'early'), codes: { digits: mnistDigitsCode }, onSecurityError: (_model, err) => reported.push(err) })
    runtimes.push(restarted)
    const back = await restarted.load(config())
    expect(back.manifest.version).toBe(4)
    expect(back.report.bytesFetched).toBe(0)
    expect(reported).toHaveLength(1)
    expect(reported[0]?.evidence.trusted).toBe(persisted.early)
    expect(Array.from(await back.infer(images))).toEqual(Array.from(earlyOut))
    expect(await persistedCheckpoint('early')).toBe(persisted.early)

    // A runtime with no persisted checkpoint has nothing to compare with: it accepts the
    // rewritten history. Only a witness that kept an earlier checkpoint (ledger.witnesses,
    // ledger.minWitnesses) would stop it — that is what witnesses are for.
    expect((await (await runtime('fresh-after-rewrite')).load(config())).manifest.version).toBe(7)
  })

  it('a checkpoint signed by another key is refused: a runtime configured with another log key, and a coordinator restarted with another identity', async () => {
    const origin = coordinator.log.origin
    const fresh = await runtime('fresh-other-key')
    await expect(fresh.load(config({ ledger: { key: verifierKey(origin, otherKey.publicKey) } }))).rejects.toThrow(/no signature by the log key/)
    await expect(fresh.load(config({ ledger: { key: verifierKey('another.example/log', otherKey.publicKey) } }))).rejects.toBeInstanceOf(IntegrityError)
    // The same runtime with the right key configured loads: the refusal was the key's.
    expect((await fresh.load(config({ ledger: { key: coordinator.log.vkey } }))).manifest.version).toBe(7)

    const vkey = coordinator.log.vkey
    const identity = coordinator.identity
    const trustedNote = await persistedCheckpoint('fresh-other-key')
    await coordinator.stop()
    // Same URL, another data dir: another identity key, its own log.
    await startCoordinator(join(root, 'impostor'))
    expect(new URL(url).port).toBe(String(port))
    expect(coordinator.identity.publicKeyHex).not.toBe(identity.publicKeyHex)
    await coordinator.ingest('digits', await seededVersionFiles(1))
    edgeToken = await coordinator.createToken('edge')
    const served = await (await fetch(`${url}/ledger/checkpoint`)).text()
    // It is a valid checkpoint — of the impostor's key.
    expect(openCheckpoint(served, parseVerifierKey(coordinator.log.vkey)).checkpoint.size).toBe(1)

    const logVerifier = parseVerifierKey(vkey)
    const memory = (note: string): CheckpointStore => ({ load: async () => note, save: async () => { throw new Error('a refused checkpoint must not be persisted') } })
    await expect(advanceCheckpoint(ledgerClient({ baseUrl: url }), { log: logVerifier, witnesses: [], minWitnesses: 0 }, memory(trustedNote)))
      .rejects.toThrow(/no signature by the log key/)
    expect(() => openTrusted(served, { log: logVerifier, witnesses: [], minWitnesses: 0 })).toThrow(IntegrityError)

    // The runtime that pinned the old key (trust on first use) refuses, keeps serving v6.
    await expect(watcher.update()).rejects.toThrow(/now serves log key .* but .* was pinned/)
    await stillServes(watcher, 6, watcherOut)
    // A runtime with the old keys in its config refuses too.
    const pinned = await runtime('pinned-keys')
    // Its first question, the channels answer, is signed by the impostor's key.
    await expect(pinned.load(config({ coordinatorKey: identity.publicKeyHex, ledger: { key: vkey } }))).rejects.toThrow(/the channels answer is not signed by the coordinator key this runtime trusts/)
    // And a runtime restarted on the watcher's data dir refuses at first contact.
    await watcherRuntime.stop()
    await expect((await runtime('watcher')).load(config())).rejects.toThrow(/now presents key .* but .* was pinned/)
  })
})
