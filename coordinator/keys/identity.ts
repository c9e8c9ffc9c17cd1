/**
 * The coordinator's long-lived secrets, created on first start and kept in `<data>/keys/`
 * with mode 0600: the Ed25519 key that signs manifests, and the 256-bit master key that wraps
 * data keys at rest (XChaCha20-Poly1305, key id as associated data).
 *
 * Each file is created whole (node-runtime/key-file.ts). A master key is only ever made for a database without data keys: one made beside stored keys
 * could unwrap none of them.
 */
import { mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { concatBytes, toHex, utf8ToBytes } from '../../shared/crypto/bytes.ts'
import { generateSigningKey, keyId, signingKeyFromSecret, type SigningKeyPair } from '../../shared/crypto/sign.ts'
import { IntegrityError, InvalidConfigError } from '../../shared/errors/errors.ts'
import { syncDir } from '../../node-runtime/atomic-file.ts'
import { readOrCreateKey } from '../../node-runtime/key-file.ts'

export interface Identity {
  signing: SigningKeyPair
  publicKeyHex: string
  keyId: string
  wrapDataKey: (keyId: string, key: Uint8Array) => Uint8Array
  unwrapDataKey: (keyId: string, wrapped: Uint8Array) => Uint8Array
}

/** One data key the database holds, wrapped under the master key: the proof that master.key is the right one. */
export interface StoredDataKey {
  keyId: string
  wrapped: Uint8Array
}

/** Refuses to go on without `path`, which `why` says the data dir needs. */
async function mustExist (path: string, why: string): Promise<void> {
  try {
    await stat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    throw new InvalidConfigError(`${path} is missing, but ${why}: restore the whole keys/ folder from the backup of this data dir`, { cause: err })
  }
}

/**
 * Loads the coordinator's keys from `<dataDir>/keys/`, creating those missing. Pass any one data
 * key the database holds (`stored`), or undefined when it holds none: with one, a missing master
 * key is refused rather than replaced, and a master key that cannot unwrap it is refused. With
 * `signedBefore` (the database holds versions), a missing signing key is refused likewise. Both
 * are settled before either is made, so a refused start writes nothing.
 */
export async function loadIdentity (dataDir: string, stored?: StoredDataKey, signedBefore = false): Promise<Identity> {
  const dir = join(dataDir, 'keys')
  await mkdir(dir, { recursive: true, mode: 0o700 })
  // keys/ itself must survive a power cut, or the keys created in it are lost with it.
  await syncDir(dataDir)
  const signingPath = join(dir, 'coordinator.ed25519')
  const masterPath = join(dir, 'master.key')
  // Both settled before either key is made: a refused start writes nothing.
  if (signedBefore) await mustExist(signingPath, 'the database holds versions it signed (runtimes refuse what a new key would sign)')
  if (stored !== undefined) await mustExist(masterPath, `the database holds data keys wrapped under it (data key ${stored.keyId}); a new master key could unwrap none of them`)
  const master = await readOrCreateKey(masterPath, () => globalThis.crypto.getRandomValues(new Uint8Array(32)))
  const secret = await readOrCreateKey(signingPath, () => generateSigningKey().secretKey)
  const signing = signingKeyFromSecret(secret)
  const identity: Identity = {
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
  if (stored !== undefined) checkMasterKey(identity, masterPath, stored)
  return identity
}

/** Refuses to start with a master key that would answer every key request with an error. */
function checkMasterKey (identity: Identity, path: string, stored: StoredDataKey): void {
  try {
    identity.unwrapDataKey(stored.keyId, stored.wrapped).fill(0)
  } catch (err) {
    throw new InvalidConfigError(`${path} does not unwrap the data keys the database holds (data key ${stored.keyId}): it is not the master key they were wrapped under; restore the one from the same backup as the database`, { cause: err })
  }
}
