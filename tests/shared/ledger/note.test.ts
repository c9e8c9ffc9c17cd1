import { describe, it, expect } from 'vitest'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { ed25519 } from '@noble/curves/ed25519.js'
import { fromHex, toBase64, toHex } from '../../../shared/crypto/bytes.ts'
import { IntegrityError, InvalidInputError } from '../../../shared/errors/errors.ts'
import {
  ed25519Signer, ed25519Verifier, inspectNote, openNote, parseSignatureLine, parseVerifierKey, signLine, signNote, verifierKey
} from '../../../shared/ledger/note.ts'
import { cosignatureSigner, cosignatureTime, cosignatureVerifier, witnessVerifierKey } from '../../../shared/ledger/cosignature.ts'

interface Vector { name: string, vkey: string, secretKey?: string, text: string, signatureLine: string }
const vectors: Vector[] = JSON.parse(readFileSync(new URL('../../vectors/c2sp-signed-note.json', import.meta.url), 'utf8'))
const [peter, enoch, c2sp] = vectors as [Vector, Vector, Vector]
const note = (text: string, ...lines: string[]): string => `${text}\n${lines.map(l => `${l}\n`).join('')}`

/** Key ID computed independently: node:crypto over the bytes the spec lists. */
const referenceKeyId = (name: string, type: number, publicKey: Uint8Array): string =>
  createHash('sha256').update(Buffer.concat([Buffer.from(`${name}\n`), Buffer.from([type]), publicKey])).digest('hex').slice(0, 8)

const seeded = (byte: number): Uint8Array => new Uint8Array(32).fill(byte)

describe('signed-note vectors (golang.org/x/mod sumdb/note, c2sp.org/signed-note)', () => {
  for (const v of vectors) {
    it(v.name, () => {
      const verifier = parseVerifierKey(v.vkey)
      const [name, idHex] = v.vkey.split('+') as [string, string]
      expect(verifier.name).toBe(name)
      expect(verifier.type).toBe('ed25519')
      expect(toHex(verifier.keyId)).toBe(idHex)
      expect(referenceKeyId(name, 0x01, verifier.publicKey)).toBe(idHex)
      expect(verifierKey(name, verifier.publicKey)).toBe(v.vkey)
      const opened = openNote(note(v.text, v.signatureLine), [verifier])
      expect(opened.text).toBe(v.text)
      expect(opened.verified.map(x => x.name)).toEqual([name])
      expect(opened.lines).toEqual([v.signatureLine])
      if (v.secretKey !== undefined) {
        const signer = ed25519Signer(name, fromHex(v.secretKey))
        expect(toHex(signer.keyId)).toBe(idHex)
        // Ed25519 is deterministic: the same bytes as Go's sumdb/note.
        expect(signNote(v.text, [signer])).toBe(note(v.text, v.signatureLine))
        expect(signLine(v.text, signer)).toBe(`${v.signatureLine}\n`)
      }
    })
  }
})

