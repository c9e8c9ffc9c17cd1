/** Defaults for local training (trainLocal, evaluateAccuracy). */

/** Momentum of the 'momentum' optimizer: the usual 0.9 (Sutskever et al. 2013). */
export const DEFAULT_MOMENTUM = 0.9

/**
 * Longest stretch of training between two returns to the event loop. A WebSocket client in the
 * same process must answer pings while a client trains; 25 ms keeps it responsive and costs
 * little even where a timer turn is clamped to 4 ms (browsers).
 */
export const YIELD_EVERY_MS = 25

/** Rows per forward pass when evaluating: large enough to be fast, small enough for a phone. */
export const EVAL_BATCH_SIZE = 512

/**
 * Probabilities are clipped to [ε, 1 − ε] before the log in cross-entropy, as Keras and
 * tfjs-layers do (their `epsilon()`), so a confident wrong answer costs a finite loss.
 */
export const PROBABILITY_EPSILON = 1e-7
