/**
 * A cosignature/v1 signature does not cover the witness's key name, so one witness key listed
 * under two names would let one real cosignature, relabelled under the second name, count twice
 * toward minWitnesses. The config refuses a key listed twice (it refused only repeated names).
 */
import { describe, it, expect } from 'vitest'
import { parseAoeConfig } from '../../../shared/config/aoe.ts'
import { witnessVerifierKey } from '../../../shared/ledger/cosignature.ts'
import { parseVerifierKey, parseSignatureLine, signLine, splitNote } from '../../../shared/ledger/note.ts'
import { toBase64, concatBytes } from '../../../shared/crypto/bytes.ts'
import { openTrusted } from '../../../shared/ledger/verify.ts'
import { aoeExample } from '../../helpers/aoe.ts'
import { entry, fakeLog, logVerifier, witness } from '../../helpers/ledger-fake-log.ts'

describe('one witness key under two names', () => {
  it('does not satisfy minWitnesses 2 with a single witness cosignature', () => {
    const w = witness('witness.test/w1', 9)
    const vkeys = [witnessVerifierKey('witness.test/w1', w.pub), witnessVerifierKey('witness.test/w1-alias', w.pub)]
    let config
    try {
      config = parseAoeConfig({ ...aoeExample, ledger: { witnesses: vkeys, minWitnesses: 2 } })
    } catch {
      return // refused by the config: fine
    }
    const log = fakeLog()
    log.append(entry('m', 1))
    const note = log.note(1, [w.signer])
    const real = parseSignatureLine(note.trimEnd().split('\n').at(-1) as string)
    const alias = parseVerifierKey(vkeys[1] as string)
    const forged = `— ${alias.name} ${toBase64(concatBytes(alias.keyId, real.signature))}\n`
    const witnesses = config.ledger.witnesses.map(v => parseVerifierKey(v))
    const result = (() => {
      try { return openTrusted(note + forged, { log: logVerifier, witnesses, minWitnesses: config.ledger.minWitnesses }) } catch (e) { return e as Error }
    })()
    expect(result instanceof Error, `accepted with cosigners ${JSON.stringify((result as any).cosigners)} though only one witness key signed`).toBe(true)
    void splitNote; void signLine
  })
})
