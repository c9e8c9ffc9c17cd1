/**
 * A runtime's Ed25519 identity for rounds: created on first use under `<data>/keys/` (mode
 * 0600, whole, by readOrCreateKey: of runtimes sharing a data dir that start at once, one
 * creates it and the others read that same key). Its public key is the client's id; it answers
 * the coordinator's challenge and signs every upload and key advertisement.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { generateSigningKey, signingKeyFromSecret, type SigningKeyPair } from '../../shared/crypto/sign.ts'
import { readOrCreateKey } from '../key-file.ts'

export async function clientIdentity (dataDir: string): Promise<SigningKeyPair> {
  const dir = join(dataDir, 'keys')
  await mkdir(dir, { recursive: true, mode: 0o700 })
  return signingKeyFromSecret(await readOrCreateKey(join(dir, 'client.ed25519'), () => generateSigningKey().secretKey))
}
