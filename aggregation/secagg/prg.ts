/**
 * Mask expansion for pairwise masking (Bonawitz et al. 2017, §3: masks are PRG(seed) in Z_R^m,
 * R = 2^32): a 32-byte full-entropy seed is the key of AES-256-CTR (NIST SP 800-38A) run from the
 * all-zero counter block, and the keystream, read as little-endian 32-bit words, is the mask.
 * A fixed counter is safe because every seed is derived for one purpose in one round (kdf.ts) and
 * expanded once per holder; two holders of a pair seed expand the same mask on purpose.
 *
 * Why AES-CTR through WebCrypto: measured on this machine for 4 MB (1M words), WebCrypto
 * AES-256-CTR ≈ 6 ms against ≈ 13–15 ms for @noble/ciphers' ChaCha20 (pure JS); both run in
 * Node and browsers. The figures are in the secagg bench.
 *
 * `addMasksInto` folds many masks into one vector without materialising any of them: it keeps
 * groups of 1 MiB keystream chunks in flight (WebCrypto works off the main thread in Node) and
 * adds or subtracts each group in one pass as it arrives, so the folding overlaps the generation.
 */
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { BLOCK_BYTES, counterAt, importCtrKey, keystream } from './_ctr.ts'
import { KEY_BYTES, PRG_CHUNK_WORDS, PRG_IN_FLIGHT } from './constants.ts'

const WORD_BYTES = 4
const WORDS_PER_BLOCK = BLOCK_BYTES / WORD_BYTES
const ZERO_COUNTER = new Uint8Array(BLOCK_BYTES)
/** Masks folded per pass over acc (foldGroup has loops for 1 to 4). */
const FOLD_GROUP = 4

/** Masks are defined as little-endian words; a Uint32Array view reads them so only on a little-endian platform. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

function checkPlatform (): void {
  if (!LITTLE_ENDIAN) throw new InvalidInputError('mask PRG: this platform is big-endian; masks are defined as little-endian words')
}

function checkSeed (seed: Uint8Array, what: string): void {
  if (!(seed instanceof Uint8Array) || seed.length !== KEY_BYTES) {
    throw new InvalidInputError(`${what}: expected a ${KEY_BYTES}-byte seed, got ${seed instanceof Uint8Array ? `${seed.length} bytes` : typeof seed}`)
  }
}

/** One mask to fold in: `sign` +1 adds PRG(seed), −1 subtracts it (mod 2^32). */
export interface MaskTerm {
  seed: Uint8Array
  sign: 1 | -1
}

export interface FoldOptions {
  /** Words of keystream per WebCrypto call (a multiple of 4). */
  chunkWords?: number
  /** Groups of up to four WebCrypto calls kept in flight. */
  inFlight?: number
}

/**
 * PRG(seed) as a fresh Uint32Array of `length` words, in one WebCrypto call. The reference the
 * chunked path is tested against, and the raw cost the client's masking is compared with.
 *
 * @example const mask = await expandMask(seed, 1 << 20)
 */
export async function expandMask (seed: Uint8Array, length: number): Promise<Uint32Array> {
  checkPlatform()
  checkSeed(seed, 'expandMask seed')
  if (!Number.isSafeInteger(length) || length < 0) throw new InvalidInputError(`expandMask length: expected a non-negative integer, got ${length}`)
  if (length === 0) return new Uint32Array(0)
  const key = await importCtrKey(seed)
  return new Uint32Array(await keystream(key, counterAt(ZERO_COUNTER, 0), length * WORD_BYTES))
}

/**
 * acc ← acc + sign·PRG(seed) (mod 2^32), in place, chunk by chunk; returns acc.
 *
 * @example await addMaskInto(y, selfSeed, 1)
 */
export async function addMaskInto (acc: Uint32Array, seed: Uint8Array, sign: 1 | -1, options: FoldOptions = {}): Promise<Uint32Array> {
  return await addMasksInto(acc, [{ seed, sign }], options)
}

/**
 * acc[offset + i] ± Σ_j ks_j[i] for up to four keystream chunks in one pass: the fold is bound by
 * memory traffic, and one pass over acc for four masks moves half the bytes of four passes.
 * Sums of four words stay below 2^35, exact in a double; the Uint32Array store reduces mod 2^32.
 */
