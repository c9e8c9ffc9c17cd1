/**
 * Which key may sign manifests for a coordinator. The AoE config's `coordinatorKey` pins it
 * explicitly; without one the runtime trusts the key the coordinator presents on first contact
 * and pins it under `<data>/trust/` (trust on first use, as SSH does), refusing any other key
 * afterwards; with the coordinator unreachable the pinned key is used as is. Checkpoints of the
 * version ledger are signed by the same key (node-runtime/versions/ledger-trust.ts).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { CoordinatorClient } from '../shared/client/coordinator-client.ts'
import { fromHex } from '../shared/crypto/bytes.ts'
import { sha256Hex } from '../shared/crypto/hash.ts'
import { IntegrityError, UnavailableError } from '../shared/errors/errors.ts'

export async function coordinatorKey (dataDir: string, client: CoordinatorClient, pinnedHex?: string, signal?: AbortSignal): Promise<Uint8Array> {
  if (pinnedHex !== undefined) return fromHex(pinnedHex.toLowerCase())
  const dir = join(dataDir, 'trust')
  const path = join(dir, `${(await sha256Hex(new TextEncoder().encode(client.baseUrl))).slice(0, 16)}.ed25519.pub`)
  let known: string | undefined
  try {
    known = (await readFile(path, 'utf8')).trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  let info
  try {
    info = await client.info(signal)
  } catch (err) {
    // Offline: a key pinned earlier still says who may sign; without one there is nothing to trust.
    if (err instanceof UnavailableError && known !== undefined) return fromHex(known)
    throw err
  }
  if (known !== undefined && known !== info.publicKey) {
    throw new IntegrityError(`coordinator ${client.baseUrl} now presents key ${info.publicKey}, but ${known} was pinned at first use (${path})`)
  }
  if (known === undefined) {
    await mkdir(dir, { recursive: true })
    await writeFile(path, `${info.publicKey}\n`, { flag: 'wx' })
  }
  return fromHex(known ?? info.publicKey)
}

