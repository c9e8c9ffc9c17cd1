/**
 * Provider records other peers store on a blockfed node are bounded (node-runtime/p2p/provider-store.ts):
 * - the datastore itself, with small bounds: per peer and in total (oldest records make room),
 *   this node's own exempt, a deleted record freeing its place, a rewritten one or one named
 *   many times at once not counted twice, oversized keys dropped;
 * - over real libp2p: one peer sends more ADD_PROVIDER messages than PROVIDER_RECORDS_PER_PEER on
 *   one stream (20,000 were all kept before); the node keeps the bound's worth, still answers,
 *   and another peer's records are still stored and found;
 * - DHT values (PUT_VALUE) are refused: blockfed stores none, and 5,000 were kept before.
 */
import { describe, it, expect, afterAll, vi } from 'vitest'
import { Key } from 'interface-datastore'
import { encode as varint } from 'uint8-varint'
import { base32 } from 'multiformats/bases/base32'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { generateKeyPairFromSeed, publicKeyFromRaw, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { Record as DhtRecord } from '@libp2p/kad-dht'
import { createPeerNode } from '../../../node-runtime/p2p/peer-node.ts'
import { PROVIDER_RECORDS_PER_PEER, ProviderBoundedDatastore } from '../../../node-runtime/p2p/provider-store.ts'
import { DHT_PROTOCOL } from '../../../shared/p2p/gossip.ts'
import { seedOf, tcpAddr } from '../../helpers/libp2p.ts'

const stops: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const stop of stops.reverse()) await stop().catch(() => {})
})

const record = (cid: string, peer: string): Key => new Key(`/dht/provider/${cid}/${peer}`)
const value = new Uint8Array([1])

describe('ProviderBoundedDatastore', () => {
  it('keeps perPeer records of one peer (its oldest make room), and total of all (the largest holder\'s oldest make room)', async () => {
    const store = new ProviderBoundedDatastore('SELF', { perPeer: 3, total: 5 })
    for (let i = 0; i < 5; i++) await store.put(record(`c${i}`, 'A'), value)
    expect(store.providerRecords).toBe(3)
    expect(await store.has(record('c1', 'A'))).toBe(false)
    expect(await store.has(record('c4', 'A'))).toBe(true)
    // Rewriting a record already held (a re-provide) is not a new one; it becomes A's newest.
    await store.put(record('c2', 'A'), value)
    expect(store.providerRecords).toBe(3)
    for (let i = 0; i < 2; i++) await store.put(record(`c${i}`, 'B'), value)
    expect(store.providerRecords).toBe(5)
    // Full: B's next record pushes out the oldest of A (the largest holder), c3, not B's own.
    await store.put(record('c2', 'B'), value)
    expect(store.providerRecords).toBe(5)
    expect(await store.has(record('c3', 'A'))).toBe(false)
    expect(await store.has(record('c2', 'A'))).toBe(true)
    expect(await store.has(record('c0', 'B'))).toBe(true)
    // This node's own records and other keys are never bounded.
    for (let i = 0; i < 10; i++) await store.put(record(`c${i}`, 'SELF'), value)
    await store.put(new Key('/peers/A'), value)
    expect(await store.has(record('c9', 'SELF'))).toBe(true)
    expect(await store.has(new Key('/peers/A'))).toBe(true)
    expect(store.dropped).toBe(3)
    // A deleted record (kad-dht's expiry sweep) gives its place back; deleting one not held changes nothing.
    await store.delete(record('c4', 'A'))
    await store.delete(record('c7', 'A'))
    expect(store.providerRecords).toBe(4)
  })

  it('counts a record named many times at once (one message, stored concurrently) once', async () => {
    const store = new ProviderBoundedDatastore('SELF', { perPeer: 3, total: 5 })
    await Promise.all(Array.from({ length: 50 }, async () => await store.put(record('same', 'A'), value)))
    expect(store.providerRecords).toBe(1)
    await store.delete(record('same', 'A'))
    expect(store.providerRecords).toBe(0)
    for (let i = 0; i < 3; i++) await store.put(record(`c${i}`, 'A'), value)
    expect(store.providerRecords).toBe(3)
  })

  it('keeps its count with one record per peer, where each new record pushes out the last', async () => {
    const store = new ProviderBoundedDatastore('SELF', { perPeer: 1, total: 5 })
    await store.put(record('c0', 'A'), value)
    await store.put(record('c1', 'A'), value)
    expect(store.providerRecords).toBe(1)
    expect(await store.has(record('c0', 'A'))).toBe(false)
    await store.delete(record('c1', 'A'))
    expect(store.providerRecords).toBe(0)
  })

  it('drops a record whose key is longer than any real multihash', async () => {
    const store = new ProviderBoundedDatastore('SELF')
    await store.put(record('b'.repeat(129), 'A'), value)
    await store.put(record('b'.repeat(106), 'A'), value)
    expect(store.providerRecords).toBe(1)
    expect(await store.has(record('b'.repeat(129), 'A'))).toBe(false)
  })
})

/** kad-dht's wire message (dht.proto): ADD_PROVIDER = 2, key = 2, providerPeers = 9 { id = 1, addrs = 2 }. */
function addProvider (multihash: Uint8Array, peerId: Uint8Array, addr: Uint8Array): Uint8Array {
  const field = (tag: number, bytes: Uint8Array): number[] => [tag, ...varint(bytes.length), ...bytes]
  const peer = new Uint8Array([...field(10, peerId), ...field(18, addr)])
  const message = new Uint8Array([8, 2, ...field(18, multihash), ...field(74, peer)])
  return new Uint8Array([...varint(message.length), ...message])
}

