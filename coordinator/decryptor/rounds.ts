/**
 * The decryptor's memory of decided rounds: one file per round under `<data>/rounds/`, created
 * with O_EXCL before anything is decrypted. The file system makes "create if absent" atomic, so
 * a round is decided at most once even with concurrent requests, restarts, or two processes on
 * one data dir. A round that fails after its claim stays decided: failing closed is the point.
 * A decrypted round keeps its answer (the ring sum, which its caller learns anyway) with the
 * hash of the request it answered, so a caller that lost the answer (a timeout, a restart) gets
 * the same answer again for the same request, and nothing for any other.
 */
import { mkdir, readFile, rename } from 'node:fs/promises'
import { syncDir, writeSynced } from './fsync.ts'
import { join } from 'node:path'
import { RoundDecidedError } from '../../aggregation/paillier/errors.ts'
import { ROUNDS_DIR } from './constants.ts'

export interface RoundRecord {
  roundId: string
  keyId: string
  length: number
  clients: string[]
  claimedAt: string
  /** SHA-256 (hex) of the request decided: round, length, base version and every contribution. */
  requestSha256: string
  outcome?: 'decrypted' | 'failed'
  reason?: string
  finishedAt?: string
  /** The answer's ring sum (base64), once decrypted. */
  sum?: string
}

export interface RoundLog {
  /** Marks the round decided; throws RoundDecidedError if it already was. */
  claim: (record: RoundRecord) => Promise<void>
  /** Records how a claimed round ended: `detail` is the sum (decrypted) or the reason (failed). */
  finish: (record: RoundRecord, outcome: 'decrypted' | 'failed', detail: string) => Promise<void>
  /** The record of a decided round, if it can be read. */
  read: (roundId: string) => Promise<RoundRecord | undefined>
}

/** Round ids are checked by roundIdSchema (no separators, no leading dot) before they get here. */
export async function roundLog (dataDir: string): Promise<RoundLog> {
  const dir = join(dataDir, ROUNDS_DIR)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const pathOf = (roundId: string): string => join(dir, `${roundId}.json`)
  return {
    async claim (record) {
      // On disk before anything is decrypted: a crash right after must not let the round run again.
      try {
        await writeSynced(pathOf(record.roundId), JSON.stringify(record) + '\n', 'wx')
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new RoundDecidedError(`round ${record.roundId} was already decided; the decryptor decrypts each round at most once`)
        throw err
      }
      await syncDir(dir)
    },
    async finish (record, outcome, detail) {
      const done: RoundRecord = { ...record, outcome, finishedAt: new Date().toISOString(), ...(outcome === 'decrypted' ? { sum: detail } : { reason: detail }) }
      // Replaced whole (temp file, then rename): the claim's file exists throughout.
      const temp = `${pathOf(record.roundId)}.${globalThis.crypto.randomUUID()}.tmp`
      await writeSynced(temp, JSON.stringify(done) + '\n', 'wx')
      await rename(temp, pathOf(record.roundId))
    },
    async read (roundId) {
      try {
        return JSON.parse(await readFile(pathOf(roundId), 'utf8')) as RoundRecord
      } catch {
        return undefined // absent, or unreadable: the round stays decided either way
      }
    }
  }
}
