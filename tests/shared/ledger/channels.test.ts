/**
 * Signed release channels (shared/ledger/channels.ts, review 42a M2): a runtime acts only on a
 * channels answer the coordinator key signed for its model, and never on one older than it took.
 */
import { describe, expect, it } from 'vitest'
import { generateSigningKey } from '../../../shared/crypto/sign.ts'
import { LedgerSecurityError } from '../../../shared/errors/errors.ts'
import { signChannels, verifyChannels } from '../../../shared/ledger/channels.ts'
import { toBase64 } from '../../../shared/crypto/bytes.ts'

const key = generateSigningKey()
const channels = { model: 'm', stable: { version: 3, followsLatest: true }, canary: { version: 4, rollout: 0.1 } }
const signed = signChannels(channels, 7, 12, key)
const expected = { model: 'm', seenSeq: 0 }

describe('signed channels', () => {
  it('verifies what the coordinator signed, with its sequence', () => {
    expect(verifyChannels(signed, key.publicKey, expected)).toEqual({ ...channels, seq: 7, logSize: 12, signature: expect.any(String) })
    // The same answer again, or a newer one, is taken after it.
    expect(verifyChannels(signed, key.publicKey, { model: 'm', seenSeq: 7 }).seq).toBe(7)
    // A stable channel set explicitly signs followsLatest false; an answer leaving it out is read as false too.
    const set = signChannels({ ...channels, stable: { version: 3 } }, 8, 12, key)
    expect(verifyChannels(set, key.publicKey, expected).stable).toEqual({ version: 3, followsLatest: false })
  })

  it('refuses every change on the way, an unsigned answer, another model\'s, another key\'s, and an older one', () => {
    const refused = (answer: unknown, why: RegExp, seenSeq = 0): void => {
      expect(() => verifyChannels(answer as typeof signed, key.publicKey, { model: 'm', seenSeq })).toThrow(LedgerSecurityError)
      expect(() => verifyChannels(answer as typeof signed, key.publicKey, { model: 'm', seenSeq })).toThrow(why)
    }
    const notSigned = /is not signed by the coordinator key this runtime trusts/
    refused({ ...signed, stable: { version: 1, followsLatest: false } }, notSigned)
    refused({ ...signed, stable: { ...signed.stable, followsLatest: false } }, notSigned)
    refused({ ...signed, canary: { version: 4, rollout: 1 } }, notSigned)
    refused({ ...signed, canary: null }, notSigned)
    refused({ ...signed, seq: 8 }, notSigned)
    refused({ ...signed, logSize: 13 }, notSigned)
    const { signature: _, ...bare } = signed
    refused(bare, /is not signed \(a coordinator before signed channels, or stripped on the way\)/)
    refused({ ...signed, signature: 'AAAA' }, /has a malformed signature/)
    refused({ ...signed, signature: toBase64(new Uint8Array(64)) }, notSigned)
    expect(() => verifyChannels(signed, key.publicKey, { model: 'other', seenSeq: 0 })).toThrow(/names the model m/)
    expect(() => verifyChannels(signed, generateSigningKey().publicKey, expected)).toThrow(notSigned)
    refused(signed, /is older \(seq 7\) than one already accepted here \(seq 8\): a replay, or the coordinator's database was restored from an older backup \(then delete channels-seen.json/, 8)
  })
})
