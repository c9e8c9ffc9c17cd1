import { describe, it, expect } from 'vitest'
import { ed25519 } from '@noble/curves/ed25519.js'
import { fromBase64, toBase64 } from '../../../shared/crypto/bytes.ts'
import { IntegrityError, InvalidInputError } from '../../../shared/errors/errors.ts'
import { formatCheckpoint, openCheckpoint, parseCheckpoint, signCheckpoint, type Checkpoint } from '../../../shared/ledger/checkpoint.ts'
import { cosignatureSigner, cosignatureVerifier } from '../../../shared/ledger/cosignature.ts'
import { ed25519Signer, ed25519Verifier, signLine, signNote } from '../../../shared/ledger/note.ts'

// The checkpoint of c2sp.org/tlog-checkpoint's introduction.
const SPEC_TEXT = 'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n'
const ROOT_B64 = 'CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I='
const seeded = (byte: number): Uint8Array => new Uint8Array(32).fill(byte)

describe('checkpoint text', () => {
  it('parses the spec example and formats it back byte for byte', () => {
    const c = parseCheckpoint(SPEC_TEXT)
    expect(c.origin).toBe('example.com/behind-the-sofa')
    expect(c.size).toBe(20852163)
    expect(c.root).toEqual(fromBase64(ROOT_B64))
    expect(c.extensions).toEqual([])
    expect(formatCheckpoint(c)).toBe(SPEC_TEXT)
  })

  it('round-trips extension lines and the empty tree', () => {
    const c: Checkpoint = { origin: 'blockfed.example/ledger', size: 0, root: new Uint8Array(32), extensions: ['ext one', 'x'] }
    expect(formatCheckpoint(c)).toBe(`blockfed.example/ledger\n0\n${toBase64(new Uint8Array(32))}\next one\nx\n`)
    expect(parseCheckpoint(formatCheckpoint(c))).toEqual(c)
    const big = { ...c, size: Number.MAX_SAFE_INTEGER, extensions: [] }
    expect(parseCheckpoint(formatCheckpoint(big)).size).toBe(Number.MAX_SAFE_INTEGER)
  })

  it('parses strictly, naming the part that is wrong', () => {
    const cases: Array<[string, RegExp]> = [
      ['example.com/x\n1\n' + ROOT_B64, /end in a newline/],
      ['example.com/x\n1\n', /at least 3 lines/],
      ['\n1\n' + ROOT_B64 + '\n', /origin: must be a non-empty line/],
      ['ex\tample\n1\n' + ROOT_B64 + '\n', /origin: must not contain/],
      ['example.com/x\n01\n' + ROOT_B64 + '\n', /size "01": expected a decimal number without leading zeros/],
      ['example.com/x\n00\n' + ROOT_B64 + '\n', /size "00"/],
      ['example.com/x\n-1\n' + ROOT_B64 + '\n', /size "-1"/],
      ['example.com/x\n+1\n' + ROOT_B64 + '\n', /size "\+1"/],
      ['example.com/x\n 1\n' + ROOT_B64 + '\n', /size " 1"/],
      ['example.com/x\n1.0\n' + ROOT_B64 + '\n', /size "1.0"/],
      ['example.com/x\n0x10\n' + ROOT_B64 + '\n', /size "0x10"/],
      ['example.com/x\n\n' + ROOT_B64 + '\n', /size ""/],
      ['example.com/x\n9007199254740992\n' + ROOT_B64 + '\n', /larger than 2\^53/],
      ['example.com/x\n1\n' + toBase64(new Uint8Array(31)) + '\n', /root: expected 32 bytes, got 31/],
      ['example.com/x\n1\n' + toBase64(new Uint8Array(33)) + '\n', /root: expected 32 bytes, got 33/],
      ['example.com/x\n1\n' + ROOT_B64.slice(0, -1) + '\n', /root: not canonical padded base64/],
      ['example.com/x\n1\n' + ROOT_B64.slice(0, -2) + 'J=\n', /root: not/], // non-zero padding bits
      ['example.com/x\n1\n' + ROOT_B64.replace('/', '_') + '\n', /root/],
      ['example.com/x\n1\n\n', /root/],
      ['example.com/x\n1\n' + ROOT_B64 + '\n\n', /extension 0: must be a non-empty line/],
      ['example.com/x\n1\n' + ROOT_B64 + '\next\n\nmore\n', /extension 1/]
    ]
    for (const [text, message] of cases) {
      expect(() => parseCheckpoint(text), JSON.stringify(text)).toThrow(InvalidInputError)
      expect(() => parseCheckpoint(text), JSON.stringify(text)).toThrow(message)
    }
  })

  it('refuses to format what would not parse back', () => {
    const ok: Checkpoint = { origin: 'o', size: 1, root: new Uint8Array(32), extensions: [] }
    expect(() => formatCheckpoint({ ...ok, origin: '' })).toThrow(/origin/)
    expect(() => formatCheckpoint({ ...ok, origin: 'a\nb' })).toThrow(/origin/)
    expect(() => formatCheckpoint({ ...ok, size: -1 })).toThrow(/size/)
    expect(() => formatCheckpoint({ ...ok, size: 1.5 })).toThrow(/size/)
    expect(() => formatCheckpoint({ ...ok, size: 2 ** 53 })).toThrow(/size/)
    expect(() => formatCheckpoint({ ...ok, root: new Uint8Array(31) })).toThrow(/root/)
    expect(() => formatCheckpoint({ ...ok, extensions: [''] })).toThrow(/extension 0/)
  })
})

