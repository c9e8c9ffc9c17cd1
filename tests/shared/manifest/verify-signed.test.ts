/**
 * verifySignedManifest (shared/manifest/sign.ts) is what a runtime trusts a manifest on: the
 * claimed CID must be the hash of the manifest's canonical bytes, and the Ed25519 signature over
 * those bytes must verify under the coordinator key. Review 38b found that no unit or
 * integration test covered either check: dropping the CID check (mutant M1, sign.ts:47) or the
 * signature check (mutant M3, sign.ts:52) survived everything but one e2e file. The signature
 * covers the bytes, not the `cid` field, so a correctly signed manifest presented under another
 * version's CID (the one a ledger entry anchors) must be refused by the CID check alone.
 */
import { describe, it, expect } from 'vitest'
import { decodeBase64, toBase64 } from '../../../shared/crypto/bytes.ts'
import { generateSigningKey, keyId, sign } from '../../../shared/crypto/sign.ts'
import { IntegrityError } from '../../../shared/errors/errors.ts'
import { canonicalBytes } from '../../../shared/manifest/canonical.ts'
import type { SignedManifest } from '../../../shared/manifest/schema.ts'
import { signManifest, verifySignedManifest } from '../../../shared/manifest/sign.ts'
import { testManifest } from '../../helpers/manifest.ts'

const coordinator = generateSigningKey()
const other = generateSigningKey()
const v1 = testManifest({ version: 1 })
const v2 = testManifest({ version: 2, parent: 1 })

/** `signed` with one bit of its signature value flipped (still well-formed base64 of 64 bytes). */
const flipped = (signed: SignedManifest, byte: number): SignedManifest => {
  const value = decodeBase64(signed.signature.value, 'test signature').slice()
  value[byte] = (value[byte] as number) ^ 0x01
  return { ...signed, signature: { ...signed.signature, value: toBase64(value) } }
}

describe('verifySignedManifest', () => {
  it('accepts a manifest signed by the coordinator key under its own CID', async () => {
    const signed = await signManifest(v1, coordinator)
    const verified = await verifySignedManifest(structuredClone(signed), coordinator.publicKey)
    expect(verified.cid).toBe(signed.cid)
    expect(verified.manifest).toEqual(v1)
  })

  it('refuses a correctly signed manifest presented with another version\'s CID', async () => {
    const signed1 = await signManifest(v1, coordinator)
    const signed2 = await signManifest(v2, coordinator)
    expect(signed2.cid).not.toBe(signed1.cid)
    // Manifest, key id and signature of version 1, all genuine; only the claimed CID is version 2's.
    const swapped: SignedManifest = { ...signed1, cid: signed2.cid }
    await expect(verifySignedManifest(swapped, coordinator.publicKey)).rejects.toBeInstanceOf(IntegrityError)
    await expect(verifySignedManifest(swapped, coordinator.publicKey)).rejects.toThrow(`manifest m@1: content hashes to ${signed1.cid}, not the claimed ${signed2.cid}`)
  })

  it('refuses a manifest whose signature has one bit flipped, at any end of the signature', async () => {
    const signed = await signManifest(v1, coordinator)
    for (const byte of [0, 31, 32, 63]) {
      const bad = flipped(signed, byte)
      await expect(verifySignedManifest(bad, coordinator.publicKey), `byte ${byte}`).rejects.toBeInstanceOf(IntegrityError)
      await expect(verifySignedManifest(bad, coordinator.publicKey), `byte ${byte}`).rejects.toThrow('manifest m@1: Ed25519 signature does not verify')
    }
  })

  it('refuses a manifest signed by another key that claims the coordinator\'s key id', async () => {
    const bytes = canonicalBytes(v1)
    const signed = await signManifest(v1, coordinator)
    const forged: SignedManifest = { ...signed, signature: { ...signed.signature, value: toBase64(sign(bytes, other.secretKey)) } }
    expect(forged.signature.keyId).toBe(await keyId(coordinator.publicKey))
    await expect(verifySignedManifest(forged, coordinator.publicKey)).rejects.toThrow('manifest m@1: Ed25519 signature does not verify')
  })

  it('refuses a manifest signed by another key under that key\'s id, naming both keys', async () => {
    const signed = await signManifest(v1, other)
    const message = `manifest m@1: signed by key ${await keyId(other.publicKey)}, expected the coordinator key ${await keyId(coordinator.publicKey)}`
    await expect(verifySignedManifest(signed, coordinator.publicKey)).rejects.toBeInstanceOf(IntegrityError)
    await expect(verifySignedManifest(signed, coordinator.publicKey)).rejects.toThrow(message)
    // The same manifest verifies under the key that did sign it.
    await expect(verifySignedManifest(signed, other.publicKey)).resolves.toMatchObject({ cid: signed.cid })
  })

  it('refuses a manifest whose content was edited after signing, even with its CID recomputed', async () => {
    const signed = await signManifest(v1, coordinator)
    const edited = { ...v1, metadata: { note: 'edited' } }
    const resigned = await signManifest(edited, other) // only to get the honest CID of the edited bytes
    const tampered: SignedManifest = { manifest: edited, cid: resigned.cid, signature: signed.signature }
    await expect(verifySignedManifest(tampered, coordinator.publicKey)).rejects.toThrow('manifest m@1: Ed25519 signature does not verify')
  })
})
