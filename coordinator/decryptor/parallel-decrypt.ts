/**
 * Paillier decryption of a round's sums on several threads. Each ciphertext decrypts on its own
 * (two exponentiations, nearly all the cost), so the sums are cut into one contiguous run per
 * thread. The threads live for one decryption: a round needs one, and nothing of the key stays
 * in a thread between rounds. An abort (the decryptor stopping) ends the threads, or the run on
 * this thread at its next exponentiation.
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { PaillierSecretKey } from '../../aggregation/paillier/keys.ts'
import { decryptInTurn } from '../../aggregation/paillier/aggregate.ts'
import { ciphertextWidth } from '../../aggregation/paillier/wire.ts'
import { fromBytes, toFixedBytes } from '../../aggregation/paillier/_bigint.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { nativeModPow } from './native-mod-pow.ts'
import { untilAborted } from '../../shared/load/deadline.ts'

/** Fewer ciphertexts per thread than this are decrypted here: a thread costs about 100 ms to start. */
const MIN_PER_THREAD = 64

/** Threads by default: one per core, at most 8. */
export const defaultDecryptThreads = (): number => Math.min(8, availableParallelism())

const WORKER = new URL(import.meta.url.endsWith('.ts') ? './decrypt-worker.ts' : './decrypt-worker.js', import.meta.url)

/**
 * Decrypts every ciphertext of `sums` (each in [1, n²)), in order, on up to `threads` threads;
 * rejects with the signal's reason once it is aborted.
 */
export async function decryptAll (secretKey: PaillierSecretKey, sums: readonly bigint[], threads = defaultDecryptThreads(), signal?: AbortSignal): Promise<bigint[]> {
  signal?.throwIfAborted()
  const runs = Math.max(1, Math.min(threads, Math.floor(sums.length / MIN_PER_THREAD)))
  if (runs === 1) {
    const pow = nativeModPow()
    return await decryptInTurn(secretKey, sums, (base, exponent, modulus) => {
      signal?.throwIfAborted()
      return pow(base, exponent, modulus)
    })
  }
  const { n2 } = secretKey.publicKey
  const width = ciphertextWidth(secretKey.publicKey)
  const plainWidth = Math.ceil(secretKey.publicKey.bits / 8)
  for (const c of sums) if (c <= 0n || c >= n2) throw new InvalidInputError('ciphertext: out of range [1, n²)')
  const per = Math.ceil(sums.length / runs)
  const workers: Worker[] = []
  try {
    const parts = Promise.all(Array.from({ length: runs }, async (_, t) => {
      const chunk = sums.slice(t * per, (t + 1) * per)
      const bytes = new Uint8Array(chunk.length * width)
      chunk.forEach((c, i) => bytes.set(toFixedBytes(c, width), i * width))
      const worker = new Worker(WORKER, { workerData: { p: secretKey.p.toString(16), q: secretKey.q.toString(16) } })
      workers.push(worker)
      const answer = await new Promise<{ plaintexts?: Uint8Array, error?: string }>((resolve, reject) => {
        worker.once('message', resolve)
        worker.once('error', reject)
        worker.once('exit', code => reject(new Error(`decryption thread ${t} exited (${code}) before answering`)))
        worker.postMessage({ ciphertexts: bytes, width, plainWidth }, [bytes.buffer])
      })
      if (answer.error !== undefined || answer.plaintexts === undefined) throw new InvalidInputError(answer.error ?? `decryption thread ${t} gave no answer`)
      const plain = answer.plaintexts
      return Array.from({ length: chunk.length }, (_, i) => fromBytes(plain.subarray(i * plainWidth, (i + 1) * plainWidth)))
    }))
    return (await (signal === undefined ? parts : untilAborted(signal, parts))).flat()
  } finally {
    await Promise.all(workers.map(async w => await w.terminate()))
  }
}