describe('signed checkpoints', () => {
  const origin = 'blockfed.example/ledger'
  const log = ed25519Signer(origin, seeded(1))
  const logVerifier = ed25519Verifier(origin, ed25519.getPublicKey(seeded(1)))
  const w1 = cosignatureSigner('w1.example', seeded(2), () => 1_700_000_000)
  const w1v = cosignatureVerifier('w1.example', ed25519.getPublicKey(seeded(2)))
  const w2v = cosignatureVerifier('w2.example', ed25519.getPublicKey(seeded(3)))
  const c: Checkpoint = { origin, size: 7, root: new Uint8Array(32).fill(9), extensions: [] }

  it('opens with the log key, listing the witnesses whose cosignatures verified', () => {
    const note = signCheckpoint(c, log)
    const opened = openCheckpoint(note, logVerifier)
    expect(opened.checkpoint).toEqual(c)
    expect(opened.cosigners).toEqual([])
    const cosigned = note + signLine(formatCheckpoint(c), w1)
    const withWitness = openCheckpoint(cosigned, logVerifier, [w1v, w2v])
    expect(withWitness.cosigners).toEqual(['w1.example'])
    expect(withWitness.note).toBe(cosigned)
    expect(withWitness.lines).toHaveLength(2)
  })

  it('counts a witness listed under two keys (a rotation) once toward a quorum', () => {
    const w1rotated = cosignatureSigner('w1.example', seeded(4), () => 1_700_000_000)
    const w1rotatedV = cosignatureVerifier('w1.example', ed25519.getPublicKey(seeded(4)))
    const text = formatCheckpoint(c)
    const cosigned = signCheckpoint(c, log) + signLine(text, w1) + signLine(text, w1rotated)
    expect(openCheckpoint(cosigned, logVerifier, [w1v, w1rotatedV, w2v]).cosigners).toEqual(['w1.example'])
  })

  it('counts a key listed under two names once: a cosignature relabelled with the other name does not make two (review 42a L1)', () => {
    const key = ed25519.getPublicKey(seeded(7))
    const text = formatCheckpoint(c)
    const line = signLine(text, cosignatureSigner('w.example/a', seeded(7), () => 1_700_000_000)).trimEnd()
    // The same signature bytes under the other name and that name's key ID (a cosignature does not cover the name).
    const other = cosignatureVerifier('w.example/b', key)
    const signature = fromBase64(line.slice(line.lastIndexOf(' ') + 1)).slice(4)
    const relabelled = `\u2014 w.example/b ${toBase64(new Uint8Array([...other.keyId, ...signature]))}`
    const note = `${signCheckpoint(c, log)}${line}\n${relabelled}\n`
    // Both lines verify, each under its name; the quorum counts the one key once.
    expect(openCheckpoint(note, logVerifier, [cosignatureVerifier('w.example/a', key), other]).cosigners).toEqual(['w.example/a'])
    expect(openCheckpoint(note, logVerifier, [other]).cosigners).toEqual(['w.example/b'])
  })

  it('requires the log signature, even when a witness cosigned', () => {
    const onlyWitness = signNote(formatCheckpoint(c), [w1])
    expect(() => openCheckpoint(onlyWitness, logVerifier, [w1v])).toThrow(IntegrityError)
    expect(() => openCheckpoint(onlyWitness, logVerifier, [w1v])).toThrow(/no signature by the log key/)
    const otherLog = signCheckpoint(c, ed25519Signer(origin, seeded(8)))
    expect(() => openCheckpoint(otherLog, logVerifier)).toThrow(/no signature by the log key/)
  })

  it('refuses a bad cosignature by a known witness, and a checkpoint text changed after signing', () => {
    const note = signCheckpoint(c, log)
    const forged = signLine(formatCheckpoint({ ...c, size: 8 }), w1)
    expect(() => openCheckpoint(note + forged, logVerifier, [w1v])).toThrow(/signature by w1.example\+[0-9a-f]{8} does not verify/)
    expect(openCheckpoint(note + forged, logVerifier).cosigners).toEqual([]) // not a known witness: ignored
    const changed = note.replace('\n7\n', '\n8\n')
    expect(() => openCheckpoint(changed, logVerifier)).toThrow(IntegrityError)
  })

  it('refuses a validly signed note whose text is not a checkpoint', () => {
    const note = signNote('just\ntext\n', [log])
    expect(() => openCheckpoint(note, logVerifier)).toThrow(InvalidInputError)
  })
})
