/**
 * A 32-byte secret key in a file of its own (the coordinator's signing and master keys, a
 * runtime's client key, a witness's cosigning key). Created with createFileAtomic (a synced
 * temporary file hard-linked into place): a crash leaves the whole key or none, never an empty
 * file that would stop every later start, and of processes creating it at once, one wins and the
 * others read its key.
 */
import { readFile, stat } from 'node:fs/promises'
import { IntegrityError, InvalidConfigError } from '../shared/errors/errors.ts'
import { createFileAtomic } from './atomic-file.ts'

/** Reads the key at `path`; `create` makes it first (mode 0600) when there is none. */
export async function readOrCreateKey (path: string, create: () => Uint8Array): Promise<Uint8Array> {
  try {
    await stat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    const secret = create()
    try {
      // False when another process created it first: its key is the one read back.
      await createFileAtomic(path, secret, 0o600)
    } finally {
      secret.fill(0)
    }
  }
  // A key others can read is a key others may have: refuse it rather than use it.
  const { mode } = await stat(path)
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new InvalidConfigError(`${path}: the key is open to group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`)
  }
  const bytes = new Uint8Array(await readFile(path))
  if (bytes.length !== 32) throw new IntegrityError(`${path}: expected a 32-byte key, found ${bytes.length} bytes`)
  return bytes
}
