/** Paillier secure-aggregation defaults. Every one can be overridden where it is used. */

/** Modulus size: 2048-bit n (≈ 112-bit security, NIST SP 800-57 Part 1 Table 2). */
export const DEFAULT_KEY_BITS = 2048
/** Smallest modulus accepted anywhere; 1024 bits is for tests only, never for deployment. */
export const MIN_KEY_BITS = 1024
/** Most clients one packed sum may hold: sets the guard bits per slot (⌈log2 1024⌉ = 10). */
export const DEFAULT_MAX_CLIENTS = 1024
/**
 * Length of the short exponent α of the Damgård–Jurik–Nielsen randomness (r^n := h_n^α):
 * twice a 128-bit security level, as DJN suggest (2κ).
 */
export const SHORT_EXPONENT_BITS = 256
/** Longest ring vector one round may aggregate (values per client update). */
export const MAX_VECTOR_LENGTH = 1 << 24
/** Deadline of a decryptor key request. */
export const DEFAULT_KEY_TIMEOUT_MS = 10_000
/** Deadline of a decryption request: the decryptor sums and decrypts thousands of ciphertexts. */
export const DEFAULT_DECRYPT_TIMEOUT_MS = 300_000
