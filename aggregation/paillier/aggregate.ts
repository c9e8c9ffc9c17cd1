/**
 * Client encryption of one update, homomorphic summation of many, and decryption of the sum
 * alone. Paillier is additively homomorphic (Paillier 1999, §8): E(a)·E(b) mod n² = E(a + b),
 * so the product of the clients' packed ciphertexts decrypts to their packed sum (layout.ts).
 */
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { decrypt, type PaillierPublicKey, type PaillierSecretKey } from './keys.ts'
import { ciphertextCount, pack, unpack, type PackingLayout } from './layout.ts'
import type { RandomnessPool } from './randomness.ts'
import { decodeCiphertexts, encodeCiphertexts } from './wire.ts'
import { type ModPow } from './_bigint.ts'
import { yielder } from '../../shared/async/yielder.ts'

function checkLayout (layout: PackingLayout, publicKey: PaillierPublicKey, what: string): void {
  if (layout.keyBits !== publicKey.bits) throw new InvalidInputError(`${what}: layout is for a ${layout.keyBits}-bit key, the key has ${publicKey.bits} bits`)
}

/**
 * The online phase of a client: pack ring values, encrypt each plaintext with one precomputed
 * r^n, and encode for the wire. Costs one multiplication mod n per ciphertext.
 * @example const bytes = encryptUpdate(encoded, layout, pool) // encoded: Uint32Array in Z/2^32
 */
export function encryptUpdate (values: Uint32Array, layout: PackingLayout, pool: RandomnessPool): Uint8Array {
  checkLayout(layout, pool.publicKey, 'encryptUpdate')
  return encodeCiphertexts(pool.encrypt(pack(values, layout)), pool.publicKey)
}

/** Σ ciphertext vectors, element-wise product mod n² (all vectors the same length). */
export function sumCiphertexts (vectors: readonly (readonly bigint[])[], publicKey: PaillierPublicKey): bigint[] {
  const first = vectors[0]
  if (first === undefined) throw new InvalidInputError('vectors: at least one ciphertext vector required')
  const acc = first.slice()
  for (let v = 1; v < vectors.length; v++) {
    const x = vectors[v] as readonly bigint[]
    if (x.length !== acc.length) throw new InvalidInputError(`vectors[${v}]: ${x.length} ciphertexts, expected ${acc.length}`)
    for (let i = 0; i < acc.length; i++) acc[i] = (acc[i] as bigint) * (x[i] as bigint) % publicKey.n2
  }
  return acc
}

/** Decodes every client's wire bytes and sums them: what the decryptor does first. */
export function sumEncodedUpdates (updates: readonly Uint8Array[], layout: PackingLayout, publicKey: PaillierPublicKey, length: number): bigint[] {
  checkLayout(layout, publicKey, 'sumEncodedUpdates')
  const count = ciphertextCount(layout, length)
  return sumCiphertexts(updates.map((u, i) => decodeCiphertexts(u, publicKey, count, `updates[${i}]`)), publicKey)
}

/**
 * Decrypts a summed ciphertext vector of `clients` updates and unpacks it to the ring sum.
 * `decryptMany` decrypts the sums in order; by default here, one after another with the BigInt
 * `modPow` (≈ 15 ms each at 2048 bits), yielding to the event loop every 10 ms or so. The
 * decryptor passes its own (coordinator/decryptor/parallel-decrypt.ts: OpenSSL, on every core).
 */
export async function decryptSum (secretKey: PaillierSecretKey, sums: readonly bigint[], layout: PackingLayout, length: number, clients: number, decryptMany?: (sums: readonly bigint[]) => Promise<bigint[]>): Promise<Uint32Array> {
  checkLayout(layout, secretKey.publicKey, 'decryptSum')
  const count = ciphertextCount(layout, length)
  if (sums.length !== count) throw new InvalidInputError(`sums: expected ${count} ciphertexts for ${length} values, got ${sums.length}`)
  const plain = decryptMany === undefined ? await decryptInTurn(secretKey, sums) : await decryptMany(sums)
  if (plain.length !== count) throw new InvalidInputError(`decryptMany: ${plain.length} plaintexts for ${count} ciphertexts`)
  return unpack(plain, layout, length, clients)
}

/** Decrypts each of `sums` in order on this thread, `pow` doing the exponentiations, yielding now and then. */
export async function decryptInTurn (secretKey: PaillierSecretKey, sums: readonly bigint[], pow?: ModPow): Promise<bigint[]> {
  const plain = new Array<bigint>(sums.length)
  const pause = yielder()
  for (let i = 0; i < sums.length; i++) {
    await pause()
    plain[i] = decrypt(secretKey, sums[i] as bigint, pow)
  }
  return plain
}
