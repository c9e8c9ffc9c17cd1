/**
 * Before the fix, advanceCheckpoint returned the PERSISTED checkpoint (re-opened with minWitnesses 0)
 * whenever the log offers an older one. The persisted checkpoint is per log (shared by every
 * model config on that coordinator, and survives config changes), so a checkpoint accepted under
 * a weaker witness policy (model A: minWitnesses 0) becomes the anchor for a model whose config
 * requires witnesses (model B: minWitnesses 1) — a version in a never-cosigned (possibly forked)
 * part of the log is then accepted for B.
 */
import { describe, it, expect } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { advanceTrusted } from '../../../node-runtime/versions/ledger-trust.ts'
import { verifyAnchor, WitnessQuorumError, type LedgerTrust } from '../../../shared/ledger/verify.ts'
import { concatBytes, toBase64 } from '../../../shared/crypto/bytes.ts'
import type { SignedManifest } from '../../../shared/manifest/schema.ts'
import { entry, fakeLog, logVerifier, witness } from '../../helpers/ledger-fake-log.ts'
import { LedgerSecurityError } from '../../../shared/errors/errors.ts'

/** Runs `test` with a data dir of its own, removed afterwards. */
async function inDataDir (prefix: string, test: (dataDir: string) => Promise<void>): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), prefix))
  try {
    await test(dataDir)
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
}

describe('witness policy vs the persisted checkpoint', () => {
  it('a model requiring a cosignature never verifies against an uncosigned checkpoint', async () => {
    await inDataDir('rl-wb-', async dataDir => {
      const w = witness('witness.test/w1', 9)
      const log = fakeLog()
      for (let v = 1; v <= 5; v++) log.append(entry('b', v))
      const witnessed5 = log.note(5, [w.signer]) // what the witness saw
      for (let v = 6; v <= 10; v++) log.append(entry('b', v)) // only ever shown uncosigned
      const trustA: LedgerTrust = { log: logVerifier, witnesses: [], minWitnesses: 0 }
      const trustB: LedgerTrust = { log: logVerifier, witnesses: [w.verifier], minWitnesses: 1 }

      // Model A (no witness policy) accepts the uncosigned checkpoint 10 and persists it.
      log.serve(log.note(10))
      expect((await advanceTrusted(dataDir, trustA, log.client)).checkpoint.size).toBe(10)

      // Model B requires 1 cosignature; the coordinator serves the old cosigned checkpoint 5.
      log.serve(witnessed5)
      // The offered checkpoint meets B's policy and the persisted one is proven to extend it:
      // B verifies against the offered one.
      const got = await advanceTrusted(dataDir, trustB, log.client)
      expect(got.checkpoint.size).toBe(5)
      // Concretely: b@8 (entry 7, never shown to any witness) must not be anchored under it.
      const b8 = { manifest: { model: 'b', version: 8, parent: 7 }, cid: 'bafyb8' } as unknown as SignedManifest
      const anchored = await verifyAnchor(log.client, got, b8, 7).then(() => true, () => false)
      expect(anchored, 'b@8 anchored for a model requiring 1 cosignature, in a checkpoint no witness cosigned').toBe(false)
      // Whatever comes back is what versions of B are verified against: it must meet B's policy.
      expect(got.cosigners.length, `returned checkpoint ${got.checkpoint.size} cosigned by ${got.cosigners.length}`).toBeGreaterThanOrEqual(1)
    })
  })

  it('a bad line planted under a witness\'s name is not saved, so it cannot lock out a model that requires that witness', async () => {
    await inDataDir('rl-poison-', async dataDir => {
      const w = witness('witness.test/w1', 9)
      const log = fakeLog()
      for (let v = 1; v <= 3; v++) log.append(entry('a', v))
      const trustA: LedgerTrust = { log: logVerifier, witnesses: [], minWitnesses: 0 }
      const trustB: LedgerTrust = { log: logVerifier, witnesses: [w.verifier], minWitnesses: 1 }
      // Served to model A (no witnesses): checkpoint 3 and a junk line in w1's name and key ID
      // (both public, in its verifier key), which A cannot check.
      const junk = `— ${w.verifier.name} ${toBase64(concatBytes(w.verifier.keyId, new Uint8Array(72).fill(1)))}\n`
      log.serve(log.note(3) + junk)
      const a = await advanceTrusted(dataDir, trustA, log.client)
      expect(a.note).toBe(log.note(3))
      // Then an honest checkpoint, cosigned by w1, for model B: before, B re-opened the saved note
      // with w1's key, met the junk line, and refused every checkpoint from then on.
      for (let v = 1; v <= 2; v++) log.append(entry('b', v))
      log.serve(log.note(5, [w.signer]))
      expect((await advanceTrusted(dataDir, trustB, log.client)).checkpoint.size).toBe(5)
      expect((await advanceTrusted(dataDir, trustB, log.client)).cosigners).toEqual([w.verifier.name])
    })
  })

  it('a checkpoint short of its witnesses is a WitnessQuorumError (a runtime keeps its verified version on it)', async () => {
    await inDataDir('rl-quorum-', async dataDir => {
      const w = witness('witness.test/w1', 9)
      const log = fakeLog()
      log.append(entry('b', 1))
      log.serve(log.note(1))
      await expect(advanceTrusted(dataDir, { log: logVerifier, witnesses: [w.verifier], minWitnesses: 1 }, log.client)).rejects.toThrow(WitnessQuorumError)
      // With no cosignature at all, the message names the operator's likely causes (review 40a L14).
      await expect(advanceTrusted(dataDir, { log: logVerifier, witnesses: [w.verifier], minWitnesses: 1 }, log.client)).rejects.toThrow(/cosigned by 0 known witness\(es\) \(none\), 1 required; a witness is down .* without its --witness options/)
    })
  })

  it('a fork served without its cosignatures is still a LedgerSecurityError, not a quiet quorum shortfall (review 51a)', async () => {
    await inDataDir('rl-fork-', async dataDir => {
      const w = witness('witness.test/w1', 9)
      const trust: LedgerTrust = { log: logVerifier, witnesses: [w.verifier], minWitnesses: 1 }
      const honest = fakeLog()
      for (let v = 1; v <= 3; v++) honest.append(entry('b', v))
      honest.serve(honest.note(3, [w.signer]))
      expect((await advanceTrusted(dataDir, trust, honest.client)).checkpoint.size).toBe(3)
      // The honest log grows, its newer checkpoint not yet cosigned: only short of witnesses.
      honest.append(entry('b', 4))
      honest.serve(honest.note(4))
      await expect(advanceTrusted(dataDir, trust, honest.client)).rejects.toThrow(WitnessQuorumError)
      // The same key signs another history, which no witness would cosign.
      const fork = fakeLog()
      for (let v = 1; v <= 4; v++) fork.append(entry('c', v))
      for (const size of [3, 4]) {
        fork.serve(fork.note(size))
        await expect(advanceTrusted(dataDir, trust, fork.client)).rejects.toThrow(LedgerSecurityError)
      }
      // Nothing of either was kept: the cosigned checkpoint 3 still is.
      honest.serve(honest.note(3, [w.signer]))
      expect((await advanceTrusted(dataDir, trust, honest.client)).checkpoint.size).toBe(3)
    })
  })
})
