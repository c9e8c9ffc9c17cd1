/**
 * The Paillier decryptor as a real HTTP service on 127.0.0.1:0, driven through its isomorphic
 * client and through raw fetch for malformed requests. 1024-bit keys (real Paillier, small for speed).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDecryptor, type Decryptor } from '../../coordinator/decryptor/decryptor.ts'
import { decryptorClient, type Contribution, type DecryptorClient } from '../../aggregation/paillier/decryptor-client.ts'
import type { DecryptorKey } from '../../aggregation/paillier/key-info.ts'
import { ciphertextCount } from '../../aggregation/paillier/layout.ts'
import { precomputeRandomness } from '../../aggregation/paillier/randomness.ts'
import { encryptUpdate } from '../../aggregation/paillier/aggregate.ts'
import { ciphertextWidth, encodeCiphertexts } from '../../aggregation/paillier/wire.ts'
import { RoundDecidedError } from '../../aggregation/paillier/errors.ts'
import { ringSum } from '../../aggregation/ring.ts'
import { toBase64 } from '../../shared/crypto/bytes.ts'
import { AccessDeniedError, IntegrityError, InvalidConfigError, InvalidInputError, TimeoutError, TooLargeError, UnavailableError } from '../../shared/errors/errors.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'

const TOKEN = 'test-token-for-the-coordinator'
const LENGTH = 70
let dir: string
let decryptor: Decryptor
let client: DecryptorClient
let key: DecryptorKey

function values (seed: number): Uint32Array {
  const rand = mulberry32(seed)
  return Uint32Array.from({ length: LENGTH }, () => (Math.floor(rand() * 2 ** 26) - 2 ** 25) >>> 0)
}

/** Encrypts `clients` seeded updates under the decryptor's key; returns them with their plaintexts. */
async function round (clients: number, seed: number): Promise<{ xs: Uint32Array[], contributions: Contribution[] }> {
  const xs = Array.from({ length: clients }, (_, c) => values(seed + c))
  const contributions: Contribution[] = []
  for (const [c, x] of xs.entries()) {
    const pool = await precomputeRandomness(key.publicKey, ciphertextCount(key.layout, LENGTH), { method: 'short-exponent' })
    contributions.push({ clientId: `client-${c}`, ciphertexts: encryptUpdate(x, key.layout, pool) })
  }
  return { xs, contributions }
}

async function rawDecrypt (roundId: string, body: unknown, headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }): Promise<{ status: number, body: { error: string, message: string } }> {
  const res = await fetch(`${decryptor.url}/v1/paillier/rounds/${roundId}/decrypt`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body)
  })
  return { status: res.status, body: await res.json() as { error: string, message: string } }
}

const asJson = (cs: Contribution[]): Array<{ clientId: string, ciphertexts: string }> => cs.map(c => ({ clientId: c.clientId, ciphertexts: toBase64(c.ciphertexts) }))

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'blockfed-decryptor-'))
  decryptor = createDecryptor({ dataDir: dir, port: 0, host: '127.0.0.1', keyBits: 1024, minClients: 3, maxClients: 8, token: TOKEN, maxBodyBytes: 256 << 10 })
  await decryptor.start()
  client = decryptorClient({ baseUrl: decryptor.url, token: TOKEN, expectedKeyId: decryptor.keyId })
  key = await client.key()
})
afterAll(async () => {
  await decryptor.stop()
  await rm(dir, { recursive: true, force: true })
})

