/**
 * The round-protocol client of the bad-input tests: a ws-fuzz `Peer` (its handshake, frames and
 * waits) that accepts offers by itself and reads the coordinator's replies as ServerMessages, so
 * a test can send any frame — valid, malformed or hostile — and check what comes back.
 */
import type WebSocket from 'ws'
import type { SigningKeyPair } from '../../shared/crypto/sign.ts'
import type { RoundConfig } from '../../shared/rounds/config.ts'
import type { ServerMessage, UploadHeader } from '../../shared/rounds/messages.ts'
import { Peer } from './ws-fuzz-peer.ts'

export interface RawClient {
  id: string
  identity: SigningKeyPair
  socket: WebSocket
  /** Every JSON message received so far, in order. */
  readonly messages: ServerMessage[]
  offers: RoundConfig[]
  closed: Promise<{ code: number, reason: string }>
  /** The first message from now on that `predicate` accepts; rejects if the socket closes first or at the deadline. */
  next: (predicate: (m: ServerMessage) => boolean, timeoutMs?: number) => Promise<ServerMessage>
  sendJson: (value: unknown) => void
  upload: (header: Omit<UploadHeader, 'signature' | 'type'>, payload: Uint8Array, signWith?: SigningKeyPair) => Promise<void>
  close: () => void
}

/** `identity` reuses a client's key, e.g. to connect again as a runtime that restarted. */
export async function rawClient (url: string, token: string, models: string[], options: { autoAccept?: boolean, identity?: SigningKeyPair } = {}): Promise<RawClient> {
  const offers: RoundConfig[] = []
  // Given to open, not set after it: an offer can arrive in the same read as the welcome.
  const peer = await Peer.open(url, token, 'raw-client', {
    identity: options.identity,
    models,
    onMessage: (m: ServerMessage | undefined, self: Peer) => {
      if (m?.type !== 'offer') return
      offers.push(m.config)
      if (options.autoAccept !== false) self.json({ type: 'accept', roundId: m.config.id })
    }
  })
  return {
    id: peer.id,
    identity: peer.identity,
    socket: peer.ws,
    get messages () { return peer.received.flatMap(r => r.json === undefined ? [] : [r.json as ServerMessage]) },
    offers,
    closed: peer.closed,
    async next (predicate, timeoutMs = 20_000) {
      const hit = await peer.waitFrom(peer.mark(), m => m !== undefined && predicate(m), timeoutMs) as ServerMessage | undefined
      if (hit === undefined) throw new Error(`the socket closed (${JSON.stringify(peer.closeInfo)}) before a matching message; last: ${JSON.stringify(peer.received.at(-1)?.json)}`)
      return hit
    },
    sendJson: value => { peer.send(typeof value === 'string' ? value : JSON.stringify(value)) },
    upload: async (header, payload, signWith) => { peer.send(await peer.uploadFrame(header, payload, signWith)) },
    close: () => { peer.close() }
  }
}
