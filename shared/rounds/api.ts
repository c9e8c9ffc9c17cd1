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

export const roundListSchema = z.object({ model: z.string(), rounds: z.array(roundSummarySchema) })
export const roundStartedSchema = z.object({ id: z.string(), state: z.literal('open') })