function foldGroup (acc: Uint32Array, offset: number, ks: Uint32Array[], sign: 1 | -1): void {
  const [a, b, c, d] = ks as [Uint32Array, Uint32Array | undefined, Uint32Array | undefined, Uint32Array | undefined]
  const n = a.length
  if (d !== undefined && c !== undefined && b !== undefined) {
    if (sign === 1) for (let i = 0; i < n; i++) acc[offset + i] = (acc[offset + i] as number) + ((a[i] as number) + (b[i] as number) + (c[i] as number) + (d[i] as number))
    else for (let i = 0; i < n; i++) acc[offset + i] = (acc[offset + i] as number) - ((a[i] as number) + (b[i] as number) + (c[i] as number) + (d[i] as number))
  } else if (c !== undefined && b !== undefined) {
    if (sign === 1) for (let i = 0; i < n; i++) acc[offset + i] = (acc[offset + i] as number) + ((a[i] as number) + (b[i] as number) + (c[i] as number))
    else for (let i = 0; i < n; i++) acc[offset + i] = (acc[offset + i] as number) - ((a[i] as number) + (b[i] as number) + (c[i] as number))
  } else if (b !== undefined) {
    if (sign === 1) for (let i = 0; i < n; i++) acc[offset + i] = (acc[offset + i] as number) + ((a[i] as number) + (b[i] as number))
    else for (let i = 0; i < n; i++) acc[offset + i] = (acc[offset + i] as number) - ((a[i] as number) + (b[i] as number))
  } else {
    if (sign === 1) for (let i = 0; i < n; i++) acc[offset + i] = (acc[offset + i] as number) + (a[i] as number)
    else for (let i = 0; i < n; i++) acc[offset + i] = (acc[offset + i] as number) - (a[i] as number)
  }
}

/**
 * acc ← acc + Σ sign_i·PRG(seed_i) (mod 2^32), in place; returns acc. Keystream chunks of all
 * terms are generated concurrently and folded as they arrive; no mask is ever held whole.
 *
 * @example await addMasksInto(y, [{ seed: b, sign: 1 }, { seed: s_uv, sign: -1 }])
 */
export async function addMasksInto (acc: Uint32Array, terms: readonly MaskTerm[], options: FoldOptions = {}): Promise<Uint32Array> {
  checkPlatform()
  if (!(acc instanceof Uint32Array)) throw new InvalidInputError('addMasksInto acc: expected a Uint32Array')
  const chunkWords = options.chunkWords ?? PRG_CHUNK_WORDS
  const inFlight = options.inFlight ?? PRG_IN_FLIGHT
  if (!Number.isSafeInteger(chunkWords) || chunkWords <= 0 || chunkWords % WORDS_PER_BLOCK !== 0) {
    throw new InvalidInputError(`addMasksInto chunkWords: expected a positive multiple of ${WORDS_PER_BLOCK}, got ${chunkWords}`)
  }
  if (!Number.isSafeInteger(inFlight) || inFlight < 1) throw new InvalidInputError(`addMasksInto inFlight: expected a positive integer, got ${inFlight}`)
  terms.forEach((t, i) => {
    checkSeed(t.seed, `addMasksInto terms[${i}].seed`)
    if (t.sign !== 1 && t.sign !== -1) throw new InvalidInputError(`addMasksInto terms[${i}].sign: expected 1 or -1, got ${String(t.sign)}`)
  })
  if (acc.length === 0 || terms.length === 0) return acc

  const keys = await Promise.all(terms.map(async t => await importCtrKey(t.seed)))
  // Jobs: one stretch of acc and up to FOLD_GROUP terms of one sign. Offset-major, so that a
  // stretch of acc stays in cache while all its terms are folded in.
  const bySign = [1, -1].map(sign => terms.map((t, i) => t.sign === sign ? i : -1).filter(i => i >= 0))
  const jobs: Array<{ offset: number, group: number[], sign: 1 | -1 }> = []
  for (let offset = 0; offset < acc.length; offset += chunkWords) {
    for (const [k, indices] of bySign.entries()) {
      for (let g = 0; g < indices.length; g += FOLD_GROUP) jobs.push({ offset, group: indices.slice(g, g + FOLD_GROUP), sign: k === 0 ? 1 : -1 })
    }
  }
  let next = 0
  const start = (): { job: typeof jobs[number], ks: Promise<ArrayBuffer[]> } | undefined => {
    const job = jobs[next++]
    if (job === undefined) return undefined
    const bytes = Math.min(chunkWords, acc.length - job.offset) * WORD_BYTES
    const counter = counterAt(ZERO_COUNTER, job.offset / WORDS_PER_BLOCK)
    return { job, ks: Promise.all(job.group.map(async term => await keystream(keys[term] as CryptoKey, counter, bytes))) }
  }
  const worker = async (): Promise<void> => {
    for (let current = start(); current !== undefined;) {
      const ks = await current.ks
      // Ask for the next chunks before folding these, so the generator never waits on the fold.
      const following = start()
      foldGroup(acc, current.job.offset, ks.map(b => new Uint32Array(b)), current.job.sign)
      current = following
    }
  }
  await Promise.all(Array.from({ length: Math.min(inFlight, jobs.length) }, worker))
  return acc
}
