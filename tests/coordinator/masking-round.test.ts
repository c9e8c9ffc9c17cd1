/**
 * The coordinator's side of a masking round (coordinator/rounds/secure/masking.ts) driven by real
 * SecAgg+ clients, no network: who counts as having shared keys, how long setup waits, and when
 * a restarted coordinator can finish the sum on its own. Deadlines are set far beyond the test's
 * own timeout, so a gate that waits for someone it should not fails the test instead of passing
 * late.
 */
import { describe, it, expect } from 'vitest'
import { maskingServer } from '../../coordinator/rounds/secure/masking.ts'
import { gate } from '../../coordinator/rounds/gate.ts'
import { createMaskingClient, type MaskingClient } from '../../aggregation/secagg/client.ts'
import { generateSigningKey } from '../../shared/crypto/sign.ts'
import { fromBase64, fromHex, toBase64, toHex } from '../../shared/crypto/bytes.ts'
import { graphConfig } from '../../shared/rounds/secagg-graph.ts'
import { roundConfigSchema, roundScheduleMs, type RoundConfig } from '../../shared/rounds/config.ts'
import type { AcceptedUpload, RoundIo, SecureRoundServer } from '../../coordinator/rounds/secure/types.ts'
import { fixedPointParams } from '../../aggregation/fixed-point.ts'

const LONG_MS = 600_000
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
const VECTOR = 8

function round (n: number, unmaskMs = LONG_MS, graph: 'sparse' | 'complete' = 'sparse'): { config: RoundConfig, clients: Map<string, MaskingClient> } {
  const keys = Array.from({ length: n }, () => generateSigningKey())
  const ids = keys.map(k => toHex(k.publicKey)).sort()
  const config = roundConfigSchema.parse({
    id: 'r_0123456789abcdef',
    model: 'm',
    baseVersion: 1,
    manifestCid: 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy',
    trainable: ['head'],
    tensors: ['head/kernel'],
    vectorLength: VECTOR,
    clients: ids,
    fixedPoint: { ...fixedPointParams({ clip: 1, clients: n }) },
    seed: toHex(globalThis.crypto.getRandomValues(new Uint8Array(32))),
    secure: { mode: 'masking', graph },
    deadlines: { acceptMs: LONG_MS, setupMs: LONG_MS, trainMs: LONG_MS, unmaskMs }
  })
  const byId = new Map(keys.map(k => [toHex(k.publicKey), k]))
  const clients = new Map(ids.map(id => [id, createMaskingClient({
    roundId: config.id,
    id,
    identity: byId.get(id) as ReturnType<typeof generateSigningKey>,
    identityKeyOf: x => ids.includes(x) ? fromHex(x) : undefined,
    vectorLength: VECTOR,
    graph: graphConfig(config),
    seed: fromHex(config.seed)
  })]))
  return { config, clients }
}

/** Clients answer the roster with their shares and keep their inboxes; `silent` ones never answer. */
function io (server: () => SecureRoundServer, clients: Map<string, MaskingClient>, silent: (id: string, type: string) => boolean): RoundIo & { replies: Array<Promise<void>>, inboxes: Map<string, unknown> } {
  const replies: Array<Promise<void>> = []
  const inboxes = new Map<string, unknown>()
  return {
    signal: new AbortController().signal,
    replies,
    inboxes,
    send (to, payload) {
      const type = (payload as { type: string }).type
      if (silent(to, type)) return
      const client = clients.get(to) as MaskingClient
      // A reply the server refuses (a late unmask while it finishes, say) is the client's problem, as over a socket.
      const reply = (work: () => Promise<void>): void => { replies.push(work().catch(() => undefined)) }
      if (type === 'secagg/roster') reply(async () => { await server().message(to, await client.shareKeys(payload as never)) })
      if (type === 'secagg/inbox') inboxes.set(to, payload)
      if (type === 'secagg/consistency') reply(async () => { await server().message(to, client.consistencyCheck(payload)) })
      if (type === 'secagg/unmask-request') reply(async () => { await server().message(to, await client.unmask(payload)) })
    }
  }
}

