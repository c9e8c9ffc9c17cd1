/**
 * Three ledger checks that review 38b found no test covered (each mutant survived every
 * unit, integration and e2e file that claims the behaviour):
 * - checkEntry (shared/ledger/verify.ts:130, mutant V5): an entry that names the manifest's CID
 *   but another `parent` is refused: the parent is what the model's chain is checked by.
 * - openTrusted (verify.ts:73, mutant V1): a checkpoint whose origin is not the log's name is
 *   refused, even when signed by the log's key under the log's name (the log-key holder
 *   presenting another log's tree head).
 * - inspectNote (shared/ledger/note.ts:226, mutant N1): a signature line is the key's only when
 *   BOTH its name and its key ID match; a line under another name that reuses the log's key ID
 *   is ignored (not verified, not kept), so a bad one cannot block the note and a good one is
 *   not saved under the wrong name.
 */
import { describe, it, expect } from 'vitest'
import { concatBytes, toBase64 } from '../../../shared/crypto/bytes.ts'
import { generateSigningKey } from '../../../shared/crypto/sign.ts'
import { IntegrityError } from '../../../shared/errors/errors.ts'
import { openCheckpoint, signCheckpoint } from '../../../shared/ledger/checkpoint.ts'
import type { LedgerEntry } from '../../../shared/ledger/entry.ts'
import { signLine, splitNote, type NoteSigner } from '../../../shared/ledger/note.ts'
import { advanceCheckpoint, checkEntry, openTrusted, verifyAnchor, type CheckpointStore, type LedgerTrust } from '../../../shared/ledger/verify.ts'
import { signManifest } from '../../../shared/manifest/sign.ts'
import { entry, fakeLog, logSigner, logVerifier, ORIGIN } from '../../helpers/ledger-fake-log.ts'
import { testManifest } from '../../helpers/manifest.ts'

const trust: LedgerTrust = { log: logVerifier, witnesses: [], minWitnesses: 0 }
const coordinator = generateSigningKey()

