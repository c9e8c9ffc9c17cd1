/**
 * Malformed frames for the round protocol, generated from `clientMessageSchema` itself: for
 * every message type a valid sample, then one fault at a time (a field missing, of the wrong
 * type, out of range, oversized, spelled as NaN/Infinity/hex, an extra or `__proto__` key, a
 * duplicated key, a wrong discriminator), each confirmed malformed by the schema locally before
 * it is sent. Plus text that is not JSON and binary upload frames with bad headers. Each case
 * carries what the reply must name.
 */
import { clientMessageSchema, ROUND_PROTOCOL_VERSION } from '../../shared/rounds/messages.ts'
import { toBase64 } from '../../shared/crypto/bytes.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'

export interface Case {
  name: string
  frame: string | Uint8Array
  /** What the error reply must mention. */
  names: RegExp
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** The message types and their field names, read from the schema. */
export function messageShapes (): Array<{ type: string, fields: string[] }> {
  return clientMessageSchema.options.map(o => {
    const shape = (o as unknown as { shape: Record<string, unknown> }).shape
    const type = (shape.type as { value?: string, def?: { values?: string[] } })
    const literal = type.value ?? type.def?.values?.[0] ?? ''
    return { type: literal, fields: Object.keys(shape).filter(k => k !== 'type') }
  })
}

/** A schema-valid sample of each type, addressed to `roundId`. */
export function sample (type: string, roundId: string, clientId: string): Record<string, unknown> {
  switch (type) {
    case 'hello': return { type, protocol: ROUND_PROTOCOL_VERSION, clientId, signature: toBase64(new Uint8Array(64).fill(7)), models: ['mnist'], given: [{ model: 'mnist', base: 1, secure: true }] }
    case 'accept': return { type, roundId }
    case 'decline': return { type, roundId, reason: 'no', given: { base: 1, secure: false } }
    case 'progress': return { type, roundId, epoch: 0, epochs: 1, loss: 0.5 }
    case 'secagg': return { type, roundId, payload: { type: 'secagg/advertise' } }
    default: throw new Error(`no sample for ${type}`)
  }
}

const malformed = (text: string): boolean => {
  let v: unknown
  try { v = JSON.parse(text) } catch { return true }
  return !clientMessageSchema.safeParse(v).success
}

/**
 * Schema-level faults: answered the same in every state (the frame is refused before any state
 * is looked at). `big` bounds oversized strings and arrays (a hello must stay under 32 KiB).
 */
export function schemaCases (roundId: string, clientId: string, big: number, seed = 0x5eed): Case[] {
  const rand = mulberry32(seed)
  const out: Case[] = []
  const add = (name: string, text: string, names: RegExp): void => {
    if (!malformed(text)) return
    out.push({ name, frame: text, names })
  }
  const wrongTypes: unknown[] = [0, -1, 1.5, 'x', '', true, null, [], {}, [1], { a: 1 }]
  for (const { type, fields } of messageShapes()) {
    const valid = sample(type, roundId, clientId)
    add(`${type}: extra field`, JSON.stringify({ ...valid, extra: 1 }), /Unrecognized key.*extra/)
    add(`${type}: __proto__ key`, JSON.stringify(valid).replace(/^\{/, '{"__proto__":{"isAdmin":true},'), /__proto__/)
    add(`${type}: constructor key`, JSON.stringify(valid).replace(/^\{/, '{"constructor":{"prototype":{"x":1}},'), /constructor/)
    add(`${type}: type missing`, JSON.stringify({ ...valid, type: undefined }), /type/)
    for (const t of [type.toUpperCase(), `${type} `, type.slice(0, -1), 1, null, ['accept']]) add(`${type}: type ${JSON.stringify(t)}`, JSON.stringify({ ...valid, type: t }), /type/)
    for (const field of fields) {
      const f = new RegExp(esc(field))
      add(`${type}: ${field} missing`, JSON.stringify({ ...valid, [field]: undefined }), f)
      for (const w of wrongTypes) add(`${type}: ${field} = ${JSON.stringify(w)}`, JSON.stringify({ ...valid, [field]: w }), f)
      add(`${type}: ${field} huge string`, JSON.stringify({ ...valid, [field]: 'a'.repeat(big) }), f)
      add(`${type}: ${field} huge array`, JSON.stringify({ ...valid, [field]: Array.from({ length: Math.floor(big / 4) }, () => 'ab') }), f)
      add(`${type}: ${field} duplicated, last wrong`, JSON.stringify(valid).replace(/\}$/, `,"${field}":{"dup":true}}`), f)
      for (const n of [-1, -0.5, 1.5, 2 ** 53 + 2, 1e308, -1e308, 1e10, -1e10]) add(`${type}: ${field} = ${n}`, JSON.stringify({ ...valid, [field]: n }), f)
      // Spellings of non-finite and non-decimal numbers: not JSON at all, or ±Infinity after parsing.
      for (const spelling of ['NaN', 'Infinity', '-Infinity', '1e400', '-1e400', '0x10', '+1', '.5', '01', '1.', '"NaN"', '"Infinity"', '"1"']) {
        const text = JSON.stringify({ ...valid, [field]: '@@' }).replace('"@@"', spelling)
        let parses = true
        try { JSON.parse(text) } catch { parses = false }
        add(`${type}: ${field} = ${spelling}`, text, parses ? f : /not JSON/)
      }
    }
    if (fields.includes('models')) {
      add('hello: 101 models', JSON.stringify({ ...valid, models: Array.from({ length: 101 }, (_, i) => `m${i}`) }), /models/)
      add('hello: empty models', JSON.stringify({ ...valid, models: [] }), /models/)
      add('hello: empty model name', JSON.stringify({ ...valid, models: [''] }), /models/)
      add('hello: model name of 65', JSON.stringify({ ...valid, models: ['m'.repeat(65)] }), /models/)
      add('hello: clientId upper-case hex', JSON.stringify({ ...valid, clientId: clientId.toUpperCase() }), /clientId/)
      add('hello: clientId 63 hex', JSON.stringify({ ...valid, clientId: clientId.slice(1) }), /clientId/)
      add('hello: signature not base64', JSON.stringify({ ...valid, signature: '!!!!' }), /signature/)
      add('hello: protocol 1 (a runtime of an older blockfed)', JSON.stringify({ ...valid, protocol: undefined }), /protocol: this coordinator speaks round protocol 8/)
      add('hello: protocol 7 (a runtime of an older blockfed)', JSON.stringify({ ...valid, protocol: 7 }), /protocol: this coordinator speaks round protocol 8/)
      add('hello: protocol 9', JSON.stringify({ ...valid, protocol: 9 }), /protocol: this coordinator speaks round protocol 8/)
      add('hello: given for a model it does not name', JSON.stringify({ ...valid, given: [{ model: 'other', base: 1, secure: true }] }), /given.*not among this hello's models/)
      add('hello: given twice for one model', JSON.stringify({ ...valid, given: [{ model: 'mnist', base: 1, secure: true }, { model: 'mnist', base: 2, secure: false }] }), /given.*listed twice/)
    }
    if (fields.includes('roundId')) {
      for (const r of ['r_zzzz', 'r_0000000000000000 ', 'R_0000000000000000', '../r_0000000000000000', 'r_' + 'a'.repeat(17), `${roundId}\u0000`]) add(`${type}: roundId ${JSON.stringify(r)}`, JSON.stringify({ ...valid, roundId: r }), /roundId/)
    }
    if (type === 'progress') {
      add('progress: epochs 0', JSON.stringify({ ...valid, epochs: 0 }), /epochs/)
      add('progress: loss above MAX_LOSS', JSON.stringify({ ...valid, loss: 1e9 + 1 }), /loss/)
    }
    if (type === 'decline') add('decline: reason of 501', JSON.stringify({ ...valid, reason: 'r'.repeat(501) }), /reason/)
    if (fields.includes('given')) {
      const record = (g: Record<string, unknown>): unknown => type === 'hello' ? [{ model: 'mnist', ...g }] : g
      for (const [why, g] of [['base 0', { base: 0, secure: true }], ['base 2^31', { base: 2 ** 31, secure: true }], ['base 1.5', { base: 1.5, secure: true }], ['secure "yes"', { base: 1, secure: 'yes' }], ['secure missing', { base: 1 }], ['extra key', { base: 1, secure: true, at: 0 }]] as const) {
        add(`${type}: given ${why}`, JSON.stringify({ ...valid, given: record(g) }), /given/)
      }
    }
  }
  // Root values that are not objects, and structural faults.
  for (const v of ['1', 'null', 'true', '[]', '"hello"', '[{"type":"accept"}]']) add(`root ${v}`, v, /expected object/)
  add('deeply nested array', '['.repeat(Math.floor(big / 2)) + ']'.repeat(Math.floor(big / 2)), /expected object/)
  add('many unknown keys', JSON.stringify(Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`k${i}`, i]))), /type/)
  // Not JSON at all.
  for (const text of ['', ' ', '{', '}', 'NaN', 'undefined', '{\'type\':\'accept\'}', '{"type":"accept",}', '\ufeff{}', '\u0000', 'a'.repeat(Math.min(big, 4000)), '{"type":"accept"']) {
    out.push({ name: `not JSON ${JSON.stringify(text.slice(0, 12))}${text.length > 12 ? `… (${text.length})` : ''}`, frame: text, names: /not JSON/ })
  }
  // A few random byte soups sent as text (valid UTF-8 only: ws refuses the rest with 1007).
  for (let i = 0; i < 5; i++) {
    const chars = Array.from({ length: 40 }, () => String.fromCharCode(32 + Math.floor(rand() * 95))).join('')
    if (malformed(chars)) out.push({ name: `random text ${i}`, frame: chars, names: /not JSON|expected object/ })
  }
  return out
}

