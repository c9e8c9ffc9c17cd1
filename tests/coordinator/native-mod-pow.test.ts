/**
 * The decryptor's OpenSSL exponentiation (coordinator/decryptor/native-mod-pow.ts) against the
 * BigInt `modPow` (itself checked against square-and-multiply in bigint.test.ts): every case,
 * including the ones OpenSSL refuses and hands back, and Paillier decryption with it, on one
 * thread and on several (parallel-decrypt.ts).
 */
import { Worker } from 'node:worker_threads'
import { describe, it, expect, vi } from 'vitest'
import { fromBytes, modPow, toFixedBytes } from '../../aggregation/paillier/_bigint.ts'
import { ciphertextWidth } from '../../aggregation/paillier/wire.ts'
import { decrypt, generateKeyPair } from '../../aggregation/paillier/keys.ts'
import { nativeModPow } from '../../coordinator/decryptor/native-mod-pow.ts'
import { decryptAll } from '../../coordinator/decryptor/parallel-decrypt.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { seededBig } from '../helpers/bigint.ts'

describe('native modPow', () => {
  it('equals the BigInt modPow for random odd moduli and exponents of every size, and for the edge cases OpenSSL refuses', () => {
    const pow = nativeModPow()
    const rand = mulberry32(5)
    for (const modBits of [64, 512, 2048, 4096]) {
      for (const expBits of [1, 17, 256, modBits / 2, modBits]) {
        const m = seededBig(rand, modBits) | 1n | (1n << BigInt(modBits - 1))
        const b = seededBig(rand, modBits + 40) // above the modulus too
        const e = seededBig(rand, expBits) | (1n << BigInt(expBits - 1))
        expect(pow(b, e, m), `${modBits}/${expBits}`).toBe(modPow(b, e, m))
      }
    }
    // OpenSSL did the work from 512 bits up (it refuses 64-bit moduli: those 5 fell back).
    expect(pow.stats()).toMatchObject({ native: 15, fallbacks: 5 })
    const m = (1n << 2047n) + 12345n * 2n + 1n
    for (const [b, e] of [[0n, 5n], [1n, 99n], [m - 1n, 3n], [m - 1n, 4n], [m, 7n], [-2n, 3n], [5n, 0n], [2n, 1n]] as const) {
      expect(pow(b, e, m), `${b} ^ ${e}`).toBe(modPow(b, e, m))
    }
    // An even modulus (no Montgomery form) and one past OpenSSL's 10,000-bit limit.
    const even = seededBig(rand, 1024) << 1n
    expect(pow(7n, 12345n, even)).toBe(modPow(7n, 12345n, even))
    const huge = (1n << 10_241n) + 1n
    expect(pow(3n, 65537n, huge)).toBe(modPow(3n, 65537n, huge))
  })

  it('keeps a bounded set of moduli ready, and still answers right after it cycled them', () => {
    const pow = nativeModPow()
    const rand = mulberry32(9)
    const moduli = Array.from({ length: 20 }, () => seededBig(rand, 1024) | 1n | (1n << 1023n))
    for (let round = 0; round < 2; round++) {
      for (const m of moduli) {
        expect(pow(123456789n, m >> 1n, m)).toBe(modPow(123456789n, m >> 1n, m))
        expect(pow.stats().cached).toBeLessThanOrEqual(8)
      }
    }
    expect(pow.stats()).toMatchObject({ native: 40, fallbacks: 0 })
  })

  it('decrypts Paillier ciphertexts as the BigInt path does', async () => {
    const sk = await generateKeyPair(1024)
    const pow = nativeModPow()
    const rand = mulberry32(3)
    const { n, n2 } = sk.publicKey
    for (let i = 0; i < 20; i++) {
      const m = seededBig(rand, 1000) % n
      const r = seededBig(rand, 1020) % n || 1n
      const c = (1n + m * n) % n2 * modPow(r, n, n2) % n2 // (1 + n)^m · r^n
      expect(decrypt(sk, c, pow)).toBe(m)
    }
    expect(pow.stats()).toMatchObject({ native: 40, fallbacks: 0 })
  })
})

