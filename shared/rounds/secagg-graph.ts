/**
 * The masking graph a round's config asks for, in the shape aggregation/secagg takes, so the
 * coordinator and every runtime derive the same degree and threshold from the same offer.
 */
import type { RoundConfig } from './config.ts'

export interface RoundGraph {
  kind: 'harary' | 'complete'
  adversarialRate?: number
  dropoutRate?: number
  /** The clients offered the round: colluders are counted over them (aggregation/secagg/params.ts). */
  population: number
}

export function graphConfig (config: Pick<RoundConfig, 'secure' | 'clients'>): RoundGraph {
  const { graph, adversarialRate, dropoutRate } = config.secure
  return {
    kind: graph === 'complete' ? 'complete' : 'harary',
    population: config.clients.length,
    ...(adversarialRate === undefined ? {} : { adversarialRate }),
    ...(dropoutRate === undefined ? {} : { dropoutRate })
  }
}
