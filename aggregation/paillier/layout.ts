/**
 * Packing many ring values into one Paillier plaintext (the "packing" / "batching" of
 * Ge & Zdonik 2007 and of most Paillier FL systems, e.g. BatchCrypt, Zhang et al. ATC 2020).
 *
 * Each value x ∈ Z/2^32 (an int32 in two's complement, see aggregation/ring.ts) goes into a slot
 * of 32 + g bits, g = ⌈log2 maxClients⌉, as the offset value v = x + 2^31 ∈ [0, 2^32), which is
 * `x XOR 0x80000000` on the uint32. A slot then sums n ≤ maxClients values to at most
 * n·(2^32 − 1) < 2^(32+g): no carry ever reaches the next slot, and the plaintext sum stays below
 * 2^(slots·slotBits) ≤ 2^(bits(n)−1) < n, so nothing wraps mod n either. Unpacking subtracts
 * n·2^31 and reduces mod 2^32, which gives the ring sum exactly.
 *
 * Why the offset and not the bare uint32: Σ uint32(x_i) = Σ x_i + 2^32·#{i : x_i < 0}, so a slot
 * of bare uint32s would tell the decryptor how many clients sent a negative value at every
 * coordinate. With the offset the slot holds Σ x_i + n·2^31: the integer sum and n, nothing more.
 *
 * Value i sits in plaintext ⌊i / s⌋, slot i mod s, slot j at bits [j·slotBits, (j+1)·slotBits).
 * Unused slots of the last plaintext hold 0 and must sum to 0.
 */
import { IntegrityError, InvalidInputError } from '../../shared/errors/errors.ts'
import type { PaillierPublicKey } from './keys.ts'
import { DEFAULT_MAX_CLIENTS, MAX_VECTOR_LENGTH } from './constants.ts'

export interface PackingLayout {
  /** Bit length of the modulus n the layout is for. */
  readonly keyBits: number
  /** Most clients whose packed values may be summed. */
  readonly maxClients: number
  /** 32 + ⌈log2 maxClients⌉. */
  readonly slotBits: number
  /** ⌊(keyBits − 1) / slotBits⌋. */
  readonly slotsPerCiphertext: number
}

const OFFSET = 0x80000000
const RING = 1n << 32n

/**
 * The layout for a key and a client bound.
 * @example packingLayout(publicKey, 10) // 2048-bit n → 36-bit slots, 56 per ciphertext
 */
export function packingLayout (publicKey: Pick<PaillierPublicKey, 'bits'>, maxClients: number = DEFAULT_MAX_CLIENTS): PackingLayout {
  if (!Number.isSafeInteger(maxClients) || maxClients < 1 || maxClients > 2 ** 20) throw new InvalidInputError(`maxClients: expected an integer in [1, 2^20], got ${maxClients}`)
  const slotBits = 32 + Math.ceil(Math.log2(maxClients))
  const slotsPerCiphertext = Math.floor((publicKey.bits - 1) / slotBits)
  if (slotsPerCiphertext < 1) throw new InvalidInputError(`publicKey: ${publicKey.bits}-bit modulus cannot hold one ${slotBits}-bit slot`)
  return { keyBits: publicKey.bits, maxClients, slotBits, slotsPerCiphertext }
}

/** How many ciphertexts a vector of `length` values packs into. */
export function ciphertextCount (layout: PackingLayout, length: number): number {
  checkLength(length)
  return Math.ceil(length / layout.slotsPerCiphertext)
}

function checkLength (length: number): void {
  if (!Number.isSafeInteger(length) || length < 1 || length > MAX_VECTOR_LENGTH) throw new InvalidInputError(`length: expected an integer in [1, ${MAX_VECTOR_LENGTH}], got ${length}`)
}

/** Packs ring values into plaintexts (see the header for the slot format). */
export function pack (values: Uint32Array, layout: PackingLayout): bigint[] {
  const count = ciphertextCount(layout, values.length)
  const s = layout.slotsPerCiphertext
  const shift = BigInt(layout.slotBits)
  const out = new Array<bigint>(count)
  for (let c = 0; c < count; c++) {
    // Highest slot first, so each step is one shift and one OR.
    let m = 0n
    for (let j = s - 1; j >= 0; j--) {
      const i = c * s + j
      m <<= shift
      if (i < values.length) m |= BigInt(((values[i] as number) ^ OFFSET) >>> 0)
    }
    out[c] = m
  }
  return out
}

/**
 * The ring sum of `clients` packed vectors from their packed plaintext sums. Throws
 * IntegrityError when a slot holds more than `clients` honest values can add up to, or when
 * padding is not 0 — the sign that some contribution was not a packing of this layout.
 */
export function unpack (sums: readonly bigint[], layout: PackingLayout, length: number, clients: number): Uint32Array {
  const count = ciphertextCount(layout, length)
  if (sums.length !== count) throw new InvalidInputError(`sums: expected ${count} plaintexts for ${length} values, got ${sums.length}`)
  if (!Number.isSafeInteger(clients) || clients < 1 || clients > layout.maxClients) throw new InvalidInputError(`clients: expected an integer in [1, ${layout.maxClients}], got ${clients}`)
  const s = layout.slotsPerCiphertext
  const shift = BigInt(layout.slotBits)
  const mask = (1n << shift) - 1n
  const maxSlot = BigInt(clients) * (RING - 1n)
  const offset = BigInt(clients) * BigInt(OFFSET)
  const out = new Uint32Array(length)
  for (let c = 0; c < count; c++) {
    let m = sums[c] as bigint
    if (m < 0n || m >> (shift * BigInt(s)) !== 0n) throw new IntegrityError(`packed sum ${c}: exceeds ${s} slots of ${layout.slotBits} bits`)
    for (let j = 0; j < s; j++) {
      const slot = m & mask
      m >>= shift
      const i = c * s + j
      if (i >= length) {
        if (slot !== 0n) throw new IntegrityError(`packed sum ${c}: padding slot ${j} is not 0`)
        continue
      }
      // The value stays out of the message: unreduced, it is more than the ring sum reveals.
      if (slot > maxSlot) throw new IntegrityError(`packed sum ${c}, slot ${j}: exceeds what ${clients} clients can add up to`)
      out[i] = Number(BigInt.asUintN(32, slot - offset))
    }
  }
  return out
}
