/**
 * The round protocol between coordinator and runtimes over one WebSocket (`ws` in Node): JSON
 * text frames for control messages, one binary frame per update. Every frame is parsed by these
 * schemas before use; a frame that fails gets an `error` reply naming what is wrong and changes
 * nothing. Secure-aggregation payloads ride inside `secagg` messages and are parsed again by
 * their own mode's schemas (aggregation/secagg/messages.ts).
 *
 * Flow: challenge → hello (Ed25519 proof of the client key) → welcome; per round: offer →
 * accept | decline → [masking: advertise/roster/shares/inbox] → progress… → upload (binary)
 * → [masking: unmask request/response] → result.
 */
import { z } from 'zod'
import { describeIssues, parseJsonWith } from '../errors/parse-json.ts'
import { concatBytes, fromBase64, utf8ToBytes } from '../crypto/bytes.ts'
import { InvalidInputError } from '../errors/errors.ts'
import { roundConfigSchema } from './config.ts'

/**
 * Version of this protocol: 2 since upload signatures name the model and hellos carry the
 * runtime's records; 3 since a masking graph of 4–9 clients tolerates one dropout at the default
 * rate (aggregation/secagg/params.ts): both sides derive the graph, and a runtime of version 2
 * would derive another one and refuse every roster of such a round; 4 since colluders are counted
 * over the clients offered a round, not over its roster (the graph changes again); 5 since a
 * client reports the neighbours whose shares did not open (`secagg/skipped`) and the sum needs
 * that report (an older runtime would refuse its inbox, an older coordinator the report); 6 since
 * a mode-`none` DP client no longer clips its noise, counting on the headroom the round's fixed
 * point now leaves for it (an older coordinator leaves none and refused every such upload: review
 * 48e); 7 since a client gives the server the digest of every share it deals, and revealed
 * shares are checked against them (an older runtime's shares would be refused at ShareKeys); 8
 * since a welcome names the resumed rounds still waiting for the client's upload (`awaiting`),
 * and a runtime that had sent it sends it again (a strict older runtime refuses such a welcome). It is said
 * twice, so that either side of a mismatch gets a refusal that
 * names it at the handshake instead of, later, an upload whose signature does not verify: in the
 * WebSocket subprotocol (RFC 6455 §1.9; a client checks the coordinator's echo) and in the hello
 * (a coordinator checks clients from before the subprotocol carried it).
 */
export const ROUND_PROTOCOL_VERSION = 8

/** Every version of the rounds subprotocol starts so; the version number follows. */
export const ROUNDS_SUBPROTOCOL_PREFIX = 'blockfed.rounds.v'

/**
 * The rounds subprotocol, offered by every client and echoed by the coordinator. A browser also
 * puts its API token there, its WebSocket API having no way to set an Authorization header: it
 * offers this one and `bearer.<token>`, which the coordinator never echoes. Node runtimes send
 * the header.
 *
 * @example new WebSocket(url, roundsProtocols(token))
 */
export const ROUNDS_SUBPROTOCOL = `${ROUNDS_SUBPROTOCOL_PREFIX}${ROUND_PROTOCOL_VERSION}`

/** What either side says when the other speaks another version of the round protocol. */
export function protocolMismatch (side: 'coordinator' | 'runtime', theirs: string): string {
  return `this ${side} speaks round protocol ${ROUND_PROTOCOL_VERSION}, the other side ${theirs}: run the same blockfed version on the runtime and the coordinator`
}

export const BEARER_PROTOCOL_PREFIX = 'bearer.'
export function roundsProtocols (token: string): string[] {
  return [ROUNDS_SUBPROTOCOL, `${BEARER_PROTOCOL_PREFIX}${token}`]
}

