/** blockfed/coordinator: the coordinator service, embeddable. */
export { createCoordinator, type Coordinator, type CoordinatorOptions } from './coordinator.ts'
export { ROLES } from './constants.ts'