describe('openNote', () => {
  const peterKey = parseVerifierKey(peter.vkey)
  const enochKey = parseVerifierKey(enoch.vkey)
  const both = note(peter.text, peter.signatureLine, enoch.signatureLine)

  it('keeps lines by unknown keys unverified, verifies known ones (TestOpen)', () => {
    const one = openNote(both, [peterKey])
    expect(one.verified.map(v => v.name)).toEqual(['PeterNeumann'])
    expect(one.lines).toEqual([peter.signatureLine, enoch.signatureLine])
    const two = openNote(both, [enochKey, peterKey])
    expect(two.verified.map(v => v.name)).toEqual(['PeterNeumann', 'EnochRoot'])
  })

  it('refuses a note no known key signed, which inspectNote returns with nothing verified', () => {
    expect(() => openNote(both, [])).toThrow(IntegrityError)
    expect(() => openNote(both, [parseVerifierKey(c2sp.vkey)])).toThrow(/no signature by a known key/)
    expect(inspectNote(both, []).verified).toEqual([])
  })

  it('matches keys by name AND key ID: a same-named other key is an unknown key', () => {
    const impostor = ed25519Verifier('PeterNeumann', ed25519.getPublicKey(seeded(9)))
    expect(toHex(impostor.keyId)).not.toBe('c74f20a3')
    expect(() => openNote(note(peter.text, peter.signatureLine), [impostor])).toThrow(/no signature by a known key/)
    expect(openNote(both, [impostor, enochKey]).verified.map(v => v.name)).toEqual(['EnochRoot'])
  })

  it('throws IntegrityError for tampered text or signature by a known key', () => {
    const tamperedText = peter.text.replace('cryptography', 'cryptograph')
    expect(() => openNote(note(tamperedText, peter.signatureLine), [peterKey])).toThrow(IntegrityError)
    // Go's TestOpen: "ABCD" spliced into the base64 keeps it valid base64 but breaks the signature.
    const spliced = peter.signatureLine.slice(0, 60) + 'ABCD' + peter.signatureLine.slice(60)
    expect(() => openNote(note(peter.text, spliced), [peterKey])).toThrow(/signature by PeterNeumann\+c74f20a3 does not verify/)
    const raw = parseSignatureLine(peter.signatureLine)
    const flipped = raw.signature.slice(); flipped[10] = (flipped[10] as number) ^ 1
    const flippedLine = `— PeterNeumann ${toBase64(new Uint8Array([...raw.keyId, ...flipped]))}`
    expect(() => openNote(note(peter.text, flippedLine), [peterKey])).toThrow(IntegrityError)
    // A bad signature by a known key rejects the note even next to a good one.
    expect(() => openNote(note(peter.text, peter.signatureLine, flippedLine), [peterKey])).toThrow(IntegrityError)
  })

  it('throws InvalidInputError for malformed notes (TestOpen badMsgs)', () => {
    const text = peter.text
    const sig = `${peter.signatureLine}\n`
    const bad = [
      text,
      text + '\n',
      text + '\n' + sig.slice(0, -1),
      '\x01' + text + '\n' + sig,
      '\ud800' + text + '\n' + sig, // a lone surrogate: not encodable as UTF-8 (Go: "\xff")
      text + '\n' + '— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n',
      text + '\n' + sig + 'Unexpected line.\n',
      text + '\n' + '— PeterNeumann\n',
      text + '\n' + '— PeterNeumann AAAA\n', // 3 bytes: no room for a key ID and a signature
      text + '\n' + '— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM\n', // unpadded
      text + '\n' + '- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n',
      text + '\n' + sig.repeat(101)
    ]
    for (const msg of bad) expect(() => openNote(msg, [peterKey]), JSON.stringify(msg).slice(0, 120)).toThrow(InvalidInputError)
    // 100 lines (Go's limit) and repeated lines are fine; repeats are listed once.
    const many = openNote(text + '\n' + sig.repeat(100), [peterKey])
    expect(many.lines).toEqual([peter.signatureLine])
    // Each distinct line is verified once: the repeats cost no more verifications.
    let verifications = 0
    const counting = { ...peterKey, verify: (m: Uint8Array, s: Uint8Array) => { verifications++; return peterKey.verify(m, s) } }
    openNote(text + '\n' + sig.repeat(100), [counting])
    expect(verifications).toBe(1)
  })

  it('splits at the LAST blank line: a text may hold blank lines', () => {
    const signer = ed25519Signer('example.com/k', seeded(3))
    const text = 'a\n\nb\n\n'
    const opened = openNote(signNote(text, [signer]), [ed25519Verifier('example.com/k', ed25519.getPublicKey(seeded(3)))])
    expect(opened.text).toBe(text)
  })
})