/** Setup among `ids`, then each masks a vector of ones and uploads it (checked as the round runner checks it). */
async function setUpAndUpload (server: SecureRoundServer, clients: Map<string, MaskingClient>, channel: ReturnType<typeof io>, ids: string[]): Promise<Map<string, AcceptedUpload>> {
  const setup = server.setup(ids, channel)
  for (const id of ids) await server.message(id, await (clients.get(id) as MaskingClient).advertise())
  await setup
  const uploads = new Map<string, AcceptedUpload>()
  for (const id of ids) {
    const masked = await (clients.get(id) as MaskingClient).maskedInput(new Uint32Array(VECTOR).fill(1), channel.inboxes.get(id))
    const bytes = new Uint8Array(masked.buffer, masked.byteOffset, masked.byteLength)
    server.checkUpload(id, bytes)
    uploads.set(id, { payload: bytes, signature: '' })
  }
  return uploads
}

describe('masking round on the coordinator', () => {
  it('a client that disconnects during ShareKeys is left out; the others go on to upload', async () => {
    const { config, clients } = round(5)
    const ids = config.clients
    const victim = ids[4] as string
    const server = await maskingServer(config, null)
    const channel = io(() => server, clients, (id, type) => {
      // The victim gets its roster and disconnects instead of answering.
      if (id === victim && type === 'secagg/roster') { setTimeout(() => server.drop(victim), 5); return true }
      return false
    })
    const setup = server.setup(ids, channel)
    for (const id of ids) await server.message(id, await (clients.get(id) as MaskingClient).advertise())
    expect(await setup).toEqual(ids.slice(0, 4))
  })

  it('does not wait for clients that advertised before setup began', async () => {
    const { config, clients } = round(4)
    const ids = config.clients
    const server = await maskingServer(config, null)
    // Three clients advertise as soon as they accept, before the round reaches setup.
    for (const id of ids.slice(0, 3)) await server.message(id, await (clients.get(id) as MaskingClient).advertise())
    const setup = server.setup(ids, io(() => server, clients, () => false))
    await server.message(ids[3] as string, await (clients.get(ids[3] as string) as MaskingClient).advertise())
    // With setupMs at ten minutes, this resolves only if no gate waited for the early three.
    expect(await setup).toEqual(ids)
  })

  it('can take two setup deadlines, one per setup gate, which the clients\' round budget counts (roundScheduleMs)', async () => {
    const base = round(4)
    const config = { ...base.config, deadlines: { ...base.config.deadlines, setupMs: 1000 } }
    const { clients } = base
    const ids = config.clients
    const server = await maskingServer(config, null)
    // Every client answers each setup step after 600 ms: late, within each gate's deadline.
    const slow = 600
    const replies: Array<Promise<void>> = []
    const channel: RoundIo = {
      signal: new AbortController().signal,
      send (to, payload) {
        if ((payload as { type: string }).type !== 'secagg/roster') return
        replies.push(sleep(slow).then(async () => { await server.message(to, await (clients.get(to) as MaskingClient).shareKeys(payload as never)) }))
      }
    }
    const started = performance.now()
    const setup = server.setup(ids, channel)
    await sleep(slow)
    for (const id of ids) await server.message(id, await (clients.get(id) as MaskingClient).advertise())
    expect(await setup).toEqual(ids)
    const took = performance.now() - started
    await Promise.all(replies)
    expect(took).toBeGreaterThan(config.deadlines.setupMs)
    const { acceptMs, trainMs, unmaskMs } = config.deadlines
    expect(roundScheduleMs(config) - acceptMs - trainMs - 1.5 * unmaskMs).toBeGreaterThanOrEqual(took)
  })

  it('needs the clients until every unmask share is in, and not after', async () => {
    const { config, clients } = round(4)
    const ids = config.clients
    const server = await maskingServer(config, null)
    const channel = io(() => server, clients, () => false)
    const uploads = await setUpAndUpload(server, clients, channel, ids)
    expect(server.needsClients()).toBe(true)
    const sum = await server.sum(uploads, channel)
    expect([...sum]).toEqual(new Array(VECTOR).fill(ids.length))
    // The state a restart would load: complete, so it can finish without any client.
    const restored = await maskingServer(config, server.snapshot())
    expect(restored.needsClients()).toBe(false)
  })
})

