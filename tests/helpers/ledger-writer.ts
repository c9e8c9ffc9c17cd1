/**
 * Child process of the ledger crash test (tests/coordinator/ledger-crash.test.ts): opens a data
 * dir's SQLite and version log, as the coordinator does, and appends entries until it is killed —
 * single appends each followed by a checkpoint, and batches appended in one transaction followed
 * by one checkpoint — printing every checkpoint note the log returns, so that the test knows what
 * the log had signed when the SIGKILL landed.
 *
 * Usage: node ledger-writer.ts DATA_DIR SEED, with the log's Ed25519 secret key as hex in
 * LEDGER_SECRET_HEX (fixed by the test, so every restart signs with the same key).
 * Output: one JSON line `{"note": "..."}` per checkpoint, the first one signed on start (what the
 * previous, killed process had committed). stdout to a pipe is synchronous on Linux, so a line is
 * in the pipe before the next append starts.
 */
import { join } from 'node:path'
import { openDatabase } from '../../coordinator/store/database.ts'
import { versionLog } from '../../coordinator/ledger/log.ts'
import { signingKeyFromSecret } from '../../shared/crypto/sign.ts'
import { fromHex } from '../../shared/crypto/bytes.ts'
import type { LedgerEntry } from '../../shared/ledger/entry.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'

export const CRASH_MODEL = 'crash-model'
export const CRASH_ORIGIN = 'blockfed.test/crash-log'
const EPOCH = Date.UTC(2026, 0, 1)
/** Largest batch appended in one transaction. */
const MAX_BATCH = 200

/** The entry at leaf `index`: a version chain, so the leaves themselves show any gap or repeat. */
export function crashEntry (index: number): LedgerEntry {
  return {
    model: CRASH_MODEL,
    version: index + 1,
    manifestCid: `bafkcrash${index}`,
    parent: index === 0 ? null : index,
    time: new Date(EPOCH + index * 1000).toISOString()
  }
}

if (import.meta.main) {
  const [dataDir, seedText] = process.argv.slice(2)
  const secretHex = process.env.LEDGER_SECRET_HEX
  if (dataDir === undefined || seedText === undefined || secretHex === undefined) {
    console.error('usage: LEDGER_SECRET_HEX=… node ledger-writer.ts DATA_DIR SEED')
    process.exit(2)
  }
  const database = openDatabase(join(dataDir, 'coordinator.sqlite'))
  const log = versionLog({ database, signing: signingKeyFromSecret(fromHex(secretHex)), keyId: 'crash', origin: CRASH_ORIGIN })
  const print = (note: string): void => { process.stdout.write(`${JSON.stringify({ note })}\n`) }
  const next = mulberry32(Number(seedText))

  print(log.checkpoint().note)
  for (;;) {
    // Half single appends, half batches of 2..MAX_BATCH in one transaction: a kill can land in an
    // append's transaction, between commit and checkpoint, inside the checkpoint's transaction, or
    // between the checkpoint and its line.
    const count = next() < 0.5 ? 1 : 2 + Math.floor(next() * (MAX_BATCH - 1))
    database.transaction(() => {
      for (let i = 0; i < count; i++) log.append(crashEntry(log.size()))
    })
    print(log.checkpoint().note)
  }
}
