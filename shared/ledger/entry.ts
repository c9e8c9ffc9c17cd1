/**
 * A ledger entry (DESIGN.md, "Ledger entry"): `{model, version, manifestCid, parent, time}`.
 * The bytes that are hashed into the Merkle leaf are the entry's RFC 8785 canonical JSON, so any
 * client in any language can rebuild and check them; `parseEntry` accepts only those exact bytes.
 */
import { z } from 'zod'
import { modelNameSchema } from '../manifest/schema.ts'
import { canonicalBytes } from '../manifest/canonical.ts'
import { equalBytes, utf8 } from '../crypto/bytes.ts'
import { IntegrityError, InvalidInputError } from '../errors/errors.ts'
import { parseJsonWith } from '../errors/parse-json.ts'

export const ledgerEntrySchema = z.strictObject({
  model: modelNameSchema,
  version: z.number().int().positive(),
  /** CIDv1 of the signed manifest's canonical bytes. */
  manifestCid: z.string().min(1).max(200),
  parent: z.number().int().positive().nullable(),
  /** When the version was recorded (the manifest's createdAt), RFC 3339. */
  time: z.string().datetime()
})

export type LedgerEntry = z.infer<typeof ledgerEntrySchema>

export function entryBytes (entry: LedgerEntry): Uint8Array {
  return canonicalBytes(ledgerEntrySchema.parse(entry))
}

/** Parses leaf bytes as served; refuses anything that is not the canonical form of a valid entry. */
export function parseEntry (bytes: Uint8Array, what = 'ledger entry'): LedgerEntry {
  let text: string
  try {
    text = utf8(bytes)
  } catch (err) {
    throw new InvalidInputError(`${what}: not UTF-8`, { cause: err })
  }
  const entry = parseJsonWith(ledgerEntrySchema, text, what)
  if (!equalBytes(canonicalBytes(entry), bytes)) throw new IntegrityError(`${what}: bytes are not the entry's canonical JSON (RFC 8785)`)
  return entry
}
