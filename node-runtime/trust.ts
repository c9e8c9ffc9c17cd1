/**
 * Which key may sign manifests for a coordinator. The AoE config's `coordinatorKey` pins it
 * explicitly; without one the runtime trusts the key the coordinator presents on first contact
 * and pins it under `<data>/trust/` (trust on first use, as SSH does), refusing any other key
 * afterwards; with the coordinator unreachable the pinned key is used as is. Checkpoints of the
 * version ledger are signed by the same key (node-runtime/versions/ledger-trust.ts).
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { CoordinatorClient } from '../shared/client/coordinator-client.ts'
import { fromHex } from '../shared/crypto/bytes.ts'
import { sha256Hex } from '../shared/crypto/hash.ts'
import { IntegrityError, isUnreachable } from '../shared/errors/errors.ts'
import { createFileAtomic, writeFileAtomic } from './atomic-file.ts'

export async function coordinatorKey (dataDir: string, client: CoordinatorClient, pinnedHex?: string, signal?: AbortSignal): Promise<Uint8Array> {
  if (pinnedHex !== undefined) return fromHex(pinnedHex.toLowerCase())
  const dir = join(dataDir, 'trust')
  const path = join(dir, `${(await sha256Hex(new TextEncoder().encode(client.baseUrl))).slice(0, 16)}.ed25519.pub`)
  let known: string | undefined
  try {
    // An empty file is a pin torn by a crash of an earlier release (it wrote in place): no pin.
    known = (await readFile(path, 'utf8')).trim() || undefined
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  checkPin(known, path, client.baseUrl)
  let info
  try {
    info = await client.info(signal)
  } catch (err) {
    // Offline: a key pinned earlier still says who may sign; without one there is nothing to trust.
    if (isUnreachable(err) && known !== undefined) return fromHex(known)
    throw err
  }
  if (known === undefined) {
    // Created whole or not at all; when another load pinned first, its key is the one to match.
    await mkdir(dir, { recursive: true })
    if (!await createFileAtomic(path, `${info.publicKey}\n`)) {
      known = (await readFile(path, 'utf8')).trim() || undefined
      checkPin(known, path, client.baseUrl)
      if (known === undefined) await writeFileAtomic(path, `${info.publicKey}\n`)
    }
  }
  if (known !== undefined && known !== info.publicKey) {
    throw new IntegrityError(`coordinator ${client.baseUrl} now presents key ${info.publicKey}, but ${known} was pinned at first use (${path})`)
  }
  return fromHex(info.publicKey)
}

/** A pin edited or damaged by hand is named, not met as a hex parser's error (offline) or a "new key" (online). */
function checkPin (known: string | undefined, path: string, url: string): void {
  if (known !== undefined && !/^[0-9a-f]{64}$/.test(known)) {
    throw new IntegrityError(`the key pinned for coordinator ${url} in ${path} is not 64 lowercase hex digits; restore it, or delete it to trust the key the coordinator presents next`)
  }
}
