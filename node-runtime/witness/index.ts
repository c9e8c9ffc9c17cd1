/** The transparency-log witness (c2sp.org/tlog-witness): the server and its client. */
export { createWitness, type Witness, type WitnessOptions } from './server.ts'
export { addCheckpoint } from '../../shared/ledger/witness/client.ts'
export { WitnessConflictError, InconsistentCheckpointError } from '../../shared/ledger/witness/errors.ts'
export { formatAddCheckpoint, parseAddCheckpoint, type AddCheckpointRequest } from '../../shared/ledger/witness/request.ts'
export type { WitnessLog } from './witness.ts'
