/**
 * A decryption thread of the decryptor (parallel-decrypt.ts): rebuilds the secret key from the
 * primes it is started with, then decrypts each batch of fixed-width ciphertexts it is sent.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { decrypt, secretKeyFromPrimes } from '../../aggregation/paillier/keys.ts'
import { fromBytes, toFixedBytes } from '../../aggregation/paillier/_bigint.ts'
import { nativeModPow } from './native-mod-pow.ts'

const { p, q } = workerData as { p: string, q: string }
const secretKey = secretKeyFromPrimes(BigInt(`0x${p}`), BigInt(`0x${q}`))
const pow = nativeModPow()

parentPort?.on('message', ({ ciphertexts, width, plainWidth }: { ciphertexts: Uint8Array, width: number, plainWidth: number }) => {
  try {
    const count = ciphertexts.length / width
    const out = new Uint8Array(count * plainWidth)
    for (let i = 0; i < count; i++) {
      const m = decrypt(secretKey, fromBytes(ciphertexts.subarray(i * width, (i + 1) * width)), pow)
      out.set(toFixedBytes(m, plainWidth), i * plainWidth)
    }
    parentPort?.postMessage({ plaintexts: out }, [out.buffer])
  } catch (err) {
    parentPort?.postMessage({ error: (err as Error).message })
  }
})
