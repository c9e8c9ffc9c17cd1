/**
 * Wire schemas of pairwise-masking secure aggregation (Bonawitz et al. 2017, §4; SecAgg+, Bell et
 * al. 2020): every JSON message either side sends, with bytes as RFC 4648 base64 of exactly the
 * length they must have and every list bounded. The masked vector itself is not here: it travels
 * as a binary frame and reaches the server as a Uint32Array.
 *
 * Client → server: advertise (round 0), shares (round 1), signature (round 3), unmask (round 4).
 * Server → client: roster (after round 0), inbox (after round 1), consistency (after round 2),
 * unmask-request (after round 3).
 */
import { z } from 'zod'
import { toBase64 } from '../../shared/crypto/bytes.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { describeIssues } from '../../shared/errors/parse-json.ts'
import { KEY_BYTES, MAX_CLIENTS, MAX_ID_LENGTH, SIGNATURE_BYTES } from './constants.ts'
import { SHARE_BYTES } from './shamir.ts'

/** XChaCha20-Poly1305 nonce and tag around the two shares a client sends a neighbour. */
export const NONCE_BYTES = 24
export const TAG_BYTES = 16
/** One encrypted share pair: nonce ‖ ciphertext(b-share ‖ s-share) ‖ tag. */
export const SEALED_SHARES_BYTES = NONCE_BYTES + 2 * SHARE_BYTES + TAG_BYTES

const base64Length = (bytes: number): number => 4 * Math.ceil(bytes / 3)
/** Base64 text of exactly `bytes` bytes. */
const b64 = (bytes: number): z.ZodString =>
  z.string().length(base64Length(bytes), `base64 of ${bytes} bytes`).regex(/^[A-Za-z0-9+/]*={0,2}$/, 'base64')

/** Client and round ids: printable ASCII without spaces, so they read unambiguously in errors. */
export const idSchema = z.string().min(1).max(MAX_ID_LENGTH).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')

export const advertiseSchema = z.object({
  type: z.literal('secagg/advertise'),
  roundId: idSchema,
  from: idSchema,
  /** X25519 public key c_u^PK: agreement for the keys that encrypt shares. */
  cPublicKey: b64(KEY_BYTES),
  /** X25519 public key s_u^PK: agreement for the pairwise mask seeds. */
  sPublicKey: b64(KEY_BYTES),
  /** Ed25519 over advertiseTranscript(roundId, from, c, s) by `from`'s identity key. */
  signature: b64(SIGNATURE_BYTES)
}).strict()
export type AdvertiseMessage = z.infer<typeof advertiseSchema>

export const rosterSchema = z.object({
  type: z.literal('secagg/roster'),
  roundId: idSchema,
  to: idSchema,
  /** Every client that advertised, sorted: with the round's seed, this lays out the graph. */
  clients: z.array(idSchema).min(1).max(MAX_CLIENTS),
  /**
   * The signed keys of `to`'s graph neighbours only (SecAgg+: a client needs, and checks, O(k)
   * keys, not n), in `clients` order.
   */
  neighbours: z.array(advertiseSchema).max(MAX_CLIENTS)
}).strict()
export type RosterMessage = z.infer<typeof rosterSchema>

const sealedShares = b64(SEALED_SHARES_BYTES)

/** SHA-256 length: a share's digest (kdf.ts `shareDigest`). */
export const DIGEST_BYTES = 32

const sharesMessage = <E extends z.ZodType>(entry: E) => z.object({
  type: z.literal('secagg/shares'),
  roundId: idSchema,
  from: idSchema,
  /**
   * One sealed pair of shares (of b_from and s_from^SK) per graph neighbour, with the digest of
   * each share (kdf.ts `shareDigest`): the server checks what the neighbour reveals against them.
   */
  shares: z.array(entry).max(MAX_CLIENTS)
}).strict()

export const sharesSchema = sharesMessage(z.object({ to: idSchema, ciphertext: sealedShares, selfMaskDigest: b64(DIGEST_BYTES), keyDigest: b64(DIGEST_BYTES) }).strict())
export type SharesMessage = z.infer<typeof sharesSchema>

/** As stored by servers before share digests (snapshot versions 2 and 3): their shares are not checked on arrival. */
export const legacySharesSchema = sharesMessage(z.object({ to: idSchema, ciphertext: sealedShares, selfMaskDigest: b64(DIGEST_BYTES).optional(), keyDigest: b64(DIGEST_BYTES).optional() }).strict())
export type LegacySharesMessage = z.infer<typeof legacySharesSchema>

