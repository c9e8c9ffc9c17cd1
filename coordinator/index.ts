/** blockfed/coordinator: the coordinator service, embeddable. */
export { createCoordinator, type Coordinator, type CoordinatorOptions } from './coordinator.ts'
export { ROLES } from './constants.ts'
export { TooFewClientsError, type RoundManager, type RoundSummary, type RoundEvent } from './rounds/rounds.ts'
export { createDecryptor, type Decryptor, type DecryptorOptions } from './decryptor/index.ts'
