/**
 * Durable writes for the decryptor's key and round files: data fsynced before it counts, and the
 * folder fsynced after a name is created, so that a power cut cannot undo a key or a decided round.
 */
import { open } from 'node:fs/promises'

/** Writes `data` to a file opened with `flag` (e.g. 'wx': only if absent) and fsyncs it. */
export async function writeSynced (path: string, data: string, flag: string): Promise<void> {
  const file = await open(path, flag, 0o600)
  try {
    await file.writeFile(data)
    await file.sync()
  } finally {
    await file.close()
  }
}

/** fsync of the folder, so a new file's name is durable too (POSIX; a no-op where folders cannot be opened). */
export async function syncDir (dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => undefined)
  if (handle === undefined) return
  try {
    await handle.sync().catch(() => undefined)
  } finally {
    await handle.close()
  }
}