const roundId = z.string().regex(/^r_[0-9a-f]{16}$/, 'a round id')
const hex = (bytes: number): z.ZodString => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `${bytes * 2} lowercase hex characters`)
/** Base64 that decodes: the alphabet alone lets through "A" or "AB==", which the decoder then refuses with a bare SyntaxError. */
const base64 = z.string().max(1 << 20).regex(/^[A-Za-z0-9+/]*=*$/, 'base64').refine(text => {
  try {
    fromBase64(text)
    return true
  } catch {
    return false
  }
}, 'base64 that decodes')

export const serverMessageSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('challenge'), nonce: hex(32) }).strict(),
  /** `rounds`: those that still count on this client after a reconnect (a round the coordinator resumed after a restart); it drops any other it was in. */
  z.object({
    type: z.literal('welcome'),
    clientId: hex(32),
    /** Rounds resumed after a restart that still count on this client (it said it holds them). */
    rounds: z.array(roundId).max(1000).optional(),
    /**
     * Those of `rounds` that have no upload of this client and may still take one: an upload it
     * sent was lost (a coordinator stopping refused it, or stopped before reading it), so it
     * sends the same frame again.
     */
    awaiting: z.array(roundId).max(1000).optional()
  }).strict(),
  z.object({ type: z.literal('offer'), config: roundConfigSchema }).strict(),
  z.object({ type: z.literal('secagg'), roundId, payload: z.unknown() }).strict(),
  z.object({
    type: z.literal('result'),
    roundId,
    state: z.enum(['published', 'failed']),
    version: z.number().int().positive().nullable(),
    reason: z.string().max(2000).nullable()
  }).strict(),
  /** `left`: the round does not (or no longer) count on this client, which stops its own work for it. */
  z.object({ type: z.literal('error'), roundId: roundId.optional(), message: z.string().max(2000), left: z.literal(true).optional() }).strict()
])
export type ServerMessage = z.infer<typeof serverMessageSchema>

/** Largest training loss a client may report (any real loss is far smaller). */
export const MAX_LOSS = 1e9

/** A runtime's record of the updates it gave for one model (shared/rounds/one-update.ts, GivenUpload). */
const givenSchema = z.object({ base: z.number().int().min(1).max(2 ** 31 - 1), secure: z.boolean() }).strict()
const helloModel = z.string().min(1).max(64)

export const clientMessageSchema = z.discriminatedUnion('type', [
  /**
   * The client's Ed25519 public key and its signature over the challenge nonce. `given` is the
   * runtime's own record of the updates it gave (one-update.ts), so the coordinator does not
   * offer a round it would decline, even when it never received the upload that record counts.
   */
  z.object({
    type: z.literal('hello'),
    protocol: z.literal(ROUND_PROTOCOL_VERSION, { error: issue => protocolMismatch('coordinator', issue.input === undefined ? 'an older one (its hello names none)' : `${String(issue.input).slice(0, 20)}`) }),
    clientId: hex(32),
    signature: base64,
    models: z.array(helloModel).min(1).max(100),
    given: z.array(givenSchema.extend({ model: helloModel })).max(100).optional(),
    /** Rounds the runtime still holds across a reconnect (a masking round it uploaded to), for a coordinator that resumes them. */
    rounds: z.array(roundId).max(16).optional()
  }).strict().superRefine((hello, ctx) => {
    const models = new Set(hello.models)
    const seen = new Set<string>()
    for (const [i, g] of (hello.given ?? []).entries()) {
      if (!models.has(g.model)) ctx.addIssue({ code: 'custom', path: ['given', i, 'model'], message: `${JSON.stringify(g.model)} is not among this hello's models` })
      if (seen.has(g.model)) ctx.addIssue({ code: 'custom', path: ['given', i, 'model'], message: `${JSON.stringify(g.model)} is listed twice` })
      seen.add(g.model)
    }
  }),
  z.object({ type: z.literal('accept'), roundId }).strict(),
  /** `given`: the runtime's record for the offered model, when that record is why it declines. */
  z.object({ type: z.literal('decline'), roundId, reason: z.string().max(500), given: givenSchema.optional() }).strict(),
  /** `loss` is bounded: what the round reports of them (their median) goes into the manifest, as a finite number. */
  z.object({ type: z.literal('progress'), roundId, epoch: z.number().int().min(0), epochs: z.number().int().positive(), loss: z.number().min(-MAX_LOSS).max(MAX_LOSS).nullable() }).strict()
    .refine(m => m.epoch <= m.epochs, { message: 'epoch must not exceed epochs', path: ['epoch'] }),
  z.object({ type: z.literal('secagg'), roundId, payload: z.unknown() }).strict()
])
export type ClientMessage = z.infer<typeof clientMessageSchema>

