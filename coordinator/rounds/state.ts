/**
 * The round state machine (DESIGN.md, "Round"): open → collecting → unmasking → published | failed.
 * `open` covers offers, acceptances and secure-aggregation setup; `collecting` local training and
 * uploads; `unmasking` turning the accepted uploads into their sum (masks removed, Paillier sum
 * decrypted, or plain sum) and publishing. Any non-final state may fail. Transitions are checked
 * here and persisted by the store, so an illegal move is a bug that surfaces, not a silent skip.
 */
export const ROUND_STATES = ['open', 'collecting', 'unmasking', 'published', 'failed'] as const
export type RoundState = typeof ROUND_STATES[number]

const NEXT: Record<RoundState, readonly RoundState[]> = {
  open: ['collecting', 'failed'],
  collecting: ['unmasking', 'failed'],
  unmasking: ['published', 'failed'],
  published: [],
  failed: []
}

export function isFinal (state: RoundState): boolean {
  return NEXT[state].length === 0
}

export class RoundTransitionError extends Error {
  override name = 'RoundTransitionError'
}

export function checkTransition (from: RoundState, to: RoundState): void {
  if (!NEXT[from].includes(to)) throw new RoundTransitionError(`round state ${from} cannot move to ${to}`)
}
