/**
 * What the server and every client derive alike from advertised keys and the roster: checked
 * public keys, key agreement, and the graph with its parameters. Kept in one place so the two
 * sides cannot drift apart.
 */
import { decodeBase64 } from '../../shared/crypto/bytes.ts'
import { IntegrityError, InvalidInputError } from '../../shared/errors/errors.ts'
import { KEY_BYTES, SIGNATURE_BYTES } from './constants.ts'
import { curves } from './_curves.ts'
import { completeGraph, hararyGraph, type NeighbourGraph } from './graph.ts'
import { advertiseTranscript, graphKey } from './kdf.ts'
import type { AdvertiseMessage } from './messages.ts'
import { graphParameters, type GraphConfig, type GraphParameters } from './params.ts'

export interface ClientKeys {
  cPublicKey: Uint8Array
  sPublicKey: Uint8Array
}

/** A fresh X25519 key pair (the secret is 32 random bytes, clamped by X25519 itself). */
export async function x25519KeyPair (): Promise<{ secretKey: Uint8Array, publicKey: Uint8Array }> {
  const secretKey = globalThis.crypto.getRandomValues(new Uint8Array(KEY_BYTES))
  return { secretKey, publicKey: await (await curves()).publicKey(secretKey) }
}

/**
 * X25519(secret, public), refusing a small-order public key, whose all-zero output would make
 * the "shared" secret public (RFC 7748 §6.1). `what` names the pair in the error.
 */
export async function agree (secretKey: Uint8Array, publicKey: Uint8Array, what: string): Promise<Uint8Array> {
  let shared: Uint8Array
  try {
    shared = await (await curves()).agree(secretKey, publicKey)
  } catch (err) {
    throw new IntegrityError(`${what}: X25519 agreement failed (small-order or malformed public key)`, { cause: err })
  }
  if (shared.every(b => b === 0)) throw new IntegrityError(`${what}: X25519 agreement gave the all-zero secret`)
  return shared
}

/**
 * Checks one advertise message: the round, and the signature by `from`'s identity key over the
 * round and both public keys. With `probe`, also that both public keys are usable for agreement
 * (the server's check, so that one bad key cannot make every neighbour fail). Returns the keys.
 */
export async function checkAdvertise (msg: AdvertiseMessage, roundId: string, identityKey: Uint8Array | undefined, what: string, probe = false): Promise<ClientKeys> {
  if (msg.roundId !== roundId) throw new InvalidInputError(`${what}: for round ${msg.roundId}, this is round ${roundId}`)
  if (identityKey === undefined) throw new InvalidInputError(`${what}: ${msg.from} is not a client of round ${roundId}`)
  const cPublicKey = decodeBase64(msg.cPublicKey, `${what} cPublicKey`, { bytes: KEY_BYTES })
  const sPublicKey = decodeBase64(msg.sPublicKey, `${what} sPublicKey`, { bytes: KEY_BYTES })
  const signature = decodeBase64(msg.signature, `${what} signature`, { bytes: SIGNATURE_BYTES })
  if (!await (await curves()).verify(signature, advertiseTranscript(roundId, msg.from, cPublicKey, sPublicKey), identityKey)) {
    throw new IntegrityError(`${what}: signature of ${msg.from} does not verify`)
  }
  if (probe) {
    const secret = globalThis.crypto.getRandomValues(new Uint8Array(KEY_BYTES))
    try {
      for (const [key, name] of [[cPublicKey, 'cPublicKey'], [sPublicKey, 'sPublicKey']] as const) (await agree(secret, key, `${what} ${name}`)).fill(0)
    } finally {
      secret.fill(0)
    }
  }
  return { cPublicKey, sPublicKey }
}

/** The graph both sides lay over the roster's ids. */
export function rosterGraph (ids: readonly string[], config: GraphConfig, seed: Uint8Array, roundId: string): { graph: NeighbourGraph, params: GraphParameters } {
  const params = graphParameters(ids.length, config)
  const graph = params.kind === 'complete' ? completeGraph(ids) : hararyGraph(ids, params.degree, graphKey(seed, roundId))
  return { graph, params }
}
