/**
 * A runtime's Ed25519 identity for rounds: created on first use under `<data>/keys/` (mode
 * 0600). Its public key is the client's id; it answers the coordinator's challenge and signs
 * every upload and key advertisement.
 *
 * The key is created with createFileAtomic (a synced temporary file hard-linked into place): a
 * crash cannot leave an empty key file, and of runtimes sharing a data dir that start at once,
 * one creates the file whole and the others read that same key.
 */
import { mkdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { generateSigningKey, signingKeyFromSecret, type SigningKeyPair } from '../../shared/crypto/sign.ts'
import { IntegrityError, InvalidConfigError } from '../../shared/errors/errors.ts'
import { createFileAtomic } from '../atomic-file.ts'

export async function clientIdentity (dataDir: string): Promise<SigningKeyPair> {
  const dir = join(dataDir, 'keys')
  const path = join(dir, 'client.ed25519')
  await mkdir(dir, { recursive: true, mode: 0o700 })
  try {
    return await readIdentity(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const key = generateSigningKey()
  if (await createFileAtomic(path, key.secretKey, 0o600)) return key
  // Another process of the same runtime created it first; link() published it whole: use theirs.
  key.secretKey.fill(0)
  return await readIdentity(path)
}

async function readIdentity (path: string): Promise<SigningKeyPair> {
  // A key others can read is a key others may have (the coordinator's and the witness's alike).
  const { mode } = await stat(path)
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new InvalidConfigError(`${path}: the key is open to group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`)
  }
  const secret = new Uint8Array(await readFile(path))
  if (secret.length !== 32) throw new IntegrityError(`${path}: expected a 32-byte key, found ${secret.length} bytes`)
  return signingKeyFromSecret(secret)
}
