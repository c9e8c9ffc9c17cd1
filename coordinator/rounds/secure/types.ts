/**
 * One interface, three secure-aggregation modes on the coordinator's side (STYLE.md rule 8):
 * `none` (plain fixed-point uploads, each checked), `masking` (SecAgg+: the coordinator sees
 * only masked vectors and removes the masks from their sum) and `paillier` (ciphertexts summed
 * and decrypted by a separate decryptor). The round runner drives them the same way.
 */
import type { SecureMode } from '../../../shared/rounds/config.ts'

/** An accepted upload: its payload and its client's signature over it (the upload header's, base64). */
export interface AcceptedUpload {
  payload: Uint8Array
  signature: string
}

export interface RoundIo {
  /** Sends a `secagg` payload to one client of the round. */
  send: (clientId: string, payload: unknown) => void
  signal: AbortSignal
}

export interface SecureRoundServer {
  readonly mode: SecureMode
  /** The exact size of one upload's payload (the hub refuses to buffer more from a client). */
  readonly uploadBytes: number
  /** Setup among the accepted clients before uploads; resolves to the clients that may upload. */
  setup: (accepted: string[], io: RoundIo) => Promise<string[]>
  /**
   * A `secagg` message from a client of the round; throws InvalidInputError on a bad one. Resolves
   * `'persist'` when the message changed what a restart must know before the uploads that follow
   * it are stored (masking: a client's report of shares that did not open): the runner saves the
   * snapshot at once.
   */
  message: (clientId: string, payload: unknown) => void | 'persist' | Promise<void | 'persist'>
  /** Checks one upload's payload before it is accepted; throws InvalidInputError with the reason. */
  checkUpload: (clientId: string, payload: Uint8Array) => void
  /** The ring sum (mod 2^32) of the uploads' plaintext vectors. */
  sum: (uploads: Map<string, AcceptedUpload>, io: RoundIo) => Promise<Uint32Array>
  /** A client left the round (disconnect or deadline). */
  drop: (clientId: string) => void
  /** What must be persisted to finish the round after a restart (JSON-able). */
  snapshot: () => unknown
  /**
   * Whether `sum` still needs messages from clients. After a restart it cannot get them (a
   * client drops a round's secure state with its connection), so such a round fails at once.
   */
  needsClients: () => boolean
  /**
   * For a server built offline (a round resumed at a start): checks what it could not check then,
   * before the round takes more uploads (Paillier: that the decryptor still holds the round's
   * key). Throws when the round cannot end well; an unreachable service is left to the sum.
   */
  ready?: (signal: AbortSignal) => Promise<void>
}
