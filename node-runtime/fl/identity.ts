/**
 * A runtime's Ed25519 identity for rounds: created on first use under `<data>/keys/` (mode
 * 0600). Its public key is the client's id; it answers the coordinator's challenge and signs
 * every upload and key advertisement.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateSigningKey, signingKeyFromSecret, type SigningKeyPair } from '../../shared/crypto/sign.ts'
import { IntegrityError } from '../../shared/errors/errors.ts'

export async function clientIdentity (dataDir: string): Promise<SigningKeyPair> {
  const dir = join(dataDir, 'keys')
  const path = join(dir, 'client.ed25519')
  await mkdir(dir, { recursive: true, mode: 0o700 })
  try {
    const secret = new Uint8Array(await readFile(path))
    if (secret.length !== 32) throw new IntegrityError(`${path}: expected a 32-byte key, found ${secret.length} bytes`)
    return signingKeyFromSecret(secret)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const key = generateSigningKey()
  try {
    await writeFile(path, key.secretKey, { mode: 0o600, flag: 'wx' })
    return key
  } catch (err) {
    // Another process of the same runtime created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return await clientIdentity(dataDir)
    throw err
  }
}
