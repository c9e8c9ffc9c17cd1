/**
 * blockfed's shard exchange, a request/response protocol over libp2p streams (chosen over
 * bitswap by measurement: BENCHMARKS.md, "exchange"). One stream carries exchanges one after
 * another, so a client keeps a few streams per peer open instead of paying a stream's setup,
 * protocol negotiation and close for every object (≈ 1 ms of CPU per object on each side with
 * one stream per request; kept streams took the exchange bench from 50.8 to 80.9 MB/s):
 *
 *   →  request   JSON {"cid": "<CIDv1 raw sha2-256>", "force"?: true}         (≤ 4 KiB)
 *   ←  header    JSON {"status": "ok", "size": n}
 *                   | {"status": "not-found"} | {"status": "busy", "retryMs": n}
 *                   | {"status": "elsewhere", "peers": [{"id", "addrs"}]}    (a referral)
 *                   | {"status": "bad-request", "message": "..."}
 *   ←  body      (ok only) exactly n raw bytes, unframed (the header bounds them)
 *   →  the next request, or the client closes its side; the server closes after a bad request
 *      or when no request comes within its idle deadline.
 *
 * Requests and headers are unsigned-varint length-prefixed (the libp2p convention). Both sides
 * bound every frame before reading it and every read has a deadline. The server answers a
 * malformed request with `bad-request` and closes the stream; the client checks the header
 * against its schema and the body against `size` and its own bound. Bytes are never trusted:
 * the caller verifies them against the CID.
 */
import type { Stream } from '@libp2p/interface'
import { byteStream, type ByteStream } from '@libp2p/utils'
import { encode as varint, encodingLength } from 'uint8-varint'
import { z } from 'zod'
import { parseCid } from '../crypto/cid.ts'
import { IntegrityError, InvalidInputError, NotFoundError, TimeoutError, UnavailableError } from '../errors/errors.ts'
import { parseJsonWith } from '../errors/parse-json.ts'
import { clearableDeadline as deadline } from '../load/deadline.ts'
import type { RequestRate } from './request-rate.ts'
import { wastedStream } from './stream-limit.ts'

/**
 * Messages are strict: a change to them takes a new protocol id (nodes of two versions then
 * agree on one they both offer), so a request with keys this version does not know is a bad
 * request, and counts against its peer's stream budget (stream-limit.ts) like any other.
 */
export const SHARD_PROTOCOL = '/blockfed/shard/2.0.0'
/** The longest wait a `busy` answer may ask for. */
const MAX_BUSY_RETRY_MS = 60_000
/** The wait a `busy` answer asks for when the server says nothing else. */
export const DEFAULT_BUSY_RETRY_MS = 200

/** Bound on a request frame and on a header frame. */
export const MAX_CONTROL_FRAME = 4096
/**
 * Unread bytes a server keeps per stream: four request frames, so that a frame a little over
 * the limit is still refused on its prefix with a bad-request answer (not a reset), and 256
 * streams of one connection hold at most 4 MiB.
 */
export const SERVER_BUFFER_BYTES = 4 * MAX_CONTROL_FRAME
/**
 * The server writes a body in chunks of at most this, the granularity of its upload pacing.
 * Sized so that one chunk travels as one Yamux data frame (12-byte header) inside one Noise
 * transport message (at most 65535 bytes, 16 of them the ChaCha20-Poly1305 tag; Noise spec §7.4):
 * a 64 KiB chunk became a full Noise message plus a 29-byte one, each a separate socket write.
 */
export const BODY_CHUNK = 65535 - 16 - 12
/** Longest a body chunk may take to be accepted by the stream (the peer reading) before the answer is given up. */
export const CHUNK_WRITE_MS = 10_000
/**
 * Slowest a requester may read a body, on average, beyond one CHUNK_WRITE_MS of slack: a peer
 * that read one chunk just inside every CHUNK_WRITE_MS held its answer slot for the answer's
 * whole deadline (30 s on a runtime, 120 s on the origin), and two hosts held every slot that
 * way (review 42b 7). Time the server spends pacing under its own upload cap is not counted, but
 * a write also waits on the server's own socket: a slow uplink shared by many answers looks like
 * slow readers (review 43a). 16 KiB/s keeps 64 answers going on a 10 Mbit/s uplink; 64 KiB/s cut them.
 */
