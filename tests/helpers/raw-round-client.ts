/**
 * A hand-driven round-protocol client for bad-input tests: it completes the handshake with its
 * own key, accepts offers, and lets the test send any frame — valid, malformed or hostile — and
 * read the coordinator's replies.
 */
import WebSocket from 'ws'
import { generateSigningKey, sign, type SigningKeyPair } from '../../shared/crypto/sign.ts'
import { toBase64, toHex } from '../../shared/crypto/bytes.ts'
import { sha256 } from '../../shared/crypto/hash.ts'
import { encodeUploadFrame, helloSigningBytes, uploadSigningBytes, type ServerMessage, type UploadHeader } from '../../shared/rounds/messages.ts'
import type { RoundConfig } from '../../shared/rounds/config.ts'

export interface RawClient {
  id: string
  identity: SigningKeyPair
  socket: WebSocket
  messages: ServerMessage[]
  offers: RoundConfig[]
  closed: Promise<{ code: number, reason: string }>
  next: (predicate: (m: ServerMessage) => boolean, timeoutMs?: number) => Promise<ServerMessage>
  sendJson: (value: unknown) => void
  upload: (header: Omit<UploadHeader, 'signature' | 'type'>, payload: Uint8Array, signWith?: SigningKeyPair) => Promise<void>
  close: () => void
}

/** `identity` reuses a client's key, e.g. to connect again as a runtime that restarted. */
export async function rawClient (url: string, token: string, models: string[], options: { autoAccept?: boolean, identity?: SigningKeyPair } = {}): Promise<RawClient> {
  const identity = options.identity ?? generateSigningKey()
  const id = toHex(identity.publicKey)
  const wsUrl = url.replace(/^http/, 'ws') + '/v1/rounds/ws'
  const socket = new WebSocket(wsUrl, { headers: { authorization: `Bearer ${token}` } })
  const messages: ServerMessage[] = []
  const offers: RoundConfig[] = []
  const listeners = new Set<() => void>()
  const closed = new Promise<{ code: number, reason: string }>(resolve => socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  socket.on('message', data => {
    const m = JSON.parse(data.toString()) as ServerMessage
    messages.push(m)
    if (m.type === 'challenge') socket.send(JSON.stringify({ type: 'hello', clientId: id, signature: toBase64(sign(helloSigningBytes(m.nonce), identity.secretKey)), models }))
    if (m.type === 'offer') {
      offers.push(m.config)
      if (options.autoAccept !== false) socket.send(JSON.stringify({ type: 'accept', roundId: m.config.id }))
    }
    for (const l of listeners) l()
  })
  const client: RawClient = {
    id,
    identity,
    socket,
    messages,
    offers,
    closed,
    async next (predicate, timeoutMs = 20_000) {
      const seen = messages.length
      return await new Promise((resolve, reject) => {
        const check = (): void => {
          const hit = messages.slice(seen).find(predicate)
          if (hit !== undefined) { clearTimeout(t); listeners.delete(check); resolve(hit) }
        }
        const t = setTimeout(() => { listeners.delete(check); reject(new Error(`no matching message within ${timeoutMs} ms; last: ${JSON.stringify(messages.at(-1))}`)) }, timeoutMs)
        listeners.add(check)
      })
    },
    sendJson: value => socket.send(typeof value === 'string' ? value : JSON.stringify(value)),
    async upload (header, payload, signWith = identity) {
      const full = { type: 'upload' as const, ...header }
      const signature = sign(uploadSigningBytes(full, await sha256(payload)), signWith.secretKey)
      socket.send(encodeUploadFrame({ ...full, signature: toBase64(signature) }, payload))
    },
    close: () => socket.close()
  }
  await client.next(m => m.type === 'welcome')
  return client
}