export const inboxSchema = z.object({
  type: z.literal('secagg/inbox'),
  roundId: idSchema,
  to: idSchema,
  /** The sealed share pairs `to`'s neighbours addressed to it. */
  shares: z.array(z.object({ from: idSchema, ciphertext: sealedShares }).strict()).max(MAX_CLIENTS)
}).strict()
export type InboxMessage = z.infer<typeof inboxSchema>

/**
 * Round 2, before the masked input: the neighbours whose sealed shares did not open for `from`
 * (a client can send its neighbour shares that are the right length and do not decrypt, and the
 * server cannot check them), each with the pair mask seed s_from,peer. `from` holds none of their
 * shares and masks without them; the peer's input carries the pair's mask, which the seed lets
 * the server remove. The edge is gone, not the client (review 47a: one such client threw any
 * neighbour it chose out of the round). Revealing the seed tells the server no more than `from`
 * colluding with it would, and the peer stays masked by the pairs it holds.
 */
export const skippedSchema = z.object({
  type: z.literal('secagg/skipped'),
  roundId: idSchema,
  from: idSchema,
  peers: z.array(z.object({ peer: idSchema, seed: b64(KEY_BYTES) }).strict()).min(1).max(MAX_CLIENTS)
}).strict()
export type SkippedMessage = z.infer<typeof skippedSchema>

export const consistencySchema = z.object({
  type: z.literal('secagg/consistency'),
  roundId: idSchema,
  to: idSchema,
  /** U3: every client whose masked input the sum holds, sorted. The same list for every client. */
  survivors: z.array(idSchema).min(1).max(MAX_CLIENTS)
}).strict()
export type ConsistencyMessage = z.infer<typeof consistencySchema>

const signatureOf = z.object({ from: idSchema, signature: b64(SIGNATURE_BYTES) }).strict()

export const signatureSchema = z.object({
  type: z.literal('secagg/signature'),
  roundId: idSchema,
  from: idSchema,
  /**
   * Ed25519 by `from`'s identity key over consistencyTranscript(roundId, digest of the survivor
   * list, from, the X25519 keys `from` advertised in this run) (kdf.ts).
   */
  signature: b64(SIGNATURE_BYTES)
}).strict()
export type SignatureMessage = z.infer<typeof signatureSchema>

export const unmaskRequestSchema = z.object({
  type: z.literal('secagg/unmask-request'),
  roundId: idSchema,
  to: idSchema,
  /**
   * The signatures of `to`'s neighbours over the survivor list `to` signed. Who survived and who
   * dropped is that list; the client reveals nothing unless t neighbours saw the same one.
   */
  signatures: z.array(signatureOf).max(MAX_CLIENTS)
}).strict()
export type UnmaskRequestMessage = z.infer<typeof unmaskRequestSchema>

const ownedShares = z.array(z.object({ owner: idSchema, share: b64(SHARE_BYTES) }).strict()).max(MAX_CLIENTS)

export const unmaskSchema = z.object({
  type: z.literal('secagg/unmask'),
  roundId: idSchema,
  from: idSchema,
  /** Shares of b_v for the neighbours v the survivor list names. */
  selfMaskShares: ownedShares,
  /** Shares of s_v^SK for the neighbours v that shared keys but are not on it. */
  keyShares: ownedShares
}).strict()
export type UnmaskMessage = z.infer<typeof unmaskSchema>

/** Everything a client sends, for a transport that dispatches on `type`. */
export const clientMessageSchema = z.discriminatedUnion('type', [advertiseSchema, sharesSchema, skippedSchema, signatureSchema, unmaskSchema])
export type ClientMessage = z.infer<typeof clientMessageSchema>

/** Everything the server sends. */
export const serverMessageSchema = z.discriminatedUnion('type', [rosterSchema, inboxSchema, consistencySchema, unmaskRequestSchema])
export type ServerMessage = z.infer<typeof serverMessageSchema>

/** Parses `value` with `schema`; InvalidInputError naming `what` and the first problems otherwise. */
export function parseMessage<T> (schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value)
  if (parsed.success) return parsed.data
  throw new InvalidInputError(`${what}: ${describeIssues(parsed.error)}`)
}

export { toBase64 as encodeBytes }
