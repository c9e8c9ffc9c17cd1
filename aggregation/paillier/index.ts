/**
 * Paillier secure aggregation (cross-silo mode: clients never talk to each other). Clients pack
 * fixed-point ring values into Paillier plaintexts and encrypt them under a decryptor's key with
 * precomputed randomness; the coordinator relays all ciphertexts to the decryptor, which sums
 * them homomorphically and decrypts only the sum, once per round.
 */
export { generateKeyPair, secretKeyFromPrimes, publicKeyFromN, publicKeyId, decrypt, type PaillierPublicKey, type PaillierSecretKey } from './keys.ts'
export { packingLayout, ciphertextCount, pack, unpack, type PackingLayout } from './layout.ts'
export { precomputeRandomness, type RandomnessPool, type RandomnessMethod, type PrecomputeOptions } from './randomness.ts'
export { encryptUpdate, sumCiphertexts, sumEncodedUpdates, decryptSum } from './aggregate.ts'
export { ciphertextWidth, encodeCiphertexts, decodeCiphertexts, ringToBytes, ringFromBytes } from './wire.ts'
export { describeKey, readKeyInfo, type DecryptorKey } from './key-info.ts'
export { decryptorClient, type DecryptorClient, type DecryptorClientOptions, type Contribution, type RoundContributions } from './decryptor-client.ts'
export { paillierKeyInfoSchema, clientIdSchema, decryptRequestSchema, decryptResponseSchema, contributionSchema, roundIdSchema, type PaillierKeyInfo, type DecryptRequest, type DecryptResponse } from './schemas.ts'
export { KeyMismatchError, RepeatedClientError, RoundDecidedError, RandomnessExhaustedError } from './errors.ts'
export * from './constants.ts'
