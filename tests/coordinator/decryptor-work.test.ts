/**
 * The decryptor while a decryption runs (review 37a): the caller's socket is not cut off however
 * long the work takes, the coordinator asks again for an answer that was cut off, a decryption
 * holds its DECRYPT_SLOTS slot until it ends (not until its caller hangs up), and stop() ends the
 * decryptions still running before it lets the data dir go. A real decryptor on 127.0.0.1:0 with
 * a 1024-bit key; a round log whose claims the test can hold stands in for a long decryption.
 */
import { describe, it, expect, afterAll } from 'vitest'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { chmod, copyFile, mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { buildDecryptorServer } from '../../coordinator/decryptor/server.ts'
import { createDecryptor } from '../../coordinator/decryptor/decryptor.ts'
import { loadOrCreateKey } from '../../coordinator/decryptor/key-file.ts'
import { roundLog, type RoundLog } from '../../coordinator/decryptor/rounds.ts'
import { DECRYPT_SLOTS } from '../../coordinator/decryptor/constants.ts'
import { paillierOffer, paillierServer } from '../../coordinator/rounds/secure/paillier.ts'
import type { AcceptedUpload } from '../../coordinator/rounds/secure/types.ts'
import type { RoundConfig } from '../../shared/rounds/config.ts'
import { decryptorClient, type Contribution } from '../../aggregation/paillier/decryptor-client.ts'
import { describeKey } from '../../aggregation/paillier/key-info.ts'
import type { PaillierSecretKey } from '../../aggregation/paillier/keys.ts'
import { ciphertextCount, packingLayout, type PackingLayout } from '../../aggregation/paillier/layout.ts'
import { precomputeRandomness } from '../../aggregation/paillier/randomness.ts'
import { encryptUpdate } from '../../aggregation/paillier/aggregate.ts'
import { encodeCiphertexts, ringFromBytes } from '../../aggregation/paillier/wire.ts'
import { modPow } from '../../aggregation/paillier/_bigint.ts'
import { RoundDecidedError } from '../../aggregation/paillier/errors.ts'
import { InvalidConfigError, isUnreachable } from '../../shared/errors/errors.ts'
import { ringSum } from '../../aggregation/ring.ts'
import { fromBase64, toBase64, toHex } from '../../shared/crypto/bytes.ts'
import { sha256 } from '../../shared/crypto/hash.ts'
import { generateSigningKey, sign, type SigningKeyPair } from '../../shared/crypto/sign.ts'
import { uploadSigningBytes } from '../../shared/rounds/messages.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'

const TOKEN = 'test-token-decryptor-work-0123'
const LENGTH = 70
const BASE_VERSION = 2
/** The requests a round's sum got while the decryptor was unreachable, before review 49f (now: until its deadline). */
const DECRYPT_ATTEMPTS_FOR_OUTAGES = 5
const identities = Array.from({ length: 4 }, () => generateSigningKey())
const idOf = (c: number): string => toHex((identities[c] as SigningKeyPair).publicKey)
const modelOf = (roundId: string): string => `m-${roundId.toLowerCase()}`

async function signUpload (c: number, roundId: string, ciphertexts: Uint8Array): Promise<Uint8Array> {
  return sign(uploadSigningBytes(modelOf(roundId), { roundId, baseVersion: BASE_VERSION, encoding: 'paillier' }, await sha256(ciphertexts)), (identities[c] as SigningKeyPair).secretKey)
}

/** Three clients' seeded updates, encrypted and signed for `roundId`, with their plaintexts. */
async function round (key: PaillierSecretKey, layout: PackingLayout, seed: number, roundId: string): Promise<{ xs: Uint32Array[], contributions: Contribution[] }> {
  const xs = Array.from({ length: 3 }, (_, c) => {
    const rand = mulberry32(seed + c)
    return Uint32Array.from({ length: LENGTH }, () => (Math.floor(rand() * 2 ** 26) - 2 ** 25) >>> 0)
  })
  const contributions: Contribution[] = []
  for (const [c, x] of xs.entries()) {
    const pool = await precomputeRandomness(key.publicKey, ciphertextCount(layout, LENGTH), { method: 'short-exponent' })
    const ciphertexts = encryptUpdate(x, layout, pool)
    contributions.push({ clientId: idOf(c), ciphertexts, signature: await signUpload(c, roundId, ciphertexts) })
  }
  return { xs, contributions }
}

const bodyOf = (roundId: string, length: number, contributions: readonly Contribution[]): string => JSON.stringify({
  model: modelOf(roundId), length, baseVersion: BASE_VERSION,
  contributions: contributions.map(c => ({ clientId: c.clientId, ciphertexts: toBase64(c.ciphertexts), signature: toBase64(c.signature) }))
})

/**
 * A round log whose claims of the rounds in `held` wait, once on disk, until the test lets them
 * go: a decryption that takes as long as the test wants. `onClaim` runs at each claim on disk.
 */
function holding (log: RoundLog, held: readonly string[], onClaim: (roundId: string) => void = () => {}): { log: RoundLog, claimed: (roundId: string) => Promise<void>, release: (roundId: string) => void, claims: string[] } {
  const gates = new Map(held.map(id => {
    let enter!: () => void
    let open!: () => void
    return [id, { entered: new Promise<void>(resolve => { enter = resolve }), enter, opened: new Promise<void>(resolve => { open = resolve }), open }]
  }))
  const claims: string[] = []
  return {
    claims,
    log: {
      ...log,
      async claim (record) {
        await log.claim(record)
        claims.push(record.roundId)
        onClaim(record.roundId)
        const gate = gates.get(record.roundId)
        if (gate === undefined) return
        gate.enter()
        await gate.opened
      }
    },
    claimed: async roundId => { await gates.get(roundId)?.entered },
    release: roundId => { gates.get(roundId)?.open() }
  }
}

interface Service { app: FastifyInstance, url: string, key: PaillierSecretKey, layout: PackingLayout, dir: string, requests: Map<string, IncomingMessage> }

/** A decryptor server over `rounds` (built from the dir's log), listening on 127.0.0.1:0. */
async function serve (dir: string, rounds: (log: RoundLog) => RoundLog, idleTimeoutMs?: number, maxClients = 8): Promise<Service> {
  const { key } = await loadOrCreateKey(dir, 1024)
  const layout = packingLayout(key.publicKey, maxClients)
  const keyInfo = await describeKey(key.publicKey, layout, 3)
  const app = await buildDecryptorServer({ secretKey: key, layout, keyInfo, minClients: 3, rounds: rounds(await roundLog(dir)), maxBodyBytes: 16 << 20, token: TOKEN, threads: 1 })
  // Stands in for the 10-minute connectionTimeout: a socket idle this long is closed by Node.
  if (idleTimeoutMs !== undefined) app.server.timeout = idleTimeoutMs
  // Each decrypt request as the server got it, by round id (its socket, to see it close).
  const requests = new Map<string, IncomingMessage>()
  app.server.on('request', (req: IncomingMessage) => {
    const roundId = /\/rounds\/([^/]+)\/decrypt$/.exec(req.url ?? '')?.[1]
    if (roundId !== undefined) requests.set(roundId, req)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, key, layout, dir, requests }
}

/** A decrypt request over its own connection, which the test can hang up on. */
function post (url: string, roundId: string, body: string): { req: ReturnType<typeof httpRequest>, answer: Promise<{ status: number, body: { error?: string } }> } {
  const req = httpRequest(`${url}/v1/paillier/rounds/${roundId}/decrypt`, {
    method: 'POST', agent: false, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
  })
  const answer = new Promise<{ status: number, body: { error?: string } }>((resolve, reject) => {
    req.on('response', res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: string } }) })
    })
    req.on('error', reject)
  })
  answer.catch(() => {})
  req.end(body)
  return { req, answer }
}

