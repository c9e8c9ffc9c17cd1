/**
 * The coordinator's end of the round protocol: a `ws` WebSocket server on the HTTP server's
 * `/v1/rounds/ws` path. The upgrade needs a bearer token whose role may train; then the client
 * proves its Ed25519 key by signing a fresh challenge (its key is its id). After that every text
 * frame is parsed by the protocol schema and every binary frame is an upload; a bad frame gets an
 * `error` reply and changes nothing. Pings find silent clients, which are cut and reported, so a
 * round never waits on a dead socket.
 *
 * `ws` buffers a whole frame (up to `maxPayload`) before anyone sees it, so the hub counts the
 * raw bytes of the frame under way itself and cuts a client (1009) that sends more than it may:
 * a hello's worth before its hello, a control message's worth after it, and an upload's worth
 * only while a round waits for exactly that upload (`uploadAllowance`). Memory held for a client
 * is then what the protocol needs, not `maxPayload` per connection.
 *
 * One edge token may open any number of connections, each under a fresh key (review 38a: eight
 * of them held the event loop for seconds at a time, thirty held 120 MiB of never-finished
 * messages). So the hub also bounds what all clients take together: at most `maxConnections`
 * at once (more get 503), at most `maxConnectionsPerToken` of them on one token (more get 429), one parse-time budget for the whole hub per window (past it, the client
 * that took most of it is cut), and a message under way must keep arriving (one stalled past a
 * ping interval is cut).
 */
import { STATUS_CODES, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket, type RawData } from 'ws'
import { BEARER_PROTOCOL_PREFIX, clientMessageSchema, helloSigningBytes, protocolMismatch, ROUNDS_SUBPROTOCOL, ROUNDS_SUBPROTOCOL_PREFIX, parseFrame, type ClientMessage, type ServerMessage } from '../../shared/rounds/messages.ts'
import { fromBase64, fromHex, toHex } from '../../shared/crypto/bytes.ts'
import { verify } from '../../shared/crypto/sign.ts'
import { BlockfedError, InvalidInputError } from '../../shared/errors/errors.ts'
import { bearerOf } from '../http/auth.ts'
import type { GivenUpload } from '../../shared/rounds/one-update.ts'
import type { TrainerAnswer } from '../tokens/keeper.ts'
import { inScope } from '../tokens/scope.ts'
import { DEFAULT_ACCESS_LEVEL } from '../constants.ts'

export const ROUNDS_PATH = '/v1/rounds/ws'
/** A hello is a key, a signature, up to 100 model names and as many records: anything larger before it is refused. */
const MAX_HELLO_BYTES = 32 << 10
/** Largest text message after the hello (SecAgg+ share lists grow with a client's neighbours). */
const MAX_TEXT_BYTES = 4 << 20
/**
 * Text bytes one client may send per window (the default of `textBudgetBytes`). Parsing is on
 * the event loop every client and route shares: a 3.8 MB frame of 330,000 keys took ≈ 280 ms to refuse (JSON.parse, then the schema),
 * and 30 of them in a row held the loop up to 1.5 s at a time (review, stop 34). A client's
 * protocol text in a round is a few frames of at most a few hundred KB (the share lists of its
 * neighbours), so this is a flood's bound, not a round's: it holds one client's parsing to
 * ≈ 1.2 s of every 10 s at worst.
 */
export const TEXT_BUDGET = { bytes: 16 << 20, windowMs: 10_000 }
/**
 * Time all clients' text frames may take to parse (JSON, then the schema) per TEXT_BUDGET window,
 * together (the default of `parseBudgetMs`): at most a fifth of the event loop. Time, not bytes:
 * a round's share lists are plain arrays that parse at a few ms per MB, a flood's objects of
 * 330,000 keys at ≈ 70 ms per MB, so honest clients barely use it and the flooder is the one cut.
 */
