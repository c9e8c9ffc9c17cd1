/**
 * What a witness answers is stored and served on /ledger/checkpoint, so only its one verified
 * cosignature may be kept (found by review: a witness that padded its answer with lines under its
 * own name but unknown key IDs got them all served, past the 100 signatures every client accepts,
 * and no runtime could open the checkpoint any more). Real coordinator, real witnesses over HTTP.
 */
import { describe, it, expect, afterAll } from 'vitest'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { openDatabase } from '../../coordinator/store/database.ts'
import { versionLog } from '../../coordinator/ledger/log.ts'
import { witnessCosigner, type WitnessStatus } from '../../coordinator/ledger/witnesses.ts'
import { InvalidConfigError, InvalidInputError } from '../../shared/errors/errors.ts'
import { generateSigningKey } from '../../shared/crypto/sign.ts'
import { concatBytes, toBase64, toHex } from '../../shared/crypto/bytes.ts'
import { cosignatureSigner, witnessVerifierKey } from '../../shared/ledger/cosignature.ts'
import { parseAddCheckpoint } from '../../shared/ledger/witness/request.ts'
import { ed25519Verifier, parseSignatureLine, parseVerifierKey, signLine, splitNote } from '../../shared/ledger/note.ts'
import { ledgerClient } from '../../shared/ledger/client.ts'
import { openTrusted } from '../../shared/ledger/verify.ts'

const servers: http.Server[] = []
let root: string | undefined

afterAll(async () => {
  for (const s of servers) { s.closeAllConnections(); s.close() }
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

/** A witness that cosigns whatever it is sent, once per signer clock in `times`, plus `junk` lines under its name. */
async function witness (name: string, options: { times?: number[], junk?: number } = {}): Promise<{ url: string, vkey: string }> {
  const key = generateSigningKey()
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => {
      const text = splitNote(parseAddCheckpoint(body).note).text
      const lines = (options.times ?? [1_700_000_000]).map(t => signLine(text, cosignatureSigner(name, key.secretKey, () => t)))
      // Random key IDs: lines under its name that no configured key verifies.
      for (let i = 0; i < (options.junk ?? 0); i++) lines.push(`— ${name} ${toBase64(randomBytes(76))}\n`)
      res.writeHead(200, { 'content-type': 'text/x.tlog.signature' })
      res.end(lines.join(''))
    })
  })
  servers.push(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, vkey: witnessVerifierKey(name, key.publicKey) }
}

