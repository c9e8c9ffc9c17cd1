/** The Paillier decryptor role: its own process, holding the key that decrypts round sums. */
export { createDecryptor, type Decryptor, type DecryptorOptions } from './decryptor.ts'
export { readClientsFile } from './clients-file.ts'
export { DEFAULT_DECRYPTOR_PORT, DEFAULT_DECRYPTOR_HOST, DEFAULT_MIN_CLIENTS, DEFAULT_MAX_BODY_BYTES } from './constants.ts'
