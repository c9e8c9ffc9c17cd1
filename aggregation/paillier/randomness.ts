/**
 * Offline/online Paillier encryption. Encrypting m is c = g^m · r^n mod n²; with g = n + 1,
 * g^m = 1 + m·n, and the costly r^n (a 2048-bit exponentiation mod n², ≈ 40 ms here) does not
 * depend on m. So r^n is computed ahead of time into a pool, and the online step is
 *
 *   c = (1 + m·n)·r^n mod n² = r^n + n·(m·(r^n mod n) mod n)        (as n·x mod n² = n·(x mod n))
 *
 * — one multiplication mod n (about half the time of one mod n² here), one by n and an add.
 *
 * Two ways to fill the pool:
 * - `plain`: r uniform in Z*_n, r^n by full exponentiation. Secure under DCR alone (Paillier 1999).
 * - `short-exponent` (Damgård, Jurik & Nielsen, "A generalization of Paillier's public-key system
 *   with applications to electronic voting", IJIS 2010, the variant with a fixed h_s):
 *   h = −y² mod n for one random y, h_n = h^n mod n², then r^n := h_n^α for a fresh random
 *   α < 2^256. h_n is fixed, so a table of h_n^(d·2^(w·i)) for every w-bit digit d and window
 *   position i (fixed-base windowing, HAC §14.6.3) turns each h_n^α into ⌈256/w⌉ multiplications. SECURITY ASSUMPTION: beyond DCR, that
 *   h^α for a short random α cannot be told apart from a uniform element of ⟨h⟩ (the
 *   short-exponent indistinguishability DJN rely on). Choose `plain` where only DCR is accepted.
 *
 * Misuse is made impossible rather than documented: the pool never hands out r^n, it only
 * encrypts, and each value is used once and then dropped (bigints cannot be wiped in JS; the
 * pool keeps no reference to a used value).
 */
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { bitLength, gcd, modPow, randomBelow } from './_bigint.ts'
import { yielder } from '../../shared/async/yielder.ts'
import { onlineEncrypt } from './_online.ts'
import { SHORT_EXPONENT_BITS } from './constants.ts'
import { RandomnessExhaustedError } from './errors.ts'
import type { PaillierPublicKey } from './keys.ts'

export type RandomnessMethod = 'plain' | 'short-exponent'

export interface PrecomputeOptions {
  /** Default `plain` (DCR only); `short-exponent` is tens of times faster offline, under an extra assumption (see the module header). */
  method?: RandomnessMethod
  /** Stops the offline loop (checked between values). */
  signal?: AbortSignal
  /** Called now and then with (values done, total). */
  onProgress?: (done: number, total: number) => void
}

/** A one-shot supply of r^n values for one public key; it encrypts, it never reveals r^n. */
export interface RandomnessPool {
  readonly publicKey: PaillierPublicKey
  readonly method: RandomnessMethod
  /** Values the pool was made with. */
  readonly size: number
  /** Values not used yet. */
  remaining: () => number
  /**
   * Encrypts each plaintext (0 ≤ m < n) with its own unused r^n. Throws, consuming nothing,
   * when fewer than `plaintexts.length` values remain or a plaintext is out of range.
   */
  encrypt: (plaintexts: readonly bigint[]) => bigint[]
  /** Drops every unused value. */
  destroy: () => void
}

/** r uniform in Z*_n. */
function unitBelow (n: bigint): bigint {
  for (;;) {
    const r = randomBelow(n)
    if (r > 1n && gcd(r, n) === 1n) return r
  }
}

/** Window width minimising table building + count evaluations: ⌈k/w⌉·(2^w − 1) + count·⌈k/w⌉. */
function tableWindow (k: number, count: number): number {
  let best = 1
  let bestCost = Infinity
  for (let w = 1; w <= 12; w++) {
    const rows = Math.ceil(k / w)
    const cost = rows * ((1 << w) - 1) + count * rows
    if (cost < bestCost) {
      best = w
      bestCost = cost
    }
  }
  return best
}

/**
 * Fixed-base exponentiation by a windowing table: table[i][d] = base^(d·2^(w·i)), so
 * base^α = Π_i table[i][digit_i(α)] — no squarings at all once the table exists.
 */
