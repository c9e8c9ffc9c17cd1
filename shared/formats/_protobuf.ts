/**
 * Protocol Buffers wire format, read without a schema
 * (https://protobuf.dev/programming-guides/encoding/): a message is a run of (tag, value)
 * records; we keep each record's field number, wire type and byte range, so callers can cut
 * payloads out of a file exactly. Built on protobufjs's `Reader`; every bound is checked here,
 * so a damaged input ends in a `WireError` carrying a byte position, never a loop or a stray
 * RangeError.
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
  override readonly name = 'WireError'
  readonly at: number
  readonly truncated: boolean
  constructor (message: string, at: number, truncated: boolean) {
    super(message)
    this.at = at
    this.truncated = truncated
  }
}

export type WireReader = protobuf.Reader

export function wireReader (bytes: Uint8Array): WireReader {
  return new protobuf.Reader(bytes)
}

/**
 * The records of the message occupying `[start, end)`, in file order. Values are not decoded
 * beyond varints; nested messages are read by calling this again on a record's range.
 */
export function readFields (r: WireReader, start: number, end: number): WireField[] {
  const fields: WireField[] = []
  r.pos = start
  r.len = end
  while (r.pos < end) {
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
    fields.push({ no, wire, at, value, start, end: r.pos })
  }
  return fields
}

/** The varints of a packed repeated field occupying `[start, end)`. */
export function readPackedVarints (r: WireReader, start: number, end: number): number[] {
  const values: number[] = []
  r.pos = start
  r.len = end
  while (r.pos < end) values.push(varint(r, end, r.pos))
  return values
}

/**
 * A varint of up to 64 bits as a number. protobufjs returns a `Long` ({low, high}) when the
 * `long` package is present, a number otherwise; both are handled. Its own errors are re-thrown
 * as WireError.
 */
function varint (r: WireReader, end: number, at: number): number {
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