describe('signNote', () => {
  const signer = ed25519Signer('example.com/log', seeded(1))
  const verifier = ed25519Verifier('example.com/log', ed25519.getPublicKey(seeded(1)))

  it('round-trips with several signers, in order', () => {
    const other = ed25519Signer('example.com/other', seeded(2))
    const signed = signNote('hello\nworld\n', [signer, other])
    expect(signed.startsWith('hello\nworld\n\n— example.com/log ')).toBe(true)
    const opened = openNote(signed, [verifier, ed25519Verifier('example.com/other', ed25519.getPublicKey(seeded(2)))])
    expect(opened.verified.map(v => v.name)).toEqual(['example.com/log', 'example.com/other'])
    // Independent check of the line: base64(keyID ‖ RFC 8032 signature over the text).
    const expected = toBase64(new Uint8Array([...signer.keyId, ...ed25519.sign(new TextEncoder().encode('hello\nworld\n'), seeded(1))]))
    expect(opened.lines[0]).toBe(`— example.com/log ${expected}`)
  })

  it('refuses what would not open', () => {
    expect(() => signNote('no newline', [signer])).toThrow(/must end in a newline/)
    expect(() => signNote('', [signer])).toThrow(InvalidInputError)
    expect(() => signNote('a\tb\n', [signer])).toThrow(/control characters/)
    expect(() => signNote('hi\n', [])).toThrow(/at least one signer/)
    expect(() => ed25519Signer('a b', seeded(1))).toThrow(/key name/)
    expect(() => ed25519Signer('a+b', seeded(1))).toThrow(/key name/)
    expect(() => ed25519Signer('a\u00a0b', seeded(1))).toThrow(/key name/)
    expect(() => ed25519Signer('', seeded(1))).toThrow(/key name/)
    // Names are bounded, so 100 signature lines stay inside the 64 KiB a client reads.
    expect(() => ed25519Signer('w'.repeat(257), seeded(1))).toThrow('257 bytes, at most 256')
    expect(() => ed25519Signer('é'.repeat(129), seeded(1))).toThrow('258 bytes, at most 256')
    expect(ed25519Signer('w'.repeat(256), seeded(1)).name).toHaveLength(256)
    expect(() => openNote(`hi\n\n— ${'w'.repeat(300)} ${toBase64(new Uint8Array(68))}\n`, [])).toThrow('300 bytes, at most 256')
    expect(() => ed25519Signer('ok', new Uint8Array(31))).toThrow(/secretKey/)
    expect(() => signNote('hi\n', [{ ...signer, keyId: new Uint8Array(3) }])).toThrow(/keyId must be 4 bytes/)
  })
})

describe('parseVerifierKey', () => {
  it('rejects every substring and every one-character change of a vkey (TestNewVerifier)', () => {
    const vkey = peter.vkey
    for (let i = 0; i <= vkey.length; i++) {
      for (let j = i + 1; j <= vkey.length; j++) {
        if (i === 0 && j === vkey.length) continue
        expect(() => parseVerifierKey(vkey.slice(i, j)), vkey.slice(i, j)).toThrow(InvalidInputError)
      }
    }
    for (let i = 0; i < vkey.length; i++) {
      const changed = vkey.slice(0, i) + String.fromCharCode(vkey.charCodeAt(i) + 1) + vkey.slice(i + 1)
      expect(() => parseVerifierKey(changed), changed).toThrow(InvalidInputError)
    }
  })

  it('names what is wrong', () => {
    // From Go's TestNewVerifier: a longer key and an unknown type, each with a matching key ID.
    // The first ends in non-zero padding bits, which Go tolerates and strict base64 does not.
    expect(() => parseVerifierKey('PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==')).toThrow(/not base64/)
    const long = new Uint8Array(36).fill(7)
    expect(() => parseVerifierKey(`long+${referenceKeyId('long', 0x01, long)}+${toBase64(new Uint8Array([0x01, ...long]))}`)).toThrow(/32 bytes, got 36/)
    expect(() => parseVerifierKey('PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW')).toThrow(/unsupported signature type 0x65/)
    expect(() => parseVerifierKey('PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW')).toThrow(/key ID does not match/)
    expect(() => parseVerifierKey('PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW')).toThrow(/8 lowercase hex/)
    expect(() => parseVerifierKey('PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T!')).toThrow(/base64/)
    expect(() => parseVerifierKey('PeterNeumann')).toThrow(/expected <name>\+<hex key ID>\+<base64 key>/)
    expect(() => parseVerifierKey('Peter Neumann+c74f20a3+ARpc')).toThrow(/name/)
    expect(() => parseVerifierKey(42 as unknown as string)).toThrow(/vkey: must be a string/)
  })
})

