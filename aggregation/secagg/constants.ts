/**
 * Pairwise-masking secure aggregation (SecAgg / SecAgg+) defaults and bounds. Every default can be
 * overridden where it is used; every bound is what an incoming message is checked against.
 */

/** Bytes of every seed, secret key and public key the protocol handles (X25519, AES-256). */
export const KEY_BYTES = 32
/** Ed25519 signature length (RFC 8032). */
export const SIGNATURE_BYTES = 64

/**
 * Fewest clients a masking round can run with: with two, each learns the other's update from the
 * sum, and no threshold below the roster tolerates a dropout (Bonawitz et al. 2017, §4).
 */
export const MIN_MASKING_CLIENTS = 3
/** Most clients one round may hold: bounds roster and unmask-request sizes. */
export const MAX_CLIENTS = 10_000
/** Longest client or round id accepted. */
export const MAX_ID_LENGTH = 128
/** Longest ring vector one round may aggregate (values per client update), as the round config allows. */
export const MAX_VECTOR_LENGTH = 256_000_000

/**
 * Threat model the SecAgg+ graph is sized for when the round does not say (Bell et al. 2020):
 * at most this fraction of clients colludes with the server, at most this fraction drops out
 * between ShareKeys and MaskedInput.
 */
export const DEFAULT_ADVERSARIAL_RATE = 0.05
export const DEFAULT_DROPOUT_RATE = 0.1
/**
 * Statistical security σ and correctness η of the graph parameters (Bell et al. 2020 state their
 * bounds in σ and η; σ = 40, η = 20 are the values Google's SecAgg+ parameter finder uses,
 * federated-compute `fcp/secagg/server/graph_parameter_finder.cc`): while the threat model's
 * rates hold, an honest survivor's input is exposed with probability < 2^−σ and the round fails
 * for lack of shares with probability < 2^−η.
 */
export const SECURITY_BITS = 40
export const CORRECTNESS_BITS = 20

/**
 * PRG expansion granularity: one WebCrypto call per 1 MiB of keystream (2^18 words). Smaller chunks
 * pay the call overhead too often; larger ones leave nothing to overlap with folding.
 */
export const PRG_CHUNK_WORDS = 1 << 18
/**
 * Groups of (up to four) WebCrypto calls kept in flight while folding: Node runs them on its
 * thread pool, whose four threads two groups keep busy.
 */
export const PRG_IN_FLIGHT = 2
