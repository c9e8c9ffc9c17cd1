/**
 * The decryptor's memory of decided rounds: one file per round under `<data>/rounds/`, created
 * whole before anything is decrypted (a synced temporary file hard-linked into place: link(2)
 * fails when the name exists). The file system makes "create if absent" atomic, so
 * a round is decided at most once even with concurrent requests, restarts, or two processes on
 * one data dir. A round that fails after its claim stays decided: failing closed is the point.
 * A decrypted round keeps its answer (the ring sum, which its caller learns anyway) with the
 * hash of the request it answered, so a caller that lost the answer (a timeout, a restart) gets
 * the same answer again for the same request, and nothing for any other. The sum is kept beside
 * the record (`<round>.sum`, raw bytes, its SHA-256 in the record), so that records stay a few
 * kilobytes however long the vectors: the start reads every record, and only records.
 *
 * The records also keep each client to one sum per base version of a model, moving forward
 * only (shared/rounds/one-update.ts): a claim whose client is already in a decided sum from the
 * same base or a later one is refused (RepeatedClientError). Runtimes keep that rule themselves,
 * but one without a state dir (a serverless function) forgets; the decryptor does not. The index
 * is rebuilt from the records at start, so an unreadable record stops the start rather than
 * forget whose sum it was. One process holds a data dir at a time (node-runtime/dir-lock.ts):
 * two would not see each other's index.
 */
