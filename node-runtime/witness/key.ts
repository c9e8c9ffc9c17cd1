/**
 * The witness's Ed25519 cosigning key: 32 random bytes created on first start in the data dir
 * with mode 0600, then reused, so its vkey stays the one logs and clients were configured with.
 * Created whole by readOrCreateKey (node-runtime/key-file.ts): two processes starting at once
 * agree on one complete key, and a power cut cannot lose a key already handed out.
 */
import { ed25519 } from '@noble/curves/ed25519.js'
import { readOrCreateKey } from '../key-file.ts'

/** Reads the key at `path`, creating it first if there is none. */
export async function loadOrCreateWitnessKey (path: string): Promise<Uint8Array> {
  return await readOrCreateKey(path, () => ed25519.utils.randomSecretKey())
}