export const PARSE_BUDGET_MS = 2_000
/** Connections at once, handshakes included (the default of `maxConnections`). */
export const MAX_CONNECTIONS = 1024
/**
 * Connections one API token may hold at once (the default of `maxConnectionsPerToken`): a
 * quarter of the hub, so that one token cannot take every place (review 47b: one edge token held
 * all 1,024 in 3 s, and every other runtime met 503). A fleet sharing one token raises it.
 */
export const MAX_CONNECTIONS_PER_TOKEN = MAX_CONNECTIONS / 4
/**
 * A message under way beyond this many bytes must grow by MIN_PROGRESS_BYTES_PER_S from one ping
 * to the next, or the client is cut: `ws` keeps a fragmented message's parts until its last
 * one, and the client's pongs keep a connection that sends nothing else alive.
 */
const STALL_BYTES = 64 << 10
const MIN_PROGRESS_BYTES_PER_S = 16 << 10
/** Frame headers, pings, and the start of the next frame read in the same chunk. */
const FRAME_SLACK_BYTES = 256 << 10
/** How long a cut client's connection lingers so that it reads why (the close frame). */
const CUT_GRACE_MS = 1000
/** Longest error message: serverMessageSchema's bound (a longer one is an unreadable frame to the client). */
const MAX_ERROR_CHARS = 2000
/** Replies queued for a client that does not read them; beyond this it is cut (1008), not buffered without bound. */
const MAX_UNREAD_BYTES = 4 << 20

export interface ClientConnection {
  readonly id: string
  readonly models: readonly string[]
  /** The block access levels its token reads (absent: `default` only); `*`: every level. */
  readonly reads?: readonly string[]
  /** The updates it says it gave, per model (its hello, then its declines): see one-update.ts. */
  readonly given: Map<string, GivenUpload>
  send: (message: ServerMessage) => void
  close: (code: number, reason: string) => void
}

export interface HubHandlers {
  message: (client: ClientConnection, message: ClientMessage) => void | Promise<void>
  upload: (client: ClientConnection, frame: Uint8Array) => void | Promise<void>
  disconnect: (client: ClientConnection) => void
  /**
   * A client said hello, naming the rounds its runtime still holds: the rounds that still count
   * on it (a round resumed after a restart), named in its welcome, and those of them that wait
   * for its upload.
   */
  connected: (client: ClientConnection, holds: readonly string[]) => { rounds: string[], awaiting: string[] }
  /** Bytes of upload frame the client may send now: 0 unless a round waits for its upload. */
  uploadAllowance: (client: ClientConnection) => number
}

export interface RoundHubOptions {
  /**
   * A bearer token's id (and when it expires, ms since the epoch) when it may take part in
   * rounds, else why not (said in the 401 or 403). A connection outlives its token by at most a ping interval.
   */
  trainer: (token: string) => Promise<TrainerAnswer>
  handlers: HubHandlers
  /** Largest frame accepted; bigger ones close the socket (ws sends 1009). */
  maxPayload: number
  pingMs: number
  handshakeMs: number
  /** Text bytes one client may send per TEXT_BUDGET window before it is cut; TEXT_BUDGET.bytes by default. */
  textBudgetBytes?: number
  /** Parse time of all clients' text per TEXT_BUDGET window; PARSE_BUDGET_MS by default. */
  parseBudgetMs?: number
  /** Connections at once; MAX_CONNECTIONS by default. */
  maxConnections?: number
  /** Connections one API token may hold at once; MAX_CONNECTIONS_PER_TOKEN by default. */
  maxConnectionsPerToken?: number
  /** A handler that failed where nobody awaits it (a socket's close, a timer); said on stderr by default. */
  onError?: (message: string) => void
}

export interface RoundHub {
  attach: (server: Server) => void
  clients: () => ClientConnection[]
  get: (id: string) => ClientConnection | undefined
  /** Closes every connection opened with the token of this id (it was revoked); returns how many. */
  cutToken: (tokenId: string, reason: string) => number
  stop: () => Promise<void>
}

/** The `error` of a refused upgrade's body, by status: the names the HTTP API gives the same refusals. */
const REFUSAL_NAMES = { 400: 'InvalidInputError', 401: 'UnauthenticatedError', 403: 'AccessDeniedError', 404: 'NotFoundError', 429: 'TooManyConnections', 503: 'UnavailableError' } as const

