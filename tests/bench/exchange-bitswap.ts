/**
 * Bench helper: @helia/bitswap (Bitswap 1.2.0, https://specs.ipfs.tech/bitswap-protocol/) on a
 * bare libp2p node, for the exchange bench (tests/bench/exchange.bench.ts).
 *
 * The package's one runtime export is `withBitswap(helia)`, a Helia mixin; the `helia` package
 * itself is not installed. So this builds the smallest host the mixin reads: its status and
 * block-broker registry, and the components a `BitswapBlockBroker` is built from (libp2p,
 * blockstore, routing, logger, getHasher). Routing is offline: the bench connects the peers
 * itself, and bitswap sends its wants to every connected peer that speaks the protocol.
 */
import { withBitswap, type BitswapOptions } from '@helia/bitswap'
import type { BlockBroker, HeliaMixin, Routing, SessionBlockBroker } from '@helia/interface'
import type { HeliaWithLibp2p } from '@helia/libp2p'
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Blockstore } from 'interface-blockstore'
import type { CID } from 'multiformats/cid'
import { NotFoundError, UnavailableError } from '../../shared/errors/errors.ts'

export const BITSWAP_PROTOCOL = '/ipfs/bitswap/1.2.0'

/** A started bitswap engine on one libp2p node. */
export interface BitswapPeer {
  /** Wants `cid` from every connected bitswap peer (`Bitswap.want`); resolves with the block. */
  want: (cid: CID, options: { signal: AbortSignal }) => Promise<Uint8Array>
  /** A session pinned to one provider: wants go to that peer only (WANT-BLOCK, no broadcast). */
  session: (provider: PeerId) => { retrieve: (cid: CID, options: { signal: AbortSignal }) => Promise<Uint8Array> }
  /** Unregisters the protocol handler and topology and drops every queued send. */
  stop: () => Promise<void>
}

/** Routing with no network behind it: finds no providers, stores nothing. */
const offlineRouting: Routing = {
  async provide () {},
  async cancelReprovide () {},
  async * findProviders () {},
  async put () {},
  async get () { throw new NotFoundError('offline routing holds no records') },
  async findPeer () { throw new NotFoundError('offline routing knows no peers') },
  async * getClosestPeers () {}
}

/**
 * Starts bitswap on `libp2p`, serving from and only from `blockstore` (received blocks are not
 * stored: that is Helia's blockstore wrapper's job, and the bench wants every run cold).
 */
export async function startBitswap (libp2p: Libp2p, blockstore: Blockstore, options: BitswapOptions = {}): Promise<BitswapPeer> {
  const brokers: BlockBroker[] = []
  const mixins: HeliaMixin[] = []
  const host = {
    status: 'starting',
    libp2p,
    blockstore,
    routing: offlineRouting,
    logger: libp2p.logger,
    // Bitswap hashes sha2-256 blocks with its own hasher and asks for others only.
    getHasher: (code: number) => { throw new UnavailableError(`no hasher for multihash code 0x${code.toString(16)}`) },
    hasBlockBroker: (name: string) => brokers.some(b => b.name === name),
    addBlockBroker: (broker: BlockBroker) => { brokers.push(broker) },
    addMixin: (mixin: HeliaMixin) => { mixins.push(mixin) }
  }
  // The host has exactly what withBitswap and BitswapBlockBroker read (see the header).
  withBitswap(host as unknown as HeliaWithLibp2p, options)
  for (const mixin of mixins) await mixin.start?.(host as unknown as HeliaWithLibp2p)
  host.status = 'started'
  const broker = brokers.find(b => b.name === 'bitswap')
  if (broker?.retrieve === undefined || broker.createSession === undefined) throw new UnavailableError('withBitswap registered no bitswap block broker')
  // BitswapBlockBroker is Startable; the BlockBroker type does not say so.
  const stoppable = broker as BlockBroker & { stop: () => Promise<void> }
  const retrieve = broker.retrieve.bind(broker)
  const createSession = broker.createSession.bind(broker)
  return {
    want: async (cid, { signal }) => await retrieve(cid, { signal }),
    session: (provider) => {
      const session: SessionBlockBroker = createSession({ providers: [provider.toCID()], minProviders: 1, maxProviders: 1 })
      const sessionRetrieve = session.retrieve?.bind(session)
      if (sessionRetrieve === undefined) throw new UnavailableError('the bitswap session has no retrieve')
      return { retrieve: async (cid, { signal }) => await sessionRetrieve(cid, { signal }) }
    },
    stop: async () => { await stoppable.stop() }
  }
}
