/**
 * Paillier decryption of a round's sums on several threads. Each ciphertext decrypts on its own
 * (two exponentiations, nearly all the cost), so the sums are cut into one contiguous run per
 * thread. The threads live for one decryption: a round needs one, and nothing of the key stays
 * in a thread between rounds. An abort (the decryptor stopping) or one thread's failure stops
 * the others at their next ciphertext (a shared flag they read), and the run on this thread at
 * its next exponentiation. Threads end on their own once they have answered: `terminate()` while
 * a thread was inside OpenSSL crashed the whole process (V8 "Check failed: (location_) !=
 * nullptr", Node 24.21, seen when a bad ciphertext failed one thread while another computed;
 * nodejs/node#60755 reports the same check), so it is kept for a thread that outlives its grace.
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { PaillierSecretKey } from '../../aggregation/paillier/keys.ts'
import { decryptInTurn } from '../../aggregation/paillier/aggregate.ts'
import { ciphertextWidth } from '../../aggregation/paillier/wire.ts'
import { fromBytes, toFixedBytes } from '../../aggregation/paillier/_bigint.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { nativeModPow } from './native-mod-pow.ts'
import { clearableDeadline, untilAborted } from '../../shared/load/deadline.ts'

/** Fewer ciphertexts per thread than this are decrypted here: a thread costs about 100 ms to start. */
const MIN_PER_THREAD = 64

/** How long a told-to-stop thread may take to end before it is terminated (one ciphertext takes milliseconds). */
const STOP_GRACE_MS = 10_000

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
  // Set once the result is settled (all answered, one failed, or aborted): threads still at work stop.
  const stop = new Int32Array(new SharedArrayBuffer(4))
  const started: Array<{ worker: Worker, exited: Promise<void> }> = []
  try {
    const parts = Promise.all(Array.from({ length: runs }, async (_, t) => {
      const chunk = sums.slice(t * per, (t + 1) * per)
      const bytes = new Uint8Array(chunk.length * width)
      chunk.forEach((c, i) => bytes.set(toFixedBytes(c, width), i * width))
      const worker = new Worker(WORKER, { workerData: { p: secretKey.p.toString(16), q: secretKey.q.toString(16) } })
      started.push({ worker, exited: new Promise(resolve => { worker.once('exit', () => { resolve() }) }) })
      const answer = await new Promise<{ plaintexts?: Uint8Array, error?: string, stopped?: true }>((resolve, reject) => {
        worker.once('message', resolve)
        worker.once('error', reject)
        worker.once('exit', code => reject(new Error(`decryption thread ${t} exited (${code}) before answering`)))
        worker.postMessage({ ciphertexts: bytes, width, plainWidth, stop }, [bytes.buffer])
      })
      if (answer.error !== undefined || answer.plaintexts === undefined) throw new InvalidInputError(answer.error ?? `decryption thread ${t} ${answer.stopped === true ? 'stopped' : 'gave no answer'}`)
      const plain = answer.plaintexts
      return Array.from({ length: chunk.length }, (_, i) => fromBytes(plain.subarray(i * plainWidth, (i + 1) * plainWidth)))
    }))
    return (await (signal === undefined ? parts : untilAborted(signal, parts))).flat()
  } finally {
    Atomics.store(stop, 0, 1)
    await Promise.all(started.map(async ({ worker, exited }) => { await endWithin(worker, exited, STOP_GRACE_MS) }))
  }
}

/** Waits for a thread told to stop to end; one still running past `graceMs` is terminated (the crash above is the lesser risk than a thread that never ends). */
async function endWithin (worker: Worker, exited: Promise<void>, graceMs: number): Promise<void> {
  const grace = clearableDeadline(graceMs, 'the thread did not end')
  try {
    await untilAborted(grace.signal, exited)
  } catch {
    await worker.terminate()
  } finally {
    grace.clear()
  }
}
