/** The coordinator's secure-aggregation server for a round's mode. */
import type { RoundConfig } from '../../../shared/rounds/config.ts'
import { UnavailableError } from '../../../shared/errors/errors.ts'
import type { SecureRoundServer } from './types.ts'
import { plainServer } from './none.ts'
import { paillierServer } from './paillier.ts'
import { maskingServer } from './masking.ts'

export interface SecureServerDeps {
  /** Paillier mode: the decryptor service's base URL. */
  decryptorUrl?: string
  /** Its bearer token, if it requires one. */
  decryptorToken?: string
}

/** `offline`: build it without asking any service (a round resumed at a start; see paillierServer). */
export async function secureServerFor (config: RoundConfig, snapshot: unknown, deps: SecureServerDeps, { offline = false }: { offline?: boolean } = {}): Promise<SecureRoundServer> {
  switch (config.secure.mode) {
    case 'none': return plainServer(config)
    case 'paillier':
      if (deps.decryptorUrl === undefined) throw new UnavailableError('Paillier rounds need a decryptor: start the coordinator with --decryptor URL')
      return await paillierServer(config, { baseUrl: deps.decryptorUrl, token: deps.decryptorToken }, { offline })
    case 'masking': return await maskingServer(config, snapshot)
  }
}
