/**
 * The witness's Ed25519 cosigning key: 32 random bytes created on first start in the data dir
 * with mode 0600, then reused, so its vkey stays the one logs and clients were configured with.
 * The key is written to a temporary file, synced, then hard-linked into place: link() refuses
 * an existing name, so two processes starting at once agree on one complete key.
 */
import { link, open, readFile, stat, unlink } from 'node:fs/promises'
import { ed25519 } from '@noble/curves/ed25519.js'
import { toHex } from '../../shared/crypto/bytes.ts'
import { InvalidConfigError } from '../../shared/errors/errors.ts'

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
  const temp = `${path}.${toHex(globalThis.crypto.getRandomValues(new Uint8Array(8)))}.tmp`
  const secret = ed25519.utils.randomSecretKey()
  const file = await open(temp, 'wx', 0o600)
  try {
    await file.writeFile(secret)
    await file.sync()
  } finally {
    secret.fill(0)
    await file.close()
  }
  try {
    await link(temp, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  } finally {
    await unlink(temp)
  }
}
