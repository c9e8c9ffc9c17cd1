/**
 * Whole-file replacement that a crash cannot tear: write a temporary file beside the target,
 * fsync it, rename it over the target (atomic on POSIX), so readers see the old or the new file.
 */
import { open, readFile, rename, rm } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'

export async function writeFileAtomic (path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
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
  try {
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
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
