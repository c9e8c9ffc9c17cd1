/**
 * Cost of Paillier secure aggregation (aggregation/paillier), for the secagg benchmark: by
 * default 10 clients × 100K parameters with a 2048-bit key. Measures key generation, the offline
 * phase (r^n precomputation) with both randomness methods, the online phase (pack + encrypt +
 * encode, target ≤ 1 s per client), wire bytes versus the float32 update, the server's
 * homomorphic sum and the decryption of the sum (as the decryptor runs it: OpenSSL's
 * exponentiation on one thread per core; then on one thread, and with the BigInt one as the
 * reference), and checks every result against the ring sum.
 *
 * The `plain` offline phase (a full 2048-bit exponentiation per ciphertext) is timed on a sample
 * of `plainSample` ciphertexts and extrapolated linearly (each value costs the same, independent
 * work); the output marks it `extrapolated`. The `short-exponent` phase is run in full for every
 * client, and those are the pools the online phase spends.
 *
 * Standalone: `node_modules/.bin/node tests/bench/secagg-paillier.ts` prints the JSON.
 */
import { generateKeyPair } from '../../aggregation/paillier/keys.ts'
import { ciphertextCount, packingLayout } from '../../aggregation/paillier/layout.ts'
import { precomputeRandomness, type RandomnessPool } from '../../aggregation/paillier/randomness.ts'
import { decryptSum, encryptUpdate, sumEncodedUpdates } from '../../aggregation/paillier/aggregate.ts'
import { ciphertextWidth } from '../../aggregation/paillier/wire.ts'
import { ringSum } from '../../aggregation/ring.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { decryptAll, defaultDecryptThreads } from '../../coordinator/decryptor/parallel-decrypt.ts'
import { machine } from './machine.ts'

export interface PaillierCostOptions {
  clients?: number
  parameters?: number
  keyBits?: number
  /** Ciphertexts timed for the `plain` method before extrapolating (default 24). */
  plainSample?: number
  /** Progress lines (default: none). */
  log?: (line: string) => void
}

const ms = (x: number): number => +x.toFixed(1)
const us = (x: number): number => +(x * 1000).toFixed(1)
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length

/** Fixed-point-like updates: int32 values within ±2^31/clients, so every sum fits int32 (ring.ts). */
function updates (clients: number, parameters: number): Uint32Array[] {
  const rand = mulberry32(0x5ecA99)
  const bound = Math.floor(2 ** 31 / clients) - 1
  return Array.from({ length: clients }, () => Uint32Array.from({ length: parameters }, () => (Math.floor(rand() * 2 * bound) - bound) >>> 0))
}