const le32 = (n: number): Uint8Array => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n >>> 0, true); return b }
const cat = (...parts: Uint8Array[]): Uint8Array => { const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0)); let at = 0; for (const p of parts) { out.set(p, at); at += p.length } return out }
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)
const framed = (head: string | Uint8Array, payload = new Uint8Array(8)): Uint8Array => { const h = typeof head === 'string' ? utf8(head) : head; return cat(le32(h.length), h, payload) }

/** Binary frames whose header is wrong before any round is looked at. */
export function binaryCases (roundId: string, baseVersion: number): Case[] {
  const header = { type: 'upload', roundId, baseVersion, encoding: 'ring-u32le', signature: toBase64(new Uint8Array(64).fill(1)) }
  const out: Case[] = [
    { name: 'binary: empty', frame: new Uint8Array(0), names: /shorter than its length prefix/ },
    { name: 'binary: 3 bytes', frame: Uint8Array.of(1, 2, 3), names: /shorter than its length prefix/ },
    { name: 'binary: header length 0xffffffff', frame: cat(le32(0xffffffff), utf8('{}')), names: /header length 4294967295 is out of range/ },
    { name: 'binary: header length 4097', frame: cat(le32(4097), new Uint8Array(5000)), names: /header length 4097 is out of range/ },
    { name: 'binary: header length past the frame', frame: cat(le32(100), utf8('{}')), names: /header length 100 is out of range/ },
    { name: 'binary: header length 0', frame: cat(le32(0), new Uint8Array(8)), names: /header is not UTF-8 JSON/ },
    { name: 'binary: header not UTF-8', frame: framed(Uint8Array.of(0xff, 0xfe, 0x7b, 0x7d)), names: /header is not UTF-8 JSON/ },
    { name: 'binary: header not JSON', frame: framed('{"type":"upload",'), names: /header is not UTF-8 JSON/ },
    { name: 'binary: header NaN', frame: framed('NaN'), names: /header is not UTF-8 JSON/ },
    { name: 'binary: header null', frame: framed('null'), names: /upload frame: .*expected object/ },
    { name: 'binary: header array', frame: framed('[]'), names: /upload frame: .*expected object/ },
    { name: 'binary: header __proto__', frame: framed(JSON.stringify(header).replace(/^\{/, '{"__proto__":{"x":1},')), names: /__proto__/ },
    { name: 'binary: header extra field', frame: framed(JSON.stringify({ ...header, extra: 1 })), names: /Unrecognized key.*extra/ },
    { name: 'binary: header type uplaod', frame: framed(JSON.stringify({ ...header, type: 'uplaod' })), names: /type/ },
    { name: 'binary: header roundId r_zz', frame: framed(JSON.stringify({ ...header, roundId: 'r_zz' })), names: /roundId/ },
    { name: 'binary: header baseVersion 0', frame: framed(JSON.stringify({ ...header, baseVersion: 0 })), names: /baseVersion/ },
    { name: 'binary: header baseVersion 1.5', frame: framed(JSON.stringify({ ...header, baseVersion: 1.5 })), names: /baseVersion/ },
    { name: 'binary: header baseVersion "1"', frame: framed(JSON.stringify({ ...header, baseVersion: '1' })), names: /baseVersion/ },
    { name: 'binary: header baseVersion 1e400', frame: framed(JSON.stringify({ ...header, baseVersion: '@@' }).replace('"@@"', '1e400')), names: /baseVersion/ },
    { name: 'binary: header encoding gzip', frame: framed(JSON.stringify({ ...header, encoding: 'gzip' })), names: /encoding/ },
    { name: 'binary: header signature not base64', frame: framed(JSON.stringify({ ...header, signature: '!!' })), names: /signature/ },
    { name: 'binary: text frame spelled as binary (a message JSON)', frame: utf8(JSON.stringify({ type: 'accept', roundId })), names: /header length .* out of range|upload frame/ }
  ]
  for (const field of Object.keys(header)) out.push({ name: `binary: header ${field} missing`, frame: framed(JSON.stringify({ ...header, [field]: undefined })), names: new RegExp(field) })
  return out
}