describe('decryption on several threads (parallel-decrypt.ts)', () => {
  it('gives every plaintext in order, on one thread or several, and a bad ciphertext fails the whole', async () => {
    const sk = await generateKeyPair(1024)
    const rand = mulberry32(11)
    const { n, n2 } = sk.publicKey
    const messages = Array.from({ length: 150 }, () => seededBig(rand, 1000) % n)
    const ciphertexts = messages.map(m => (1n + m * n) % n2 * modPow(seededBig(rand, 1020) % n || 1n, n, n2) % n2)
    expect(await decryptAll(sk, ciphertexts, 2)).toEqual(messages) // two threads of 75
    expect(await decryptAll(sk, ciphertexts, 1)).toEqual(messages)
    expect(await decryptAll(sk, ciphertexts.slice(0, 10), 4)).toEqual(messages.slice(0, 10)) // too few for a thread
    // A ciphertext sharing a factor with n, deep in the second thread's run: the worker's error comes back.
    const bad = [...ciphertexts]
    bad[120] = sk.p * 5n
    await expect(decryptAll(sk, bad, 2)).rejects.toThrow('ciphertext: not coprime with n')
    await expect(decryptAll(sk, [...ciphertexts, n2], 2)).rejects.toThrow('ciphertext: out of range [1, n²)')
  }, 60_000)

  it('stops the other threads at a ciphertext boundary when one fails or the caller aborts, terminating none', async () => {
    // Terminating a thread inside OpenSSL crashed the process (V8 "Check failed: (location_) !=
    // nullptr"), within 4 tries of this loop before the stop flag.
    const sk = await generateKeyPair(1024) // before the spy: the prime search terminates its own threads
    const terminate = vi.spyOn(Worker.prototype, 'terminate')
    try {
      const rand = mulberry32(12)
      const { n, n2 } = sk.publicKey
      const ciphertexts = Array.from({ length: 150 }, () => (1n + seededBig(rand, 1000) % n * n) % n2 * modPow(seededBig(rand, 1020) % n || 1n, n, n2) % n2)
      for (let i = 0; i < 8; i++) {
        const bad = [...ciphertexts]
        bad[76 + i * 9] = sk.q * 3n // early to late in the second thread's run, while the first computes
        await expect(decryptAll(sk, bad, 2)).rejects.toThrow('ciphertext: not coprime with n')
      }
      // Seconds of work (≈ 0.25 ms a ciphertext a thread here), aborted while the threads compute.
      const many = Array.from({ length: 130 }, () => ciphertexts).flat()
      const controller = new AbortController()
      const aborted = decryptAll(sk, many, 2, controller.signal)
      setTimeout(() => { controller.abort(new Error('the decryptor is stopping')) }, 300)
      await expect(aborted).rejects.toThrow('the decryptor is stopping')
      expect(terminate).not.toHaveBeenCalled()
    } finally {
      terminate.mockRestore()
    }
  }, 60_000)

  it('a thread answers its one batch, or "stopped" once the flag is set, and then ends on its own', async () => {
    const sk = await generateKeyPair(1024)
    const { n, n2 } = sk.publicKey
    const width = ciphertextWidth(sk.publicKey)
    const plainWidth = Math.ceil(sk.publicKey.bits / 8)
    const run = async (flag: number): Promise<{ answer: { plaintexts?: Uint8Array, stopped?: true }, code: number }> => {
      const worker = new Worker(new URL('../../coordinator/decryptor/decrypt-worker.ts', import.meta.url), { workerData: { p: sk.p.toString(16), q: sk.q.toString(16) } })
      const stop = new Int32Array(new SharedArrayBuffer(4))
      stop[0] = flag
      const answer = new Promise<{ plaintexts?: Uint8Array, stopped?: true }>(resolve => { worker.once('message', resolve) })
      const exited = new Promise<number>(resolve => { worker.once('exit', resolve) })
      worker.postMessage({ ciphertexts: toFixedBytes((1n + 42n * n) % n2, width), width, plainWidth, stop })
      return { answer: await answer, code: await exited }
    }
    const done = await run(0)
    expect(fromBytes(done.answer.plaintexts ?? new Uint8Array())).toBe(42n)
    expect(done.code).toBe(0)
    expect(await run(1)).toEqual({ answer: { stopped: true }, code: 0 })
  }, 60_000)
})