export async function paillierCost (options: PaillierCostOptions = {}): Promise<Record<string, unknown>> {
  const clients = options.clients ?? 10
  const parameters = options.parameters ?? 100_000
  const keyBits = options.keyBits ?? 2048
  const plainSample = options.plainSample ?? 24
  const log = options.log ?? (() => undefined)

  let t = performance.now()
  const secretKey = await generateKeyPair(keyBits)
  const keygenMs = performance.now() - t
  const publicKey = secretKey.publicKey
  const layout = packingLayout(publicKey, clients)
  const count = ciphertextCount(layout, parameters)
  log(`key ${keyBits} bits in ${ms(keygenMs)} ms; ${count} ciphertexts per client`)

  t = performance.now()
  await precomputeRandomness(publicKey, plainSample, { method: 'plain' })
  const plainPerCiphertextMs = (performance.now() - t) / plainSample
  log(`plain r^n: ${ms(plainPerCiphertextMs)} ms per ciphertext (sample of ${plainSample})`)

  const pools: RandomnessPool[] = []
  const offlineMs: number[] = []
  for (let c = 0; c < clients; c++) {
    t = performance.now()
    pools.push(await precomputeRandomness(publicKey, count, { method: 'short-exponent' }))
    offlineMs.push(performance.now() - t)
    log(`client ${c}: short-exponent pool of ${count} in ${ms(offlineMs[c] as number)} ms`)
  }

  const xs = updates(clients, parameters)
  const onlineMs: number[] = []
  const wire: Uint8Array[] = []
  for (let c = 0; c < clients; c++) {
    t = performance.now()
    wire.push(encryptUpdate(xs[c] as Uint32Array, layout, pools[c] as RandomnessPool))
    onlineMs.push(performance.now() - t)
  }
  log(`online: ${ms(mean(onlineMs))} ms per client`)

  t = performance.now()
  const sums = sumEncodedUpdates(wire, layout, publicKey, parameters)
  const sumMs = performance.now() - t
  // The decryption as `blockfed decryptor` runs it (OpenSSL's exponentiation, on one thread per
  // core), on one thread, then with the BigInt modPow on one thread as the reference; same sums.
  t = performance.now()
  const result = await decryptSum(secretKey, sums, layout, parameters, clients, async s => await decryptAll(secretKey, s))
  const decryptMs = performance.now() - t
  t = performance.now()
  const oneThread = await decryptSum(secretKey, sums, layout, parameters, clients, async s => await decryptAll(secretKey, s, 1))
  const oneThreadDecryptMs = performance.now() - t
  t = performance.now()
  const reference = await decryptSum(secretKey, sums, layout, parameters, clients)
  const bigintDecryptMs = performance.now() - t
  log(`server sum ${ms(sumMs)} ms, decryption ${ms(decryptMs)} ms on ${defaultDecryptThreads()} threads (one thread: ${ms(oneThreadDecryptMs)} ms; BigInt modPow: ${ms(bigintDecryptMs)} ms)`)
  const expected = ringSum(xs, parameters)
  const correct = [result, oneThread, reference].every(r => r.every((v, i) => v === expected[i]))

  const bytesPerClient = wire[0]?.length ?? 0
  const floatBytes = parameters * 4
  return {
    bench: 'secagg-paillier',
    clients,
    parameters,
    keyBits,
    layout: { slotBits: layout.slotBits, slotsPerCiphertext: layout.slotsPerCiphertext, ciphertextsPerClient: count, ciphertextBytes: ciphertextWidth(publicKey) },
    keyGenerationMs: ms(keygenMs),
    offline: {
      shortExponent: {
        measured: true,
        assumption: 'DCR plus short-exponent indistinguishability (Damgård–Jurik–Nielsen 2010), α of 256 bits',
        perClientMs: { mean: ms(mean(offlineMs)), max: ms(Math.max(...offlineMs)) },
        perCiphertextUs: us(mean(offlineMs) / count)
      },
      plain: {
        measured: false,
        extrapolated: `timed on ${plainSample} ciphertexts, × ${count} per client`,
        assumption: 'DCR only (Paillier 1999)',
        perCiphertextMs: ms(plainPerCiphertextMs),
        perClientMs: ms(plainPerCiphertextMs * count)
      }
    },
    online: {
      what: 'pack + one multiplication mod n per ciphertext + encode',
      perClientMs: { mean: ms(mean(onlineMs)), max: ms(Math.max(...onlineMs)) },
      perCiphertextUs: us(mean(onlineMs) / count),
      targetMs: 1000,
      met: Math.max(...onlineMs) <= 1000
    },
    bytes: {
      ciphertextPerClient: bytesPerClient,
      float32Update: floatBytes,
      ratio: +(bytesPerClient / floatBytes).toFixed(2),
      base64JsonPerClient: Math.ceil(bytesPerClient / 3) * 4
    },
    server: {
      homomorphicSumMs: ms(sumMs),
      decryptionMs: ms(decryptMs),
      decryptionPerCiphertextMs: ms(decryptMs / count),
      decryptionThreads: defaultDecryptThreads(),
      oneThreadDecryptionMs: ms(oneThreadDecryptMs),
      bigintDecryptionMs: ms(bigintDecryptMs),
      speedupOverBigint: +(bigintDecryptMs / decryptMs).toFixed(2),
      threadSpeedup: +(oneThreadDecryptMs / decryptMs).toFixed(2)
    },
    correct,
    machine: machine()
  }
}

if (import.meta.main) {
  console.log(JSON.stringify(await paillierCost({ log: line => { console.error(line) } }), null, 2))
}
