/**
 * Signing and verifying manifests: Ed25519 over the RFC 8785 canonical bytes; the CID is
 * CIDv1(json, sha2-256) of the same bytes, so a signature covers exactly what the CID names.
 */
import { DEFAULT_MAX_ANSWER_BYTES } from '../client/json-call.ts'
import { IntegrityError, InvalidInputError, TooLargeError } from '../errors/errors.ts'
import { decodeBase64, toBase64 } from '../crypto/bytes.ts'
import { jsonCid } from '../crypto/cid.ts'
import { keyId, sign, verify, type SigningKeyPair } from '../crypto/sign.ts'
import { canonicalBytes } from './canonical.ts'
import { manifestSchema, signedManifestSchema, type Manifest, type SignedManifest } from './schema.ts'

/**
 * Largest manifest signed, in canonical bytes: 1 MiB under the largest coordinator answer a
 * runtime reads (client/json-call.ts), since the signed manifest travels as JSON with its CID and
 * signature around it: a manifest past this bound would be signed, anchored and served, then
 * refused by every runtime (a 7.6 MB ONNX of 350,000 one-float initializers made a 74.5 MB one).
 */
export const MAX_MANIFEST_BYTES = DEFAULT_MAX_ANSWER_BYTES - (1 << 20)

/** Signs `manifest`; throws TooLargeError for one above MAX_MANIFEST_BYTES, which no runtime would take. */
export async function signManifest (manifest: Manifest, key: SigningKeyPair): Promise<SignedManifest> {
  const bytes = canonicalBytes(manifestSchema.parse(manifest))
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new TooLargeError(`manifest ${manifest.model}@${manifest.version}: ${bytes.length} bytes (${manifest.tensors.length} tensors, ${manifest.blocks.length} blocks), more than the ${MAX_MANIFEST_BYTES} a runtime accepts; merge small tensors into fewer, larger ones`)
  }
  return {
    manifest,
    cid: await jsonCid(bytes),
    signature: { alg: 'Ed25519', keyId: await keyId(key.publicKey), value: toBase64(sign(bytes, key.secretKey)) }
  }
}

/**
 * Parses a signed manifest from outside and checks, in order: schema, CID over the canonical
 * bytes, signer key id, signature. Returns the manifest only when all hold.
 */
export async function verifySignedManifest (input: unknown, publicKey: Uint8Array): Promise<SignedManifest> {
  const parsed = signedManifestSchema.safeParse(input)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new InvalidInputError(`manifest: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`, { cause: parsed.error })
  }
  const signed = parsed.data
  const bytes = canonicalBytes(signed.manifest)
  const cid = await jsonCid(bytes)
  if (cid !== signed.cid) throw new IntegrityError(`manifest ${signed.manifest.model}@${signed.manifest.version}: content hashes to ${cid}, not the claimed ${signed.cid}`)
  const expectedKeyId = await keyId(publicKey)
  if (signed.signature.keyId !== expectedKeyId) {
    throw new IntegrityError(`manifest ${signed.manifest.model}@${signed.manifest.version}: signed by key ${signed.signature.keyId}, expected the coordinator key ${expectedKeyId}`)
  }
  if (!verify(decodeBase64(signed.signature.value, `manifest ${signed.manifest.model}@${signed.manifest.version}: signature.value`, { error: IntegrityError }), bytes, publicKey)) {
    throw new IntegrityError(`manifest ${signed.manifest.model}@${signed.manifest.version}: Ed25519 signature does not verify`)
  }
  return signed
}
