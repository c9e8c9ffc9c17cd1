/**
 * A decryption thread of the decryptor (parallel-decrypt.ts): rebuilds the secret key from the
 * primes it is started with, decrypts the one batch of fixed-width ciphertexts it is sent, answers
 * and ends. It stops early, answering `stopped`, once the caller sets the shared stop flag (another
 * thread failed, or the decryption was aborted): ending at a ciphertext's boundary instead of
 * being terminated inside OpenSSL (parallel-decrypt.ts says why).
 */
import { parentPort, workerData } from 'node:worker_threads'
import { decrypt, secretKeyFromPrimes } from '../../aggregation/paillier/keys.ts'
import { fromBytes, toFixedBytes } from '../../aggregation/paillier/_bigint.ts'
import { nativeModPow } from './native-mod-pow.ts'

const { p, q } = workerData as { p: string, q: string }
const secretKey = secretKeyFromPrimes(BigInt(`0x${p}`), BigInt(`0x${q}`))
const pow = nativeModPow()

parentPort?.once('message', ({ ciphertexts, width, plainWidth, stop }: { ciphertexts: Uint8Array, width: number, plainWidth: number, stop: Int32Array }) => {
  try {
    const count = ciphertexts.length / width
    const out = new Uint8Array(count * plainWidth)
    for (let i = 0; i < count; i++) {
      if (Atomics.load(stop, 0) !== 0) {
        parentPort?.postMessage({ stopped: true })
        return
      }
      const m = decrypt(secretKey, fromBytes(ciphertexts.subarray(i * width, (i + 1) * width)), pow)
      out.set(toFixedBytes(m, plainWidth), i * plainWidth)
    }
    parentPort?.postMessage({ plaintexts: out }, [out.buffer])
  } catch (err) {
    parentPort?.postMessage({ error: (err as Error).message })
  } finally {
    parentPort?.close() // nothing else keeps the thread alive: it ends
  }
})