describe('masking round: a client whose neighbour sealed it shares that do not open (reviews 47a, 47e)', () => {
  it('asks for its report to be saved at once, and a coordinator restarted from that state sums exactly', async () => {
    const { config, clients } = round(6, LONG_MS, 'complete')
    const ids = config.clients
    const [culprit, victim] = [ids[0], ids[3]] as [string, string]
    const server = await maskingServer(config, null)
    const channel = io(() => server, clients, () => false)
    // The culprit's shares for the victim: the right length, random bytes.
    const send = channel.send.bind(channel)
    channel.send = (to, payload) => {
      if (to !== culprit || (payload as { type: string }).type !== 'secagg/roster') { send(to, payload); return }
      channel.replies.push((async () => {
        const shares = await (clients.get(culprit) as MaskingClient).shareKeys(payload as never)
        for (const e of shares.shares) if (e.to === victim) e.ciphertext = toBase64(globalThis.crypto.getRandomValues(new Uint8Array(fromBase64(e.ciphertext).length)))
        await server.message(culprit, shares)
      })())
    }
    const setup = server.setup(ids, channel)
    for (const id of ids) await server.message(id, await (clients.get(id) as MaskingClient).advertise())
    await setup
    const uploads = new Map<string, AcceptedUpload>()
    let saved: unknown
    for (const id of ids) {
      const client = clients.get(id) as MaskingClient
      const masked = await client.maskedInput(new Uint32Array(VECTOR).fill(1), channel.inboxes.get(id))
      const report = client.skipped()
      if (report !== undefined) {
        expect(await server.message(id, report)).toBe('persist')
        saved = server.snapshot()
      }
      const bytes = new Uint8Array(masked.buffer, masked.byteOffset, masked.byteLength)
      server.checkUpload(id, bytes)
      uploads.set(id, { payload: bytes, signature: '' })
    }
    expect(saved).toBeDefined()
    // Restarted from what was saved, with the uploads the database kept.
    const restarted = await maskingServer(config, saved)
    const again = io(() => restarted, clients, () => false)
    expect([...await restarted.sum(uploads, again)]).toEqual(new Array(VECTOR).fill(ids.length))
  })
})

describe('masking round: a survivor that stays connected but never signs the survivor list', () => {
  it('costs ConsistencyCheck half the unmask deadline, not the round: Unmasking keeps the other half', async () => {
    const unmaskMs = 1500
    const { config, clients } = round(8, unmaskMs, 'complete')
    const ids = config.clients
    const mute = ids[3] as string
    const server = await maskingServer(config, null)
    const channel = io(() => server, clients, (id, type) => id === mute && type === 'secagg/consistency')
    const uploads = await setUpAndUpload(server, clients, channel, ids)
    const started = performance.now()
    const sum = await server.sum(uploads, channel)
    // The mute client's input is in the sum: it uploaded; its self mask was removed by the others.
    expect([...sum]).toEqual(new Array(VECTOR).fill(ids.length))
    expect(performance.now() - started).toBeGreaterThanOrEqual(unmaskMs / 2 - 50)
  })
})

describe('gate', () => {
  it('ends at once, timed out, when its signal fired before it was built', async () => {
    const controller = new AbortController()
    controller.abort()
    await expect(gate(['a'], LONG_MS, controller.signal).done).resolves.toEqual({ timedOut: true })
  })
})
