/**
 * The datastore of a blockfed libp2p node: libp2p's in-memory one, with the Kademlia provider
 * records other peers may store here bounded.
 *
 * A DHT server stores an ADD_PROVIDER record for any CID a peer names, as long as the record
 * names that peer (kad-dht's add-provider handler), and keeps it 48 h. Nothing else bounds them:
 * one connected peer stored 20,000 records for random CIDs in 6.8 s over one stream, and would
 * have gone on. Here a peer keeps at most `perPeer` records and all peers together `total`;
 * over either bound a new record is dropped (kad-dht does not learn of it, so the peer is not
 * told: a provider record is a hint, and a loader checks every object it fetches by its CID).
 * This node's own records (what it provides) are never dropped.
 *
 * The bounds sit far above honest use: a runtime provides each sealed block and its shards
 * (7 CIDs per 1 MiB block with 4+2 shards), so 8,192 records is a 1 GB model's worth per peer.
 */
import { MemoryDatastore } from 'datastore-core/memory'

type Key = Parameters<MemoryDatastore['put']>[0]

/** Where kad-dht keeps provider records: `/dht/provider/<multihash>/<peer id>` (its `datastorePrefix`, default). */
const PROVIDER_PREFIX = '/dht/provider/'

export const PROVIDER_RECORDS_PER_PEER = 8_192
export const PROVIDER_RECORDS_TOTAL = 131_072

export interface ProviderBounds {
  perPeer: number
  total: number
}

export class ProviderBoundedDatastore extends MemoryDatastore {
  /** Other peers' provider records held, by peer id. */
  private readonly byPeer = new Map<string, number>()
  private held = 0
  /** Records dropped over a bound since start. */
  dropped = 0

  private readonly self: string
  private readonly bounds: ProviderBounds

  /** `self`: this node's peer id, whose own records are never dropped. */
  constructor (self: string, bounds: ProviderBounds = { perPeer: PROVIDER_RECORDS_PER_PEER, total: PROVIDER_RECORDS_TOTAL }) {
    super()
    this.self = self
    this.bounds = bounds
  }

  /** Other peers' provider records held now. */
  get providerRecords (): number { return this.held }

  override async put (key: Key, value: Uint8Array, options?: { signal?: AbortSignal }): Promise<Key> {
    const peer = this.othersRecord(key)
    if (peer !== undefined && !(await super.has(key))) {
      const count = this.byPeer.get(peer) ?? 0
      if (count >= this.bounds.perPeer || this.held >= this.bounds.total) {
        this.dropped++
        return key
      }
      this.byPeer.set(peer, count + 1)
      this.held++
    }
    return await super.put(key, value, options)
  }

  override async delete (key: Key, options?: { signal?: AbortSignal }): Promise<void> {
    const peer = this.othersRecord(key)
    if (peer !== undefined && await super.has(key)) {
      const count = (this.byPeer.get(peer) ?? 1) - 1
      if (count > 0) this.byPeer.set(peer, count)
      else this.byPeer.delete(peer)
      this.held = Math.max(0, this.held - 1)
    }
    await super.delete(key, options)
  }

  /** The peer a provider record names, unless the record is not one or is this node's own. */
  private othersRecord (key: Key): string | undefined {
    const text = key.toString()
    if (!text.startsWith(PROVIDER_PREFIX)) return undefined
    const peer = text.slice(text.lastIndexOf('/') + 1)
    return peer === this.self ? undefined : peer
  }
}