export const MIN_READ_BYTES_PER_SECOND = 16 * 1024
/** Default bound on one object (a shard of a 1 MiB block is ≈ 256 KiB; a whole sealed block may be asked for too). */
export const DEFAULT_MAX_OBJECT_BYTES = 32 << 20
/** Referrals carry at most this many peers, each with at most this many addresses. */
export const MAX_REFERRALS = 8
const MAX_ADDRS = 8

const cidText = z.string().min(1).max(200)
const requestSchema = z.strictObject({ cid: cidText, force: z.boolean().optional() })
export type ShardRequest = z.infer<typeof requestSchema>

const referralSchema = z.strictObject({ id: z.string().min(1).max(128), addrs: z.array(z.string().min(1).max(256)).max(MAX_ADDRS) })
export type Referral = z.infer<typeof referralSchema>

const headerSchema = z.discriminatedUnion('status', [
  z.strictObject({ status: z.literal('ok'), size: z.number().int().min(0) }),
  z.strictObject({ status: z.literal('not-found') }),
  z.strictObject({ status: z.literal('busy'), retryMs: z.number().int().min(0).max(MAX_BUSY_RETRY_MS) }),
  z.strictObject({ status: z.literal('elsewhere'), peers: z.array(referralSchema).min(1).max(MAX_REFERRALS) }),
  z.strictObject({ status: z.literal('bad-request'), message: z.string().max(1024) })
])
type Header = z.infer<typeof headerSchema>

/** What a server's lookup answers for one request. */
export type ShardAnswer =
  | { status: 'ok', bytes: Uint8Array }
  | { status: 'not-found' }
  | { status: 'busy', retryMs: number }
  | { status: 'elsewhere', peers: Referral[] }

/**
 * Reads one length-prefixed frame of at most `maxLength` bytes; undefined when the stream ends
 * cleanly before the frame starts. The prefix is refused as soon as it runs longer than
 * `maxLength` needs (@libp2p/utils' lpStream checks only once a varint has decoded, so a peer
 * sending 0xff… forever would grow its buffer until the deadline), and the frame on its prefix
 * alone when it announces more than `maxLength`.
 */
async function readFrame (bytes: ByteStream<Stream>, maxLength: number, signal: AbortSignal): Promise<Uint8Array | undefined> {
  const maxPrefix = encodingLength(maxLength)
  let length = 0
  for (let i = 0; ; i++) {
    if (i >= maxPrefix) throw new InvalidInputError(`frame length prefix longer than ${maxPrefix} bytes`)
    let b: number
    try {
      b = (await bytes.read({ bytes: 1, signal })).get(0)
    } catch (err) {
      if (i === 0 && (err as Error).name === 'UnexpectedEOFError') return undefined
      throw err
    }
    length += (b & 0x7f) * 2 ** (7 * i)
    if ((b & 0x80) === 0) break
  }
  if (length > maxLength) throw new InvalidInputError(`Message length too long - ${length} > ${maxLength}`)
  if (length === 0) return new Uint8Array(0)
  return (await bytes.read({ bytes: length, signal })).subarray()
}

/** A request or header: JSON in one frame. */
async function writeJson (bytes: ByteStream<Stream>, value: ShardRequest | Header, signal: AbortSignal): Promise<void> {
  await writeFrame(bytes, encoder.encode(JSON.stringify(value)), signal)
}

async function writeFrame (bytes: ByteStream<Stream>, body: Uint8Array, signal: AbortSignal): Promise<void> {
  const prefix = varint(body.length)
  const frame = new Uint8Array(prefix.length + body.length)
  frame.set(prefix)
  frame.set(body, prefix.length)
  await bytes.write(frame, { signal })
}

/** How long a closed side waits for the peer to close its own before the stream is reset. */
export const CLOSE_GRACE_MS = 10_000

/**
 * Closes this side and resets the stream unless the peer closes its side within `graceMs`: a
 * half-closed stream whose peer never closes would otherwise live on, and keep buffering what
 * the peer sends, with no deadline at all (libp2p never ends it on its own).
 */
