/**
 * The decryptor's memory of decided rounds: one file per round under `<data>/rounds/`, created
 * whole before anything is decrypted (a synced temporary file hard-linked into place: link(2)
 * fails when the name exists). The file system makes "create if absent" atomic, so
 * a round is decided at most once even with concurrent requests, restarts, or two processes on
 * one data dir. A round that fails after its claim stays decided: failing closed is the point.
 * A decrypted round keeps its answer (the ring sum, which its caller learns anyway) with the
 * hash of the request it answered, so a caller that lost the answer (a timeout, a restart) gets
 * the same answer again for the same request, and nothing for any other.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { RoundDecidedError } from '../../aggregation/paillier/errors.ts'
import { ROUNDS_DIR } from './constants.ts'
import { createFileAtomic, syncDir, writeFileAtomic } from '../../node-runtime/atomic-file.ts'

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
      if (!await createFileAtomic(pathOf(record.roundId), JSON.stringify(record) + '\n', 0o600)) {
        throw new RoundDecidedError(`round ${record.roundId} was already decided; the decryptor decrypts each round at most once`)
      }
      await syncDir(dir)
    },
    async finish (record, outcome, detail) {
      const done: RoundRecord = { ...record, outcome, finishedAt: new Date().toISOString(), ...(outcome === 'decrypted' ? { sum: detail } : { reason: detail }) }
      // Replaced whole (synced temp file, then rename): the claim's file exists throughout.
      await writeFileAtomic(pathOf(record.roundId), JSON.stringify(done) + '\n', 0o600)
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