const dirs: string[] = []
const tempDir = async (): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), 'blockfed-decryptor-work-'))
  dirs.push(dir)
  return dir
}
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})

describe('a decryption longer than the socket idle timeout (review 37a, bug A)', () => {
  it('keeps the caller\'s socket open while the decryption runs, however long past the server\'s idle timeout', async () => {
    const IDLE_MS = 100
    let gate: ReturnType<typeof holding> | undefined
    const s = await serve(await tempDir(), log => (gate = holding(log, ['r-idle'])).log, IDLE_MS)
    try {
      const { xs, contributions } = await round(s.key, s.layout, 10, 'r-idle')
      const answer = decryptorClient({ baseUrl: s.url, token: TOKEN }).decrypt({ roundId: 'r-idle', model: modelOf('r-idle'), length: LENGTH, baseVersion: BASE_VERSION, contributions })
      answer.catch(() => {})
      await gate?.claimed('r-idle')
      const socket = s.requests.get('r-idle')?.socket
      expect(socket).toBeDefined()
      // Silent for ten idle timeouts: Node would have closed an idle socket by now (and does, at
      // once, when the timeout fires).
      await Promise.race([once(socket!, 'timeout'), new Promise(resolve => setTimeout(resolve, 10 * IDLE_MS))])
      gate?.release('r-idle')
      expect(await answer).toEqual(ringSum(xs, LENGTH))
      // Outside the work, the idle timeout is the server's again.
      expect(s.app.server.timeout).toBe(IDLE_MS)
    } finally {
      await s.app.close()
    }
  })

  it('the coordinator asks again for a sum whose answer was cut off, and gets the sum of the one decryption', async () => {
    const roundId = 'r_00000000000000a1'
    let cutOnce = false
    let service: Service | undefined
    let gate: ReturnType<typeof holding> | undefined
    // At the round's first claim, every connection to the decryptor is cut (a proxy, an idle
    // timeout, a network blip): the caller's answer is lost while the decryption goes on.
    service = await serve(await tempDir(), log => (gate = holding(log, [], () => {
      if (cutOnce) return
      cutOnce = true
      service?.requests.get(roundId)?.socket.destroy()
    })).log)
    let decryptRequests = 0
    service.app.server.on('request', (req: IncomingMessage) => { if (req.method === 'POST') decryptRequests++ })
    try {
      const access = { baseUrl: service.url, token: TOKEN }
      const config = { id: roundId, model: modelOf(roundId), baseVersion: BASE_VERSION, vectorLength: LENGTH, paillier: await paillierOffer(access) } as unknown as RoundConfig
      const secure = await paillierServer(config, access)
      const { xs, contributions } = await round(service.key, service.layout, 20, roundId)
      const uploads = new Map<string, AcceptedUpload>(contributions.map(c => [c.clientId, { payload: c.ciphertexts, signature: toBase64(c.signature) }]))
      const sum = await secure.sum(uploads, { send: () => {}, signal: new AbortController().signal })
      expect(sum).toEqual(ringSum(xs, LENGTH))
      expect(cutOnce).toBe(true)
      expect(decryptRequests).toBe(2)
      expect(gate?.claims).toEqual([roundId]) // decrypted once
    } finally {
      await service.app.close()
    }
  })
})