async function closeWithin (stream: Stream, graceMs: number, signal?: AbortSignal): Promise<void> {
  await stream.close({ signal })
  if (stream.status !== 'open' && stream.status !== 'closing') return
  const timer = setTimeout(() => { stream.abort(new TimeoutError(`the peer did not close its side of ${stream.protocol ?? 'the stream'} within ${graceMs} ms`)) }, graceMs)
  stream.addEventListener('close', () => { clearTimeout(timer) }, { once: true })
}

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

function decodeText (bytes: Uint8Array, what: string): string {
  try {
    return decoder.decode(bytes)
  } catch (err) {
    throw new InvalidInputError(`${what}: not UTF-8`, { cause: err })
  }
}

/** Parses a request frame; throws InvalidInputError naming the problem (also for a CID blockfed cannot hold). */
export function parseRequest (frame: Uint8Array): ShardRequest {
  const request = parseJsonWith(requestSchema, decodeText(frame, 'shard request'), 'shard request')
  parseCid(request.cid, 'shard request cid')
  return request
}

function parseHeader (frame: Uint8Array): Header {
  return parseJsonWith(headerSchema, decodeText(frame, 'shard reply header'), 'shard reply header', UnavailableError)
}

/** Maps a stream read/write failure after `signal` fired into our TimeoutError. */
function streamError (err: unknown, signal: AbortSignal, what: string): Error {
  if (signal.aborted) return new TimeoutError(`${what}: aborted (${String((signal.reason as Error | undefined)?.message ?? signal.reason)})`, { cause: err })
  if (err instanceof InvalidInputError || err instanceof UnavailableError || err instanceof IntegrityError) return err
  return new UnavailableError(`${what}: ${(err as Error).message}`, { cause: err })
}

export interface RequestShardOptions {
  signal: AbortSignal
  force?: boolean
  maxBytes?: number
  /**
   * The object's size from the signed manifest: an answer announcing another size cannot be the
   * object, and is refused (IntegrityError) before any body is read.
   */
  size?: number
  /**
   * Called once the reply's header has been read, with its status (before an ok answer's body):
   * the requester's sign that the peer is alive and answering, whatever the body then takes.
   */
  onHeader?: (status: ShardAnswer['status']) => void
}

/** The client end of one shard stream: exchanges one after another. */
export interface ShardSession {
  /**
   * One exchange. Rejects with UnavailableError when the peer breaks the protocol (bad header,
   * body longer or shorter than announced, larger than `maxBytes`), IntegrityError when it
   * announces a size other than `size`, TimeoutError when `signal`
   * fires; the stream is then aborted and the session is no longer `usable`.
   */
  request: (cid: string, options: RequestShardOptions) => Promise<ShardAnswer>
  /** Open both ways, no exchange running and none failed: the next request may be sent. */
  readonly usable: boolean
  /** Exchanges completed on this stream. */
  readonly exchanges: number
  /** Ends the session politely (the server then closes its side). */
  close: (signal?: AbortSignal) => Promise<void>
  abort: (err: Error) => void
}

export interface ShardSessionOptions {
  /** After `close`, how long the server may take to close its side before the stream is reset. Default CLOSE_GRACE_MS. */
  closeGraceMs?: number
}

