/**
 * Wire schemas of the ledger's HTTP API (issue 4) and of release channels, shared by the
 * coordinator (validation, OpenAPI) and the clients (response validation). Hashes are base64 of
 * 32 bytes, in RFC 9162 proof order.
 */
import { z } from 'zod'
import { BASE64_32_BYTES } from '../crypto/bytes.ts'
import { modelNameSchema } from '../manifest/schema.ts'
import { ledgerEntrySchema } from './entry.ts'

/** A tree size or leaf index as a query or path string: decimal, no sign, no leading zeros, ≤ 2^53. */
export const ledgerNumberSchema = z.string()
  .regex(/^(0|[1-9][0-9]{0,15})$/, 'a non-negative decimal integer without leading zeros')
  .transform(Number)
  .refine(Number.isSafeInteger, 'at most 2^53 − 1')

const hashSchema = z.string().regex(BASE64_32_BYTES, 'canonical base64 of a 32-byte hash')

export const entryResponseSchema = z.object({
  index: z.number().int().nonnegative(),
  entry: ledgerEntrySchema,
  leaf: z.string().describe('base64 of the exact entry bytes that were hashed into the leaf')
})

/**
 * Entries served per page of `/ledger/entries?from&to`: a log monitor reads the whole log once,
 * then only what each new checkpoint adds (C2SP tlog-tiles bundles entries by 256 too).
 */
export const ENTRIES_PAGE = 256
/** An entry is a few hundred bytes of canonical JSON (entry.ts); far more is not one. */
const MAX_LEAF_BASE64 = 4096

export const entriesResponseSchema = z.object({
  from: z.number().int().nonnegative(),
  leaves: z.array(z.string().min(1).max(MAX_LEAF_BASE64)).min(1).max(ENTRIES_PAGE)
    .describe('base64 of the exact leaf bytes of entries from, from + 1, …')
})

export const inclusionResponseSchema = z.object({
  index: z.number().int().nonnegative(),
  size: z.number().int().positive(),
  hashes: z.array(hashSchema).max(64)
})

export const consistencyResponseSchema = z.object({
  from: z.number().int().nonnegative(),
  to: z.number().int().nonnegative(),
  hashes: z.array(hashSchema).max(128)
})

export const channelNameSchema = z.enum(['stable', 'canary'])
export type ChannelName = z.infer<typeof channelNameSchema>

export const channelsResponseSchema = z.object({
  model: modelNameSchema,
  /** The stable channel's version: the one set explicitly, else the latest. */
  stable: z.object({
    version: z.number().int().positive(),
    followsLatest: z.boolean().optional().describe('true when no version was set (or it was cleared): stable moves with every new version; coordinators before channel clearing leave it out')
  }),
  /** A canary release offered to a deterministic fraction of clients, if one is set. */
  canary: z.object({ version: z.number().int().positive(), rollout: z.number().gt(0).max(1) }).nullable(),
  // Signed channels (shared/ledger/channels.ts); optional so that the CLI reads older coordinators, required by runtimes.
  seq: z.number().int().nonnegative().optional().describe('grows with every change of the model\'s channels; a runtime refuses an answer older than one it accepted'),
  logSize: z.number().int().nonnegative().optional().describe('the version ledger\'s size when this answer was signed'),
  signature: z.string().max(100).optional().describe('Ed25519 by the coordinator key, base64, over the canonical JSON of {type: "blockfed.channels/v1", model, seq, logSize, stable, canary}')
})

export const channelRequestSchema = z.strictObject({
  version: z.number().int().positive(),
  rollout: z.number().gt(0, 'rollout must be in (0, 1]').max(1, 'rollout must be in (0, 1]').optional()
    .describe('canary only: the fraction of clients that take this version (default: the canary\'s rollout so far, else 1)')
})

/** What setting a channel answers: the channel as it now stands. */
export const channelSetResponseSchema = z.object({ model: modelNameSchema, channel: channelNameSchema, version: z.number().int().positive(), rollout: z.number().gt(0).max(1) })

export type EntryResponse = z.infer<typeof entryResponseSchema>
export type EntriesResponse = z.infer<typeof entriesResponseSchema>
export type InclusionResponse = z.infer<typeof inclusionResponseSchema>
export type ConsistencyResponse = z.infer<typeof consistencyResponseSchema>
export type Channels = z.infer<typeof channelsResponseSchema>