function fixedBase (base: bigint, k: number, count: number, modulus: bigint): (exponent: bigint) => bigint {
  const w = tableWindow(k, count)
  const rows = Math.ceil(k / w)
  const table: bigint[][] = []
  let rowBase = base
  for (let i = 0; i < rows; i++) {
    const row: bigint[] = [1n, rowBase]
    for (let d = 2; d < 1 << w; d++) row.push((row[d - 1] as bigint) * rowBase % modulus)
    table.push(row)
    rowBase = (row[(1 << w) - 1] as bigint) * rowBase % modulus // base^(2^(w·(i+1)))
  }
  const digitMask = BigInt((1 << w) - 1)
  const shift = BigInt(w)
  return exponent => {
    let r = 1n
    let e = exponent
    for (let i = 0; i < rows && e !== 0n; i++) {
      const digit = Number(e & digitMask)
      e >>= shift
      if (digit !== 0) r = r * ((table[i] as bigint[])[digit] as bigint) % modulus
    }
    return r
  }
}

/**
 * Precomputes `count` values r^n for `publicKey` (the offline phase) and returns the pool that
 * will spend them. Yields to the event loop every 10 ms or so, so it can run in a page or beside
 * a server; `signal` stops it.
 * @example
 * const pool = await precomputeRandomness(pk, ciphertextCount(layout, values.length))
 * const cts = pool.encrypt(pack(values, layout))
 */
export async function precomputeRandomness (publicKey: PaillierPublicKey, count: number, options: PrecomputeOptions = {}): Promise<RandomnessPool> {
  const method = options.method ?? 'plain'
  if (method !== 'plain' && method !== 'short-exponent') throw new InvalidInputError(`options.method: expected "plain" or "short-exponent", got ${String(method)}`)
  if (!Number.isSafeInteger(count) || count < 1) throw new InvalidInputError(`count: expected a positive integer, got ${count}`)
  const { n, n2 } = publicKey
  let next: () => bigint
  if (method === 'plain') {
    next = () => modPow(unitBelow(n), n, n2)
  } else {
    const y = unitBelow(n)
    const h = n - (y * y % n)
    const hn = modPow(h, n, n2)
    const power = fixedBase(hn, SHORT_EXPONENT_BITS, count, n2)
    const bound = 1n << BigInt(SHORT_EXPONENT_BITS)
    next = () => {
      let alpha = 0n
      while (alpha === 0n) alpha = randomBelow(bound)
      return power(alpha)
    }
  }
  let rn: (bigint | undefined)[] = new Array<bigint>(count)
  let rnModN: (bigint | undefined)[] = new Array<bigint>(count)
  const pause = yielder()
  for (let i = 0; i < count; i++) {
    if (i % 16 === 0 && i > 0) options.onProgress?.(i, count)
    await pause()
    options.signal?.throwIfAborted()
    const v = next()
    rn[i] = v
    rnModN[i] = v % n
  }
  options.onProgress?.(count, count)
  let used = 0

  return {
    publicKey,
    method,
    size: count,
    remaining: () => rn.length - used,
    encrypt (plaintexts) {
      const left = rn.length - used
      if (plaintexts.length > left) throw new RandomnessExhaustedError(`randomness pool: ${plaintexts.length} encryptions asked, ${left} values left; precompute a larger pool`)
      for (let i = 0; i < plaintexts.length; i++) {
        const m = plaintexts[i] as bigint
        if (m < 0n || m >= n) throw new InvalidInputError(`plaintexts[${i}]: out of range [0, n) (${bitLength(m)} bits)`)
      }
      const out = new Array<bigint>(plaintexts.length)
      for (let i = 0; i < plaintexts.length; i++) {
        const j = used++
        out[i] = onlineEncrypt(plaintexts[i] as bigint, rn[j] as bigint, rnModN[j] as bigint, n, n2)
        rn[j] = undefined
        rnModN[j] = undefined
      }
      return out
    },
    destroy () {
      used = 0
      rn = []
      rnModN = []
    }
  }
}