/**
 * Refuses an upgrade with the HTTP API's error body (`{ error, message }`, JSON). A 401 carries
 * its Bearer challenge (RFC 9110 §11.6.1), `invalid_token` when a token was sent (RFC 6750 §3.1).
 */
function reject (socket: Duplex, status: keyof typeof REFUSAL_NAMES, message: string, sentToken = false): void {
  const retry = status === 503 || status === 429 ? 'Retry-After: 10\r\n' : ''
  const challenge = status === 401 ? `WWW-Authenticate: Bearer realm="blockfed"${sentToken ? ', error="invalid_token"' : ''}\r\n` : ''
  const body = JSON.stringify({ error: REFUSAL_NAMES[status], message })
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${retry}${challenge}Connection: close\r\n\r\n${body}`)
}

/** The subprotocols an upgrade request offers (RFC 6455 §4.1: a comma-separated list). */
function offeredProtocols (req: IncomingMessage): string[] {
  return (req.headers['sec-websocket-protocol'] ?? '').split(',').map(p => p.trim()).filter(p => p !== '')
}

/** Another version of the rounds subprotocol, when the request offers only such: said before any other check. */
function otherVersion (offered: string[]): string | undefined {
  if (offered.includes(ROUNDS_SUBPROTOCOL)) return undefined
  return offered.find(p => p.startsWith(ROUNDS_SUBPROTOCOL_PREFIX))
}

/** The API token: the Authorization header, else a `bearer.<token>` subprotocol offered beside ours. */
function bearerToken (req: IncomingMessage, offered: string[]): string | undefined {
  const header = bearerOf(req.headers.authorization)
  if (header !== undefined) return header
  const token = offered.find(p => p.startsWith(BEARER_PROTOCOL_PREFIX))?.slice(BEARER_PROTOCOL_PREFIX.length)
  return offered.includes(ROUNDS_SUBPROTOCOL) && token !== undefined && /^\S{1,200}$/.test(token) ? token : undefined
}

function errorMessage (err: unknown): string {
  const message = err instanceof BlockfedError ? err.message : `internal error: ${(err as Error)?.message ?? String(err)}`
  // Messages may quote what the client sent (zod names every unknown key): keep them within the schema.
  return message.length > MAX_ERROR_CHARS ? `${message.slice(0, MAX_ERROR_CHARS - 1)}…` : message
}

export function roundHub (options: RoundHubOptions): RoundHub {
  // Only ever echo the rounds subprotocol: ws would otherwise echo the first offered, which may be the token.
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayload, handleProtocols: offered => offered.has(ROUNDS_SUBPROTOCOL) ? ROUNDS_SUBPROTOCOL : false })
  const connected = new Map<string, ClientConnection & { socket: WebSocket }>()
  const textBudget = options.textBudgetBytes ?? TEXT_BUDGET.bytes
  const maxConnections = options.maxConnections ?? MAX_CONNECTIONS
  const maxPerToken = options.maxConnectionsPerToken ?? MAX_CONNECTIONS_PER_TOKEN
  /** Open connections by token id. */
  const perToken = new Map<string, number>()
  let server: Server | undefined
  let pinger: ReturnType<typeof setInterval> | undefined
  const alive = new WeakMap<WebSocket, boolean>()
  /**
   * The rounds let a client go that left. Called from a socket's close, a ping timer or a cut,
   * where a throw (its store write failing: the disk full) would end the process: said instead,
   * and the round goes on without the client as if it had been stored (review 53b).
   */
  const disconnected = (client: ClientConnection): void => {
    try {
      options.handlers.disconnect(client)
    } catch (err) {
      const message = `rounds: letting client ${client.id.slice(0, 16)}… go failed: ${err instanceof Error ? err.message : String(err)}`
      if (options.onError === undefined) console.error(`blockfed: ${message}`)
      else options.onError(message)
    }
  }
  /** Upgrades whose token is being checked: counted against maxConnections with the open ones. */
  let upgrading = 0
  /** Each connection's own: how to cut it, and the message it has under way (for the stall check). */
  const conns = new Map<WebSocket, { tokenId: string, expiresAt: number, cut: (code: number, reason: string) => void, underway: () => number, atLastPing: number, completed: boolean }>()
  const parse = { budgetMs: options.parseBudgetMs ?? PARSE_BUDGET_MS, start: performance.now(), ms: 0, by: new Map<WebSocket, number>() }

  /**
   * Charges `ms` of parsing to `ws`; past the hub's budget for the window, the connection that
   * took the most of it is cut (usually `ws` itself), and its share is given back.
   */
  function chargeParse (ws: WebSocket, ms: number): void {
    const now = performance.now()
    if (now - parse.start >= TEXT_BUDGET.windowMs) Object.assign(parse, { start: now, ms: 0, by: new Map() })
    parse.ms += ms
    parse.by.set(ws, (parse.by.get(ws) ?? 0) + ms)
    if (parse.ms <= parse.budgetMs) return
    const [heaviest, took] = [...parse.by].reduce((a, b) => b[1] > a[1] ? b : a)
    parse.ms -= took
    parse.by.delete(heaviest)
    conns.get(heaviest)?.cut(1008, 'too much to parse: the coordinator\'s message budget is spent, most of it on this client\'s messages')
  }

  async function onUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    if (new URL(req.url ?? '/', 'http://x').pathname !== ROUNDS_PATH) return reject(socket, 404, `no WebSocket endpoint at ${req.url ?? ''}; rounds are at ${ROUNDS_PATH}`)
    const offered = offeredProtocols(req)
    const other = otherVersion(offered)
    if (other !== undefined) return reject(socket, 400, protocolMismatch('coordinator', `${other.slice(ROUNDS_SUBPROTOCOL_PREFIX.length, ROUNDS_SUBPROTOCOL_PREFIX.length + 20)} (subprotocol ${ROUNDS_SUBPROTOCOL} expected)`))
    const token = bearerToken(req, offered)
    if (token === undefined) return reject(socket, 401, `rounds need an API token: Authorization: Bearer <token>, or from a browser the subprotocols ${ROUNDS_SUBPROTOCOL} and ${BEARER_PROTOCOL_PREFIX}<token>`)
    if (wss.clients.size + upgrading >= maxConnections) return reject(socket, 503, `the coordinator holds ${maxConnections} round connections, as many as it takes; try again later`)
    upgrading++
    try {
      const trainer = await options.trainer(token)
      if ('refused' in trainer) return reject(socket, trainer.status, trainer.refused, true)
      const { tokenId } = trainer
      if ((perToken.get(tokenId) ?? 0) >= maxPerToken) {
        return reject(socket, 429, `this API token holds ${maxPerToken} round connections, as many as one token may; give runtimes tokens of their own, or start the coordinator with a larger --round-connections-per-token for a fleet that shares one`)
      }
      // Taken into wss.clients within this call (no verifyClient), so the counts stay right.
      wss.handleUpgrade(req, socket, head, ws => {
        perToken.set(tokenId, (perToken.get(tokenId) ?? 0) + 1)
        ws.once('close', () => {
          const left = (perToken.get(tokenId) ?? 1) - 1
          if (left === 0) perToken.delete(tokenId)
          else perToken.set(tokenId, left)
        })
        handshake(ws, socket, tokenId, trainer.expiresAt ?? Infinity, trainer.models ?? null, trainer.reads ?? [DEFAULT_ACCESS_LEVEL])
      })
    } finally {
      upgrading--
    }
  }

  function handshake (ws: WebSocket, socket: Duplex, tokenId: string, expiresAt: number, scope: string[] | null, reads: readonly string[]): void {
    const nonce = toHex(globalThis.crypto.getRandomValues(new Uint8Array(32)))
    alive.set(ws, true)
    ws.on('pong', () => alive.set(ws, true))
    ws.on('error', () => ws.terminate())
    const timer = setTimeout(() => ws.close(4001, 'no hello before the deadline'), options.handshakeMs)
    let client: (ClientConnection & { socket: WebSocket }) | undefined
    let isCut = false
    /** Stop reading, let the close frame go out, then drop the connection. */
    const cut = (code: number, reason: string): void => {
      isCut = true
      ws.close(code, reason)
      socket.pause()
      setTimeout(() => ws.terminate(), CUT_GRACE_MS).unref()
      // Out of the rounds at once, not at the close a second later: a round started meanwhile
      // picked a client whose token was just revoked, and failed (review 49e).
      if (client !== undefined && connected.get(client.id) === client) {
        connected.delete(client.id)
        disconnected(client)
      }
    }
    const send = (message: ServerMessage): void => {
      if (ws.readyState !== ws.OPEN) return
      // A client that sends and never reads would otherwise have every reply queued here, without bound.
      if (ws.bufferedAmount > MAX_UNREAD_BYTES) return cut(1008, 'too many unread messages')
      ws.send(JSON.stringify(message))
    }
    send({ type: 'challenge', nonce })
    const conn = { tokenId, expiresAt, cut: (code: number, reason: string) => { send({ type: 'error', message: reason }); cut(code, reason) }, underway: () => pending, atLastPing: 0, completed: true }
    conns.set(ws, conn)

    const textWindow = { start: performance.now(), bytes: 0 }
    // Raw bytes since the last whole message: the frame ws is buffering, plus slack.
    let pending = 0
    let cutAt: number | undefined
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.length
      if (cutAt !== undefined) {
        if (pending > cutAt + FRAME_SLACK_BYTES) ws.terminate()
        return
      }
      const may = client === undefined ? MAX_HELLO_BYTES : Math.max(MAX_TEXT_BYTES, options.handlers.uploadAllowance(client))
      if (pending <= may + FRAME_SLACK_BYTES) return
      cutAt = pending
      const what = client === undefined ? 'before its hello' : may > MAX_TEXT_BYTES ? 'for the upload a round waits for' : 'while no round waits for an upload from it'
      send({ type: 'error', message: `frame too large: over ${may} bytes ${what}` })
      cut(1009, 'frame too large')
    })

    ws.on('message', (data: RawData, isBinary: boolean) => {
      pending = 0
      // ws still hands over what it had read before the cut: none of it is parsed.
      if (isCut) return
      // The bytes under way now belong to another message: the stall check starts it afresh.
      conn.completed = true
      // Read in place: ws hands over a Buffer it already owns (copying an upload cost its size again).
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
      if (client === undefined) {
        try {
          if (isBinary) throw new InvalidInputError('expected a hello before any upload')
          if (bytes.length > MAX_HELLO_BYTES) throw new InvalidInputError(`hello: ${bytes.length} bytes, at most ${MAX_HELLO_BYTES}`)
          const hello = parseFrame(clientMessageSchema, bytes.toString('utf8'), 'hello')
          if (hello.type !== 'hello') throw new InvalidInputError(`expected a hello, got ${hello.type}`)
          if (!verify(fromBase64(hello.signature), helloSigningBytes(nonce), fromHex(hello.clientId))) throw new InvalidInputError('hello: the signature does not verify with the client key')
          clearTimeout(timer)
          const replaced = connected.get(hello.clientId)
          if (replaced !== undefined) {
            // Its 'close' comes later and finds itself replaced, so it is disconnected here: a
            // runtime that restarted (its old connection not yet seen closed) is out of its rounds
            // at once, as after any lost connection, instead of being waited for until the deadlines.
            connected.delete(replaced.id)
            replaced.close(4002, 'replaced by a newer connection of the same client')
            disconnected(replaced)
          }
          // Offered rounds only of the models its token is limited to (review 49b).
          client = { id: hello.clientId, models: hello.models.filter(m => inScope(scope, m)), reads, given: new Map((hello.given ?? []).map(g => [g.model, { base: g.base, secure: g.secure }])), socket: ws, send, close: (code, reason) => ws.close(code, reason) }
          connected.set(client.id, client)
          const { rounds, awaiting } = options.handlers.connected(client, hello.rounds ?? [])
          send({ type: 'welcome', clientId: client.id, ...(rounds.length === 0 ? {} : { rounds }), ...(awaiting.length === 0 ? {} : { awaiting }) })
        } catch (err) {
          send({ type: 'error', message: errorMessage(err) })
          ws.close(4003, 'handshake failed')
        }
        return
      }
      const from = client
      if (!isBinary) {
        const now = performance.now()
        if (now - textWindow.start >= TEXT_BUDGET.windowMs) Object.assign(textWindow, { start: now, bytes: 0 })
        textWindow.bytes += bytes.length
        if (textWindow.bytes > textBudget) {
          send({ type: 'error', message: `more than ${textBudget} bytes of messages in ${TEXT_BUDGET.windowMs / 1000} s` })
          return cut(1008, 'too many messages')
        }
      }
      void (async () => {
        try {
          if (isBinary) await options.handlers.upload(from, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
          else {
            const begun = performance.now()
            let message: ClientMessage
            try {
              message = parseFrame(clientMessageSchema, bytes.toString('utf8'), 'message')
            } finally {
              chargeParse(ws, performance.now() - begun)
            }
            await options.handlers.message(from, message)
          }
        } catch (err) {
          const { roundId, left } = err as { roundId?: string, left?: true }
          send({ type: 'error', message: errorMessage(err), ...(roundId === undefined ? {} : { roundId, ...(left === true ? { left } : {}) }) })
        }
      })()
    })
    ws.on('close', () => {
      clearTimeout(timer)
      conns.delete(ws)
      parse.by.delete(ws)
      if (client !== undefined && connected.get(client.id) === client) {
        connected.delete(client.id)
        disconnected(client)
      }
    })
  }

  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    // Node removes the HTTP server's socket error listener before 'upgrade': without one of our
    // own, a client that resets the connection (while it is refused, or while its token is
    // checked) raised an unhandled 'error' that took the whole coordinator down (found by review).
    socket.on('error', () => socket.destroy())
    onUpgrade(req, socket, head).catch(() => socket.destroy())
  }

  return {
    attach (s) {
      server = s
      s.on('upgrade', upgrade)
      pinger = setInterval(() => {
        for (const ws of wss.clients) {
          if (alive.get(ws) === false) { ws.terminate(); continue }
          const conn = conns.get(ws)
          if (conn !== undefined) {
            if (conn.expiresAt <= Date.now()) {
              conn.cut(1008, `the API token of this connection expired at ${new Date(conn.expiresAt).toISOString()}`)
              continue
            }
            const underway = conn.underway()
            // Judged over a whole interval only: a message that began within it has no rate yet.
            if (!conn.completed && underway > STALL_BYTES && underway - conn.atLastPing < MIN_PROGRESS_BYTES_PER_S * options.pingMs / 1000) {
              conn.cut(1008, `a message stalled: ${underway} bytes under way, less than ${MIN_PROGRESS_BYTES_PER_S} more per second since the last ping`)
              continue
            }
            conn.atLastPing = underway
            conn.completed = false
          }
          alive.set(ws, false)
          ws.ping()
        }
      }, options.pingMs)
      pinger.unref()
    },
    clients: () => [...connected.values()],
    get: id => connected.get(id),
    cutToken (tokenId, reason) {
      let cut = 0
      for (const conn of conns.values()) {
        if (conn.tokenId !== tokenId) continue
        // 1008: policy violation (RFC 6455 §7.4.1); the client's reconnect is then refused 403.
        conn.cut(1008, reason)
        cut++
      }
      return cut
    },
    async stop () {
      server?.off('upgrade', upgrade)
      if (pinger !== undefined) clearInterval(pinger)
      for (const ws of wss.clients) ws.terminate()
      await new Promise<void>(resolve => wss.close(() => resolve()))
    }
  }
}
