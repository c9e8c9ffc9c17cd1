/**
 * Whole-file replacement that a crash cannot tear: write a temporary file beside the target,
 * fsync it, rename it over the target (atomic on POSIX), so readers see the old or the new file.
 */
import { link, lstat, open, readdir, readFile, rename, rm } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { dirname, join } from 'node:path'

export async function writeFileAtomic (path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = await writeTemporary(path, data, mode)
  try {
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
  // The rename is durable only once the folder is: without this a power cut can bring back the
  // old file (a trusted checkpoint, the versions rolled back from), or no file at all.
  await syncDir(dirname(path))
}

/**
 * Creates `path` whole or not at all, and only if it does not exist yet: the data goes to a
 * synced temporary file that is then hard-linked to `path` (link(2) fails with EEXIST rather
 * than replace). Returns false when `path` already existed; first writer wins.
 */
export async function createFileAtomic (path: string, data: string | Uint8Array, mode = 0o644): Promise<boolean> {
  const tmp = await writeTemporary(path, data, mode)
  try {
    await link(tmp, path)
    await syncDir(dirname(path))
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  } finally {
    await rm(tmp, { force: true })
  }
}

/** writeTemporary's names: `<path>.<12 hex digits>.tmp`. */
const TEMPORARY_NAME = /\.[0-9a-f]{12}\.tmp$/

/** Writes `data` to a new, synced file beside `path` (`<path>.<random>.tmp`) and returns its name. */
export async function writeTemporary (path: string, data: string | Uint8Array, mode = 0o644): Promise<string> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`
  const handle = await open(tmp, 'wx', mode)
  try {
    await handle.writeFile(data)
    await handle.sync()
  } catch (err) {
    await handle.close()
    await rm(tmp, { force: true })
    throw err
  }
  await handle.close()
  return tmp
}

/**
 * A temporary no write is still using: a live one lasts as long as one write and fsync, so one
 * this old was left by a crash. Fresher ones are left alone, as another process may be writing
 * them: a runtime's data dir is shared with `blockfed verify` and other runtimes, and a
 * server's holder may be running while a second one starts there (refused only at the lock).
 */
export const STALE_TEMPORARY_MS = 10 * 60_000

/**
 * Removes the temporaries writeTemporary left in `dirs` (not their subfolders) when a crash came
 * between the write and the rename or link: each is a whole second copy of what it was written
 * for, a key among them, and nothing else ever removes it. Only those older than `olderThanMs`
 * are removed. A folder that does not exist is skipped. Returns the paths removed.
 */
export async function removeStaleTemporaries (dirs: string[], olderThanMs = STALE_TEMPORARY_MS): Promise<string[]> {
  const removed: string[] = []
  const now = Date.now()
  for (const dir of dirs) {
    const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return [] as string[]
      throw err
    })
    for (const name of names.filter(n => TEMPORARY_NAME.test(n))) {
      const path = join(dir, name)
      const info = await lstat(path).catch(() => undefined) // removed meanwhile by its writer
      if (info === undefined || !info.isFile() || now - info.mtimeMs < olderThanMs) continue
      await rm(path, { force: true })
      removed.push(path)
    }
  }
  return removed
}

/** fsync of a file or folder; rejects when it cannot be opened or synced. */
export async function fsyncPath (path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** fsync of a folder, so that a name created in it is durable too (POSIX; a no-op where folders cannot be opened or synced). */
export async function syncDir (dir: string): Promise<void> {
  await fsyncPath(dir).catch(() => undefined)
}

/** The file's text, or undefined when it does not exist. */
export async function readIfExists (path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}
