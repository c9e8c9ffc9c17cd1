/**
 * The masking graph a round's config asks for, in the shape aggregation/secagg takes, so the
 * coordinator and every runtime derive the same degree and threshold from the same offer.
 */
import type { RoundConfig } from './config.ts'

export interface RoundGraph {
  kind: 'harary' | 'complete'
  adversarialRate?: number
  dropoutRate?: number
}

export function graphConfig (config: Pick<RoundConfig, 'secure'>): RoundGraph {
  const { graph, adversarialRate, dropoutRate } = config.secure
  return {
    kind: graph === 'complete' ? 'complete' : 'harary',
    ...(adversarialRate === undefined ? {} : { adversarialRate }),
    ...(dropoutRate === undefined ? {} : { dropoutRate })
  }
}
