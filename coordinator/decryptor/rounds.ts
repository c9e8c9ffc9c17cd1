/**
 * The decryptor's memory of decided rounds: one file per round under `<data>/rounds/`, created
 * with O_EXCL before anything is decrypted. The file system makes "create if absent" atomic, so
 * a round is decided at most once even with concurrent requests, restarts, or two processes on
 * one data dir. A round that fails after its claim stays decided: failing closed is the point.
 */
import { mkdir, open, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { RoundDecidedError } from '../../aggregation/paillier/errors.ts'
import { ROUNDS_DIR } from './constants.ts'

export interface RoundRecord {
  roundId: string
  keyId: string
  length: number
  clients: string[]
  claimedAt: string
  outcome?: 'decrypted' | 'failed'
  reason?: string
  finishedAt?: string
}

export interface RoundLog {
  /** Marks the round decided; throws RoundDecidedError if it already was. */
  claim: (record: RoundRecord) => Promise<void>
  /** Records how a claimed round ended (best effort: the claim alone already blocks a second decryption). */
  finish: (record: RoundRecord, outcome: 'decrypted' | 'failed', reason?: string) => Promise<void>
}

/** fsync of the folder, so the new file's name is durable too (POSIX; a no-op where folders cannot be opened). */
async function syncDir (dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => undefined)
  if (handle === undefined) return
  try {
    await handle.sync().catch(() => undefined)
  } finally {
    await handle.close()
  }
}

/** Round ids are checked by roundIdSchema (no separators, no leading dot) before they get here. */
export async function roundLog (dataDir: string): Promise<RoundLog> {
  const dir = join(dataDir, ROUNDS_DIR)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const pathOf = (roundId: string): string => join(dir, `${roundId}.json`)
  return {
    async claim (record) {
      let file
      try {
        file = await open(pathOf(record.roundId), 'wx', 0o600)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new RoundDecidedError(`round ${record.roundId} was already decided; the decryptor decrypts each round at most once`)
        throw err
      }
      // On disk before anything is decrypted: a crash right after must not let the round run again.
      try {
        await file.writeFile(JSON.stringify(record) + '\n')
        await file.sync()
      } finally {
        await file.close()
      }
      await syncDir(dir)
    },
    async finish (record, outcome, reason) {
      const done: RoundRecord = { ...record, outcome, finishedAt: new Date().toISOString(), ...(reason === undefined ? {} : { reason }) }
      await writeFile(pathOf(record.roundId), JSON.stringify(done) + '\n', { mode: 0o600 })
    }
  }
}
