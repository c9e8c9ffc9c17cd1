/**
 * The public description of a decryptor's key (`GET /v1/paillier/key`) and its checked reading
 * on the client side: the client recomputes the fingerprint and the packing layout rather than
 * trusting the advertised ones.
 */
import { IntegrityError } from '../../shared/errors/errors.ts'
import { publicKeyFromN, publicKeyId, type PaillierPublicKey } from './keys.ts'
import { packingLayout, type PackingLayout } from './layout.ts'
import type { PaillierKeyInfo } from './schemas.ts'
import { ciphertextWidth } from './wire.ts'

export interface DecryptorKey {
  publicKey: PaillierPublicKey
  layout: PackingLayout
  keyId: string
  minClients: number
}

/** What a decryptor publishes about its key. */
export async function describeKey (publicKey: PaillierPublicKey, layout: PackingLayout, minClients: number): Promise<PaillierKeyInfo> {
  return {
    scheme: 'paillier-n+1',
    n: publicKey.n.toString(16),
    bits: publicKey.bits,
    keyId: await publicKeyId(publicKey),
    maxClients: layout.maxClients,
    minClients,
    slotBits: layout.slotBits,
    slotsPerCiphertext: layout.slotsPerCiphertext,
    ciphertextBytes: ciphertextWidth(publicKey)
  }
}

/**
 * Reads a published key description, recomputing everything derivable; `expectedKeyId` pins the
 * key (a coordinator relaying the key could otherwise substitute its own and read every update).
 */
export async function readKeyInfo (info: PaillierKeyInfo, expectedKeyId?: string): Promise<DecryptorKey> {
  const publicKey = publicKeyFromN(BigInt('0x' + info.n))
  const keyId = await publicKeyId(publicKey)
  if (keyId !== info.keyId) throw new IntegrityError(`paillier key: advertised keyId ${info.keyId} does not match n (${keyId})`)
  if (expectedKeyId !== undefined && keyId !== expectedKeyId.toLowerCase()) throw new IntegrityError(`paillier key: keyId ${keyId} is not the pinned ${expectedKeyId}`)
  if (publicKey.bits !== info.bits) throw new IntegrityError(`paillier key: advertised ${info.bits} bits, n has ${publicKey.bits}`)
  const layout = packingLayout(publicKey, info.maxClients)
  if (layout.slotBits !== info.slotBits || layout.slotsPerCiphertext !== info.slotsPerCiphertext || ciphertextWidth(publicKey) !== info.ciphertextBytes) {
    throw new IntegrityError('paillier key: advertised packing layout does not follow from n and maxClients')
  }
  if (info.minClients > info.maxClients) throw new IntegrityError(`paillier key: minClients ${info.minClients} exceeds maxClients ${info.maxClients}`)
  return { publicKey, layout, keyId, minClients: info.minClients }
}