describe('cosignature/v1 (c2sp.org/tlog-cosignature)', () => {
  // The checkpoint and timestamp of the spec's "Ed25519 signed message" example.
  const checkpointText = 'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n'
  const signedMessage = 'cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n'
  const name = 'witness.example.com/w1'
  const secret = seeded(4)
  const publicKey = ed25519.getPublicKey(secret)
  const signer = cosignatureSigner(name, secret, () => 1679315147)

  it('uses key type 0x04, distinct from the Ed25519 note key of the same name and key', () => {
    expect(toHex(signer.keyId)).toBe(referenceKeyId(name, 0x04, publicKey))
    expect(toHex(signer.keyId)).not.toBe(toHex(ed25519Verifier(name, publicKey).keyId))
    const vkey = witnessVerifierKey(name, publicKey)
    expect(vkey).toBe(`${name}+${referenceKeyId(name, 0x04, publicKey)}+${toBase64(new Uint8Array([0x04, ...publicKey]))}`)
    const parsed = parseVerifierKey(vkey)
    expect(parsed.type).toBe('cosignature/v1')
    expect(parsed.publicKey).toEqual(publicKey)
  })

  it('signs the timestamped message the spec spells out, and verifies', () => {
    const line = signLine(checkpointText, signer)
    const { keyId, signature } = parseSignatureLine(line)
    expect(keyId).toEqual(signer.keyId)
    expect(signature.length).toBe(72)
    expect(toHex(signature.subarray(0, 8))).toBe(1679315147n.toString(16).padStart(16, '0'))
    expect(signature.subarray(8)).toEqual(ed25519.sign(new TextEncoder().encode(signedMessage), secret))
    expect(cosignatureTime(line)).toBe(1679315147)

    const logSigner = ed25519Signer('example.com/behind-the-sofa', seeded(5))
    const cosigned = signNote(checkpointText, [logSigner, signer])
    const witness = parseVerifierKey(witnessVerifierKey(name, publicKey))
    expect(openNote(cosigned, [witness]).verified.map(v => v.name)).toEqual([name])
    // An Ed25519 (0x01) verifier of the same key does not match the line at all.
    expect(() => openNote(cosigned, [ed25519Verifier(name, publicKey)])).toThrow(/no signature by a known key/)
  })

  it('refuses a changed timestamp, a changed text and an out-of-range timestamp', () => {
    const verifier = cosignatureVerifier(name, publicKey)
    const message = new TextEncoder().encode(checkpointText)
    const sig = signer.sign(message)
    expect(verifier.verify(message, sig)).toBe(true)
    const later = sig.slice(); later[7] = (later[7] as number) + 1
    expect(verifier.verify(message, later)).toBe(false)
    expect(verifier.verify(new TextEncoder().encode(checkpointText.replace('20852163', '20852164')), sig)).toBe(false)
    expect(verifier.verify(message, sig.subarray(8))).toBe(false)
    // Signed over "time 9223372036854775808" (2^63): well-formed, but the spec caps it at 2^63 − 1.
    const stamp = new Uint8Array(8); new DataView(stamp.buffer).setBigUint64(0, 1n << 63n)
    const huge = new Uint8Array([...stamp, ...ed25519.sign(new TextEncoder().encode(`cosignature/v1\ntime ${1n << 63n}\n${checkpointText}`), secret)])
    expect(verifier.verify(message, huge)).toBe(false)
  })

  it('refuses a clock in milliseconds or at zero', () => {
    expect(() => cosignatureSigner(name, secret, () => 1679315147000).sign(new Uint8Array(1))).toThrow(/POSIX seconds/)
    expect(() => cosignatureSigner(name, secret, () => 0).sign(new Uint8Array(1))).toThrow(/POSIX seconds/)
    expect(() => cosignatureTime(peter.signatureLine)).toThrow(/expected 72 bytes/)
  })
})