export function shardSession (stream: Stream, options: ShardSessionOptions = {}): ShardSession {
  // Every read is bounded by the frame or body being read; this bounds what may pile up unread.
  const bytes = byteStream(stream, { maxBufferSize: DEFAULT_MAX_OBJECT_BYTES + MAX_CONTROL_FRAME })
  let busy = false
  let failed = false
  let exchanges = 0
  // An honest server sends nothing between exchanges: bytes arriving while the session waits
  // idle (in a client's pool) would pile up unread, so they end it.
  stream.addEventListener('message', () => {
    if (busy || failed) return
    failed = true
    stream.abort(new UnavailableError(`shard session with ${stream.protocol}: the peer sent bytes no request asked for`))
  })

  const readBody = async (size: number, signal: AbortSignal, what: string): Promise<Uint8Array> => {
    const out = new Uint8Array(size)
    let filled = 0
    while (filled < size) {
      const chunk = await bytes.read({ signal })
      if (chunk === null) throw new UnavailableError(`${what}: the stream ended after ${filled} of the announced ${size} bytes`)
      if (filled + chunk.byteLength > size) throw new UnavailableError(`${what}: more bytes than the announced ${size}`)
      for (const part of chunk) {
        out.set(part, filled)
        filled += part.byteLength
      }
    }
    return out
  }

  return {
    get usable () {
      return !busy && !failed && stream.status === 'open' && stream.writeStatus === 'writable' && stream.remoteWriteStatus === 'writable'
    },
    get exchanges () { return exchanges },
    async request (cid, options) {
      if (busy) throw new Error('shard session: one exchange at a time')
      busy = true
      const { signal } = options
      const maxBytes = options.maxBytes ?? DEFAULT_MAX_OBJECT_BYTES
      const what = `shard ${cid} from ${stream.protocol}`
      try {
        const request: ShardRequest = options.force === true ? { cid, force: true } : { cid }
        await writeJson(bytes, request, signal)
        const frame = await readFrame(bytes, MAX_CONTROL_FRAME, signal)
        if (frame === undefined) throw new UnavailableError(`${what}: the stream ended before a reply`)
        const header = parseHeader(frame)
        if (header.status !== 'bad-request') options.onHeader?.(header.status)
        if (header.status === 'bad-request') throw new InvalidInputError(`${what}: peer refused the request: ${header.message}`)
        let answer: ShardAnswer
        if (header.status !== 'ok') {
          answer = header
        } else {
          if (options.size !== undefined && header.size !== options.size) throw new IntegrityError(`${what}: announces ${header.size} bytes, but the object has ${options.size}`)
          if (header.size > maxBytes) throw new UnavailableError(`${what}: announces ${header.size} bytes, above the ${maxBytes}-byte bound`)
          answer = { status: 'ok', bytes: await readBody(header.size, signal, what) }
        }
        exchanges++
        return answer
      } catch (err) {
        failed = true
        const mapped = streamError(err, signal, what)
        stream.abort(mapped)
        throw mapped
      } finally {
        busy = false
      }
    },
    async close (signal) {
      failed = true
      await closeWithin(stream, options.closeGraceMs ?? CLOSE_GRACE_MS, signal).catch(err => { stream.abort(err instanceof Error ? err : new Error(String(err))) })
    },
    abort (err) {
      failed = true
      stream.abort(err)
    }
  }
}

/** One exchange on a fresh stream, which is then closed (a session of one request). */
export async function requestShard (stream: Stream, cid: string, options: RequestShardOptions): Promise<ShardAnswer> {
  const session = shardSession(stream)
  const answer = await session.request(cid, options)
  await session.close(options.signal)
  return answer
}

/**
 * Answer slots shared by a server's streams: a request that finds none is answered `busy`.
 * One peer holds at most a quarter of them, so that a peer which asks on many streams and
 * never reads cannot keep every other peer out. Peer ids are free, though: 4 ids from one
 * host, each asking on 16 streams and pausing, held all 64 of a runtime's slots (review), so
 * one host (hostGroup: an IPv4 address, an IPv6 /56) holds at most half. Half, not a quarter:
 * a fleet behind one NAT is one host too. Loopback peers have no host (a cluster on
 * one machine is its operator's own), nor do callers that do not say.
 */
export interface ServeSlots {
  take: (peer?: string, host?: string) => boolean
  give: (peer?: string, host?: string) => void
}

export function serveSlots (max: number): ServeSlots & { readonly inUse: number } {
  const perPeer = Math.max(1, Math.floor(max / 4))
  const perHost = Math.max(1, Math.floor(max / 2))
  let inUse = 0
  const byPeer = new Map<string, number>()
  const byHost = new Map<string, number>()
  const held = (counts: Map<string, number>, key: string | undefined): number => key === undefined ? 0 : counts.get(key) ?? 0
  const add = (counts: Map<string, number>, key: string | undefined, n: number): void => {
    if (key === undefined) return
    const next = (counts.get(key) ?? 0) + n
    if (next > 0) counts.set(key, next)
    else counts.delete(key)
  }
  return {
    get inUse () { return inUse },
    take: (peer, host) => {
      if (inUse >= max || held(byPeer, peer) >= perPeer || held(byHost, host) >= perHost) return false
      inUse++
      add(byPeer, peer, 1)
      add(byHost, host, 1)
      return true
    },
    give: (peer, host) => {
      inUse = Math.max(0, inUse - 1)
      add(byPeer, peer, -1)
      add(byHost, host, -1)
    }
  }
}

