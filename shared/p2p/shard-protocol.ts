/**
 * blockfed's shard exchange, a request/response protocol over one libp2p stream per request
 * (chosen over bitswap by measurement: BENCHMARKS.md, "exchange"). Frames are unsigned-varint
 * length-prefixed (the libp2p convention, @libp2p/utils `lpStream`):
 *
 *   →  request   JSON {"cid": "<CIDv1 raw sha2-256>", "force"?: true}         (≤ 512 bytes)
 *   ←  header    JSON {"status": "ok", "size": n}
 *                   | {"status": "not-found"} | {"status": "busy", "retryMs": n}
 *                   | {"status": "elsewhere", "peers": [{"id", "addrs"}]}    (a referral)
 *                   | {"status": "bad-request", "message": "..."}
 *   ←  body      (ok only) the n bytes in frames of ≤ 64 KiB, so an upload cap can pace them
 *
 * Both sides bound every frame before reading it and every read has a deadline. The server
 * answers a malformed request with `bad-request` and closes the stream; the client checks the
 * header against its schema and the body's length against `size` and its own bound. Bytes are
 * never trusted: the caller verifies them against the CID.
 */
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { z } from 'zod'
import { parseCid } from '../crypto/cid.ts'
import { InvalidInputError, NotFoundError, TimeoutError, UnavailableError } from '../errors/errors.ts'
import { parseJsonWith } from '../errors/parse-json.ts'

export const SHARD_PROTOCOL = '/blockfed/shard/1.0.0'

/** Bound on a request frame and on a header frame. */
export const MAX_CONTROL_FRAME = 4096
/** Body frames are at most this long. */
export const BODY_FRAME = 64 * 1024
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
  z.strictObject({ status: z.literal('busy'), retryMs: z.number().int().min(0).max(60_000) }),
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
 * The frame length decoder given to `lpStream`: an unsigned varint (multiformats/unsigned-varint)
 * of at most `maxBytes` bytes. lpStream reads the prefix a byte at a time and retries while the
 * decoder throws RangeError, and checks the prefix's length only once it decodes — so a peer
 * sending 0xff… forever would grow that buffer until the deadline. This decoder refuses a prefix
 * longer than `maxBytes` at once (a non-RangeError ends the read).
 */
function boundedLength (maxBytes: number): (data: { subarray: () => Uint8Array }) => number {
  return data => {
    const bytes = data.subarray()
    let value = 0
    for (let i = 0; i < bytes.length; i++) {
      if (i >= maxBytes) break
      const b = bytes[i] as number
      value += (b & 0x7f) * 2 ** (7 * i)
      if ((b & 0x80) === 0) return value
    }
    if (bytes.length > maxBytes) throw new InvalidInputError(`frame length prefix longer than ${maxBytes} bytes`)
    throw new RangeError('varint incomplete')
  }
}

/** lpStream options bounding a frame to `maxDataLength` bytes and its prefix to what that needs. */
function framing (maxDataLength: number): { maxDataLength: number, lengthDecoder: (data: { subarray: () => Uint8Array }) => number } {
  let prefix = 1
  while (2 ** (7 * prefix) <= maxDataLength) prefix++
  return { maxDataLength, lengthDecoder: boundedLength(prefix) }
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
  if (err instanceof InvalidInputError || err instanceof UnavailableError) return err
  return new UnavailableError(`${what}: ${(err as Error).message}`, { cause: err })
}

export interface RequestShardOptions {
  signal: AbortSignal
  force?: boolean
  maxBytes?: number
}

/**
 * Sends one request on an open outbound stream and reads the reply. Rejects with
 * UnavailableError when the peer breaks the protocol (bad header, body longer or shorter than
 * announced, larger than `maxBytes`), TimeoutError when `signal` fires. Always closes or aborts
 * the stream.
 */
export async function requestShard (stream: Stream, cid: string, options: RequestShardOptions): Promise<ShardAnswer> {
  const { signal } = options
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_OBJECT_BYTES
  const lp = lpStream(stream, framing(Math.max(MAX_CONTROL_FRAME, BODY_FRAME)))
  const what = `shard ${cid} from ${stream.protocol}`
  try {
    const request: ShardRequest = options.force === true ? { cid, force: true } : { cid }
    await lp.write(encoder.encode(JSON.stringify(request)), { signal })
    const header = parseHeader((await lp.read({ signal })).subarray())
    if (header.status === 'bad-request') throw new InvalidInputError(`${what}: peer refused the request: ${header.message}`)
    if (header.status !== 'ok') {
      await stream.close({ signal }).catch(() => {})
      return header
    }
    if (header.size > maxBytes) throw new UnavailableError(`${what}: announces ${header.size} bytes, above the ${maxBytes}-byte bound`)
    const bytes = new Uint8Array(header.size)
    let filled = 0
    while (filled < header.size) {
      const frame = await lp.read({ signal })
      if (frame.byteLength === 0 || filled + frame.byteLength > header.size) throw new UnavailableError(`${what}: body frames do not add up to the announced ${header.size} bytes`)
      bytes.set(frame.subarray(), filled)
      filled += frame.byteLength
    }
    await stream.close({ signal }).catch(() => {})
    return { status: 'ok', bytes }
  } catch (err) {
    const mapped = streamError(err, signal, what)
    stream.abort(mapped)
    throw mapped
  }
}

export interface ServeOptions {
  /** Deadline for the request frame to arrive and for the whole answer to be written. */
  timeoutMs: number
  /** Paces the body: resolves when `bytes` may be sent (an upload cap). */
  pace?: (bytes: number, signal: AbortSignal) => Promise<void>
  /** Called after a complete ok answer, with the body's length. */
  onServed?: (bytes: number) => void
  /** Called for a request refused as malformed, with the reason. */
  onBadRequest?: (reason: string) => void
}

/**
 * Answers one inbound stream: reads a request (bounded, with a deadline), asks `lookup`, writes
 * the header and body, closes. A malformed request gets `bad-request` naming the problem; any
 * failure (the peer vanished, the deadline fired, lookup threw) ends in a closed or aborted
 * stream, never in an exception out of the handler.
 */
export async function serveShardStream (
  stream: Stream,
  lookup: (request: ShardRequest, signal: AbortSignal) => Promise<ShardAnswer>,
  options: ServeOptions
): Promise<void> {
  const signal = AbortSignal.timeout(options.timeoutMs)
  const lp = lpStream(stream, framing(MAX_CONTROL_FRAME))
  const send = async (header: Header): Promise<void> => { await lp.write(encoder.encode(JSON.stringify(header)), { signal }) }
  try {
    let request: ShardRequest
    try {
      request = parseRequest((await lp.read({ signal })).subarray())
    } catch (err) {
      if (signal.aborted) throw err
      const message = err instanceof Error ? err.message : String(err)
      options.onBadRequest?.(message)
      await send({ status: 'bad-request', message: message.slice(0, 1024) })
      await stream.close({ signal })
      return
    }
    let answer: ShardAnswer
    try {
      answer = await lookup(request, signal)
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err
      answer = { status: 'not-found' }
    }
    if (answer.status !== 'ok') {
      await send(answer)
      await stream.close({ signal })
      return
    }
    const { bytes } = answer
    await send({ status: 'ok', size: bytes.length })
    for (let at = 0; at < bytes.length; at += BODY_FRAME) {
      const frame = bytes.subarray(at, at + BODY_FRAME)
      await options.pace?.(frame.length, signal)
      await lp.write(frame, { signal })
    }
    await stream.close({ signal })
    options.onServed?.(bytes.length)
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  }
}
