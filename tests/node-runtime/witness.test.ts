import { describe, it, expect, afterEach } from 'vitest'
import { createHash } from 'node:crypto'
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ed25519 } from '@noble/curves/ed25519.js'
import { asBufferSource, toBase64 } from '../../shared/crypto/bytes.ts'
import { AccessDeniedError, InvalidConfigError, InvalidInputError, NotFoundError } from '../../shared/errors/errors.ts'
import { formatCheckpoint, openCheckpoint, signCheckpoint } from '../../shared/ledger/checkpoint.ts'
import { cosignatureTime, witnessVerifierKey } from '../../shared/ledger/cosignature.ts'
import { memoryTree, type MemoryTree } from '../../shared/ledger/memory-tree.ts'
import { ed25519Signer, ed25519Verifier, parseVerifierKey, signNote, verifierKey, type NoteSigner } from '../../shared/ledger/note.ts'
import { createWitness, type Witness } from '../../node-runtime/witness/server.ts'
import { addCheckpoint, InconsistentCheckpointError, WitnessConflictError } from '../../shared/ledger/witness/client.ts'
import { openWitnessStore } from '../../node-runtime/witness/store.ts'

const ORIGIN = 'blockfed.test/ledger'
const OTHER_ORIGIN = 'blockfed.test/other-ledger'
const NAME = 'witness.test/w1'
const NOW = 1_700_000_000
const seeded = (byte: number): Uint8Array => new Uint8Array(32).fill(byte)
const logSigner = ed25519Signer(ORIGIN, seeded(1))
const logVerifier = ed25519Verifier(ORIGIN, ed25519.getPublicKey(seeded(1)))
const LOGS = [
  { origin: ORIGIN, vkey: verifierKey(ORIGIN, ed25519.getPublicKey(seeded(1))) },
  { origin: OTHER_ORIGIN, vkey: verifierKey(OTHER_ORIGIN, ed25519.getPublicKey(seeded(2))) }
]

const open: Witness[] = []
const dirs: string[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map(async w => { await w.close() }))
  await Promise.all(dirs.splice(0).map(async d => { await rm(d, { recursive: true, force: true }) }))
})

async function start (dataDir?: string): Promise<Witness & { dataDir: string }> {
  const dir = dataDir ?? await mkdtemp(join(tmpdir(), 'blockfed-witness-'))
  if (dataDir === undefined) dirs.push(dir)
  const witness = await createWitness({ dataDir: dir, name: NAME, logs: LOGS, host: '127.0.0.1', port: 0, now: () => NOW })
  open.push(witness)
  return { ...witness, dataDir: dir }
}

/** A log of `n` deterministic entries. */
function treeOf (n: number, salt = 0): MemoryTree {
  const tree = memoryTree()
  for (let i = 0; i < n; i++) tree.append(new Uint8Array([salt, i & 0xff, i >> 8]))
  return tree
}

function checkpointNote (tree: MemoryTree, size = tree.size, signer: NoteSigner = logSigner, origin = ORIGIN): string {
  return signCheckpoint({ origin, size, root: tree.root(size), extensions: [] }, signer)
}

async function post (url: string, body: string | Uint8Array): Promise<{ status: number, type: string | null, text: string }> {
  const res = await fetch(`${url}/add-checkpoint`, { method: 'POST', body: typeof body === 'string' ? body : asBufferSource(body) })
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() }
}

const rejection = async (p: Promise<unknown>): Promise<Error> => await p.then(() => { throw new Error('expected a rejection') }, (err: Error) => err)

