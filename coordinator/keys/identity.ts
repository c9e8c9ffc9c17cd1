/**
 * The coordinator's long-lived secrets, created on first start and kept in `<data>/keys/`
 * with mode 0600: the Ed25519 key that signs manifests, and the 256-bit master key that wraps
 * data keys at rest (XChaCha20-Poly1305, key id as associated data).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { concatBytes, toHex, utf8ToBytes } from '../../shared/crypto/bytes.ts'
import { generateSigningKey, keyId, signingKeyFromSecret, type SigningKeyPair } from '../../shared/crypto/sign.ts'
import { IntegrityError } from '../../shared/errors/errors.ts'

export interface Identity {
  signing: SigningKeyPair
  publicKeyHex: string
  keyId: string
  wrapDataKey: (keyId: string, key: Uint8Array) => Uint8Array
  unwrapDataKey: (keyId: string, wrapped: Uint8Array) => Uint8Array
}

async function readOrCreate (path: string, create: () => Uint8Array): Promise<Uint8Array> {
  try {
    const bytes = new Uint8Array(await readFile(path))
    if (bytes.length !== 32) throw new IntegrityError(`${path}: expected a 32-byte key, found ${bytes.length} bytes`)
    return bytes
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    const bytes = create()
    await writeFile(path, bytes, { mode: 0o600, flag: 'wx' })
    return bytes
  }
}

export async function loadIdentity (dataDir: string): Promise<Identity> {
  const dir = join(dataDir, 'keys')
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const secret = await readOrCreate(join(dir, 'coordinator.ed25519'), () => generateSigningKey().secretKey)
  const master = await readOrCreate(join(dir, 'master.key'), () => globalThis.crypto.getRandomValues(new Uint8Array(32)))
  const signing = signingKeyFromSecret(secret)
  return {
    signing,
    publicKeyHex: toHex(signing.publicKey),
    keyId: await keyId(signing.publicKey),
    wrapDataKey (id, key) {
      const nonce = globalThis.crypto.getRandomValues(new Uint8Array(24))
      return concatBytes(nonce, xchacha20poly1305(master, nonce, utf8ToBytes(id)).encrypt(key))
    },
    unwrapDataKey (id, wrapped) {
      try {
        return xchacha20poly1305(master, wrapped.subarray(0, 24), utf8ToBytes(id)).decrypt(wrapped.subarray(24))
      } catch (err) {
        throw new IntegrityError(`data key ${id}: cannot unwrap with this coordinator's master key`, { cause: err })
      }
    }
  }
}
