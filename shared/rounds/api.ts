/** HTTP shapes of the rounds API (start on demand, status, history), shared by server and clients. */
import { z } from 'zod'

export const roundSummarySchema = z.object({
  id: z.string(),
  model: z.string(),
  state: z.enum(['open', 'collecting', 'unmasking', 'published', 'failed']),
  baseVersion: z.number().int(),
  version: z.number().int().nullable(),
  reason: z.string().nullable(),
  metrics: z.record(z.string(), z.number()).nullable(),
  secure: z.enum(['none', 'masking', 'paillier']),
  clients: z.array(z.object({ clientId: z.string(), status: z.string() })),
  createdAt: z.string(),
  updatedAt: z.string()
})
export type RoundStatus = z.infer<typeof roundSummarySchema>

/** A list entry: the summary with each client status's count instead of every client's id. */
export const roundListEntrySchema = roundSummarySchema.omit({ clients: true }).extend({ clientCounts: z.record(z.string(), z.number().int()) })
export type RoundListEntry = z.infer<typeof roundListEntrySchema>

/** How many of a round's clients are in each status (a list entry's `clientCounts`). */
export function clientCounts (clients: RoundStatus['clients']): Record<string, number> {
  const out: Record<string, number> = {}
  for (const c of clients) out[c.status] = (out[c.status] ?? 0) + 1
  return out
}
export const roundListSchema = z.object({ model: z.string(), rounds: z.array(roundListEntrySchema) })
export const roundStartedSchema = z.object({ id: z.string(), state: z.literal('open') })
