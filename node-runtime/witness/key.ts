/**
 * The witness's Ed25519 cosigning key: 32 random bytes created on first start in the data dir
 * with mode 0600, then reused, so its vkey stays the one logs and clients were configured with.
 * The key is created with createFileAtomic (a synced temporary file hard-linked into place, then
 * the folder synced): link() refuses an existing name, so two processes starting at once agree
 * on one complete key, and a power cut cannot lose a key already handed out.
 */
import { readFile, stat } from 'node:fs/promises'
import { ed25519 } from '@noble/curves/ed25519.js'
import { InvalidConfigError } from '../../shared/errors/errors.ts'
import { createFileAtomic } from '../atomic-file.ts'

/** Reads the key at `path`, creating it first if there is none. */
export async function loadOrCreateWitnessKey (path: string): Promise<Uint8Array> {
  try {
    await stat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    await createKey(path)
  }
  // A key others can read is a key others may have: refuse it rather than cosign with it.
  const { mode } = await stat(path)
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new InvalidConfigError(`${path}: the witness key is readable by others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`)
  }
  const key = new Uint8Array(await readFile(path))
  if (key.length !== 32) throw new InvalidConfigError(`${path}: expected a 32-byte Ed25519 key, found ${key.length} bytes`)
  return key
}

async function createKey (path: string): Promise<void> {
  const secret = ed25519.utils.randomSecretKey()
  try {
    // False when another process created it first: its key is the one read back.
    await createFileAtomic(path, secret, 0o600)
  } finally {
    secret.fill(0)
  }
}