describe('witness add-checkpoint (c2sp.org/tlog-witness)', () => {
  it('cosigns a first checkpoint sent with old 0; the cosignature verifies under its vkey', async () => {
    const w = await start()
    const tree = treeOf(5)
    const note = checkpointNote(tree)
    const lines = await addCheckpoint(w.url, { old: 0, proof: [], note })
    expect(lines).toHaveLength(1)
    const witness = parseVerifierKey(w.vkey)
    expect(witness.type).toBe('cosignature/v1')
    expect(witness.name).toBe(NAME)
    const opened = openCheckpoint(note + lines.map(l => `${l}\n`).join(''), logVerifier, [witness])
    expect(opened.cosigners).toEqual([NAME])
    expect(opened.checkpoint.size).toBe(5)
    expect(cosignatureTime(lines[0] as string)).toBe(NOW)
    expect((await stat(join(w.dataDir, 'witness.ed25519'))).mode & 0o777).toBe(0o600)
  })

  it('cosigns consistent growth, a resubmission, and serves the latest checkpoint to monitors', async () => {
    const w = await start()
    const tree = treeOf(16)
    await addCheckpoint(w.url, { old: 0, proof: [], note: checkpointNote(tree, 5) })
    await addCheckpoint(w.url, { old: 5, proof: tree.consistencyProof(5, 9), note: checkpointNote(tree, 9) })
    await addCheckpoint(w.url, { old: 9, proof: [], note: checkpointNote(tree, 9) })
    const lines = await addCheckpoint(w.url, { old: 9, proof: tree.consistencyProof(9, 16), note: checkpointNote(tree, 16) })
    expect(lines).toHaveLength(1)

    const hash = createHash('sha256').update(ORIGIN).digest('hex')
    const res = await fetch(`${w.url}/${hash}/checkpoint`)
    expect(res.status).toBe(200)
    const served = openCheckpoint(await res.text(), logVerifier, [parseVerifierKey(w.vkey)])
    expect(served.checkpoint.size).toBe(16)
    expect(served.checkpoint.root).toEqual(tree.root(16))
    expect(served.cosigners).toEqual([NAME])
    const other = createHash('sha256').update(OTHER_ORIGIN).digest('hex')
    expect((await fetch(`${w.url}/${other}/checkpoint`)).status).toBe(404)
    expect((await fetch(`${w.url}/${'0'.repeat(64)}/checkpoint`)).status).toBe(404)
  })

  it('answers 409 with the held size (text/x.tlog.size) when old is not that size', async () => {
    const w = await start()
    const tree = treeOf(12)
    await addCheckpoint(w.url, { old: 0, proof: [], note: checkpointNote(tree, 5) })
    const raw = await post(w.url, `old 0\n\n${checkpointNote(tree, 12)}`)
    expect(raw.status).toBe(409)
    expect(raw.type).toBe('text/x.tlog.size')
    expect(raw.text).toBe('5\n')
    const err = await rejection(addCheckpoint(w.url, { old: 3, proof: tree.consistencyProof(3, 12), note: checkpointNote(tree, 12) }))
    expect(err).toBeInstanceOf(WitnessConflictError)
    expect((err as WitnessConflictError).size).toBe(5)
    // Retrying from the size it names succeeds.
    expect(await addCheckpoint(w.url, { old: 5, proof: tree.consistencyProof(5, 12), note: checkpointNote(tree, 12) })).toHaveLength(1)
  })

  it('answers 422 when the consistency proof does not verify', async () => {
    const w = await start()
    const tree = treeOf(9)
    await addCheckpoint(w.url, { old: 0, proof: [], note: checkpointNote(tree, 5) })
    const note = checkpointNote(tree, 9)
    const good = tree.consistencyProof(5, 9)
    const flipped = good.map(h => h.slice()); (flipped[0] as Uint8Array)[0] = ((flipped[0] as Uint8Array)[0] as number) ^ 1
    const cases = [flipped, good.slice(0, -1), [...good, new Uint8Array(32)], treeOf(9, 1).consistencyProof(5, 9)]
    for (const proof of cases) {
      const err = await rejection(addCheckpoint(w.url, { old: 5, proof, note }))
      expect(err).toBeInstanceOf(InconsistentCheckpointError)
      expect((await post(w.url, `old 5\n${proof.map(h => `${toBase64(h)}\n`).join('')}\n${note}`)).status).toBe(422)
    }
    // Old 0 takes no proof; a size-0 checkpoint must carry the empty tree's root.
    const fresh = treeOf(3, 2)
    const otherSigner = ed25519Signer(OTHER_ORIGIN, seeded(2))
    expect((await post(w.url, `old 0\n${toBase64(new Uint8Array(32))}\n\n${checkpointNote(fresh, 3, otherSigner, OTHER_ORIGIN)}`)).status).toBe(422)
    const badEmpty = signCheckpoint({ origin: OTHER_ORIGIN, size: 0, root: new Uint8Array(32), extensions: [] }, otherSigner)
    expect((await post(w.url, `old 0\n\n${badEmpty}`)).status).toBe(422)
    expect(await addCheckpoint(w.url, { old: 0, proof: [], note: checkpointNote(memoryTree(), 0, otherSigner, OTHER_ORIGIN) })).toHaveLength(1)
    // Still held at 5: the refusals changed nothing.
    expect(await addCheckpoint(w.url, { old: 5, proof: good, note })).toHaveLength(1)
  })

  it('refuses a fork (same size, other root) and a rollback (smaller size)', async () => {
    const w = await start()
    const tree = treeOf(8)
    await addCheckpoint(w.url, { old: 0, proof: [], note: checkpointNote(tree, 8) })
    const fork = treeOf(8, 7)
    // c2sp.org/tlog-witness: same size, other root → 409 Conflict, naming the size held.
    const forked = await rejection(addCheckpoint(w.url, { old: 8, proof: [], note: checkpointNote(fork, 8) }))
    expect(forked).toBeInstanceOf(WitnessConflictError)
    expect(forked).toMatchObject({ size: 8 })
    const rollback = await post(w.url, `old 8\n\n${checkpointNote(tree, 6)}`)
    expect(rollback.status).toBe(400)
    expect(rollback.text).toMatch(/old size 8 is larger than the checkpoint's size 6/)
    expect((await post(w.url, `old 6\n\n${checkpointNote(tree, 6)}`)).status).toBe(409)
  })

  it('answers 403 for a checkpoint without a valid signature by the log key, 404 for an unknown origin', async () => {
    const w = await start()
    const tree = treeOf(4)
    const impostor = ed25519Signer(ORIGIN, seeded(9))
    const err = await rejection(addCheckpoint(w.url, { old: 0, proof: [], note: checkpointNote(tree, 4, impostor) }))
    expect(err).toBeInstanceOf(AccessDeniedError)
    const text = formatCheckpoint({ origin: ORIGIN, size: 4, root: tree.root(), extensions: [] })
    const tampered = checkpointNote(tree).replace(text, text.replace('\n4\n', '\n3\n'))
    expect((await post(w.url, `old 0\n\n${tampered}`)).status).toBe(403)
    // A valid log signature next to an unknown key's is accepted (unknown keys are ignored).
    expect(await addCheckpoint(w.url, { old: 0, proof: [], note: signNote(text, [impostor, logSigner]) })).toHaveLength(1)
    const unknown = signCheckpoint({ origin: 'elsewhere.test/log', size: 4, root: tree.root(), extensions: [] }, ed25519Signer('elsewhere.test/log', seeded(5)))
    expect(await rejection(addCheckpoint(w.url, { old: 0, proof: [], note: unknown }))).toBeInstanceOf(NotFoundError)
    expect((await post(w.url, `old 0\n\n${unknown}`)).status).toBe(404)
  })

  it('answers 400 to malformed requests, 413 to oversized ones, and keeps serving', async () => {
    const w = await start()
    const tree = treeOf(6)
    const note = checkpointNote(tree, 6)
    const hash = `${toBase64(new Uint8Array(32))}\n`
    const malformed: Array<string | Uint8Array> = [
      '',
      'garbage',
      note,
      `old 0\n${note}`,
      `old 00\n\n${note}`,
      `old -1\n\n${note}`,
      `old 0 \n\n${note}`,
      `OLD 0\n\n${note}`,
      `old 9007199254740992\n\n${note}`,
      `old 0\nnot base64!\n\n${note}`,
      `old 0\n${toBase64(new Uint8Array(31))}\n\n${note}`,
      `old 0\n${hash.repeat(64)}\n${note}`,
      'old 0\n\nblockfed.test/ledger\n6\n',
      `old 0\n\n${note.replace('\n6\n', '\n06\n')}`,
      `old 0\n\n${note.slice(0, -1)}`,
      `old 0\n\n${note}trailing\n`,
      new Uint8Array([...new TextEncoder().encode('old 0\n\n'), 0xff, ...new TextEncoder().encode(note)])
    ]
    for (const body of malformed) {
      const res = await post(w.url, body)
      expect(res.status, JSON.stringify(typeof body === 'string' ? body.slice(0, 80) : 'bytes')).toBe(400)
      expect(res.text.length).toBeGreaterThan(0)
    }
    expect(await rejection(addCheckpoint(w.url, { old: 0, proof: [], note: 'not a note\n' }))).toBeInstanceOf(InvalidInputError)
    const huge = await post(w.url, `old 0\n\n${note}${'x'.repeat(65 << 10)}`)
    expect(huge.status).toBe(413)
    expect((await fetch(`${w.url}/add-checkpoint`)).status).toBe(405)
    expect(await addCheckpoint(w.url, { old: 0, proof: [], note })).toHaveLength(1)
  })

  it('keeps its key and its checkpoints across a restart', async () => {
    const first = await start()
    const tree = treeOf(10)
    await addCheckpoint(first.url, { old: 0, proof: [], note: checkpointNote(tree, 7) })
    await first.close()
    const second = await start(first.dataDir)
    expect(second.vkey).toBe(first.vkey)
    const err = await rejection(addCheckpoint(second.url, { old: 0, proof: [], note: checkpointNote(tree, 10) }))
    expect((err as WitnessConflictError).size).toBe(7)
    const lines = await addCheckpoint(second.url, { old: 7, proof: tree.consistencyProof(7, 10), note: checkpointNote(tree, 10) })
    expect(openCheckpoint(checkpointNote(tree, 10) + `${lines[0]}\n`, logVerifier, [parseVerifierKey(first.vkey)]).cosigners).toEqual([NAME])
  })

  it('refuses to start with its key but not its memory, or a memory of another key, rather than cosign a fork (review 42a M1)', async () => {
    const first = await start()
    const honest = treeOf(5)
    await addCheckpoint(first.url, { old: 0, proof: [], note: checkpointNote(honest) })
    await first.close()
    // The memory lost, the key kept: it would have cosigned a fork of size 5 with old 0.
    const memory = await readFile(join(first.dataDir, 'witness.sqlite'))
    for (const f of ['witness.sqlite', 'witness.sqlite-wal', 'witness.sqlite-shm']) await rm(join(first.dataDir, f), { force: true })
    await expect(start(first.dataDir)).rejects.toThrow(/witness\.ed25519 was made before, but witness\.sqlite, the record of what it cosigned, is missing/)
    // Refused again: the refusal made no empty memory that a next start would take as its own.
    await expect(start(first.dataDir)).rejects.toThrow(/is missing/)
    await expect(stat(join(first.dataDir, 'witness.sqlite'))).rejects.toThrow(/ENOENT/)
    // Another witness's key beside this memory.
    await writeFile(join(first.dataDir, 'witness.sqlite'), memory)
    const other = await start()
    await other.close()
    const ownKey = await readFile(join(first.dataDir, 'witness.ed25519'))
    await copyFile(join(other.dataDir, 'witness.ed25519'), join(first.dataDir, 'witness.ed25519'))
    await expect(start(first.dataDir)).rejects.toThrow(/witness\.sqlite records the checkpoints cosigned by another key than .*witness\.ed25519/)
    // Its own key back: it remembers size 5 and refuses the fork.
    await writeFile(join(first.dataDir, 'witness.ed25519'), ownKey, { mode: 0o600 })
    const again = await start(first.dataDir)
    expect(again.vkey).toBe(first.vkey)
    expect((await post(again.url, `old 0\n\n${checkpointNote(treeOf(5, 1))}`)).status).toBe(409)
  })

  it('starts after a first start that failed to make its memory (review 42c: it had made its key, and was refused for ever after)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blockfed-witness-'))
    dirs.push(dir)
    // The memory cannot be made (a folder in its place): the first start fails, before any key,
    // with SQLite's refusal to open it (review 50a L3: any error passed, a regression's TypeError too).
    await mkdir(join(dir, 'witness.sqlite'))
    await expect(start(dir)).rejects.toMatchObject({ code: 'ERR_SQLITE_ERROR', message: 'unable to open database file' })
    await expect(stat(join(dir, 'witness.ed25519'))).rejects.toThrow(/ENOENT/)
    await rm(join(dir, 'witness.sqlite'), { recursive: true })
    const w = await start(dir)
    expect((await post(w.url, `old 0\n\n${checkpointNote(treeOf(3))}`)).status).toBe(200)
    // A memory made without a key (stopped between the two) is bound to the key made next.
    const other = await mkdtemp(join(tmpdir(), 'blockfed-witness-'))
    dirs.push(other)
    openWitnessStore(join(other, 'witness.sqlite')).close()
    expect((await start(other)).vkey).toMatch(/^witness\.test\/w1\+/)
  })

  it('binds a memory written before it recorded its key to the key beside it', async () => {
    const first = await start()
    const tree = treeOf(6)
    await addCheckpoint(first.url, { old: 0, proof: [], note: checkpointNote(tree, 4) })
    await first.close()
    const db = new DatabaseSync(join(first.dataDir, 'witness.sqlite'))
    db.exec('DROP TABLE meta')
    db.close()
    const second = await start(first.dataDir)
    expect((await post(second.url, `old 0\n\n${checkpointNote(tree, 6)}`)).status).toBe(409)
    await second.close()
    const check = new DatabaseSync(join(first.dataDir, 'witness.sqlite'))
    expect(check.prepare("SELECT value FROM meta WHERE key = 'public_key'").get()).toEqual({ value: expect.stringMatching(/^[0-9a-f]{64}$/) })
    check.close()
  })

  it('serialises concurrent requests for one origin: one of two racing successors wins', async () => {
    const w = await start()
    const tree = treeOf(20)
    await addCheckpoint(w.url, { old: 0, proof: [], note: checkpointNote(tree, 5) })
    const sizes = [7, 9, 12, 20]
    const results = await Promise.allSettled(sizes.map(async n => await addCheckpoint(w.url, { old: 5, proof: tree.consistencyProof(5, n), note: checkpointNote(tree, n) })))
    const won = results.flatMap((r, i) => r.status === 'fulfilled' ? [sizes[i]] : [])
    expect(won).toHaveLength(1)
    for (const r of results) if (r.status === 'rejected') expect((r.reason as WitnessConflictError).size).toBe(won[0])
  })

  it('refuses a configuration it cannot honour', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blockfed-witness-'))
    dirs.push(dir)
    const base = { dataDir: dir, name: NAME, logs: LOGS, port: 0 }
    await expect(createWitness({ ...base, logs: [] })).rejects.toThrow(InvalidConfigError)
    await expect(createWitness({ ...base, name: 'two words' })).rejects.toThrow(InvalidConfigError)
    await expect(createWitness({ ...base, logs: [{ origin: ORIGIN, vkey: 'nonsense' }] })).rejects.toThrow(/logs\[0\]\.vkey/)
    const cosignerKey = witnessVerifierKey(ORIGIN, ed25519.getPublicKey(seeded(1)))
    await expect(createWitness({ ...base, logs: [{ origin: ORIGIN, vkey: cosignerKey }] })).rejects.toThrow(/Ed25519 \(0x01\) key/)
  })
})