describe('witness cosignatures the coordinator keeps', () => {
  it('keeps exactly the one line each witness key verifies, so clients can still open the served checkpoint', async () => {
    const honest = await witness('witness.test/honest')
    const padded = await witness('witness.test/padded', { junk: 98 })
    const twice = await witness('witness.test/twice', { times: [1_700_000_000, 1_700_000_001] })
    root = await mkdtemp(join(tmpdir(), 'blockfed-ledger-witnesses-'))
    const c = await createCoordinator({ dataDir: root, port: 0, host: '127.0.0.1', witnesses: [honest, padded, twice] })
    try {
      const url = await c.start()
      c.log.append({ model: 'm', version: 1, manifestCid: 'bafy1', parent: null, time: new Date(0).toISOString() })
      await c.anchor()

      const served = await ledgerClient({ baseUrl: url }).checkpoint()
      const opened = openTrusted(served, {
        log: ed25519Verifier(c.log.origin, c.identity.signing.publicKey),
        witnesses: [honest, padded, twice].map(w => parseVerifierKey(w.vkey)),
        minWitnesses: 2
      })
      expect(opened.checkpoint.size).toBe(1)
      // Two valid cosignatures with different timestamps are not "its cosignature" either.
      expect(opened.cosigners).toEqual(['witness.test/honest', 'witness.test/padded'])
      expect(splitNote(served).signatures.map(s => s.name)).toEqual([c.log.origin, 'witness.test/honest', 'witness.test/padded'])
      expect(c.log.latest()?.cosigners).toEqual(['witness.test/honest', 'witness.test/padded'])
    } finally {
      await c.stop()
    }
  })

  it('never stores more than one line per witness, nor configures more witnesses than a note can carry', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blockfed-ledger-cosignatures-'))
    const database = openDatabase(join(dir, 'c.sqlite'))
    try {
      const log = versionLog({ database, signing: generateSigningKey(), keyId: 'k1', origin: 'log.test/limits' })
      log.append({ model: 'm', version: 1, manifestCid: 'bafy1', parent: null, time: new Date(0).toISOString() })
      const { note } = log.checkpoint()
      const key = generateSigningKey()
      const line = (t: number): string => signLine(splitNote(note).text, cosignatureSigner('witness.test/w', key.secretKey, () => t)).trimEnd()
      expect(() => { log.addCosignature(1, 'witness.test/w', `${line(1_700_000_000)}\n${line(1_700_000_001)}`) }).toThrow(InvalidInputError)
      expect(() => { log.addCosignature(1, 'witness.test/other', line(1_700_000_000)) }).toThrow(InvalidInputError)
      expect(log.latest()?.cosigners).toEqual([])
      // The log's line and 99 cosignatures make the 100 lines clients accept; a 100th witness cannot fit.
      const witnesses = Array.from({ length: 100 }, (_, i) => ({ url: 'http://127.0.0.1:9', vkey: witnessVerifierKey(`witness.test/w${i}`, generateSigningKey().publicKey) }))
      expect(() => witnessCosigner({ log, witnesses: witnesses.slice(0, 99) })).not.toThrow()
      expect(() => witnessCosigner({ log, witnesses })).toThrow(InvalidConfigError)
    } finally {
      database.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

/** `server` listening on loopback; its URL. */
async function listening (server: http.Server): Promise<string> {
  servers.push(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** A log of one entry with a signed checkpoint, in a fresh database; `run` gets it, and the database is closed and removed after. */
async function withOneEntryLog (name: string, run: (log: ReturnType<typeof versionLog>) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), `blockfed-ledger-${name}-`))
  const database = openDatabase(join(dir, 'c.sqlite'))
  try {
    const log = versionLog({ database, signing: generateSigningKey(), keyId: 'k1', origin: `log.test/${name}` })
    log.append({ model: 'm', version: 1, manifestCid: 'bafy1', parent: null, time: new Date(0).toISOString() })
    log.checkpoint()
    await run(log)
  } finally {
    database.close()
    await rm(dir, { recursive: true, force: true })
  }
}

describe('a witness whose key changes', () => {
  it('is asked again under its new key, whose line replaces the old key\'s; two witnesses of one name are refused', async () => {
    const before = await witness('witness.test/w')
    const after = await witness('witness.test/w') // the same name, a new key: a lost data dir, a rotation
    await withOneEntryLog('rotated', async log => {
      expect((await witnessCosigner({ log, witnesses: [before] }).cosign()).cosigned).toEqual(['witness.test/w'])
      // Known by name alone it was skipped, and clients trusting the new key found no cosignature.
      expect((await witnessCosigner({ log, witnesses: [after] }).cosign()).cosigned).toEqual(['witness.test/w'])
      const lines = splitNote(log.latest()?.cosigned ?? '').signatures.filter(s => s.name === 'witness.test/w')
      expect(lines.map(s => toBase64(s.keyId))).toEqual([toBase64(parseVerifierKey(after.vkey).keyId)])
      // Asked once per key: a second run finds its line.
      expect((await witnessCosigner({ log, witnesses: [after] }).cosign()).cosigned).toEqual([])
      expect(() => witnessCosigner({ log, witnesses: [before, after] })).toThrow(/two witnesses are named witness\.test\/w/)
    })
  })
})

describe('a witness that does not answer', () => {
  it('fails its cosignature with a TimeoutError naming the witness, after the configured deadline', async () => {
    const url = await listening(http.createServer(() => {})) // takes the request, never answers
    await withOneEntryLog('silent', async log => {
      const cosigner = witnessCosigner({ log, witnesses: [{ url, vkey: witnessVerifierKey('witness.test/silent', generateSigningKey().publicKey) }], timeoutMs: 200 })
      const outcome = await cosigner.cosign()
      expect(outcome.cosigned).toEqual([])
      expect(outcome.failed).toEqual([{ witness: 'witness.test/silent', reason: `POST ${url}/add-checkpoint: no answer within 200 ms` }])
    })
  })
})

/** A witness configured under its own key that answers every add-checkpoint with `answer(text, keyId)`: `text` the checkpoint text it was sent, `keyId` its key's. */
async function answering (name: string, answer: (text: string, keyId: Uint8Array) => string): Promise<{ url: string, vkey: string }> {
  const vkey = witnessVerifierKey(name, generateSigningKey().publicKey)
  const url = await listening(http.createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/x.tlog.signature' })
      res.end(answer(splitNote(parseAddCheckpoint(body).note).text, parseVerifierKey(vkey).keyId))
    })
  }))
  return { url, vkey }
}

