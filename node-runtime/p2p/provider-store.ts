/**
 * The datastore of a blockfed libp2p node: libp2p's in-memory one, with the Kademlia provider
 * records other peers may store here bounded.
 *
 * A DHT server stores an ADD_PROVIDER record for any CID a peer names, as long as the record
 * names that peer (kad-dht's add-provider handler), and keeps it 48 h. Nothing else bounds them:
 * one connected peer stored 20,000 records for random CIDs in 6.8 s over one stream, and would
 * have gone on. Here:
 * - a record whose key is longer than any real multihash is dropped (kad-dht takes a CID with an
 *   identity multihash of any length: 1.7 MB keys were stored, 16 of them from one message);
 * - a peer keeps at most `perPeer` records: past it, its own oldest record makes room;
 * - all peers together keep at most `total`: past it, the oldest record of the peer holding the
 *   most makes room. Peer ids are free, so one host can fill the total with many; what it
 *   pushes out is its own records first, and an honest peer's only once it holds as many.
 * A dropped record is a hint lost (kad-dht is not told: a loader checks every object it fetches
 * by its CID, and asks the origin when no provider answers). This node's own records (what it
 * provides) are never dropped. DHT values (`/dht/record/`, PUT_VALUE) are never kept: blockfed
 * has none.
 *
 * The bounds sit far above honest use: a runtime provides each sealed block and its shards
 * (7 CIDs per 1 MiB block with 4+2 shards), so 8,192 records is a 1 GB model's worth per peer.
 * Counting is synchronous (no await between the check and the count): kad-dht stores the
 * records of one message concurrently, and a message naming one record 8,192 times counted it
 * 8,192 times when the check awaited.
 */
import { MemoryDatastore } from 'datastore-core/memory'
import { Key } from 'interface-datastore'

/** Where kad-dht keeps provider records: `/dht/provider/<multihash, base32>/<peer id>` (its `datastorePrefix`, default). */
const PROVIDER_PREFIX = '/dht/provider/'

/** Where kad-dht keeps values (PUT_VALUE): blockfed stores none. */
const RECORD_PREFIX = '/dht/record/'

/** Longest multihash segment kept: a sha2-512 multihash is 66 bytes, 106 base32 characters. */
const MAX_MULTIHASH_CHARS = 128

export const PROVIDER_RECORDS_PER_PEER = 8_192
export const PROVIDER_RECORDS_TOTAL = 131_072

export interface ProviderBounds {
  perPeer: number
  total: number
}

export class ProviderBoundedDatastore extends MemoryDatastore {
  /** Other peers' provider records held, by peer id, oldest first. */
  private readonly byPeer = new Map<string, Set<string>>()
  private held = 0
  private readonly self: string
  private readonly bounds: ProviderBounds
  /** Records dropped (too long) or pushed out (over a bound) since start. */
  dropped = 0

  /** `self`: this node's peer id, whose own records are never dropped. */
  constructor (self: string, bounds: ProviderBounds = { perPeer: PROVIDER_RECORDS_PER_PEER, total: PROVIDER_RECORDS_TOTAL }) {
    super()
    this.self = self
    this.bounds = bounds
  }

  /** Other peers' provider records held now. */
  get providerRecords (): number { return this.held }

  override async put (key: Key, value: Uint8Array, options?: { signal?: AbortSignal }): Promise<Key> {
    // Values are refused by a validator too (peer-node.ts), but kad-dht looks validators up on a
    // plain object: record keys /constructor/… and /toString/… found Object's own and were kept.
    if (key.toString().startsWith(RECORD_PREFIX)) {
      this.dropped++
      return key
    }
    const record = this.othersRecord(key)
    if (record !== undefined) {
      if (record.multihash.length > MAX_MULTIHASH_CHARS) {
        this.dropped++
        return key
      }
      const text = key.toString()
      const mine = this.byPeer.get(record.peer) ?? new Set<string>()
      if (mine.delete(text)) {
        mine.add(text) // a re-provide: now its newest
      } else {
        if (mine.size >= this.bounds.perPeer) this.evictOldest(record.peer)
        else if (this.held >= this.bounds.total) this.evictOldest(this.largestHolder())
        mine.add(text)
        this.held++
      }
      // Set after evicting: an eviction that emptied the peer's set also dropped it from the map.
      this.byPeer.set(record.peer, mine)
    }
    return await super.put(key, value, options)
  }

  override async delete (key: Key, options?: { signal?: AbortSignal }): Promise<void> {
    const record = this.othersRecord(key)
    if (record !== undefined) this.forget(record.peer, key.toString())
    await super.delete(key, options)
  }

  /** The parts of a provider record's key, unless it is not one or is this node's own. */
  private othersRecord (key: Key): { multihash: string, peer: string } | undefined {
    const text = key.toString()
    if (!text.startsWith(PROVIDER_PREFIX)) return undefined
    const slash = text.lastIndexOf('/')
    const peer = text.slice(slash + 1)
    return peer === this.self ? undefined : { multihash: text.slice(PROVIDER_PREFIX.length, slash), peer }
  }

  private forget (peer: string, text: string): boolean {
    const records = this.byPeer.get(peer)
    if (records?.delete(text) !== true) return false
    if (records.size === 0) this.byPeer.delete(peer)
    this.held--
    return true
  }

  private largestHolder (): string {
    let largest = ''
    let most = -1
    for (const [peer, records] of this.byPeer) {
      if (records.size > most) [largest, most] = [peer, records.size]
    }
    return largest
  }

  /** Removes `peer`'s oldest record, counted and stored (synchronously: MemoryDatastore's delete is). */
  private evictOldest (peer: string): void {
    const oldest = this.byPeer.get(peer)?.values().next().value
    if (oldest === undefined || !this.forget(peer, oldest)) return
    this.dropped++
    void super.delete(new Key(oldest))
  }
}