describe('DECRYPT_SLOTS bounds decryptions, not connections (review 37a, bug B)', () => {
  it('a decryption keeps its slot until it ends, though its caller hung up: one more request is busy, and gets through once they end', async () => {
    const held = Array.from({ length: DECRYPT_SLOTS }, (_, i) => `r-held-${i}`)
    let gate: ReturnType<typeof holding> | undefined
    const s = await serve(await tempDir(), log => (gate = holding(log, held)).log)
    try {
      for (const [i, roundId] of held.entries()) {
        const { contributions } = await round(s.key, s.layout, 30 + 10 * i, roundId)
        const { req } = post(s.url, roundId, bodyOf(roundId, LENGTH, contributions))
        // Claimed on disk, then the caller hangs up; the server sees the close.
        await gate?.claimed(roundId)
        const closed = once(s.requests.get(roundId)!.socket, 'close')
        req.destroy()
        await closed
        await new Promise(resolve => setImmediate(resolve))
      }
      const { xs, contributions } = await round(s.key, s.layout, 90, 'r-next')
      const next = await post(s.url, 'r-next', bodyOf('r-next', LENGTH, contributions)).answer
      expect(next).toMatchObject({ status: 503, body: { error: 'BusyError' } })
      expect(gate?.claims).not.toContain('r-next')

      for (const roundId of held) gate?.release(roundId)
      let answer: { status: number, body: { error?: string, sum?: string } } | undefined
      for (const until = Date.now() + 10_000; Date.now() < until;) {
        answer = await post(s.url, 'r-next', bodyOf('r-next', LENGTH, contributions)).answer
        if (answer.status !== 503) break
        await new Promise(resolve => setTimeout(resolve, 20))
      }
      expect(answer?.status).toBe(200)
      expect(ringFromBytes(fromBase64(answer?.body.sum ?? ''), LENGTH, 'sum')).toEqual(ringSum(xs, LENGTH))
      // The held decryptions ran to their end, for nobody.
      for (const roundId of held) {
        expect(JSON.parse(await readFile(join(s.dir, 'rounds', `${roundId}.json`), 'utf8'))).toMatchObject({ outcome: 'decrypted' })
      }
    } finally {
      await s.app.close()
    }
  })

  it('the coordinator waits out busy answers while other rounds hold every slot, past its attempts for outages', async () => {
    const held = Array.from({ length: DECRYPT_SLOTS }, (_, i) => `r-busy-${i}`)
    const roundId = 'r_00000000000000b1'
    let gate: ReturnType<typeof holding> | undefined
    const s = await serve(await tempDir(), log => (gate = holding(log, held)).log)
    // Requests for the waiting round; at the sixth (five busy answers, as many as the
    // attempts an outage gets) the held decryptions are let go.
    let asked = 0
    s.app.server.on('request', (req: IncomingMessage) => {
      if (req.url?.includes(roundId) !== true) return
      if (++asked === DECRYPT_ATTEMPTS_FOR_OUTAGES + 1) for (const id of held) gate?.release(id)
    })
    try {
      const answers = []
      for (const [i, id] of held.entries()) {
        const { contributions } = await round(s.key, s.layout, 40 + 10 * i, id)
        answers.push(post(s.url, id, bodyOf(id, LENGTH, contributions)).answer)
        await gate?.claimed(id)
      }
      const access = { baseUrl: s.url, token: TOKEN }
      const config = { id: roundId, model: modelOf(roundId), baseVersion: BASE_VERSION, vectorLength: LENGTH, paillier: await paillierOffer(access) } as unknown as RoundConfig
      const secure = await paillierServer(config, access)
      const { xs, contributions } = await round(s.key, s.layout, 70, roundId)
      const uploads = new Map<string, AcceptedUpload>(contributions.map(c => [c.clientId, { payload: c.ciphertexts, signature: toBase64(c.signature) }]))
      expect(await secure.sum(uploads, { send: () => {}, signal: new AbortController().signal })).toEqual(ringSum(xs, LENGTH))
      expect(asked).toBeGreaterThan(DECRYPT_ATTEMPTS_FOR_OUTAGES)
      for (const answer of answers) expect((await answer).status).toBe(200)
    } finally {
      for (const id of held) gate?.release(id)
      await s.app.close()
    }
  }, 30_000)

  it('the coordinator asks a decryptor that drops its connections again until the round\'s deadline, not five times (review 49f: a restart failed the round)', async () => {
    const roundId = 'r_00000000000000d1'
    const s = await serve(await tempDir(), log => log)
    // The first eight connections are dropped before a byte is read: a decryptor restarting.
    const DROPPED = DECRYPT_ATTEMPTS_FOR_OUTAGES + 3
    let dropped = 0
    let down = false
    s.app.server.prependListener('connection', (socket: import('node:net').Socket) => {
      if (down && dropped < DROPPED) {
        dropped++
        socket.destroy()
      }
    })
    try {
      const access = { baseUrl: s.url, token: TOKEN }
      const config = { id: roundId, model: modelOf(roundId), baseVersion: BASE_VERSION, vectorLength: LENGTH, paillier: await paillierOffer(access) } as unknown as RoundConfig
      const secure = await paillierServer(config, access, { retryMs: 2 })
      // The key was read before the outage: the sum's requests are the ones dropped.
      down = true
      s.app.server.closeAllConnections()
      const { xs, contributions } = await round(s.key, s.layout, 90, roundId)
      const uploads = new Map<string, AcceptedUpload>(contributions.map(c => [c.clientId, { payload: c.ciphertexts, signature: toBase64(c.signature) }]))
      expect(await secure.sum(uploads, { send: () => {}, signal: new AbortController().signal })).toEqual(ringSum(xs, LENGTH))
      expect(dropped).toBe(DROPPED)
    } finally {
      await s.app.close()
    }
  }, 60_000)

  it('a decryptor that answers each sum request with a failure of its own is asked 5 times, not until the deadline (review 50b)', async () => {
    const roundId = 'r_00000000000000d2'
    const s = await serve(await tempDir(), log => log)
    // Its own 500, naming the error (a proxy's bare 502 would be an outage, waited out).
    let asked = 0
    const failing = createServer((req, res) => {
      if (req.url?.endsWith('/decrypt') === true) asked++
      req.resume()
      res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'Error', message: 'decryption worker crashed' }))
    })
    failing.listen(0, '127.0.0.1')
    await once(failing, 'listening')
    try {
      const config = { id: roundId, model: modelOf(roundId), baseVersion: BASE_VERSION, vectorLength: LENGTH, paillier: await paillierOffer({ baseUrl: s.url, token: TOKEN }) } as unknown as RoundConfig
      const secure = await paillierServer(config, { baseUrl: `http://127.0.0.1:${(failing.address() as AddressInfo).port}`, token: TOKEN }, { offline: true, retryMs: 2 })
      const { contributions } = await round(s.key, s.layout, 95, roundId)
      const uploads = new Map<string, AcceptedUpload>(contributions.map(c => [c.clientId, { payload: c.ciphertexts, signature: toBase64(c.signature) }]))
      const err = await secure.sum(uploads, { send: () => {}, signal: new AbortController().signal }).then(() => undefined, (e: unknown) => e)
      expect(err).toMatchObject({ name: 'ServiceFailedError', message: expect.stringContaining('decryption worker crashed') })
      expect(asked).toBe(5)
    } finally {
      failing.close()
      await s.app.close()
    }
  }, 60_000)

  it.each([1, 2])('stop() ends a decryption whose caller hung up (on %i thread(s)) before it lets the data dir go: nothing writes into it after', async threads => {
    const dir = await tempDir()
    const decryptor = createDecryptor({ dataDir: dir, port: 0, host: '127.0.0.1', keyBits: 1024, minClients: 3, maxClients: 8, token: TOKEN, threads })
    await decryptor.start()
    const key = await decryptorClient({ baseUrl: decryptor.url, token: TOKEN }).key()
    // 2048 ciphertexts per client: seconds of decryption at 1024 bits. Each is an n-th residue
    // (plaintext 0), cheap to make.
    const count = 2048
    const { n, n2 } = key.publicKey
    const contributions: Contribution[] = []
    for (let c = 0; c < 3; c++) {
      const base = modPow(1000003n + BigInt(c) * 7919n, n, n2)
      const cts: bigint[] = []
      for (let i = 0, x = base; i < count; i++, x = x * base % n2) cts.push(x)
      const ciphertexts = encodeCiphertexts(cts, key.publicKey)
      contributions.push({ clientId: idOf(c), ciphertexts, signature: await signUpload(c, 'r-stop', ciphertexts) })
    }
    const body = bodyOf('r-stop', key.layout.slotsPerCiphertext * count, contributions)
    const record = join(dir, 'rounds', 'r-stop.json')
    const { req, answer } = post(decryptor.url, 'r-stop', body)
    try {
      for (const until = Date.now() + 20_000; !existsSync(record) && Date.now() < until;) await new Promise(resolve => setTimeout(resolve, 5))
      expect(existsSync(record)).toBe(true)
      // Claimed, and its caller gone: nothing waits on the decryption but the decryptor itself.
      req.destroy()
      await answer.catch(() => undefined)
      await decryptor.stop()
      // Aborted, and its end recorded before the dir was let go: the round stays decided (failed).
      expect(JSON.parse(await readFile(record, 'utf8'))).toMatchObject({ outcome: 'failed', reason: expect.stringMatching(/stop/) })
    } finally {
      req.destroy()
      await decryptor.stop()
    }
    // The dir is free for the next decryptor, which refuses the round: it was decided.
    const next = createDecryptor({ dataDir: dir, port: 0, host: '127.0.0.1', keyBits: 1024, minClients: 3, maxClients: 8, token: TOKEN, threads })
    await next.start()
    try {
      const again = decryptorClient({ baseUrl: next.url, token: TOKEN }).decrypt({ roundId: 'r-stop', model: modelOf('r-stop'), length: key.layout.slotsPerCiphertext * count, baseVersion: BASE_VERSION, contributions })
      await expect(again).rejects.toThrow(RoundDecidedError)
    } finally {
      await next.stop()
    }
  }, 60_000)
})

