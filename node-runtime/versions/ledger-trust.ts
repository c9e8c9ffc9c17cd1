/**
 * The Node runtime's side of ledger trust: which key must sign checkpoints, which witnesses
 * count, and where the last trusted checkpoint is kept.
 *
 * The log key is the config's `ledger.key`, or else the key the coordinator serves at
 * `/ledger/key` — accepted only if it is an Ed25519 key equal to the pinned coordinator key, and
 * pinned in turn under `<data>/ledger/`, per coordinator key, so that it is known offline and
 * neither it nor the log's name can change. The last
 * trusted checkpoint of each log is kept in `<data>/ledger/<log>.checkpoint`, replaced
 * atomically and only after its consistency with the previous one was proved (shared/ledger/verify.ts),
 * and what the runtime read of the log's entries up to it in `<log>.monitor.json`
 * (shared/ledger/monitor.ts), both under `<log>.lock` while they change (process-mutex.ts).
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { AoeConfig } from '../../shared/config/aoe.ts'
import { equalBytes, toHex } from '../../shared/crypto/bytes.ts'
import { sha256Hex } from '../../shared/crypto/hash.ts'
import { IntegrityError, InvalidConfigError, isUnreachable } from '../../shared/errors/errors.ts'
import type { LedgerClient } from '../../shared/ledger/client.ts'
import { parseVerifierKey } from '../../shared/ledger/note.ts'
import { monitorLog, type LogView, type MonitorStore } from '../../shared/ledger/monitor.ts'
import { advanceCheckpoint, type CheckpointStore, type LedgerTrust, type VerifiedCheckpoint } from '../../shared/ledger/verify.ts'
import { readIfExists, writeFileAtomic } from '../atomic-file.ts'
import { keyedQueue } from '../keyed-queue.ts'
import { withProcessMutex } from '../process-mutex.ts'

const fileName = async (text: string): Promise<string> => (await sha256Hex(new TextEncoder().encode(text))).slice(0, 16)

export async function ledgerTrust (dataDir: string, config: AoeConfig, coordinatorKey: Uint8Array, ledger: LedgerClient, signal?: AbortSignal): Promise<LedgerTrust> {
  const witnesses = config.ledger.witnesses.map(vkey => {
    const v = parseVerifierKey(vkey)
    if (v.type !== 'cosignature/v1') throw new InvalidConfigError(`aoe config for ${config.modelName}: "ledger.witnesses": ${vkey.slice(0, 40)}… is not a witness (cosignature/v1) key`)
    return v
  })
  const dir = join(dataDir, 'ledger')
  let vkey = config.ledger.key
  if (vkey === undefined) {
    // Pinned per coordinator key, which signs the log: pinned per URL, another spelling of the
    // same coordinator (a trailing '/', another host name) could bring the same key under a new
    // log name, whose history no checkpoint kept here constrains. Pins of the URL-keyed kind,
    // from before, still count.
    const path = join(dir, `${await fileName(toHex(coordinatorKey))}.vkey`)
    const legacy = join(dir, `${await fileName(config.updateURL)}.vkey`)
    const own = (await readIfExists(path))?.trim()
    const pinned = own ?? (await readIfExists(legacy))?.trim()
    let served: string | undefined
    try {
      served = await ledger.key(signal)
    } catch (err) {
      if (!isUnreachable(err) || pinned === undefined) throw err
    }
    if (served !== undefined && pinned !== undefined && served !== pinned) {
      throw new IntegrityError(`coordinator ${config.updateURL} now serves log key ${served}, but ${pinned} was pinned (${path})`)
    }
    vkey = served ?? pinned as string
    const parsed = parseVerifierKey(vkey)
    if (parsed.type !== 'ed25519' || !equalBytes(parsed.publicKey, coordinatorKey)) {
      throw new IntegrityError(`coordinator ${config.updateURL} serves log key ${vkey}, which is not the coordinator key ${toHex(coordinatorKey)}`)
    }
    if (own === undefined) {
      await mkdir(dir, { recursive: true })
      await writeFileAtomic(path, `${vkey}\n`)
    }
  }
  const log = parseVerifierKey(vkey)
  if (log.type !== 'ed25519') throw new InvalidConfigError(`aoe config for ${config.modelName}: "ledger.key" is not an Ed25519 log key`)
  return { log, witnesses, minWitnesses: config.ledger.minWitnesses }
}

const perLog = keyedQueue()

/** A trusted checkpoint, with every entry under it read: which entries name each version. */
export interface MonitoredCheckpoint extends VerifiedCheckpoint {
  entries: LogView
}

const fileStore = (dir: string, path: string): CheckpointStore & MonitorStore => ({
  load: async () => await readIfExists(path),
  async save (text) {
    await mkdir(dir, { recursive: true })
    await writeFileAtomic(path, text)
  }
})

/**
 * How long an advance waits for another process's advance of the same log: a minute's reading
 * (≈ 900,000 entries at 15,000 a second) and more. A first read of a longer log can outlast it;
 * the waiter then fails this once, and its next advance goes on from the parts saved meanwhile
 * (MONITOR_PART).
 */
const LOG_LOCK_WAIT_MS = 120_000

/**
 * Moves this runtime's trusted checkpoint of the log forward (shared/ledger/verify.ts), then
 * reads the entries it adds (shared/ledger/monitor.ts). Advances of one log are serialised, in
 * this process and between processes sharing the data dir (process-mutex.ts), so no advance
 * saves a checkpoint older than one another saved after it read.
 */
export async function advanceTrusted (dataDir: string, trust: LedgerTrust, ledger: LedgerClient, signal?: AbortSignal): Promise<MonitoredCheckpoint> {
  const dir = join(dataDir, 'ledger')
  const base = join(dir, `${await fileName(trust.log.name)}-${toHex(trust.log.keyId)}`)
  return await perLog(base, async () => {
    await mkdir(dir, { recursive: true })
    return await withProcessMutex(`${base}.lock`, async () => {
      const checkpoint = await advanceCheckpoint(ledger, trust, fileStore(dir, `${base}.checkpoint`), signal)
      const entries = await monitorLog(ledger, checkpoint.checkpoint, checkpoint.note, fileStore(dir, `${base}.monitor.json`), signal)
      return { ...checkpoint, entries }
    }, { waitMs: LOG_LOCK_WAIT_MS, signal, what: `log ${trust.log.name}` })
  })
}
