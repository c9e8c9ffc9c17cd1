/**
 * The runtime's side of the three secure-aggregation modes, behind one interface: `none` sends
 * the fixed-point vector as is; `masking` and `paillier` plug in from aggregation/.
 */
import type { RoundConfig } from '../../shared/rounds/config.ts'
import type { SigningKeyPair } from '../../shared/crypto/sign.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'

export interface SecureRoundClient {
  readonly encoding: 'ring-u32le' | 'paillier'
  /** Right after accepting the offer (masking: advertise keys). */
  begin: () => Promise<void>
  /** A `secagg` payload from the coordinator. */
  message: (payload: unknown) => Promise<void>
  /** The encoded update → the bytes to upload. */
  protect: (encoded: Uint32Array, signal: AbortSignal) => Promise<Uint8Array>
  /** Forget every secret of the round. */
  dispose: () => void
}

export interface SecureClientDeps {
  config: RoundConfig
  clientId: string
  identity: SigningKeyPair
  send: (payload: unknown) => void
}

export function plainClient (): SecureRoundClient {
  return {
    encoding: 'ring-u32le',
    begin: async () => {},
    message: async () => { throw new InvalidInputError('mode none has no secure-aggregation messages') },
    protect: async encoded => new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength),
    dispose: () => {}
  }
}

/** The runtime's secure-aggregation client for a round's mode. */
export function secureClientFor (deps: SecureClientDeps): SecureRoundClient {
  switch (deps.config.secure.mode) {
    case 'none': return plainClient()
    default: throw new InvalidInputError(`secure mode ${deps.config.secure.mode} is not available in this runtime`)
  }
}