describe('a Paillier server and the key its round was offered under (review 48f)', () => {
  it('refuses a decryptor that refuses this coordinator\'s token, built live and when a resumed round gets ready, before anyone trains (review 54b)', async () => {
    const decryptor = await serve(await tempDir(), log => log)
    try {
      const roundId = 'r_00000000000000b2'
      const config = { id: roundId, model: modelOf(roundId), baseVersion: BASE_VERSION, vectorLength: LENGTH, paillier: await paillierOffer({ baseUrl: decryptor.url, token: TOKEN }) } as unknown as RoundConfig
      const wrong = { baseUrl: decryptor.url, token: 'not-the-decryptor-token-42' }
      const refusal = new RegExp(`^round ${roundId}: the decryptor refuses this coordinator's token \\(.+\\); start the coordinator with the token the decryptor was started with \\(--decryptor-token or BLOCKFED_DECRYPTOR_TOKEN\\)$`)
      const live = paillierServer(config, wrong)
      await expect(live).rejects.toThrow(refusal)
      await expect(live).rejects.toBeInstanceOf(InvalidConfigError)
      // Not "unreachable": a resumed round fails at once instead of waiting for its uploads.
      expect(isUnreachable(await live.catch((err: unknown) => err))).toBe(false)
      const resumed = await paillierServer(config, wrong, { offline: true })
      await expect(resumed.ready?.(new AbortController().signal)).rejects.toThrow(refusal)
      // With its token, both are fine.
      await expect(paillierServer(config, { baseUrl: decryptor.url, token: TOKEN })).resolves.toMatchObject({ mode: 'paillier' })
    } finally {
      await decryptor.app.close()
    }
  })

  it('built live, refuses a decryptor holding another key; built offline (a resumed round), asks only when ready() runs', async () => {
    const offeredBy = await serve(await tempDir(), log => log)
    const other = await serve(await tempDir(), log => log)
    let asked = 0
    other.app.server.on('request', (req: IncomingMessage) => { if (req.method === 'GET') asked++ })
    try {
      const roundId = 'r_00000000000000b1'
      const access = { baseUrl: offeredBy.url, token: TOKEN }
      const elsewhere = { baseUrl: other.url, token: TOKEN }
      const config = { id: roundId, model: modelOf(roundId), baseVersion: BASE_VERSION, vectorLength: LENGTH, paillier: await paillierOffer(access) } as unknown as RoundConfig
      await expect(paillierServer(config, elsewhere)).rejects.toThrow(/was offered under Paillier key [0-9a-f]+, the decryptor now holds [0-9a-f]+/)
      const before = asked
      const resumed = await paillierServer(config, elsewhere, { offline: true })
      expect(asked).toBe(before)
      await expect(resumed.ready?.(new AbortController().signal)).rejects.toThrow(/the decryptor now holds/)
      expect(asked).toBe(before + 1)
      // Under the decryptor that holds its key, the resumed server is ready.
      const live = await paillierServer(config, access, { offline: true })
      await expect(live.ready?.(new AbortController().signal)).resolves.toBeUndefined()
      // The same key packing for another client count: the sum would be refused (409) all the same (review 49a).
      const repacked = await tempDir()
      await copyFile(join(offeredBy.dir, 'paillier.key.json'), join(repacked, 'paillier.key.json'))
      await chmod(join(repacked, 'paillier.key.json'), 0o600)
      const sameKey = await serve(repacked, log => log, undefined, 16)
      try {
        expect(sameKey.key.publicKey.n).toBe(offeredBy.key.publicKey.n)
        const elsewhereLayout = { baseUrl: sameKey.url, token: TOKEN }
        await expect(paillierServer(config, elsewhereLayout)).rejects.toThrow(`round ${roundId} was offered with a packing layout for 8 clients, the decryptor now packs for 16`)
        const resumedThere = await paillierServer(config, elsewhereLayout, { offline: true })
        await expect(resumedThere.ready?.(new AbortController().signal)).rejects.toThrow('the decryptor now packs for 16')
        // And its sum's request names the layout, which that decryptor refuses before claiming the round.
        const { contributions } = await round(offeredBy.key, offeredBy.layout, 30, roundId)
        const uploads = new Map<string, AcceptedUpload>(contributions.map(c => [c.clientId, { payload: c.ciphertexts, signature: toBase64(c.signature) }]))
        await expect(resumedThere.sum(uploads, { send: () => {}, signal: new AbortController().signal })).rejects.toThrow(/packing layout for 8 clients; this decryptor packs for 16/)
      } finally {
        await sameKey.app.close()
      }
    } finally {
      await offeredBy.app.close()
      await other.app.close()
    }
  })
})
