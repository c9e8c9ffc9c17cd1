/**
 * One process per data dir. Two coordinators on one dir would each sign, number and anchor
 * versions from their own view of the database, and each would run the rounds the other left;
 * two decryptors would each keep their own index of whose sums they decrypted
 * (coordinator/decryptor/rounds.ts), so neither would see the other's when refusing a repeated
 * client; two participants' processes on one state dir would each keep their own copy of what was
 * uploaded (fl/given.ts), and one's record would erase the other's.
 *
 * The lock is a small SQLite database held in exclusive locking mode
 * (https://sqlite.org/pragma.html#pragma_locking_mode): its first write takes an OS file lock that
 * the connection never gives back until it is closed, and that the OS drops with the process, so
 * a killed coordinator leaves no stale lock behind. The holder's pid is written beside it only to
 * name it in the refusal (a locked database cannot be read).
 */
import { DatabaseSync } from 'node:sqlite'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { chmod, readdir, readFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { basename, join } from 'node:path'
import { ConflictError, InvalidConfigError } from '../shared/errors/errors.ts'
import { createFileAtomic } from './atomic-file.ts'

/** Result codes (https://sqlite.org/rescode.html): the lock is held, the file is not SQLite's, it cannot be written. */
export const SQLITE_BUSY = 5
const SQLITE_CORRUPT = 11
const SQLITE_NOTADB = 26
const CANNOT_WRITE = new Set([3, 8, 14]) // SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN
const CANNOT_WRITE_FS = new Set(['EACCES', 'EPERM', 'EROFS', 'EISDIR', 'ENOTDIR', 'ENOSPC'])

/** A dir a process may not write in, said with the file it met and what it needs. */
function cannotWrite (dirWord: string, dir: string, what: string, err: unknown, file: string): InvalidConfigError {
  return new InvalidConfigError(`${dirWord} ${dir}: the ${what} cannot write there (${(err as Error).message}, at ${basename(file)}); it needs a ${dirWord} it may create files in`, { cause: err })
}

export interface DataDirLock {
  release: () => void
}

function holderOf (path: string): string {
  try {
    const text = readFileSync(path, 'utf8').trim().slice(0, 200)
    return text === '' ? '' : ` (${text})`
  } catch {
    return ''
  }
}

/** How the refusals name the dir, and the option that gives a process its own. */
const NAMES = {
  coordinator: { dir: 'data dir', own: '--data' },
  decryptor: { dir: 'data dir', own: '--data' },
  participant: { dir: 'state dir', own: 'stateDir' }
} as const

/** Takes the dir for this process (`<dir>/<what>.lock`), or throws ConflictError naming the holder. */
export function lockDataDir (dir: string, what: keyof typeof NAMES): DataDirLock {
  const names = NAMES[what]
  const holderFile = join(dir, `${what}.pid`)
  const lockFile = join(dir, `${what}.lock`)
  // SQLite's own words ("unable to open database file", "file is not a database") do not say
  // which file, or what to do about it.
  const unwritable = (err: unknown, file = lockFile): InvalidConfigError => {
    const { errcode, code } = err as { errcode?: number, code?: string }
    const why = `${(err as Error).message}, at ${basename(file)}`
    if (errcode === SQLITE_NOTADB || errcode === SQLITE_CORRUPT) return new InvalidConfigError(`${names.dir} ${dir}: ${basename(file)} is not a lock database (${why}); remove it, nothing is kept in it`, { cause: err })
    if ((errcode !== undefined && CANNOT_WRITE.has(errcode)) || (code !== undefined && CANNOT_WRITE_FS.has(code))) return cannotWrite(names.dir, dir, what, err, file)
    return new InvalidConfigError(`${names.dir} ${dir}: the ${what} could not take its lock (${why})`, { cause: err })
  }
  let db: DatabaseSync
  try {
    db = new DatabaseSync(lockFile, { timeout: 0 })
  } catch (err) {
    throw unwritable(err)
  }
  try {
    db.exec('PRAGMA locking_mode = EXCLUSIVE')
    // A write, so the exclusive lock is taken now and kept.
    db.exec('CREATE TABLE IF NOT EXISTS taken (at TEXT); DELETE FROM taken; INSERT INTO taken VALUES (datetime())')
  } catch (err) {
    db.close()
    if ((err as { errcode?: number }).errcode === SQLITE_BUSY) {
      throw new ConflictError(`${names.dir} ${dir} is in use by another ${what}${what === 'participant' ? ' process' : ''}${holderOf(holderFile)}: one ${names.dir} serves one ${what === 'participant' ? 'process' : what}; stop the other, or give this one its own ${names.own}`, { cause: err })
    }
    throw unwritable(err)
  }
  try {
    writeFileSync(holderFile, `pid ${process.pid} on ${hostname()}, since ${new Date().toISOString()}\n`)
  } catch (err) {
    db.close()
    throw unwritable(err, holderFile)
  }
  let held = true
  return {
    release () {
      if (!held) return
      held = false
      rmSync(holderFile, { force: true })
      db.close()
    }
  }
}

/** The file in a coordinator's, a decryptor's or a witness's data dir that says which it is. */
export const DATA_DIR_ROLE = 'role'
type Role = 'coordinator' | 'decryptor' | 'witness'
const ROLES: readonly string[] = ['coordinator', 'decryptor', 'witness']

/**
 * Names only a server of the kind makes (not `keys/` or `blocks/`, which a runtime's home or a
 * model folder may hold too): a dir holding one and no role file is its own from before the
 * claim (its own checks then say what is wrong with it, if anything). Named here, not imported:
 * dir-lock.ts sits below the servers.
 */
const OWN_NAMES: Record<Role, readonly string[]> = {
  coordinator: ['coordinator.sqlite', 'admin.token'],
  decryptor: ['paillier.key.json'],
  witness: ['witness.sqlite', 'witness.ed25519']
}

/**
 * What a dir may hold that is nobody's data: hidden files, a volume's `lost+found`, this kind's
 * lock and holder files (left by a start cut short before its claim) and blockfed's temporaries
 * (atomic-file.ts; removed by the next start once stale).
 */
const harmless = (name: string, what: Role): boolean =>
  name.startsWith('.') || name === 'lost+found' || name.startsWith(`${what}.lock`) || name === `${what}.pid` || /\.[0-9a-f]{12}\.tmp$/.test(name)

/**
 * Claims `dir` for good for one kind of server, before its lock is taken. A decryptor's secret
 * key beside a coordinator's database would let whoever holds that dir decrypt one client's
 * update (review 49b), and a witness beside the log it watches is no witness (review 54b): each
 * refuses a dir holding the other's files, but two started at the same moment on one new dir both
 * passed that check and, their locks being per kind, both started (review 49d). The claim is
 * created whole or not at all (link(2), `createFileAtomic`), so of two such starts one claims the
 * dir and the other is refused here, having written nothing. A dir from before the claim gets it
 * at its next start, once the file checks have passed. A dir that is nobody's yet but holds files
 * (a mistyped `--data` naming a model folder or a runtime's home) is refused, not taken over
 * under a new identity (review 54b); a new one is made 0700, an empty one that was there is
 * narrowed to 0700 when it is claimed.
 */
export async function claimDataDir (dir: string, what: Role): Promise<void> {
  const file = join(dir, DATA_DIR_ROLE)
  const own = what === 'decryptor' ? 'give the decryptor a data dir of its own, which the coordinator\'s user cannot read' : `give the ${what} a data dir of its own`
  /** The step's own error, or, where the dir cannot be written, one that says so. */
  const writing = async <T>(step: () => Promise<T>): Promise<T> => await step().catch((err: unknown) => {
    const { code } = err as { code?: string }
    throw code !== undefined && CANNOT_WRITE_FS.has(code) ? cannotWrite('data dir', dir, what, err, file) : err
  })
  let claimed: string | undefined
  for (let tries = 0; claimed === undefined; tries++) {
    const names = existsSync(file) ? undefined : await writing(async () => await readdir(dir))
    const fresh = names !== undefined && !OWN_NAMES[what].some(name => names.includes(name))
    if (fresh) {
      const foreign = names.filter(name => !harmless(name, what)).sort()
      if (foreign.length > 0) throw new InvalidConfigError(`data dir ${dir} holds files that are not a ${what}'s (${foreign.slice(0, 5).join(', ')}${foreign.length > 5 ? `, and ${foreign.length - 5} more` : ''}): a ${what} starts on a new or empty dir, or on its own; check --data, or ${own}`)
    }
    if (await writing(async () => await createFileAtomic(file, `${what}\n`, 0o600))) {
      // Its keys go here: narrowed from whatever mode an empty dir made by hand had.
      if (fresh) await chmod(dir, 0o700).catch(() => {})
      return
    }
    try {
      claimed = (await readFile(file, 'utf8')).trim()
    } catch (err) {
      const { code } = err as { code?: string }
      // Removed between the claim's refusal and this read: claim it again, once.
      if (code === 'ENOENT' && tries === 0) continue
      const whose = code === 'EACCES' || code === 'EPERM' ? ': another user\'s server claimed this dir' : ''
      throw new InvalidConfigError(`data dir ${dir}: its ${DATA_DIR_ROLE} file, which says which server the dir is for, cannot be read (${(err as Error).message})${whose}; ${own}`, { cause: err })
    }
  }
  if (claimed === what) return
  if (ROLES.includes(claimed)) throw new ConflictError(`data dir ${dir} is a ${claimed}'s (its ${DATA_DIR_ROLE} file says so): ${own} (if the ${claimed}'s files have all been moved out of it, remove its ${DATA_DIR_ROLE} file)`)
  throw new InvalidConfigError(`data dir ${dir}: its ${DATA_DIR_ROLE} file holds ${JSON.stringify(claimed.slice(0, 40))}, not ${ROLES.join(', ')}; blockfed writes it at a server's first start there: ${own}, or put back the word this dir's server wrote`)
}
