/**
 * A round offer as a coordinator would send it, for tests that script the coordinator's side:
 * a plain round over `dense/kernel` of model `m`, with `overrides` on top. `clients` sizes the
 * fixed-point parameters (the round's client count).
 */
import { randomBytes } from 'node:crypto'
import { fixedPointParams } from '../../aggregation/fixed-point.ts'
import { roundConfigSchema, type RoundConfig } from '../../shared/rounds/config.ts'

export function roundOffer (overrides: Record<string, unknown> = {}, clients = 1): RoundConfig {
  const fp = fixedPointParams({ clip: 1, clients })
  return roundConfigSchema.parse({
    id: `r_${randomBytes(8).toString('hex')}`,
    model: 'm',
    baseVersion: 1,
    manifestCid: 'bafkreiexampleexampleexample',
    trainable: ['dense'],
    tensors: ['dense/kernel'],
    vectorLength: 11,
    seed: randomBytes(32).toString('hex'),
    fixedPoint: { clip: fp.clip, clients, scale: fp.scale, weightScale: fp.weightScale },
    secure: { mode: 'none', graph: 'sparse' },
    selection: { fraction: 1, minClients: 1, maxClients: 1000, cooldownMs: 0, minUploads: 1 },
    clients: [],
    ...overrides
  })
}
