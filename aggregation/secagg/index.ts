/**
 * Pairwise-masking secure aggregation: Bonawitz et al. 2017 with the SecAgg+ neighbour graph of
 * Bell et al. 2020. Public surface only; see client.ts and server.ts for the protocol.
 */
export { createMaskingClient, type MaskingClient, type MaskingClientOptions, type ClientStage } from './client.ts'
export {
  createMaskingServer, restoreMaskingServer,
  type MaskingServer, type MaskingServerOptions, type MaskingServerSnapshot, type MaskingServerState, type Participant, type ServerStage
} from './server.ts'
export {
  advertiseSchema, rosterSchema, sharesSchema, inboxSchema, unmaskRequestSchema, unmaskSchema, clientMessageSchema, serverMessageSchema,
  parseMessage,
  type AdvertiseMessage, type RosterMessage, type SharesMessage, type InboxMessage, type UnmaskRequestMessage, type UnmaskMessage,
  type ClientMessage, type ServerMessage
} from './messages.ts'
export { graphParameters, type GraphConfig, type GraphParameters } from './params.ts'
export { completeGraph, hararyGraph, type GraphKind, type NeighbourGraph } from './graph.ts'
export { expandMask, addMaskInto, addMasksInto, type MaskTerm } from './prg.ts'
export { split, combine, FIELD_PRIME, type Share } from './shamir.ts'
export * from './constants.ts'
