/**
 * Protocol Buffers wire format, read without a schema
 * (https://protobuf.dev/programming-guides/encoding/): a message is a run of (tag, value)
 * records; we keep each record's field number, wire type and byte range, so callers can cut
 * payloads out of a file exactly. Built on protobufjs's `Reader`; every bound is checked here,
 * so a damaged input ends in a `WireError` carrying a byte position, never a loop or a stray
 * RangeError, and a file's records are counted against a budget (`MAX_RECORDS`).
 */
import protobuf from 'protobufjs/minimal.js'

export const WIRE_VARINT = 0
export const WIRE_FIXED64 = 1
export const WIRE_LEN = 2
export const WIRE_FIXED32 = 5

/** One record of a message. */
export interface WireField {
  /** Field number. */
  no: number
  /** Wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32). */
  wire: number
  /** Byte position of the tag. */
  at: number
  /** Varints: the value as a number (exact below 2^53; int64 negatives come out negative). */
  value: number
  /** Length-delimited: the payload's range; other wire types: the value's bytes. */
  start: number
  end: number
}

/** A record that does not fit its message. `truncated`: it ran past the end of its range. */
export class WireError extends Error {
  override readonly name: string = 'WireError'
  readonly at: number
  readonly truncated: boolean
  constructor (message: string, at: number, truncated: boolean) {
    super(message)
    this.at = at
    this.truncated = truncated
  }
}

/** Well-formed bytes that ask for more work or memory than any real file needs (`WireReader.maxRecords`, a rank cap). */
export class WireLimitError extends WireError {
  override readonly name = 'WireLimitError'
  constructor (message: string, at: number) {
    super(message, at, false)
  }
}

/**
 * Records one file may hold, counted over every message read. Unknown fields are legal and
 * must be skipped, so without a cap 64 MiB of 2-byte records is 32 million loop turns (and,
 * when they were kept, 2 GB of heap); under it, the worst file we found (a million nodes of
 * one distinct input each, 7.5 MiB) peaks near 300 MB of heap. Real graphs stay far below it:
 * silero VAD is 7,227 records for 689 nodes, so the cap leaves room for some 200,000 nodes,
 * several times what large transformer exports have.
 */
export const MAX_RECORDS = 2_000_000

/** A protobufjs Reader over one file, with the file's record budget. */
export interface WireReader {
  readonly reader: protobuf.Reader
  /** Records read so far, in every message of the file. */
  records: number
  readonly maxRecords: number
}

export function wireReader (bytes: Uint8Array, maxRecords = MAX_RECORDS): WireReader {
  return { reader: new protobuf.Reader(bytes), records: 0, maxRecords }
}

/**
 * Calls `visit` with each record of the message occupying `[start, end)`, in file order.
 * Values are not decoded beyond varints. Nothing is kept: a caller keeps the records it knows
 * (each `WireField` is a fresh object), so unknown fields cost a loop turn and no memory.
 * `visit` may read nested messages (it moves the reader; the loop puts it back).
 */
export function eachField (w: WireReader, start: number, end: number, visit: (f: WireField) => void): void {
  const r = w.reader
  let pos = start
  while (pos < end) {
    if (++w.records > w.maxRecords) {
      throw new WireLimitError(`more than ${w.maxRecords} protobuf records (at byte ${pos}); refused as a hostile or corrupt file`, pos)
    }
    r.pos = pos
    r.len = end
    const f = readRecord(r, end)
    pos = f.end
    visit(f)
  }
}

/** The record at `r.pos`, checked to end by `end`; `r.pos` is left at its end. */
function readRecord (r: protobuf.Reader, end: number): WireField {
  const at = r.pos
  const tag = varint(r, end, at)
  const no = Math.floor(tag / 8)
  const wire = tag % 8
  if (!(no >= 1 && no <= 536_870_911)) throw new WireError(`invalid field number ${no} at byte ${at}`, at, false)
  const valueStart = r.pos
  let value = 0
  let length: number
  switch (wire) {
    case WIRE_VARINT:
      value = varint(r, end, at)
      length = 0
      break
    case WIRE_FIXED64: length = 8; break
    case WIRE_FIXED32: length = 4; break
    case WIRE_LEN:
      length = varint(r, end, at)
      // A 10-byte varint reads as a negative int64; taken as a length it would move backwards.
      if (length < 0) throw new WireError(`field ${no} at byte ${at} has a negative length`, at, false)
      break
    default:
      throw new WireError(`invalid wire type ${wire} (field ${no}) at byte ${at}`, at, false)
  }
  const start = wire === WIRE_VARINT ? valueStart : r.pos
  if (r.pos + length > end) {
    throw new WireError(
      `field ${no} at byte ${at} needs ${length} bytes from byte ${r.pos}, but its message ends at byte ${end}`,
      end, true)
  }
  r.pos += length
  return { no, wire, at, value, start, end: r.pos }
}

/**
 * The varints of a packed repeated field occupying `[start, end)`, at most `max` of them: a
 * longer field stops after `max + 1`, for the caller to refuse without holding the rest.
 */
export function readPackedVarints (w: WireReader, start: number, end: number, max: number): number[] {
  const r = w.reader
  const values: number[] = []
  r.pos = start
  r.len = end
  while (r.pos < end && values.length <= max) values.push(varint(r, end, r.pos))
  return values
}

/**
 * A varint of up to 64 bits as a number. protobufjs returns a `Long` ({low, high}) when the
 * `long` package is present, a number otherwise; both are handled. Its own errors are re-thrown
 * as WireError.
 */
function varint (r: protobuf.Reader, end: number, at: number): number {
  const before = r.pos
  let v: number | protobuf.Long
  try {
    v = r.int64()
  } catch (e) {
    const truncated = /index out of range/.test(String(e))
    throw new WireError(truncated
      ? `varint at byte ${before} (record at byte ${at}) runs past byte ${end}`
      : `bad varint at byte ${before}: ${(e as Error).message}`, truncated ? end : before, truncated)
  }
  if (r.pos > end) throw new WireError(`varint at byte ${before} runs past byte ${end}`, end, true)
  return typeof v === 'number' ? v : v.high * 4_294_967_296 + (v.low >>> 0)
}
