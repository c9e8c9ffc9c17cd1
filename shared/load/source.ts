/**
 * BlockSource: where a runtime gets sealed blocks and shards by CID. The seam for peer-to-peer
 * sources: the loader treats every source the same way and verifies every byte by its CID, so
 * a source is never trusted.
 */
export interface BlockSource {
  readonly name: string
  /** The bytes stored under `cid`. Rejects with NotFoundError, UnavailableError or TimeoutError. */
  get: (cid: string, options: BlockSourceGetOptions) => Promise<Uint8Array>
}

export interface BlockSourceGetOptions {
  signal: AbortSignal
  /** The sealed block this object belongs to (a shard's block): a p2p source looks up holders by it. */
  block?: string
  /** The shard's index in its block: a p2p source starts different shards at different peers. */
  shard?: number
  /**
   * The object's size, as the signed manifest gives it: a source reads no more than this, and a
   * peer announcing another size is refused before any of its bytes are read.
   */
  size?: number
}
