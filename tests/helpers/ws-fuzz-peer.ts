/**
 * A hand-driven round-protocol peer for the WebSocket fuzz: its own (or a borrowed) Ed25519
 * identity, optional hello, every frame the coordinator sends recorded in order (raw text too,
 * so the fuzz can check each against serverMessageSchema), and waits that start from a mark so
 * a reply is matched to the frame that caused it.
 */
import WebSocket from 'ws'
import { generateSigningKey, sign, type SigningKeyPair } from '../../shared/crypto/sign.ts'
import { toBase64, toHex } from '../../shared/crypto/bytes.ts'
import { sha256 } from '../../shared/crypto/hash.ts'
import { ROUND_PROTOCOL_VERSION, encodeUploadFrame, helloSigningBytes, uploadSigningBytes, type UploadHeader } from '../../shared/rounds/messages.ts'

export interface Received { text: string, json: any, at: number }

export class Peer {
  readonly ws: WebSocket
  readonly identity: SigningKeyPair
  readonly id: string
  readonly name: string
  readonly received: Received[] = []
  nonce: string | undefined
  /** The models of its last hello. */
  models: string[] = []
  closeInfo: { code: number, reason: string } | undefined
  readonly closed: Promise<{ code: number, reason: string }>
  private readonly listeners = new Set<() => void>()
  onMessage: ((m: any, peer: Peer) => void) | undefined

  constructor (url: string, token: string, name: string, identity?: SigningKeyPair) {
    this.identity = identity ?? generateSigningKey()
    this.id = toHex(this.identity.publicKey)
    this.name = name
    this.ws = new WebSocket(url.replace(/^http/, 'ws') + '/v1/rounds/ws', { headers: { authorization: `Bearer ${token}`, 'x-peer': name } })
    this.ws.on('error', () => {})
    this.closed = new Promise(resolve => this.ws.once('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() }
      resolve(this.closeInfo)
      for (const l of this.listeners) l()
    }))
    this.ws.on('message', (data, isBinary) => {
      const text = isBinary ? `<binary ${(data as Buffer).length}>` : data.toString()
      let json: any
      try { json = JSON.parse(text) } catch { json = undefined }
      this.received.push({ text, json, at: performance.now() })
      if (json?.type === 'challenge') this.nonce = json.nonce
      this.onMessage?.(json, this)
      for (const l of this.listeners) l()
    })
  }

  /** `onMessage` is set before the socket can deliver anything: frames that arrive with the welcome are not missed. */
  static async open (url: string, token: string, name: string, options: { identity?: SigningKeyPair, models?: string[], hello?: boolean, onMessage?: (m: any, peer: Peer) => void } = {}): Promise<Peer> {
    const p = new Peer(url, token, name, options.identity)
    p.onMessage = options.onMessage
    await p.waitFrom(0, m => m?.type === 'challenge', 10_000)
    if (options.hello !== false) {
      const at = p.mark()
      p.hello(options.models ?? ['mnist'])
      const w = await p.waitFrom(at, m => m?.type === 'welcome' || m?.type === 'error', 10_000)
      if (w?.type !== 'welcome') throw new Error(`${name}: no welcome: ${JSON.stringify(w)}`)
    }
    return p
  }

  helloMessage (models: string[] = ['mnist'], key: SigningKeyPair = this.identity, clientId = this.id): Record<string, unknown> {
    return { type: 'hello', protocol: ROUND_PROTOCOL_VERSION, clientId, signature: toBase64(sign(helloSigningBytes(this.nonce as string), key.secretKey)), models }
  }

  hello (models: string[] = ['mnist']): void {
    this.models = models
    this.send(JSON.stringify(this.helloMessage(models)))
  }

  mark (): number { return this.received.length }

  send (frame: string | Uint8Array): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(frame, { binary: typeof frame !== 'string' })
  }

  json (value: unknown): void { this.send(JSON.stringify(value)) }

  /** Signed for `model`: by default the first model of this peer's hello (its rounds' model). */
  async uploadFrame (header: Omit<UploadHeader, 'signature' | 'type'>, payload: Uint8Array, signWith: SigningKeyPair = this.identity, model = this.models[0] ?? 'mnist'): Promise<Uint8Array> {
    const full = { type: 'upload' as const, ...header }
    const signature = sign(uploadSigningBytes(model, full, await sha256(payload)), signWith.secretKey)
    return encodeUploadFrame({ ...full, signature: toBase64(signature) }, payload)
  }

  /** The first message from index `from` on that `predicate` accepts; `undefined` if the socket closes first; throws at the deadline. */
  async waitFrom (from: number, predicate: (m: any) => boolean, ms: number): Promise<any> {
    return await new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = this.received.slice(from).find(r => predicate(r.json))
        if (hit !== undefined) { done(); resolve(hit.json); return }
        if (this.closeInfo !== undefined) { done(); resolve(undefined) }
      }
      const t = setTimeout(() => { done(); reject(new Error(`${this.name}: nothing within ${ms} ms`)) }, ms)
      const done = (): void => { clearTimeout(t); this.listeners.delete(check) }
      this.listeners.add(check)
      check()
    })
  }

  close (): void { this.ws.close() }
}