describe('Paillier decryptor service', () => {
  it('creates its key file with mode 0600 and publishes the public key and layout', async () => {
    expect((await stat(join(dir, 'paillier.key.json'))).mode & 0o777).toBe(0o600)
    expect(key.publicKey.bits).toBe(1024)
    expect(key.keyId).toBe(decryptor.keyId)
    expect(key.layout).toEqual({ keyBits: 1024, maxClients: 8, slotBits: 35, slotsPerCiphertext: 29 })
    expect(key.minClients).toBe(3)
    const file = JSON.parse(await readFile(join(dir, 'paillier.key.json'), 'utf8')) as { p: string, q: string }
    expect(BigInt('0x' + file.p) * BigInt('0x' + file.q)).toBe(key.publicKey.n)
    const doc = await (await fetch(`${decryptor.url}/openapi.json`)).json() as { paths: Record<string, unknown> }
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/paillier/key', '/v1/paillier/rounds/{roundId}/decrypt']))
  })

  it('refuses a key whose fingerprint is not the pinned one', async () => {
    await expect(decryptorClient({ baseUrl: decryptor.url, expectedKeyId: '00'.repeat(32) }).key()).rejects.toThrow(IntegrityError)
  })

  it('decrypts the sum of a round, equal to the plaintext ring sum, and records the round', async () => {
    const { xs, contributions } = await round(4, 10)
    expect(await client.decrypt('round-1', LENGTH, contributions)).toEqual(ringSum(xs, LENGTH))
    const record = JSON.parse(await readFile(join(dir, 'rounds', 'round-1.json'), 'utf8')) as Record<string, unknown>
    expect(record).toMatchObject({ roundId: 'round-1', outcome: 'decrypted', length: LENGTH, clients: ['client-0', 'client-1', 'client-2', 'client-3'], keyId: key.keyId })
  })

  it('decrypts a round at most once: the same, a subset or a new set of contributions gets 409', async () => {
    const { contributions } = await round(3, 20)
    expect((await client.decrypt('round-2', LENGTH, contributions)).length).toBe(LENGTH)
    await expect(client.decrypt('round-2', LENGTH, contributions)).rejects.toThrow(RoundDecidedError)
    await expect(client.decrypt('round-2', LENGTH, contributions.slice(0, 3))).rejects.toThrow(/already decided/)
    const again = await round(5, 30)
    const res = await rawDecrypt('round-2', { length: LENGTH, contributions: asJson(again.contributions) })
    expect(res).toMatchObject({ status: 409, body: { error: 'RoundDecidedError' } })
  })

  it('lets exactly one of two concurrent requests for a round through', async () => {
    const { contributions } = await round(3, 40)
    const results = await Promise.allSettled([client.decrypt('round-race', LENGTH, contributions), client.decrypt('round-race', LENGTH, contributions)])
    expect(results.filter(r => r.status === 'fulfilled')).toHaveLength(1)
    const rejected = results.find(r => r.status === 'rejected')
    expect(rejected?.reason).toBeInstanceOf(RoundDecidedError)
  })

  it('rejects too few clients without burning the round', async () => {
    const { xs, contributions } = await round(3, 50)
    await expect(client.decrypt('round-3', LENGTH, contributions.slice(0, 2))).rejects.toThrow(/2 contributions; this decryptor decrypts sums of at least 3/)
    await expect(client.decrypt('round-3', LENGTH, contributions.slice(0, 1))).rejects.toThrow(InvalidInputError)
    expect(await client.decrypt('round-3', LENGTH, contributions)).toEqual(ringSum(xs, LENGTH))
  })

  it('rejects malformed contributions with a message naming what is wrong', async () => {
    const { contributions } = await round(3, 60)
    const body = (cs: Array<{ clientId: string, ciphertexts: string }>, length = LENGTH): unknown => ({ length, contributions: cs })
    const good = asJson(contributions)
    const width = ciphertextWidth(key.publicKey)
    const count = ciphertextCount(key.layout, LENGTH)

    const short = [...good]
    short[1] = { clientId: 'client-1', ciphertexts: toBase64(contributions[1]!.ciphertexts.subarray(0, width * (count - 1))) }
    let res = await rawDecrypt('bad-1', body(short))
    expect(res).toMatchObject({ status: 400, body: { error: 'InvalidInputError' } })
    expect(res.body.message).toMatch(/contributions\[1\] \(client client-1\): expected 3 ciphertexts of 256 bytes/)

    res = await rawDecrypt('bad-1', body(good, LENGTH + 100))
    expect(res.body.message).toMatch(/client client-0\): expected 6 ciphertexts of 256 bytes \(1536 bytes\), got 768 bytes/)

    const outOfRange = [...good]
    const cts = Array.from({ length: count }, () => 5n)
    const bytes = encodeCiphertexts(cts, key.publicKey)
    bytes.fill(0, 0, width) // ciphertext 0 := 0
    outOfRange[2] = { clientId: 'client-2', ciphertexts: toBase64(bytes) }
    res = await rawDecrypt('bad-1', body(outOfRange))
    expect(res.body.message).toMatch(/client client-2\): ciphertext 0 is out of range \[1, n²\)/)

    // c = n lies in [1, n²) but is no ciphertext: refused before the round is claimed, naming the sender.
    const notCoprime = [...good]
    notCoprime[1] = { clientId: 'client-1', ciphertexts: toBase64(encodeCiphertexts(Array.from({ length: count }, () => key.publicKey.n), key.publicKey)) }
    res = await rawDecrypt('bad-1', body(notCoprime))
    expect(res).toMatchObject({ status: 400, body: { error: 'InvalidInputError' } })
    expect(res.body.message).toMatch(/client client-1\): ciphertext 0 is not coprime with n/)

    res = await rawDecrypt('bad-1', body([good[0]!, good[1]!, { ...good[2]!, clientId: 'client-0' }]))
    expect(res.body.message).toMatch(/client client-0 appears twice/)
    res = await rawDecrypt('bad-1', body([good[0]!, good[1]!, { ...good[0]!, clientId: 'client-9' }]))
    expect(res.body.message).toMatch(/same ciphertexts as an earlier contribution/)

    res = await rawDecrypt('bad-1', body([...good, ...Array.from({ length: 6 }, (_, i) => ({ clientId: `extra-${i}`, ciphertexts: good[0]!.ciphertexts }))]))
    expect(res.body.message).toMatch(/9 contributions; the packing layout holds at most 8/)

    res = await rawDecrypt('bad-1', { length: 0, contributions: good })
    expect(res).toMatchObject({ status: 400, body: { error: 'InvalidInputError' } })
    expect(res.body.message).toMatch(/body\.length/)
    res = await rawDecrypt('bad-1', { length: LENGTH, contributions: [{ clientId: 'x', ciphertexts: 'not base64!' }] })
    expect(res.body.message).toMatch(/contributions\.0\.ciphertexts/)
    res = await rawDecrypt('bad-1', '{"length": 70, "contri')
    expect(res.status).toBe(400)
    res = await rawDecrypt('.hidden', body(good))
    expect(res.body.message).toMatch(/round id/)

    // None of these consumed the round.
    expect((await client.decrypt('bad-1', LENGTH, contributions)).length).toBe(LENGTH)
  })

  it('answers a sum that no honest packing produces with an error, and the round stays decided', async () => {
    const { contributions } = await round(3, 70)
    // A "client" that encrypts plaintexts with bits above the packed slots. (Subtracting, by
    // encrypting n − k, is not detectable: Paillier works mod n. It spoils the sum, nothing more.)
    const count = ciphertextCount(key.layout, LENGTH)
    const pool = await precomputeRandomness(key.publicKey, count, { method: 'short-exponent' })
    const overflow = pool.encrypt(new Array<bigint>(count).fill(1n << BigInt(key.layout.slotBits * key.layout.slotsPerCiphertext)))
    const bad = [...contributions.slice(0, 2), { clientId: 'mallory', ciphertexts: encodeCiphertexts(overflow, key.publicKey) }]
    await expect(client.decrypt('round-forged', LENGTH, bad)).rejects.toThrow(IntegrityError)
    const record = JSON.parse(await readFile(join(dir, 'rounds', 'round-forged.json'), 'utf8')) as Record<string, unknown>
    expect(record).toMatchObject({ outcome: 'failed' })
    await expect(client.decrypt('round-forged', LENGTH, contributions)).rejects.toThrow(RoundDecidedError)
  })

  it('requires its bearer token and bounds the body size', async () => {
    const { contributions } = await round(3, 80)
    await expect(decryptorClient({ baseUrl: decryptor.url }).decrypt('round-auth', LENGTH, contributions)).rejects.toThrow(AccessDeniedError)
    await expect(decryptorClient({ baseUrl: decryptor.url, token: 'wrong' }).decrypt('round-auth', LENGTH, contributions)).rejects.toThrow(/bearer token/)
    const big = Array.from({ length: 8 }, (_, i) => ({ clientId: `c${i}`, ciphertexts: toBase64(new Uint8Array(40_000)) }))
    const res = await rawDecrypt('round-auth', { length: LENGTH, contributions: big })
    expect(res.status).toBe(413)
    await expect(client.decrypt('round-auth', LENGTH, big.map(b => ({ clientId: b.clientId, ciphertexts: new Uint8Array(40_000) })))).rejects.toThrow(TooLargeError)
    expect(await client.decrypt('round-auth', LENGTH, contributions)).toHaveLength(LENGTH)
  })

  it('keeps its key and its decided rounds across restarts, and refuses unsafe key files', async () => {
    const { contributions } = await round(3, 90)
    await decryptor.stop()
    expect(() => decryptor.url).toThrow(/not started/)
    await expect(client.key()).rejects.toThrow(UnavailableError)
    await expect(createDecryptor({ dataDir: dir, port: 0, keyBits: 2048 }).start()).rejects.toThrow(InvalidConfigError)
    await chmod(join(dir, 'paillier.key.json'), 0o644)
    await expect(createDecryptor({ dataDir: dir, port: 0 }).start()).rejects.toThrow(/readable by other users/)
    await chmod(join(dir, 'paillier.key.json'), 0o600)

    decryptor = createDecryptor({ dataDir: dir, port: 0, minClients: 3, maxClients: 8, token: TOKEN })
    await decryptor.start()
    expect(decryptor.keyId).toBe(key.keyId)
    client = decryptorClient({ baseUrl: decryptor.url, token: TOKEN, expectedKeyId: key.keyId })
    expect((await client.key()).publicKey.n).toBe(key.publicKey.n)
    await expect(client.decrypt('round-1', LENGTH, contributions)).rejects.toThrow(RoundDecidedError)
  })

  it('checks its options', () => {
    expect(() => createDecryptor({ dataDir: dir, minClients: 1 })).toThrow(/minClients: expected an integer ≥ 2/)
    expect(() => createDecryptor({ dataDir: dir, minClients: 5, maxClients: 4 })).toThrow(/maxClients: expected an integer ≥ 5/)
  })
})

describe('decryptor client deadlines', () => {
  it('gives up on a decryptor that never answers, with a TimeoutError', async () => {
    const hang = createServer(() => { /* never answers */ })
    await new Promise<void>(resolve => hang.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(hang.address() as AddressInfo).port}`
      await expect(decryptorClient({ baseUrl: url, timeoutMs: 200 }).key()).rejects.toThrow(TimeoutError)
      await expect(decryptorClient({ baseUrl: url, decryptTimeoutMs: 200 }).decrypt('r', 1, [])).rejects.toThrow(/no answer within 200 ms/)
      await expect(decryptorClient({ baseUrl: url }).decrypt('../x', 1, [])).rejects.toThrow(/roundId/)
    } finally {
      hang.closeAllConnections()
      await new Promise(resolve => hang.close(resolve))
    }
  })
})