export interface ServeOptions {
  /** Deadline of one answer (writing it, pacing included), and for the first request to arrive. */
  timeoutMs: number
  /** How long an open stream may wait for its next request. Default `timeoutMs`. */
  idleTimeoutMs?: number
  /** Paces the body: resolves when `bytes` may be sent (an upload cap). */
  pace?: (bytes: number, signal: AbortSignal) => Promise<void>
  /**
   * Admits a body of `bytes` (returning the release to call when its answer ends) or not (it is
   * answered `busy`), e.g. UploadCap.admit.
   */
  admit?: (bytes: number, signal: AbortSignal) => (() => void) | undefined
  /** Answer slots; taken once a request has arrived (so silent streams hold none), given back when its answer is written. */
  slots?: ServeSlots
  /** Paces the requests of the remote peer and host (requestRate): each is read only when its turn comes. */
  rate?: RequestRate
  /** The remote peer, for the slots' per-peer bound. */
  peer?: string
  /** The remote peer's host (hostGroup), for the slots' per-host bound. */
  host?: string
  /** Longest one body chunk may wait for the peer to read. Default CHUNK_WRITE_MS. */
  progressMs?: number
  /** Slowest average reading of a body past `progressMs` of waiting in all. Default MIN_READ_BYTES_PER_SECOND. */
  minReadBytesPerSecond?: number
  /** Retry hint of a `busy` answer, or how to work it out when one is sent. Default DEFAULT_BUSY_RETRY_MS. */
  busyRetryMs?: number | (() => number)
  /** Called when an ok answer's body starts (it was admitted); `onServed` or `onBroken` follows. */
  onSending?: (request: ShardRequest) => void
  /** Called after a complete ok answer, with the body's length and the request it answered. */
  onServed?: (bytes: number, request: ShardRequest) => void
  /** Called when an ok answer under way breaks off (the peer left, a deadline fired). */
  onBroken?: (request: ShardRequest) => void
  /** Called for a request refused as malformed, with the reason. */
  onBadRequest?: (reason: string) => void
  /** Called for a request answered `busy` for want of a slot or of upload capacity. */
  onBusy?: () => void
}

/** The `retryMs` of a busy answer: whole milliseconds within the protocol's bound. */
function busyRetry (options: ServeOptions): number {
  const ms = typeof options.busyRetryMs === 'function' ? options.busyRetryMs() : options.busyRetryMs ?? DEFAULT_BUSY_RETRY_MS
  return Math.min(MAX_BUSY_RETRY_MS, Math.max(0, Math.round(ms)))
}

/**
 * Answers the requests of one inbound stream, one after another: reads a request (bounded, with
 * a deadline), asks `lookup`, writes the header and body, and waits for the next. Ends when the
 * client closes its side, after a malformed request (answered `bad-request` naming the problem),
 * or when no request comes in time. Any failure (the peer vanished, a deadline fired, lookup
 * threw) ends in a closed or aborted stream, never in an exception out of the handler.
 */