describe('provider records over libp2p', () => {
  it('keeps PROVIDER_RECORDS_PER_PEER of one flooding peer\'s records, its newest; another peer\'s are still kept and found', async () => {
    const target = await createPeerNode({ seed: seedOf(0xd1) })
    stops.push(async () => { await target.stop() })
    const attacker = await createPeerNode({ seed: seedOf(0xd2) })
    stops.push(async () => { await attacker.stop() })
    const honest = await createPeerNode({ seed: seedOf(0xd3) })
    stops.push(async () => { await honest.stop() })
    const store = (target as unknown as { components: { datastore: ProviderBoundedDatastore } }).components.datastore
    expect(store).toBeInstanceOf(ProviderBoundedDatastore)

    const flood = PROVIDER_RECORDS_PER_PEER + 500
    const stream = await attacker.dialProtocol(tcpAddr(target), DHT_PROTOCOL)
    const id = attacker.peerId.toMultihash().bytes
    const addr = tcpAddr(attacker).bytes
    for (let i = 0; i < flood; i++) {
      const digest = await sha256.digest(new TextEncoder().encode(`flood ${i}`))
      if (!stream.send(addProvider(digest.bytes, id, addr))) await stream.onDrain()
    }
    // The target reads one message at a time: wait until it has read them all.
    await vi.waitFor(() => { expect(store.providerRecords + store.dropped).toBe(flood) }, { timeout: 30_000, interval: 100 })
    expect(store.providerRecords).toBe(PROVIDER_RECORDS_PER_PEER)
    expect(store.dropped).toBe(500)
    // The flood's newest records are the ones kept.
    const newest = await sha256.digest(new TextEncoder().encode(`flood ${flood - 1}`))
    const oldest = await sha256.digest(new TextEncoder().encode('flood 0'))
    // kad-dht's key: the multihash in base32 (RFC 4648, lower case, unpadded), then the peer id.
    const providerKey = (multihash: Uint8Array): Key => new Key(`/dht/provider/${base32.baseEncode(multihash)}/${attacker.peerId.toString()}`)
    expect(await store.has(providerKey(newest.bytes))).toBe(true)
    expect(await store.has(providerKey(oldest.bytes))).toBe(false)
    await stream.close()

    // Another peer still provides through the real DHT, and a third finds it.
    await honest.dial(tcpAddr(target))
    const cid = CID.createV1(0x55, await sha256.digest(new TextEncoder().encode('an honest block')))
    const signal = AbortSignal.timeout(20_000)
    // Until the target is in the honest node's routing table (after identify), a provide reaches nobody.
    await vi.waitFor(async () => {
      for await (const _ of honest.services.dht.provide(cid, { signal })) { /* drain the query */ }
      expect(store.providerRecords).toBe(PROVIDER_RECORDS_PER_PEER + 1)
    }, { timeout: 30_000, interval: 200 })
    // A lookup answers it from the bounded store (the target's own lookup starts there; another
    // node's asks the target only once the target is in its routing table, which takes a while).
    const found: string[] = []
    for await (const event of target.services.dht.findProviders(cid, { signal })) {
      if (event.name === 'PROVIDER') found.push(...event.providers.map(p => p.id.toString()))
      if (found.length > 0) break
    }
    expect(found).toContain(honest.peerId.toString())
  }, 60_000)
})

/** PUT_VALUE = 0: type 0 is proto3's default, so only key = 2 and record = 3 are written. */
function putValue (key: Uint8Array, record: Uint8Array): Uint8Array {
  const field = (tag: number, bytes: Uint8Array): number[] => [tag, ...varint(bytes.length), ...bytes]
  const message = new Uint8Array([...field(18, key), ...field(26, record)])
  return new Uint8Array([...varint(message.length), ...message])
}

describe('DHT values', () => {
  it('are refused: public key records and records of any namespace sent in a PUT_VALUE are not stored', async () => {
    const target = await createPeerNode({ seed: seedOf(0xd4) })
    stops.push(async () => { await target.stop() })
    const sender = await createPeerNode({ seed: seedOf(0xd5) })
    stops.push(async () => { await sender.stop() })
    const store = (target as unknown as { components: { datastore: ProviderBoundedDatastore } }).components.datastore
    // A valid record by kad-dht's own `pk` validator: the key names the key it carries.
    const records = []
    for (let i = 0; i < 20; i++) {
      const pub = publicKeyFromRaw((await generateKeyPairFromSeed('Ed25519', seedOf(0x60 + i))).publicKey.raw)
      const key = new Uint8Array([...new TextEncoder().encode('/pk/'), ...pub.toMultihash().bytes])
      records.push(putValue(key, new DhtRecord(key, publicKeyToProtobuf(pub), new Date()).serialize()))
    }
    // Namespaces kad-dht's validator lookup finds on Object.prototype ("constructor", "toString").
    for (const ns of ['constructor', 'toString']) {
      const key = new TextEncoder().encode(`/${ns}/x`)
      records.push(putValue(key, new DhtRecord(key, new Uint8Array(100_000), new Date()).serialize()))
    }
    // One stream each: a refused record ends its stream.
    for (const r of records) {
      const stream = await sender.dialProtocol(tcpAddr(target), DHT_PROTOCOL)
      stream.send(r)
    }
    // The target answers each PUT_VALUE it took; it takes none.
    await new Promise(resolve => setTimeout(resolve, 500))
    const stored: string[] = []
    for await (const key of store.queryKeys({ prefix: '/dht/record/' })) stored.push(key.toString())
    expect(stored).toEqual([])
    expect(target.status).toBe('started')
  })
})
