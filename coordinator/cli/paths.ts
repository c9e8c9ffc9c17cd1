/**
 * File and folder options checked where the command starts, naming the option: a file given
 * where a folder goes was met only after a whole download (`pull --out`) or as a bare EEXIST,
 * ENOTDIR or ENOENT, and a `--home` another process holds only as its cache's own words.
 */
import { access, constants, lstat, mkdir, mkdtemp, readFile, rm, rmdir, stat } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { ConflictError, InvalidInputError, UnavailableError } from '../../shared/errors/errors.ts'
import { SQLITE_BUSY } from '../../node-runtime/dir-lock.ts'

/**
 * `path` is a folder, or can be made one: nothing on the way to it is a file, and the nearest
 * folder that exists may be written and takes folders (else a pull met EACCES only after its
 * whole download, or hung).
 */
export async function folderOption (flag: string, path: string): Promise<void> {
  const full = resolve(path)
  for (let at = full; ; at = dirname(at)) {
    let isDirectory: boolean
    try {
      isDirectory = (await stat(at)).isDirectory()
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      // Missing (or under a file, found further up): it is made when needed.
      if ((code === 'ENOENT' || code === 'ENOTDIR') && dirname(at) !== at) continue
      throw new InvalidInputError(`${flag} ${path}: cannot be used as a folder (${code ?? (err as Error).message})`, { cause: err })
    }
    if (isDirectory) {
      try {
        await access(at, constants.W_OK | constants.X_OK)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
        throw new InvalidInputError(`${flag} ${path}: ${at === full ? 'it' : at} cannot be written by this user (${code}); give a folder it may write`, { cause: err })
      }
      if (at !== full) await canMakeFolderIn(flag, path, at)
      return
    }
    throw new InvalidInputError(`${flag} ${path}: ${at === full ? 'it' : at} is a file, not a folder`)
  }
}

/**
 * A folder can be made in `at`: one is made and removed. Some file systems refuse it whatever the
 * mode bits say (/proc, /sys), and there Node's recursive mkdir never returns (Node 24: it retries
 * ENOENT for ever), so a `pull --out /proc/x` hung after its download.
 */
async function canMakeFolderIn (flag: string, path: string, at: string): Promise<void> {
  let probe: string
  try {
    probe = await mkdtemp(join(at, '.blockfed-probe-'))
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    throw new InvalidInputError(`${flag} ${path}: no folder can be made in ${at} (${code}); give a folder on a file system that takes files`, { cause: err })
  }
  await rmdir(probe)
}

/**
 * Starts a service on its data dir, made here: the folders this start makes (the dir, and parents
 * it needed) are removed again if the start fails (a taken port, a bad option found late), so a
 * failed first start leaves no key, database or lock behind. Left as they are (review 46d): a dir
 * that was there, one another start made first (of two starts at once, the one that lost the
 * dir's lock removed the dir the other ran on), and a link (the operator's, to a disk not mounted
 * yet: removed, the next start made a new coordinator identity beside it).
 */
export async function firstStartCleaned<T> (dataDir: string, start: () => Promise<T>): Promise<T> {
  const linked = await lstat(dataDir).then(info => info.isSymbolicLink(), () => false)
  const made = linked ? undefined : await mkdir(dataDir, { recursive: true, mode: 0o700 })
  try {
    return await start()
  } catch (err) {
    if (made !== undefined && !(err instanceof ConflictError)) await rm(made, { recursive: true, force: true })
    throw err
  }
}

/** A text file an option names; a missing or unreadable one is said with the option. */
export async function readOptionFile (flag: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new InvalidInputError(`${flag} ${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a folder, not a file' : `cannot be read (${code ?? (err as Error).message})`}`, { cause: err })
  }
}

/**
 * Runs `task` on a runtime data dir given as `flag`, once it is checked as a folder
 * (folderOption); the disk cache there being held by another process (its SQLite index is busy)
 * is said as that option's folder being in use.
 */
export async function onHome<T> (flag: string, home: string, task: () => Promise<T>): Promise<T> {
  await folderOption(flag, home)
  try {
    return await task()
  } catch (err) {
    if (err instanceof UnavailableError && (err.cause as { errcode?: number } | undefined)?.errcode === SQLITE_BUSY) {
      throw new ConflictError(`${flag} ${home} is in use by another blockfed process (a pull, verify or runtime keeping its cache there): one process at a time per ${flag}; wait for it, or give this one its own ${flag}`, { cause: err })
    }
    throw err
  }
}