/** A witness key as the coordinator's messages name it: name+key ID in hex. */
function keyName (vkey: string): string {
  const v = parseVerifierKey(vkey)
  return `${v.name}+${toHex(v.keyId)}`
}

describe('a witness whose answer is wrong', () => {
  it('costs only its own cosignature: nothing of its answer is stored, it is reported failed with why, and runtimes trusting it still open the served checkpoint', async () => {
    const other = generateSigningKey()
    const byOther = (name: string, text: string): string => signLine(text, cosignatureSigner(name, other.secretKey, () => 1_700_000_000))
    const honest = await witness('witness.test/honest')
    // Its name and key ID, another key's signature: only verifying the line tells it apart.
    const forged = await answering('witness.test/forged', (text, keyId) => {
      const line = parseSignatureLine(byOther('witness.test/forged', text))
      return `— ${line.name} ${toBase64(concatBytes(keyId, line.signature))}\n`
    })
    // A valid cosignature under its name, but by a key it is not configured with: no line of its own.
    const stranger = await answering('witness.test/stranger', text => byOther('witness.test/stranger', text))
    const empty = await answering('witness.test/empty', () => '')
    const dir = await mkdtemp(join(tmpdir(), 'blockfed-ledger-wrong-answers-'))
    const statuses: WitnessStatus[] = []
    const c = await createCoordinator({ dataDir: dir, port: 0, host: '127.0.0.1', witnesses: [honest, forged, stranger, empty], onWitness: s => { statuses.push(s) } })
    try {
      const url = await c.start()
      c.log.append({ model: 'm', version: 1, manifestCid: 'bafy1', parent: null, time: new Date(0).toISOString() })
      await c.anchor()

      expect(c.log.latest()?.cosigners).toEqual(['witness.test/honest'])
      // Each reason names the check that refused (a missing line would also fail later, as an
      // undefined line, but not as "0 cosignatures by its key").
      const failed = Object.fromEntries(statuses.filter(s => !s.ok).map(s => [s.witness, s.reason]))
      expect(failed).toEqual({
        'witness.test/forged': `its cosignature by ${keyName(forged.vkey)} does not verify`,
        'witness.test/stranger': 'its answer holds 0 cosignatures by its key, expected exactly one',
        'witness.test/empty': `POST ${empty.url}/add-checkpoint: answer is not newline-terminated signature lines`
      })
      expect(statuses.filter(s => s.ok).map(s => s.witness)).toEqual(['witness.test/honest'])
      // A runtime refuses a note with a bad line under a key it trusts: had a wrong answer been
      // stored and served, this would throw even with no cosignature required.
      const served = await ledgerClient({ baseUrl: url }).checkpoint()
      expect(splitNote(served).signatures.map(s => s.name)).toEqual([c.log.origin, 'witness.test/honest'])
      const opened = openTrusted(served, {
        log: ed25519Verifier(c.log.origin, c.identity.signing.publicKey),
        witnesses: [honest, forged, stranger, empty].map(w => parseVerifierKey(w.vkey)),
        minWitnesses: 0
      })
      expect(opened.cosigners).toEqual(['witness.test/honest'])
    } finally {
      await c.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('what the operator is told', () => {
  it('says when a witness starts failing and when it cosigns again, once each, not at every retry', async () => {
    const key = generateSigningKey()
    const name = 'witness.test/flaky'
    let refusals = 2
    const url = await listening(http.createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => { body += c.toString() })
      req.on('end', () => {
        if (refusals-- > 0) { res.writeHead(503); res.end('down for maintenance'); return }
        res.writeHead(200, { 'content-type': 'text/x.tlog.signature' })
        res.end(signLine(splitNote(parseAddCheckpoint(body).note).text, cosignatureSigner(name, key.secretKey, () => 1_700_000_000)))
      })
    }))
    await withOneEntryLog('flaky', async log => {
      const statuses: unknown[] = []
      const cosigner = witnessCosigner({ log, witnesses: [{ url, vkey: witnessVerifierKey(name, key.publicKey) }], onStatus: s => { statuses.push(s) } })
      await cosigner.cosign()
      await cosigner.cosign()
      expect(statuses).toEqual([{ witness: name, url, ok: false, size: 1, reason: expect.stringMatching(/503/) }])
      await cosigner.cosign()
      log.append({ model: 'm', version: 2, manifestCid: 'bafy2', parent: 1, time: new Date(0).toISOString() })
      log.checkpoint()
      await cosigner.cosign()
      expect(statuses.slice(1)).toEqual([{ witness: name, url, ok: true, size: 1 }])
      expect(log.latest()?.cosigners).toEqual([name])
    })
  })
})
