/** Decryptor service defaults. Every one can be overridden through `createDecryptor`'s options. */
export const DEFAULT_DECRYPTOR_PORT = 7071
export const DEFAULT_DECRYPTOR_HOST = '127.0.0.1'
/** Environment variable both `blockfed decryptor --token` and `blockfed coordinator --decryptor-token` read (kept out of argv, which `ps` shows). */
export const DECRYPTOR_TOKEN_ENV = 'BLOCKFED_DECRYPTOR_TOKEN'
/**
 * What a decryptor token may be: one that an `Authorization: Bearer` header can carry as it is
 * (visible ASCII, no spaces: RFC 9110 §5.5) and that the server's header check reads whole
 * (http/auth.ts `bearerOf`: at most 200 characters), long enough not to be guessed.
 */
export const DECRYPTOR_TOKEN_PATTERN = /^[\x21-\x7e]{16,200}$/
export const DECRYPTOR_TOKEN_RULE = '16 to 200 visible ASCII characters, no spaces (e.g. openssl rand -hex 24)'
/**
 * Fewest contributions decrypted together. With 2, each of the two clients could subtract its own
 * update from the sum and read the other's; 3 is the smallest sum that hides an individual from
 * an honest-but-curious coordinator. It does not stop a coordinator with one colluding enrolled
 * client, which can cancel a third client's upload out of the sum (server.ts): use at least
 * 2·colluders + 2 where collusion is a concern.
 */
export const DEFAULT_MIN_CLIENTS = 3
/**
 * Largest request body: all contributions of a round as base64 JSON. 100K parameters at 2048 bits
 * are ≈ 1.2 MB of base64 per client, so 256 MiB is ≈ 200 such clients.
 */
export const DEFAULT_MAX_BODY_BYTES = 256 << 20
/** Key file under the data dir (mode 0600). */
export const KEY_FILE = 'paillier.key.json'
/** Folder of decided rounds under the data dir: one file per round, never removed. */
export const ROUNDS_DIR = 'rounds'
/**
 * Decrypt requests read and worked on at once (a coordinator sends one per round; each may
 * buffer up to the body limit). More get 503 with retry-after.
 */
export const DECRYPT_SLOTS = 2
/**
 * The HTTP server's idle-socket and request-body bounds (fastify connectionTimeout and
 * requestTimeout). A decrypt request's socket is silent while its decryption runs, which may be
 * far longer: server.ts lifts the idle bound for that time.
 */
export const CONNECTION_TIMEOUT_MS = 600_000
export const REQUEST_TIMEOUT_MS = 600_000
/**
 * How long stopping waits for the decryptions it aborted to record how they ended (a file write
 * each); past it, `stop()` throws and keeps the data dir locked.
 */
export const STOP_DEADLINE_MS = 10_000
