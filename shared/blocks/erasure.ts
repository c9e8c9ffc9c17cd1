/**
 * Reed-Solomon erasure coding of sealed blocks (GF(2^8), systematic; Reed & Solomon 1960 as
 * implemented by the reed-solomon-erasure crate compiled to wasm). A sealed block of L bytes
 * becomes k data shards of ceil(L/k) bytes (the last zero-padded) and m parity shards; any k of
 * the k+m rebuild it. The wasm is injected as a factory: Node and browsers load its bytes differently.
 *
 * Upstream bug worked around here: in @subspace/reed-solomon-erasure.wasm 0.2.5 a `reconstruct`
 * call corrupts the instance's allocator (the first call succeeds, later ones report too few
 * shards or trap), so every rebuild runs on a fresh instance (≈0.6 ms to make here). `encode` on
 * a long-lived instance was checked against fresh instances and stays correct.
 */
import type { ReedSolomonErasure } from '@subspace/reed-solomon-erasure.wasm'
import { InvalidInputError, UnavailableError } from '../errors/errors.ts'

export interface ErasureParams {
  k: number
  m: number
}

export interface ErasureCoder {
  readonly params: ErasureParams
  shardSize (length: number): number
  /** k + m shards of `shardSize(sealed.length)` bytes each. */
  encode (sealed: Uint8Array): Uint8Array[]
  /**
   * Rebuilds the original `length` bytes from shards where `undefined` marks a missing or
   * rejected shard. Throws UnavailableError with fewer than k present.
   */
  decode (shards: Array<Uint8Array | undefined>, length: number): Promise<Uint8Array>
}

/** Bytes per shard when `length` bytes are cut into k data shards (the last zero-padded). */
function shardSizeFor (k: number, length: number): number {
  return Math.max(1, Math.ceil(length / k))
}

/**
 * Why a block's shard list cannot come from a k+m coder (a count other than k+m, or a shard size
 * other than ceil(L/k)); undefined when it can. A stored block sharded under other parameters
 * must not be reused, and a manifest must not describe one.
 */
export function shardLayoutError (params: ErasureParams, sealedLength: number, shards: { size: number, cids: readonly string[] }): string | undefined {
  const { k, m } = params
  if (shards.cids.length !== k + m) return `${shards.cids.length} shards, erasure ${k}+${m} makes ${k + m}`
  const size = shardSizeFor(k, sealedLength)
  if (shards.size !== size) return `shards of ${shards.size} bytes, erasure ${k}+${m} cuts ${sealedLength} bytes into shards of ${size}`
  return undefined
}

/** Makes a new wasm instance each call. */
export type ReedSolomonFactory = () => Promise<ReedSolomonErasure>

export async function erasureCoder (factory: ReedSolomonFactory, params: ErasureParams): Promise<ErasureCoder> {
  const { k, m } = params
  if (!Number.isInteger(k) || !Number.isInteger(m) || k < 1 || m < 0 || k + m > 256) {
    throw new InvalidInputError(`erasure params: need integers 1 <= k, 0 <= m, k + m <= 256 (got ${k}+${m})`)
  }
  const shardSize = (length: number): number => shardSizeFor(k, length)
  const encoder = await factory()

  return {
    params,
    shardSize,
    encode (sealed) {
      const size = shardSize(sealed.length)
      const all = new Uint8Array(size * (k + m))
      all.set(sealed)
      if (m > 0) {
        const result = encoder.encode(all, k, m)
        if (result !== 0) throw new Error(`reed-solomon encode failed with code ${result}`)
      }
      return Array.from({ length: k + m }, (_, i) => all.subarray(i * size, (i + 1) * size))
    },
    async decode (shards, length) {
      if (shards.length !== k + m) throw new InvalidInputError(`expected ${k + m} shard slots, got ${shards.length}`)
      const size = shardSize(length)
      const present = shards.map(s => s !== undefined && s.length === size)
      const count = present.filter(Boolean).length
      if (count < k) throw new UnavailableError(`only ${count} of ${k + m} shards intact; need ${k}`)
      const out = new Uint8Array(length)
      // Systematic code: with every data shard intact the block is their concatenation.
      if (present.slice(0, k).every(Boolean)) {
        for (let i = 0; i < k && i * size < length; i++) {
          const shard = shards[i] as Uint8Array
          out.set(shard.subarray(0, Math.min(size, length - i * size)), i * size)
        }
        return out
      }
      const all = new Uint8Array(size * (k + m))
      shards.forEach((s, i) => { if (present[i]) all.set(s as Uint8Array, i * size) })
      const result = (await factory()).reconstruct(all, k, m, present)
      if (result !== 0) throw new UnavailableError(`reed-solomon reconstruct failed with code ${result}`)
      out.set(all.subarray(0, length))
      return out
    }
  }
}

/**
 * Instances as the package loads them by itself (Node: from its own folder). Browsers pass a
 * factory over `ReedSolomonErasure.fromResponse(fetch(wasmUrl))` instead.
 */
export const defaultReedSolomon: ReedSolomonFactory = async () => {
  const mod = await import('@subspace/reed-solomon-erasure.wasm') as unknown as { ReedSolomonErasure?: typeof ReedSolomonErasure, default?: { ReedSolomonErasure: typeof ReedSolomonErasure } }
  const RS = mod.ReedSolomonErasure ?? mod.default?.ReedSolomonErasure
  if (RS === undefined) throw new Error('@subspace/reed-solomon-erasure.wasm: no ReedSolomonErasure export')
  return await RS.fromCurrentDirectory()
}
