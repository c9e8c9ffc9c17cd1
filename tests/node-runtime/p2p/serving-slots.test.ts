/**
 * A runtime asked for an object still on its way waits for it (20 s by default) holding an
 * answer slot, then answers "busy", not "not found". Answer slots come back when the requester goes
 * (review 37c): that wait was tied to nothing but its own timer, so requesters that reset at once
 * could hold every slot with no stream open, and everyone else was told "busy". Real libp2p
 * nodes on 127.0.0.1.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createPeerNode, type PeerNode } from '../../../node-runtime/p2p/peer-node.ts'
import { createSwarm, type Swarm } from '../../../node-runtime/p2p/swarm.ts'
import { rawCid } from '../../../shared/crypto/cid.ts'
import { requestShard, SHARD_PROTOCOL } from '../../../shared/p2p/shard-protocol.ts'
import { sleep } from '../../../shared/load/deadline.ts'

const seed = (n: number): Uint8Array => new Uint8Array(32).fill(n)
let holder: Swarm
let asker: PeerNode
let address: Multiaddr

beforeAll(async () => {
  // A peer's share: 2 slots. The wait for an object on its way set past this test's 5 s of asking,
  // so that only the requesters' resets can free the slots.
  holder = await createSwarm({ seed: seed(71), maxServing: 8, pendingAnswerMs: 20_000 })
  asker = await createPeerNode({ seed: seed(72) })
  address = multiaddr(holder.node.getMultiaddrs().map(String).find(a => !a.includes('/ws')) as string)
})
afterAll(async () => {
  await asker.stop()
  await holder.stop()
})

it('a requester that resets its streams does not keep the slots their answers waited in', async () => {
  const onItsWay = await rawCid(new TextEncoder().encode('on its way'))
  const elsewhere = await rawCid(new TextEncoder().encode('not here'))
  holder.fetching(onItsWay, new Promise<Uint8Array>(() => {})) // a fetch that does not land
  // The peer's two slots, each taken by a request whose stream is reset 200 ms later.
  const gone = await Promise.allSettled([0, 1].map(async () => {
    const stream = await asker.dialProtocol(address, SHARD_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
    return await requestShard(stream, onItsWay, { signal: AbortSignal.timeout(200) })
  }))
  expect(gone.map(r => r.status)).toEqual(['rejected', 'rejected'])
  // The slots come back once the resets arrive. Before, "busy" for the whole 20 s wait.
  let answer: unknown
  for (let tries = 0; tries < 50; tries++) {
    const stream = await asker.dialProtocol(address, SHARD_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
    answer = await requestShard(stream, elsewhere, { signal: AbortSignal.timeout(5_000) })
    if ((answer as { status: string }).status !== 'busy') break
    await sleep(100)
  }
  expect(answer).toMatchObject({ status: 'not-found' })
}, 30_000)

it('an object still on its way is served when it lands within the wait, answered busy when it does not, and not-found when its fetch failed', async () => {
  const waiter = await createSwarm({ seed: seed(73), pendingAnswerMs: 2_000 })
  const at = multiaddr(waiter.node.getMultiaddrs().map(String).find(a => !a.includes('/ws')) as string)
  const ask = async (cid: string): Promise<unknown> => {
    const stream = await asker.dialProtocol(at, SHARD_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
    return await requestShard(stream, cid, { signal: AbortSignal.timeout(5_000) })
  }
  // Lands a while after it is asked for. A request that reached the holder only after it landed
  // finds it gone from the fetches under way (a loaded run: not-found): asked again, later each
  // time, at most 5 times.
  let answer: unknown
  let bytes = new Uint8Array(0)
  for (let attempt = 0; attempt < 5; attempt++) {
    bytes = new TextEncoder().encode(`lands later, attempt ${attempt}`)
    const landing = bytes
    const asked = ask(await rawCid(landing))
    waiter.fetching(await rawCid(landing), sleep(100 * 2 ** attempt).then(() => landing))
    answer = await asked
    if ((answer as { status: string }).status === 'ok') break
  }
  expect(answer).toEqual({ status: 'ok', bytes })

  const never = await rawCid(new TextEncoder().encode('never lands'))
  waiter.fetching(never, new Promise<Uint8Array>(() => {}))
  expect(await ask(never)).toEqual({ status: 'busy', retryMs: 500 })

  // A fetch that fails while the request waits: the holder looks in its own store, and says so.
  const failed = await rawCid(new TextEncoder().encode('fails'))
  waiter.fetching(failed, sleep(300).then(() => { throw new Error('no peer had it') }))
  expect(await ask(failed)).toEqual({ status: 'not-found' })
  await waiter.stop()
}, 60_000)

it('a swarm\'s network tells the requester when a reply\'s header came (review 50b: the runtime dropped onHeader, so hedging never saw one)', async () => {
  const requester = await createSwarm({ seed: seed(74) })
  try {
    const bytes = new TextEncoder().encode('kept recently')
    const cid = await rawCid(bytes)
    holder.keepRecent(cid, bytes)
    await requester.network.learn({ id: holder.peerId, addrs: holder.node.getMultiaddrs().map(String).filter(a => !a.includes('/ws')) })
    const heard: string[] = []
    const answer = await requester.network.request(holder.peerId, cid, { signal: AbortSignal.timeout(5_000), maxBytes: 1 << 20, onHeader: status => { heard.push(status) } })
    expect(answer).toEqual({ status: 'ok', bytes })
    expect(heard).toEqual(['ok'])
  } finally {
    await requester.stop()
  }
}, 30_000)