import { access, mkdir, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { RepeatedClientError, RoundDecidedError } from '../../aggregation/paillier/errors.ts'
import { IntegrityError } from '../../shared/errors/errors.ts'
import { parseJsonWith } from '../../shared/errors/parse-json.ts'
import { ROUNDS_DIR } from './constants.ts'
import { createFileAtomic, syncDir, writeFileAtomic } from '../../node-runtime/atomic-file.ts'
import { sha256Hex } from '../../shared/crypto/hash.ts'
import { toBase64 } from '../../shared/crypto/bytes.ts'

const recordSchema = z.object({
  roundId: z.string(),
  keyId: z.string(),
  /** Absent in records written before the index existed: their clients are not held to it. */
  model: z.string().optional(),
  baseVersion: z.number().int().positive().optional(),
  length: z.number().int().positive(),
  clients: z.array(z.string()),
  claimedAt: z.string(),
  /** SHA-256 (hex) of the request decided: round, model, length, base version and every contribution (absent in the first version's records). */
  requestSha256: z.string().optional(),
  outcome: z.enum(['decrypted', 'failed']).optional(),
  reason: z.string().optional(),
  finishedAt: z.string().optional(),
  /** The answer's ring sum (base64), once decrypted: inline in records written before sums got their own file. */
  sum: z.string().optional(),
  /** SHA-256 (hex) of `<round>.sum`, the answer's ring sum, once decrypted. */
  sumSha256: z.string().optional()
})
export type RoundRecord = z.infer<typeof recordSchema> & { model: string, baseVersion: number, requestSha256: string }
/** What the index needs of a record; the rest of an older record's shape does not matter to it. */
const indexedSchema = recordSchema.pick({ roundId: true, clients: true, model: true, baseVersion: true })

export interface RoundLog {
  /**
   * Marks the round decided; throws RoundDecidedError if it already was, and RepeatedClientError
   * if one of its clients is in another decided sum from this base version or a later one.
   */
  claim: (record: RoundRecord) => Promise<void>
  /** Records how a claimed round ended: with its ring sum, or why it failed. */
  finish: (record: RoundRecord, end: { sum: Uint8Array } | { reason: string }) => Promise<void>
  /** The record of a decided round, if it can be read, with its kept sum (base64) if that is whole. */
  read: (roundId: string) => Promise<z.infer<typeof recordSchema> | undefined>
}

const exists = async (path: string): Promise<boolean> => await access(path).then(() => true, () => false)

/** The newest decided sum each client is in, per model. */
type SummedIndex = Map<string, { base: number, roundId: string }>
const indexKey = (clientId: string, model: string): string => `${clientId}\n${model}`

async function loadIndex (dir: string): Promise<SummedIndex> {
  const index: SummedIndex = new Map()
  // Temporary files of a write in progress end in .tmp; records in .json.
  for (const name of (await readdir(dir)).filter(n => n.endsWith('.json')).sort()) {
    const path = join(dir, name)
    const text = await readFile(path, 'utf8')
    // The first version created a record empty and then wrote it: an empty one is a claim that
    // crashed before anything was decrypted. Records are written whole since.
    if (text === '') continue
    const record = parseJsonWith(indexedSchema, text, `${path} (a decided round: the decryptor does not start without knowing whose sum it was; restore it)`, IntegrityError)
    if (record.model === undefined || record.baseVersion === undefined) continue
    for (const clientId of record.clients) {
      const key = indexKey(clientId, record.model)
      const held = index.get(key)
      if (held === undefined || held.base < record.baseVersion) index.set(key, { base: record.baseVersion, roundId: record.roundId })
    }
  }
  return index
}

/** Round ids are checked by roundIdSchema (no separators, no leading dot) before they get here. */
export async function roundLog (dataDir: string): Promise<RoundLog> {
  const dir = join(dataDir, ROUNDS_DIR)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const summed = await loadIndex(dir)
  const pathOf = (roundId: string): string => join(dir, `${roundId}.json`)
  const sumPathOf = (roundId: string): string => join(dir, `${roundId}.sum`)
  return {
    async claim (record) {
      const decided = (): RoundDecidedError => new RoundDecidedError(`round ${record.roundId} was already decided; the decryptor decrypts each round at most once`)
      // A decided round is that first, whatever its clients did since: the same request again
      // gets its kept answer (server.ts).
      if (await exists(pathOf(record.roundId))) throw decided()
      // Checked and reserved with no await in between: of two concurrent claims sharing a
      // client at one base, the second is refused.
      const keys = record.clients.map(c => indexKey(c, record.model))
      for (const [i, key] of keys.entries()) {
        const held = summed.get(key)
        if (held !== undefined && held.roundId !== record.roundId && held.base >= record.baseVersion) {
          throw new RepeatedClientError(`round ${record.roundId}: client ${record.clients[i] ?? ''} is already in the sum of round ${held.roundId} from ${record.model}@${held.base}; the decryptor puts a client in at most one sum per base version of a model, moving forward only (offered base ${record.baseVersion})`)
        }
      }
      const mine = { base: record.baseVersion, roundId: record.roundId }
      const before = keys.map(key => summed.get(key))
      for (const key of keys) summed.set(key, mine)
      try {
        // On disk before anything is decrypted: a crash right after must not let the round run again.
        if (!await createFileAtomic(pathOf(record.roundId), JSON.stringify(record) + '\n', 0o600)) throw decided()
      } catch (err) {
        // Undone only where this claim's reservation still stands: a claim made meanwhile (a
        // later base, say) keeps its own (found by review: restoring blindly let a third sum in).
        for (const [i, key] of keys.entries()) {
          if (summed.get(key) !== mine) continue
          const held = before[i]
          if (held === undefined) summed.delete(key)
          else summed.set(key, held)
        }
        throw err
      }
      await syncDir(dir)
    },
    async finish (record, end) {
      const finishedAt = new Date().toISOString()
      let done: RoundRecord
      if ('sum' in end) {
        // The sum first: a record that names a sum has it on disk whole.
        await writeFileAtomic(sumPathOf(record.roundId), end.sum, 0o600)
        done = { ...record, outcome: 'decrypted', finishedAt, sumSha256: await sha256Hex(end.sum) }
      } else {
        done = { ...record, outcome: 'failed', finishedAt, reason: end.reason }
      }
      // Replaced whole (synced temp file, then rename): the claim's file exists throughout.
      await writeFileAtomic(pathOf(record.roundId), JSON.stringify(done) + '\n', 0o600)
    },
    async read (roundId) {
      let record: z.infer<typeof recordSchema>
      try {
        record = recordSchema.parse(JSON.parse(await readFile(pathOf(roundId), 'utf8')))
      } catch {
        return undefined // absent, or unreadable: the round stays decided either way
      }
      if (record.sumSha256 === undefined) return record
      const sum = await readFile(sumPathOf(roundId)).catch(() => undefined)
      // A sum that is gone or does not match its hash is not answered again: the round stays decided.
      const whole = sum !== undefined && await sha256Hex(sum) === record.sumSha256
      return whole ? { ...record, sum: toBase64(sum) } : record
    }
  }
}