describe('witness store', () => {
  it('compare-and-swaps across two handles on one file: a stale writer loses', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blockfed-witness-'))
    dirs.push(dir)
    const a = openWitnessStore(join(dir, 'w.sqlite'))
    const b = openWitnessStore(join(dir, 'w.sqlite'))
    try {
      const first = { size: 1, root: new Uint8Array(32).fill(1), note: 'one' }
      expect(a.replace(ORIGIN, undefined, first)).toBe(true)
      expect(b.replace(ORIGIN, undefined, { ...first, note: 'other' })).toBe(false)
      const held = b.get(ORIGIN)
      expect(held).toEqual(first)
      expect(a.replace(ORIGIN, held, { size: 2, root: new Uint8Array(32).fill(2), note: 'two' })).toBe(true)
      // b read size 1 before a moved to 2: its swap must fail, whatever it writes.
      expect(b.replace(ORIGIN, held, { size: 3, root: new Uint8Array(32).fill(3), note: 'three' })).toBe(false)
      expect(b.get(ORIGIN)?.size).toBe(2)
      expect(a.replace(ORIGIN, { ...first, size: 2 }, { size: 3, root: new Uint8Array(32), note: '' })).toBe(false) // right size, wrong root
    } finally {
      a.close()
      b.close()
    }
  })
})
