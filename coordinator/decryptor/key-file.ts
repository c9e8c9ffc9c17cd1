/**
 * The decryptor's Paillier secret key on disk: `<data>/paillier.key.json`, mode 0600, created on
 * first start and parsed by a schema on every later one. Creation is atomic and first-wins (write
 * a private temporary file, then link it into place), so two processes starting on one data dir
 * agree on one key; the file and the folder are fsynced, so neither a crash nor a power cut
 * leaves half a key file or loses a key clients have pinned.
 */
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { InvalidConfigError } from '../../shared/errors/errors.ts'
import { parseJsonWith } from '../../shared/errors/parse-json.ts'
import { generateKeyPair, secretKeyFromPrimes, type PaillierSecretKey } from '../../aggregation/paillier/keys.ts'
import { DEFAULT_KEY_BITS } from '../../aggregation/paillier/constants.ts'
import { KEY_FILE } from './constants.ts'
import { createFileAtomic, readIfExists, syncDir } from '../../node-runtime/atomic-file.ts'

const keyFileSchema = z.object({
  scheme: z.literal('paillier-n+1'),
  bits: z.number().int().positive(),
  p: z.string().regex(/^[0-9a-f]+$/),
  q: z.string().regex(/^[0-9a-f]+$/),
  createdAt: z.string()
})

function parseKeyFile (path: string, text: string): PaillierSecretKey {
  const data = parseJsonWith(keyFileSchema, text, path, InvalidConfigError)
  let key: PaillierSecretKey
  try {
    key = secretKeyFromPrimes(BigInt('0x' + data.p), BigInt('0x' + data.q))
  } catch (err) {
    throw new InvalidConfigError(`${path}: not a usable Paillier key: ${(err as Error).message}`, { cause: err })
  }
  if (key.publicKey.bits !== data.bits) throw new InvalidConfigError(`${path}: says ${data.bits} bits, p·q has ${key.publicKey.bits}`)
  return key
}

async function readKey (path: string): Promise<PaillierSecretKey | undefined> {
  const text = await readIfExists(path)
  if (text === undefined) return undefined
  // Like ssh: a secret key others can read is a configuration error, not something to use.
  if (process.platform !== 'win32' && ((await stat(path)).mode & 0o077) !== 0) {
    throw new InvalidConfigError(`${path}: readable by other users; run chmod 600 on it`)
  }
  return parseKeyFile(path, text)
}

/**
 * Loads the key from `dataDir`, or generates one of `keyBits` bits (default 2048) when there is
 * none. A `keyBits` that differs from an existing key's size is an error, not a silent regeneration.
 */
export async function loadOrCreateKey (dataDir: string, keyBits?: number): Promise<{ key: PaillierSecretKey, created: boolean }> {
  const path = join(dataDir, KEY_FILE)
  const check = (key: PaillierSecretKey): PaillierSecretKey => {
    if (keyBits !== undefined && key.publicKey.bits !== keyBits) {
      throw new InvalidConfigError(`${path}: holds a ${key.publicKey.bits}-bit key but keyBits=${keyBits} was asked; move the file away to make a new key`)
    }
    return key
  }
  const existing = await readKey(path)
  if (existing !== undefined) return { key: check(existing), created: false }
  const key = await generateKeyPair(keyBits ?? DEFAULT_KEY_BITS)
  const body = JSON.stringify({ scheme: 'paillier-n+1', bits: key.publicKey.bits, p: key.p.toString(16), q: key.q.toString(16), createdAt: new Date().toISOString() }, null, 2)
  if (await createFileAtomic(path, body + '\n', 0o600)) {
    await syncDir(dataDir)
    return { key, created: true }
  }
  // Another process created the key first: use theirs.
  const theirs = await readKey(path)
  if (theirs === undefined) throw new InvalidConfigError(`${path}: created by another process, then gone`)
  return { key: check(theirs), created: false }
}