/** Header of the binary upload frame: `u32le headerLength ‖ header JSON ‖ payload`. */
export const uploadHeaderSchema = z.object({
  type: z.literal('upload'),
  roundId,
  baseVersion: z.number().int().positive(),
  /** Payload encoding: ring vector (none, masking) or Paillier ciphertexts. */
  encoding: z.enum(['ring-u32le', 'paillier']),
  /** Ed25519 over uploadSigningBytes(header fields, payload sha-256), base64. */
  signature: base64
}).strict()
export type UploadHeader = z.infer<typeof uploadHeaderSchema>

/** Largest upload frame header; a frame is a u32 length, this header, then the payload. */
const MAX_HEADER_BYTES = 4096

/** The largest upload frame that can carry a payload of `payloadBytes`. */
export function maxUploadFrameBytes (payloadBytes: number): number {
  return 4 + MAX_HEADER_BYTES + payloadBytes
}

export function encodeUploadFrame (header: UploadHeader, payload: Uint8Array): Uint8Array {
  const head = utf8ToBytes(JSON.stringify(header))
  const length = new Uint8Array(4)
  new DataView(length.buffer).setUint32(0, head.length, true)
  return concatBytes(length, head, payload)
}

export function decodeUploadFrame (frame: Uint8Array): { header: UploadHeader, payload: Uint8Array } {
  if (frame.length < 4) throw new InvalidInputError(`upload frame: ${frame.length} bytes, shorter than its length prefix`)
  const headLength = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(0, true)
  if (headLength > MAX_HEADER_BYTES || 4 + headLength > frame.length) throw new InvalidInputError(`upload frame: header length ${headLength} is out of range`)
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(frame.subarray(4, 4 + headLength)))
  } catch (err) {
    throw new InvalidInputError('upload frame: header is not UTF-8 JSON', { cause: err })
  }
  const parsed = uploadHeaderSchema.safeParse(json)
  if (!parsed.success) throw new InvalidInputError(`upload frame: ${describeIssues(parsed.error)}`)
  return { header: parsed.data, payload: frame.subarray(4 + headLength) }
}

/**
 * What an upload's signature covers: the model (its name has no newline: modelNameSchema), the
 * round, the base version, the encoding and the payload hash. The model lets a Paillier decryptor,
 * which sees only signed uploads, keep each client to one sum per base version of a model
 * (shared/rounds/one-update.ts) even when the client itself keeps no record.
 */
export function uploadSigningBytes (model: string, header: Pick<UploadHeader, 'roundId' | 'baseVersion' | 'encoding'>, payloadSha256: Uint8Array): Uint8Array {
  return concatBytes(utf8ToBytes(`blockfed/upload@2\n${model}\n${header.roundId}\n${header.baseVersion}\n${header.encoding}\n`), payloadSha256)
}

/** What a hello's signature covers: the coordinator's challenge nonce. */
export function helloSigningBytes (nonceHex: string): Uint8Array {
  return utf8ToBytes(`blockfed/hello@1\n${nonceHex}`)
}

export function parseFrame<T> (schema: z.ZodType<T>, text: string, what: string): T {
  return parseJsonWith(schema, text, what)
}
