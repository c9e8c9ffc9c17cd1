/**
 * BlockSource: where a runtime gets sealed blocks and shards by CID. The seam for peer-to-peer
 * sources: the loader treats every source the same way and verifies every byte by its CID, so
 * a source is never trusted.
 */
export interface BlockSource {
  readonly name: string
  /** The bytes stored under `cid`. Rejects with NotFoundError, UnavailableError or TimeoutError. */
  get: (cid: string, options: { signal: AbortSignal }) => Promise<Uint8Array>
}