describe('checkEntry: the entry must name the manifest\'s parent', () => {
  it('accepts the entry that names the manifest exactly, and refuses one whose parent differs', async () => {
    const signed = await signManifest(testManifest({ version: 3, parent: 2 }), coordinator)
    const honest: LedgerEntry = { model: 'm', version: 3, manifestCid: signed.cid, parent: 2, time: new Date(0).toISOString() }
    expect(() => checkEntry(honest, signed)).not.toThrow()
    for (const parent of [1, null, 4]) {
      expect(() => checkEntry({ ...honest, parent }, signed), `parent ${parent}`).toThrow(IntegrityError)
      expect(() => checkEntry({ ...honest, parent }, signed), `parent ${parent}`)
        .toThrow(`m@3: the ledger entry's parent (${JSON.stringify(parent)}) does not match the manifest (${signed.cid})`)
    }
  })

  it('refuses a first version whose entry claims a parent', async () => {
    const signed = await signManifest(testManifest({ version: 1, parent: null }), coordinator)
    const claimed: LedgerEntry = { model: 'm', version: 1, manifestCid: signed.cid, parent: 1, time: new Date(0).toISOString() }
    expect(() => checkEntry(claimed, signed)).toThrow(/the ledger entry's parent \(1\) does not match the manifest/)
  })

  it('verifyAnchor refuses an anchored entry with the manifest\'s CID but another parent, though it is included under the checkpoint', async () => {
    const log = fakeLog()
    const signed = await signManifest(testManifest({ version: 3, parent: 2 }), coordinator)
    log.append(entry('m', 1))
    log.append(entry('m', 2))
    log.append({ model: 'm', version: 3, manifestCid: signed.cid, parent: 1, time: new Date(0).toISOString() })
    const checkpoint = openTrusted(log.note(3), trust)
    await expect(verifyAnchor(log.client, checkpoint, signed, 2)).rejects.toBeInstanceOf(IntegrityError)
    await expect(verifyAnchor(log.client, checkpoint, signed, 2)).rejects.toThrow(/the ledger entry's parent \(1\) does not match the manifest/)
    // The same entry with the right parent is anchored (the baseline).
    const honest = fakeLog()
    honest.append(entry('m', 1))
    honest.append(entry('m', 2))
    honest.append({ model: 'm', version: 3, manifestCid: signed.cid, parent: 2, time: new Date(0).toISOString() })
    await expect(verifyAnchor(honest.client, openTrusted(honest.note(3), trust), signed, 2)).resolves.toMatchObject({ index: 2 })
  })
})

describe('openTrusted: the checkpoint\'s origin must be the log\'s name', () => {
  it('refuses a checkpoint of another origin signed by the log key under the log\'s name, and advanceCheckpoint saves nothing', async () => {
    const log = fakeLog()
    log.append(entry('m', 1))
    const root = log.tree.root(1)
    const good = signCheckpoint({ origin: ORIGIN, size: 1, root, extensions: [] }, logSigner)
    expect(openTrusted(good, trust).checkpoint.origin).toBe(ORIGIN)
    const foreign = signCheckpoint({ origin: 'other.example/log', size: 1, root, extensions: [] }, logSigner)
    // The signature is the log's own: only the origin gives it away.
    expect(openCheckpoint(foreign, logVerifier).checkpoint.origin).toBe('other.example/log')
    expect(() => openTrusted(foreign, trust)).toThrow(IntegrityError)
    expect(() => openTrusted(foreign, trust)).toThrow(`checkpoint of log "other.example/log", expected "${ORIGIN}"`)

    let saved: string | undefined
    const store: CheckpointStore = { load: async () => saved, save: async note => { saved = note } }
    log.serve(foreign)
    await expect(advanceCheckpoint(log.client, trust, store)).rejects.toThrow(/checkpoint of log "other.example\/log"/)
    expect(saved).toBeUndefined()
  })
})

describe('inspectNote: a signature line is a key\'s only under its name AND key ID', () => {
  /** A line named `mallory` that carries the log's key ID, and `signature` as its signature bytes. */
  const mallory = (signature: (message: Uint8Array) => Uint8Array): NoteSigner => ({ name: 'mallory', keyId: logVerifier.keyId, sign: signature })

  it('ignores a line under another name with the log\'s key ID and a bad signature: the note still opens', () => {
    const log = fakeLog()
    log.append(entry('m', 1))
    const note = log.note(1)
    const { text } = splitNote(note)
    const garbage = new Uint8Array(64).map((_, i) => (i * 37 + 11) & 0xff)
    const forged = signLine(text, mallory(() => garbage))
    expect(forged).toBe(`— mallory ${toBase64(concatBytes(logVerifier.keyId, garbage))}\n`)
    const opened = openCheckpoint(note + forged, logVerifier)
    expect(opened.lines).toContain(forged.slice(0, -1))
    expect(opened.verifiedNote).toBe(note)
    expect(opened.verifiedNote).not.toContain('mallory')
    expect(openTrusted(note + forged, trust).note).toBe(note)
  })

  it('does not take a line under another name with the log\'s key ID and the log\'s valid signature as a signature by any key', () => {
    const log = fakeLog()
    log.append(entry('m', 1))
    const note = log.note(1)
    const { text } = splitNote(note)
    // Signed by the log's key itself; only the name is not the log's.
    const relabelled = signLine(text, mallory(message => logSigner.sign(message)))
    const opened = openCheckpoint(note + relabelled, logVerifier)
    expect(opened.lines).toEqual([...splitNote(note).signatures.map(s => s.line), relabelled.slice(0, -1)])
    expect(opened.verifiedNote).toBe(note)
    // Alone (without the log's own line), the note carries no signature by the log key.
    expect(() => openCheckpoint(`${text}\n${relabelled}`, logVerifier)).toThrow(`checkpoint: no signature by the log key ${ORIGIN}`)
  })
})
