/**
 * A lock shared by the processes of one machine around a short read-check-write of files (a
 * log's trusted checkpoint and monitor state, ledger-trust.ts): a runtime and `blockfed verify`,
 * or two runtimes of different models, keep one log's trust under one data dir. Without it, one
 * that read the saved checkpoint before the other replaced it could save an older one over it,
 * and the next advance checks consistency from there: the trusted checkpoint went back.
 *
 * The lock is an exclusive transaction on a small SQLite database (https://sqlite.org/lockingv3.html):
 * the OS file lock it takes is dropped with the process, so a killed holder leaves nothing stale.
 * It is tried without SQLite's busy wait (which would block the event loop) and tried again every
 * POLL_MS until the deadline. Within a process, callers queue first (keyedQueue), so the lock is
 * contended only between processes.
 */
import { DatabaseSync } from 'node:sqlite'
import { TimeoutError } from '../shared/errors/errors.ts'
import { SQLITE_BUSY } from './dir-lock.ts'

const POLL_MS = 20

export interface ProcessMutexOptions {
  /** How long to wait for another process to finish, in ms. */
  waitMs: number
  signal?: AbortSignal
  /** Names the guarded thing in the timeout's message. */
  what: string
}

/** Runs `task` while this process holds the lock of `path` (a file created if missing). */
export async function withProcessMutex<T> (path: string, task: () => Promise<T>, options: ProcessMutexOptions): Promise<T> {
  const db = new DatabaseSync(path, { timeout: 0 })
  try {
    const deadline = performance.now() + options.waitMs
    for (;;) {
      try {
        db.exec('BEGIN EXCLUSIVE')
        break
      } catch (err) {
        if ((err as { errcode?: number }).errcode !== SQLITE_BUSY) throw err
        if (performance.now() >= deadline) throw new TimeoutError(`${options.what}: another process on this machine held it for more than ${options.waitMs} ms (lock ${path})`)
        options.signal?.throwIfAborted()
        await new Promise(resolve => setTimeout(resolve, POLL_MS))
      }
    }
    try {
      return await task()
    } finally {
      db.exec('ROLLBACK')
    }
  } finally {
    db.close()
  }
}
