/**
 * The server step after aggregation: mean delta → new trainable values, through the round's
 * strategy (aggregation/strategies), with the model's optimiser state carried between rounds.
 */
import type { RoundConfig } from '../../shared/rounds/config.ts'

export interface ServerStep {
  values: Float32Array
  state: unknown
}

export function serverStep (config: RoundConfig, base: Float32Array, meanDelta: Float32Array, _state: unknown): ServerStep {
  // TODO(lead): replace with aggregation/strategies once it lands.
  const values = new Float32Array(base.length)
  for (let i = 0; i < base.length; i++) values[i] = (base[i] as number) + (meanDelta[i] as number)
  return { values, state: null }
}
