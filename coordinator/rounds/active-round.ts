/**
 * A round in this process's memory while it runs (live or resumed): who accepted, declined,
 * uploaded or dropped, what it waits for, and its secure server. The persisted half is store.ts.
 */
import type { RoundConfig } from '../../shared/rounds/config.ts'
import type { Gate } from './gate.ts'
import type { AcceptedUpload, SecureRoundServer } from './secure/types.ts'

/** Longest decline reason kept, and most distinct ones (a client's words: bounded). */
export const MAX_DECLINE_REASON = 200
export const MAX_DECLINE_REASONS = 5

/**
 * `; 3 declined` for everyone, and `: "reason" (× 3), …` for the operator only (RoundFailure's
 * detail); nothing when no client declined. Control characters of a client's words are shown as '?'.
 */
export function declined (round: ActiveRound): { count: string, words: string } {
  if (round.declined.size === 0) return { count: '', words: '' }
  // eslint-disable-next-line no-control-regex
  const shown = (reason: string): string => `"${reason.replace(/[\u0000-\u001f\u007f"\\]/g, '?')}"`
  return {
    count: `; ${round.declined.size} declined`,
    words: `: ${[...round.declineReasons].map(([reason, n]) => `${shown(reason)}${n > 1 ? ` (× ${n})` : ''}`).join(', ')}`
  }
}

export interface ActiveRound {
  config: RoundConfig
  accepted: Set<string>
  declined: Set<string>
  /** Why clients declined (their own words, cut short) → how many said it: a failed round tells. */
  declineReasons: Map<string, number>
  allowed: Set<string>
  uploads: Map<string, AcceptedUpload>
  /** Uploads being checked (async): a second frame from the same client meanwhile is a replay. */
  receiving: Set<string>
  dropped: Set<string>
  losses: Map<string, number>
  waiting?: { kind: 'accept' | 'upload', gate: Gate }
  /** Set when the accept gate is done: the secure setup runs with `waiting` still 'accept' (early uploads are held). */
  acceptsClosed?: boolean
  /**
   * Settles when uploads open (`allowed` filled, the upload gate set) or the round ends. An
   * accepted client may finish training before the others have answered the offer (modes `none`
   * and `paillier` need no setup round trip): its upload waits for this instead of being lost.
   */
  uploadsOpen: Promise<void>
  openUploads: () => void
  /**
   * In `unmasking`, until persisted: the secure state is saved once, when the sum needs no more
   * client messages, so a restart from then on can finish the round on its own.
   */
  persistWhenComplete?: boolean
  secure: SecureRoundServer
  controller: AbortController
  /** A resumed round's wait for its clients to reconnect (uploaders in masking, and those still training). */
  reconnecting?: Gate
  /** A round resumed after a restart: its clients that reconnect holding it are named in their welcome. */
  resumed?: true
}

/** A round's bookkeeping before any client answered; `start` and `resume` fill in the rest. */
export function blankRound (config: RoundConfig, secure: SecureRoundServer, controller: AbortController): ActiveRound {
  return {
    config,
    uploadsOpen: Promise.resolve(),
    openUploads: () => {},
    accepted: new Set(),
    declined: new Set(),
    declineReasons: new Map(),
    allowed: new Set(),
    uploads: new Map(),
    receiving: new Set(),
    dropped: new Set(),
    losses: new Map(),
    secure,
    controller
  }
}