export async function serveShardStream (
  stream: Stream,
  lookup: (request: ShardRequest, signal: AbortSignal) => Promise<ShardAnswer>,
  options: ServeOptions
): Promise<void> {
  // An honest client sends its next request only after the reply, so one request frame is all
  // that is ever unread; past SERVER_BUFFER_BYTES the stream is aborted. A bound of 1 MiB let a
  // peer pin 1 MiB on each of 256 streams per connection for the whole close grace (review 42b:
  // 545 MB from 2 connections).
  const bytes = byteStream(stream, { maxBufferSize: SERVER_BUFFER_BYTES })
  const idleMs = options.idleTimeoutMs ?? options.timeoutMs
  // A requester that resets or closes the stream ends the answer under way, whatever it waits
  // on: a lookup waiting for an object still on its way held its slot up to 20 s after the
  // requester had gone (review 37c), and such requesters could hold every slot.
  const gone = new AbortController()
  const onClose = (): void => { gone.abort(new Error('the requester closed the stream')) }
  stream.addEventListener('close', onClose, { once: true })
  try {
    for (let exchanges = 0; ; exchanges++) {
      const waiting = deadline(exchanges === 0 ? options.timeoutMs : idleMs)
      let request: ShardRequest
      try {
        // Not read before the peer's turn (a flood is slowed by back-pressure, not answered);
        // a turn later than the wait for a request ends the stream as a silent one would, and a
        // stream the peer closes or resets leaves the queue at once: reset streams waiting here
        // no longer count against the connection's stream limit, and 4,143 of them were held
        // within 12 s by one connection (review 43a).
        if (options.rate !== undefined) await options.rate.wait(options.peer, options.host, AbortSignal.any([waiting.signal, gone.signal]))
        const frame = await readFrame(bytes, MAX_CONTROL_FRAME, waiting.signal)
        if (frame === undefined) {
          if (exchanges > 0) break
          throw new InvalidInputError('Unexpected EOF: the stream ended before a request')
        }
        request = parseRequest(frame)
      } catch (err) {
        if (waiting.signal.aborted || stream.status !== 'open') throw err
        const message = err instanceof Error ? err.message : String(err)
        options.onBadRequest?.(message)
        // An honest client never sends one: the stream counts against its peer's budget.
        wastedStream(stream)
        const signal = AbortSignal.timeout(options.timeoutMs)
        await writeJson(bytes, { status: 'bad-request', message: message.slice(0, 1024) }, signal)
        await closeWithin(stream, options.timeoutMs, signal)
        return
      } finally {
        waiting.clear()
      }
      const exchange = deadline(options.timeoutMs)
      const signal = AbortSignal.any([exchange.signal, gone.signal])
      try {
        if (options.slots !== undefined && !options.slots.take(options.peer, options.host)) {
          options.onBusy?.()
          await writeJson(bytes, { status: 'busy', retryMs: busyRetry(options) }, signal)
          continue
        }
        try {
          await answer(bytes, request, lookup, options, signal)
        } finally {
          options.slots?.give(options.peer, options.host)
        }
      } finally {
        exchange.clear()
      }
    }
    await closeWithin(stream, options.timeoutMs, AbortSignal.timeout(options.timeoutMs))
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  } finally {
    stream.removeEventListener('close', onClose)
  }
}

async function answer (
  bytes: ByteStream<Stream>,
  request: ShardRequest,
  lookup: (request: ShardRequest, signal: AbortSignal) => Promise<ShardAnswer>,
  options: ServeOptions,
  signal: AbortSignal
): Promise<void> {
  let reply: ShardAnswer
  try {
    reply = await lookup(request, signal)
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err
    reply = { status: 'not-found' }
  }
  if (reply.status !== 'ok') {
    await writeJson(bytes, reply, signal)
    return
  }
  const body = reply.bytes
  const release = options.admit === undefined ? () => {} : options.admit(body.length, signal)
  if (release === undefined) {
    options.onBusy?.()
    await writeJson(bytes, { status: 'busy', retryMs: busyRetry(options) }, signal)
    return
  }
  options.onSending?.(request)
  const progressMs = options.progressMs ?? CHUNK_WRITE_MS
  const minRead = options.minReadBytesPerSecond ?? MIN_READ_BYTES_PER_SECOND
  try {
    await writeJson(bytes, { status: 'ok', size: body.length } satisfies Header, signal)
    /** Time spent in writes: the peer not reading (Yamux flow control), or this server's own socket. */
    let waited = 0
    for (let at = 0; at < body.length; at += BODY_CHUNK) {
      const chunk = body.subarray(at, at + BODY_CHUNK)
      await options.pace?.(chunk.length, signal)
      // A peer that stops reading stalls the write: end the answer when a chunk makes no
      // progress, or when the peer has read slower than `minRead` on average, not at the whole
      // answer's deadline, so its slot and its share of the upload cap come back.
      const allowed = progressMs + (at + chunk.length) * 1000 / minRead - waited
      // Cleared when the write is done: a timer per chunk left to fire kept up to 16 per 1 MiB
      // answer alive for progressMs each.
      const progress = deadline(Math.max(1, Math.ceil(Math.min(progressMs, allowed))))
      const started = performance.now()
      try {
        await bytes.write(chunk, { signal: AbortSignal.any([signal, progress.signal]) })
      } finally {
        progress.clear()
      }
      waited += performance.now() - started
    }
  } catch (err) {
    options.onBroken?.(request)
    throw err
  } finally {
    release()
  }
  options.onServed?.(body.length, request)
}
