/**
 * WebSocket round-protocol fuzz. One in-process coordinator; hand-driven peers.
 *
 * For every state a client can be in — before its hello, authenticated in no round, offered,
 * accepted (round still open), collecting, uploaded, after the round ended, and the masking
 * phases advertise / share / mask / check / unmask — it sends the schema-generated malformed
 * frames of cases.ts plus frames that are well formed but wrong for that state (another round,
 * another phase, replays, duplicates). Each must get an `error` reply naming what is wrong
 * within DEADLINE_MS (before the hello: the error and a close with a reason), never an
 * "internal error", and leave the database exactly as it was. Then: hello twice, hello with
 * another client's key, a second connection with the same key mid-round, a flood of 5,000
 * frames (read and unread), and an honest round with real runtimes that must still publish.
 * Every frame the coordinator sent any peer must parse with serverMessageSchema.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import type { IncomingMessage } from 'node:http'
import { WebSocketServer, type WebSocket } from 'ws'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import type { RoundEvent } from '../../coordinator/rounds/rounds.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { modelFiles, mnistMlp } from '../../node-runtime/examples/mnist-mlp.ts'
import { ROUND_PROTOCOL_VERSION, serverMessageSchema } from '../../shared/rounds/messages.ts'
import { generateSigningKey } from '../../shared/crypto/sign.ts'
import { fromBase64, fromHex, toBase64 } from '../../shared/crypto/bytes.ts'
import type { RoundConfig } from '../../shared/rounds/config.ts'
import { minUploadsOf } from '../../shared/rounds/config.ts'
import { graphConfig } from '../../shared/rounds/secagg-graph.ts'
import { createMaskingClient, type MaskingClient } from '../../aggregation/secagg/client.ts'
import { startParticipants, stopParticipants } from '../helpers/fl.ts'
import { Peer } from '../helpers/ws-fuzz-peer.ts'
import { binaryCases, schemaCases, type Case } from '../helpers/ws-fuzz-cases.ts'

const DEADLINE_MS = 3_000
const NO_ROUND = 'r_0000000000000000'

let root: string
let dataDir: string
let c: Coordinator
let at: string
let token: string
const events: RoundEvent[] = []
const failures: string[] = []
const observations: string[] = []
const unhandled: string[] = []
const peers: Peer[] = []
let caseCount = 0

// Server-side sockets by the x-peer header their client sent (to read their bufferedAmount).
const serverSockets = new Map<string, WebSocket>()
const originalHandleUpgrade = WebSocketServer.prototype.handleUpgrade
WebSocketServer.prototype.handleUpgrade = function (this: WebSocketServer, req: IncomingMessage, socket: any, head: Buffer, cb: (ws: WebSocket, req: IncomingMessage) => void) {
  return originalHandleUpgrade.call(this, req, socket, head, (ws: WebSocket, r: IncomingMessage) => {
    const name = r.headers['x-peer']
    if (typeof name === 'string') serverSockets.set(name, ws)
    cb(ws, r)
  })
} as typeof originalHandleUpgrade

const onUnhandled = (err: unknown): void => { unhandled.push(String((err as Error)?.stack ?? err)) }
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

async function open (name: string, options: Parameters<typeof Peer.open>[3] = {}): Promise<Peer> {
  const p = await Peer.open(at, token, name, options)
  peers.push(p)
  return p
}

async function untilEvent (predicate: (e: RoundEvent) => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms
  while (!events.some(predicate)) {
    if (Date.now() > end) throw new Error('event did not come')
    await sleep(10)
  }
}
const stateReached = (roundId: string, state: string) => (e: RoundEvent) => e.type === 'state' && e.roundId === roundId && e.state === state

/** Every table of the coordinator's database, as one comparable string per table. */
function dbSnapshot (): Record<string, string> {
  const db = new DatabaseSync(join(dataDir, 'coordinator.sqlite'), { readOnly: true })
  try {
    const tables = (db.prepare('SELECT name FROM sqlite_master WHERE type = \'table\' ORDER BY name').all() as Array<{ name: string }>).map(t => t.name)
    const out: Record<string, string> = {}
    for (const t of tables) {
      const rows = db.prepare(`SELECT * FROM "${t}"`).all()
      out[t] = rows.map(r => JSON.stringify(r, (_k, v) => v instanceof Uint8Array ? Buffer.from(v).toString('hex') : typeof v === 'bigint' ? String(v) : v)).sort().join('\n')
    }
    return out
  } finally {
    db.close()
  }
}

function diffSnapshots (a: Record<string, string>, b: Record<string, string>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter(k => a[k] !== b[k])
}

/** Sends one case and checks its reply; failures are collected, not thrown, so every case runs. */
async function runCase (peer: Peer, k: Case, state: string, deadline = DEADLINE_MS): Promise<any> {
  caseCount++
  const mark = peer.mark()
  peer.send(k.frame)
  let reply: any
  try {
    reply = await peer.waitFrom(mark, m => m?.type === 'error', deadline)
  } catch {
    failures.push(`[${state}] ${k.name}: no error reply within ${deadline} ms`)
    return undefined
  }
  if (reply === undefined) {
    failures.push(`[${state}] ${k.name}: connection closed ${JSON.stringify(peer.closeInfo)} instead of an error reply`)
    return undefined
  }
  const message = String(reply.message)
  if (/internal error/.test(message)) failures.push(`[${state}] ${k.name}: internal error leaked: ${JSON.stringify(message.slice(0, 200))}`)
  else if (!k.names.test(message)) failures.push(`[${state}] ${k.name}: ${JSON.stringify(message.slice(0, 240))} does not name ${String(k.names)}`)
  return reply
}

/** A batch from one peer in one state: the database must not move, the peer must stay connected. */
async function batch (peer: Peer, cases: Case[], state: string): Promise<void> {
  const before = dbSnapshot()
  for (const k of cases) {
    await runCase(peer, k, state)
    if (peer.closeInfo !== undefined) { failures.push(`[${state}] ${k.name}: peer closed ${JSON.stringify(peer.closeInfo)}`); break }
  }
  // Let any late handler finish before comparing.
  await sleep(50)
  const changed = diffSnapshots(before, dbSnapshot())
  if (changed.length > 0) failures.push(`[${state}] database changed by rejected frames: tables ${changed.join(', ')}`)
}

const text = (name: string, value: unknown, names: RegExp): Case => ({ name, frame: typeof value === 'string' ? value : JSON.stringify(value), names })
const allTypes = (roundId: string): Array<Record<string, unknown>> => [
  { type: 'accept', roundId },
  { type: 'decline', roundId, reason: 'fuzz' },
  { type: 'progress', roundId, epoch: 0, epochs: 1, loss: 0.5 },
  { type: 'secagg', roundId, payload: { type: 'secagg/advertise' } }
]

/** The generic cases every authenticated state gets. */
function genericCases (peer: Peer, roundId: string, baseVersion: number): Case[] {
  return [
    ...schemaCases(roundId, peer.id, 256 << 10),
    ...binaryCases(roundId, baseVersion),
    text('hello again', peer.helloMessage(), /hello: already connected/),
    ...allTypes(NO_ROUND).map(m => text(`${String(m.type)} for a round that is not running`, m, /round r_0000000000000000 is not running/))
  ]
}

function zeroUpdate (config: RoundConfig): Uint32Array {
  const v = new Uint32Array(config.vectorLength)
  v[v.length - 1] = Math.round(0.02 * config.fixedPoint.weightScale)
  return v
}
const bytesOf = (v: Uint32Array): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength)

async function offerOf (peer: Peer, roundId: string): Promise<RoundConfig> {
  const m = await peer.waitFrom(0, x => x?.type === 'offer' && x.config.id === roundId, 20_000)
  return m.config as RoundConfig
}

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled)
  process.on('uncaughtExceptionMonitor', onUnhandled)
  await tfjsBackend()
  root = await mkdtemp(join(tmpdir(), 'blockfed-ws-fuzz-'))
  dataDir = join(root, 'c')
  // Each fuzz client sends hundreds of oversized frames on one connection, far past the text
  // budget a client may send in 10 s (round-protocol.test shows that budget cutting a flood).
  c = await createCoordinator({ dataDir, port: 0, partition: { targetBytes: 16 << 10, maxBytes: 1 << 20 }, onRoundEvent: e => events.push(e), roundTextBudgetBytes: 1 << 30 })
  at = await c.start()
  token = await c.createToken('edge')
  const model = mnistMlp({ hidden: [16] })
  await c.ingest('mnist', await modelFiles(model))
  // The round open throughout runs on a model of its own: one round per model at a time.
  await c.ingest('side', await modelFiles(model))
  model.dispose()
}, 120_000)

afterAll(async () => {
  for (const p of peers) p.close()
  await c?.stop()
  process.off('unhandledRejection', onUnhandled)
  process.off('uncaughtExceptionMonitor', onUnhandled)
  WebSocketServer.prototype.handleUpgrade = originalHandleUpgrade
  if (root !== undefined) await rm(root, { recursive: true, force: true })
  // Observations (what the flood measured, persisted statuses) only when something failed.
  if (failures.length > 0 || unhandled.length > 0) console.log(`\n=== ${caseCount} cases; ${failures.length} failures ===\n${failures.join('\n')}\n=== observations ===\n${observations.join('\n')}\n=== unhandled ===\n${unhandled.join('\n')}`)
})

// A round the fuzzing peers are not in, open throughout ("not selected" probes).
let other: { id: string, stop: AbortController } | undefined

describe('before the hello', () => {
  it('answers every malformed first frame with an error naming it, and closes with a reason', async () => {
    const before = dbSnapshot()
    const cases: Case[] = [
      ...schemaCases(NO_ROUND, 'a'.repeat(64), 12 << 10).map(k => ({ ...k, names: new RegExp(`hello: .*(${k.names.source})|hello: not JSON`) })),
      ...binaryCases(NO_ROUND, 1).map(k => ({ ...k, names: /expected a hello before any upload/ })),
      ...allTypes(NO_ROUND).map(m => text(`valid ${String(m.type)} before the hello`, m, new RegExp(`expected a hello, got ${String(m.type)}`))),
      text('hello 33 KiB', { type: 'hello', protocol: ROUND_PROTOCOL_VERSION, clientId: 'a'.repeat(64), signature: 'A'.repeat(33 << 10), models: ['m'] }, /hello: \d+ bytes, at most 32768/)
    ]
    for (const k of cases) {
      const p = new Peer(at, token, 'pre-hello')
      await p.waitFrom(0, m => m?.type === 'challenge', 10_000)
      await runCase(p, k, 'pre-hello')
      const closed = await Promise.race([p.closed, sleep(DEADLINE_MS).then(() => undefined)])
      if (closed === undefined) failures.push(`[pre-hello] ${k.name}: not closed within ${DEADLINE_MS} ms`)
      else if (closed.code !== 4003 || closed.reason === '') failures.push(`[pre-hello] ${k.name}: closed ${JSON.stringify(closed)}, expected 4003 with a reason`)
      p.close()
      peers.push(p)
    }
    expect(diffSnapshots(before, dbSnapshot())).toEqual([])
  })

  it('refuses hellos that do not prove the key: another client\'s id, a stale nonce, an undecodable signature', async () => {
    const victim = await open('victim', { models: ['none'] })
    const stranger = generateSigningKey()
    const probes: Array<[string, (p: Peer) => Record<string, unknown>, RegExp]> = [
      ['another client\'s clientId, signed by my key', p => p.helloMessage(['mnist'], p.identity, victim.id), /hello: the signature does not verify with the client key/],
      ['the victim\'s clientId, signed by a stranger', p => p.helloMessage(['mnist'], stranger, victim.id), /hello: the signature does not verify with the client key/],
      ['signature over another connection\'s nonce', () => ({ type: 'hello', protocol: ROUND_PROTOCOL_VERSION, clientId: victim.id, signature: victim.helloMessage().signature, models: ['mnist'] }), /hello: the signature does not verify/],
      ['signature "A" (base64 alphabet, not decodable)', p => ({ ...p.helloMessage(), signature: 'A' }), /hello: .*signature/],
      ['signature "AB==" (non-canonical padding)', p => ({ ...p.helloMessage(), signature: 'AB==' }), /hello: .*signature/],
      ['signature "====" (empty)', p => ({ ...p.helloMessage(), signature: '====' }), /hello: .*signature/]
    ]
    for (const [name, build, names] of probes) {
      const p = new Peer(at, token, 'imposter')
      peers.push(p)
      await p.waitFrom(0, m => m?.type === 'challenge', 10_000)
      await runCase(p, text(name, build(p), names), 'pre-hello')
      const closed = await Promise.race([p.closed, sleep(DEADLINE_MS).then(() => undefined)])
      if (closed?.code !== 4003) failures.push(`[pre-hello] ${name}: closed ${JSON.stringify(closed)}, expected 4003`)
    }
    // The victim was not replaced or disturbed.
    expect(victim.closeInfo).toBeUndefined()
    const r = await runCase(victim, text('victim still served', '{', /not JSON/), 'no round')
    expect(r?.type).toBe('error')
  })

  it('cuts a first frame beyond a hello plus slack with 1009, and a silent client after the handshake deadline with 4001', async () => {
    const silent = new Peer(at, token, 'silent')
    peers.push(silent)
    const big = new Peer(at, token, 'big-hello')
    peers.push(big)
    await big.waitFrom(0, m => m?.type === 'challenge', 10_000)
    big.send('x'.repeat(400 << 10))
    expect((await big.closed).code).toBe(1009)
    expect(big.received.some(r => /frame too large: over 32768 bytes before its hello/.test(r.text))).toBe(true)
    // Invalid UTF-8 in a text frame: ws refuses it (1007) before the hub sees it.
    const bad = new Peer(at, token, 'bad-utf8')
    peers.push(bad)
    await bad.waitFrom(0, m => m?.type === 'challenge', 10_000)
    bad.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false })
    expect((await bad.closed).code).toBe(1007)
    const closed = await silent.closed
    expect(closed).toEqual({ code: 4001, reason: 'no hello before the deadline' })
  }, 30_000)

  it('answers two hellos sent back to back: welcome, then "already connected"', async () => {
    const p = new Peer(at, token, 'double-hello')
    peers.push(p)
    await p.waitFrom(0, m => m?.type === 'challenge', 10_000)
    p.hello(['none'])
    p.hello(['none'])
    await p.waitFrom(0, m => m?.type === 'welcome', DEADLINE_MS)
    const e = await p.waitFrom(0, m => m?.type === 'error', DEADLINE_MS)
    expect(e.message).toMatch(/hello: already connected/)
    expect(p.closeInfo).toBeUndefined()
  })
})

describe('authenticated, in no round', () => {
  it('refuses every malformed or misdirected frame', async () => {
    // Another round, open throughout, which the fuzzing peer is not in.
    const o1 = await open('o1', { models: ['side'] })
    const o2 = await open('o2', { models: ['side'] })
    const stop = new AbortController()
    const started = await c.rounds.start({ model: 'side', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 2, maxClients: 2 }, deadlines: { acceptMs: 600_000 } }, stop.signal)
    other = { id: started.id, stop }
    await offerOf(o1, started.id)
    void o2
    const evil = await open('evil', { models: ['mnist', 'other'] })
    const cases = [
      ...genericCases(evil, NO_ROUND, 1),
      ...allTypes(started.id).map(m => text(`${String(m.type)} for a round it was not selected for`, m, /this client was not selected/)),
      { name: 'upload for a round it is not in', frame: await evil.uploadFrame({ roundId: started.id, baseVersion: 1, encoding: 'ring-u32le' }, new Uint8Array(16)), names: /not a participant of round/ },
      { name: 'upload for a round not running', frame: await evil.uploadFrame({ roundId: NO_ROUND, baseVersion: 1, encoding: 'ring-u32le' }, new Uint8Array(16)), names: /upload for round r_0000000000000000, which is not running/ },
      { name: 'upload, signature "A" (base64 alphabet, not decodable), round not running', frame: await evil.uploadFrame({ roundId: NO_ROUND, baseVersion: 1, encoding: 'ring-u32le' }, new Uint8Array(16)), names: /not running/ }
    ]
    await batch(evil, cases, 'no round')
    expect(failures.filter(f => f.startsWith('[no round]'))).toEqual([])
  })
})

describe('round A, mode none: offered → accepted → collecting → uploaded → ended', () => {
  it('refuses malformed and out-of-turn frames in every state; the round still publishes', async () => {
    const evil = peers.find(p => p.name === 'evil') as Peer
    const h1 = await open('h1')
    const h2 = await open('h2')
    const wd = await open('withdrawer')
    const early = await open('early')
    const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 5, maxClients: 5, minUploads: 2 }, deadlines: { acceptMs: 600_000, trainMs: 600_000 } })
    const config = await offerOf(evil, started.id)
    expect(config.clients).toContain(evil.id)
    const base = config.baseVersion
    const valid = bytesOf(zeroUpdate(config))
    const up = async (p: Peer, patch: Partial<{ roundId: string, baseVersion: number, encoding: 'ring-u32le' | 'paillier' }> = {}, payload = valid, key = p.identity): Promise<Uint8Array> =>
      await p.uploadFrame({ roundId: config.id, baseVersion: base, encoding: 'ring-u32le', ...patch }, payload, key)
    for (const p of [h1, wd, early]) p.json({ type: 'accept', roundId: config.id })
    await sleep(100)

    // Offered: not accepted yet.
    await batch(evil, [
      ...genericCases(evil, config.id, base),
      text('progress before accepting', { type: 'progress', roundId: config.id, epoch: 0, epochs: 1, loss: 1 }, /progress only between accept and upload/),
      text('secagg in mode none, before accepting', { type: 'secagg', roundId: config.id, payload: { type: 'secagg/advertise' } }, /no secure-aggregation messages \(mode none\)|only from clients that accepted/),
      { name: 'upload before accepting', frame: await up(evil), names: /not a participant of round .* at this stage/ },
      ...allTypes(other?.id as string).map(m => text(`${String(m.type)} for the other round`, m, /this client was not selected/))
    ], 'offered')

    // A client that withdraws (decline after accept: dropped) and then accepts again.
    wd.json({ type: 'decline', roundId: config.id, reason: 'withdrawing' })
    await sleep(100)
    await batch(wd, [text('accept after withdrawing', { type: 'accept', roundId: config.id }, /withdr|declined|dropped|not .* round/)], 'withdrawn')

    // An early upload (round still open) with a header fault that does not depend on the round's phase.
    await batch(early, [{ name: 'early upload with the wrong encoding', frame: await up(early, { encoding: 'paillier' }), names: /encoding paillier/ }], 'accepted, early upload')
    early.close()
    await early.closed

    evil.json({ type: 'accept', roundId: config.id })
    await sleep(100)
    // Accepted, the round still waits for h2.
    await batch(evil, [
      ...genericCases(evil, config.id, base),
      text('secagg in mode none', { type: 'secagg', roundId: config.id, payload: {} }, /no secure-aggregation messages/),
      { name: 'early upload for another base version', frame: await up(evil, { baseVersion: base + 1 }), names: /upload for base version/ },
      text('progress beyond its epochs', { type: 'progress', roundId: config.id, epoch: 3, epochs: 2, loss: 0.5 }, /epoch: epoch must not exceed epochs/)
    ], 'accepted')
    // Schema-valid oddities: accepted without a reply (reported, not failed).
    {
      const mark = evil.mark()
      const before = dbSnapshot()
      evil.json({ type: 'progress', roundId: config.id, epoch: 1e300, epochs: 1, loss: -1e9 })
      evil.json({ type: 'accept', roundId: config.id })
      await sleep(300)
      const replies = evil.received.slice(mark).filter(r => r.json?.type === 'error').map(r => r.json.message)
      observations.push(`[accepted] progress {epoch: 1e300, epochs: 1, loss: -1e9} and a duplicate accept: error replies ${JSON.stringify(replies)}; tables changed: ${diffSnapshots(before, dbSnapshot()).join(', ') || 'none'}`)
    }

    h2.json({ type: 'accept', roundId: config.id })
    await untilEvent(stateReached(config.id, 'collecting'))
    const d = config.vectorLength - 1
    const outside = zeroUpdate(config); outside[0] = Math.ceil(config.fixedPoint.clip * config.fixedPoint.scale) + 10
    const noWeight = zeroUpdate(config); noWeight[d] = 0
    const far = zeroUpdate(config); far.fill(Math.floor(0.9 * config.fixedPoint.clip * config.fixedPoint.scale), 0, d)
    const farNorm = 0.9 * config.fixedPoint.clip * Math.sqrt(d)
    const sigA = (frame: Uint8Array, signature: string): Uint8Array => {
      const len = new DataView(frame.buffer, frame.byteOffset).getUint32(0, true)
      const head = JSON.parse(new TextDecoder().decode(frame.subarray(4, 4 + len)))
      const h = new TextEncoder().encode(JSON.stringify({ ...head, signature }))
      const out = new Uint8Array(4 + h.length + frame.length - 4 - len)
      new DataView(out.buffer).setUint32(0, h.length, true)
      out.set(h, 4); out.set(frame.subarray(4 + len), 4 + h.length)
      return out
    }
    await batch(evil, [
      ...genericCases(evil, config.id, base),
      text('accept while collecting', { type: 'accept', roundId: config.id }, /acceptances are closed/),
      text('secagg in mode none', { type: 'secagg', roundId: config.id, payload: { type: 'secagg/shares' } }, /no secure-aggregation messages/),
      { name: 'upload: base version + 7', frame: await up(evil, { baseVersion: base + 7 }), names: /upload for base version/ },
      { name: 'upload: encoding paillier', frame: await up(evil, { encoding: 'paillier' }), names: /encoding paillier/ },
      { name: 'upload: 12-byte payload', frame: await up(evil, {}, new Uint8Array(12)), names: /12 bytes, the round expects/ },
      { name: 'upload: payload one word short', frame: await up(evil, {}, valid.subarray(4)), names: /bytes, the round expects/ },
      { name: 'upload: signed by another key', frame: await up(evil, {}, valid, generateSigningKey()), names: /signature does not verify/ },
      { name: 'upload: signature "A" (base64 alphabet, not decodable)', frame: sigA(await up(evil), 'A'), names: /signature/ },
      { name: 'upload: signature "AB==" (non-canonical)', frame: sigA(await up(evil), 'AB=='), names: /signature/ },
      { name: 'upload: signature "====" (empty)', frame: sigA(await up(evil), '===='), names: /signature does not verify/ },
      { name: 'upload: client weight 0', frame: await up(evil, {}, bytesOf(noWeight)), names: /client weight 0 is outside/ },
      { name: 'upload: a coordinate beyond the clip', frame: await up(evil, {}, bytesOf(outside)), names: /coordinate 0 .* outside the round's clip/ },
      ...(farNorm > 0.02 * config.normBound * 1.5 ? [{ name: 'upload: norm beyond the bound', frame: await up(evil, {}, bytesOf(far)), names: /exceeds the round's bound/ }] : []),
      { name: 'upload for the other round', frame: await evil.uploadFrame({ roundId: other?.id as string, baseVersion: base, encoding: 'ring-u32le' }, valid), names: /not a participant of round/ }
    ], 'collecting')

    // A second connection with h1's key while h1 is in the round: the first is replaced (4002), and
    // h1 is dropped with it, as with any lost connection; the second is told so when it uploads.
    const h1b = await open('h1-second', { identity: h1.identity })
    expect(await h1.closed).toEqual({ code: 4002, reason: 'replaced by a newer connection of the same client' })
    await batch(h1b, [{ name: 'upload after its connection was replaced', frame: await up(h1b), names: /withdrew or was dropped from round/ }], 'replaced')
    expect(h1b.received.some(r => r.json?.type === 'error' && r.json.roundId === config.id && r.json.left === true)).toBe(true)

    evil.send(await up(evil))
    await untilEvent(e => e.type === 'upload' && e.roundId === config.id && e.clientId === evil.id, 10_000)
    await batch(evil, [
      { name: 'upload replayed', frame: await up(evil), names: /already has this client's update \(replay\)/ },
      text('decline after uploading', { type: 'decline', roundId: config.id, reason: 'undo' }, /already uploaded; a decline cannot take it back/),
      text('progress after uploading', { type: 'progress', roundId: config.id, epoch: 1, epochs: 1, loss: 0.1 }, /progress only between accept and upload/),
      text('accept after uploading', { type: 'accept', roundId: config.id }, /acceptances are closed/)
    ], 'uploaded')

    h2.send(await up(h2))
    const result = await evil.waitFrom(0, m => m?.type === 'result' && m.roundId === config.id, 30_000)
    expect(result).toMatchObject({ state: 'published' })
    await batch(evil, [
      ...allTypes(config.id).map(m => text(`${String(m.type)} after the round ended`, m, new RegExp(`round ${config.id} is not running`))),
      { name: 'upload after the round ended', frame: await up(evil), names: /which is not running/ },
      ...schemaCases(config.id, evil.id, 64 << 10).slice(0, 60)
    ], 'after end')
    const status = await (await fetch(`${at}/v1/rounds/${config.id}`, { headers: { authorization: `Bearer ${c.adminToken}` } })).json() as { clients: Array<{ clientId: string, status: string }> }
    observations.push(`[round A] persisted client statuses: ${JSON.stringify(status.clients.map(x => [x.clientId === wd.id ? 'withdrawer' : x.clientId === early.id ? 'early' : x.clientId === evil.id ? 'evil' : x.clientId === h1.id ? 'h1' : 'h2', x.status]))}`)
    const wdStatus = status.clients.find(x => x.clientId === wd.id)?.status
    if (wdStatus !== 'dropped') failures.push(`[round A] the withdrawn client is stored as '${String(wdStatus)}', not 'dropped'`)
    for (const p of [h1b, h2, wd]) p.close()
    expect(failures.filter(f => /^\[(offered|accepted|collecting|replaced|uploaded|after end)\]/.test(f))).toEqual([])
  })
})

/** A raw masking participant: answers every secagg step itself unless `hold` says to wait. */
function maskingDriver (peer: Peer, config: RoundConfig): { mc: MaskingClient, inbox: Promise<unknown>, hold: Set<string>, release: (type: string) => Promise<void> } {
  const mc = createMaskingClient({
    roundId: config.id,
    id: peer.id,
    identity: peer.identity,
    identityKeyOf: id => config.clients.includes(id) ? fromHex(id) : undefined,
    vectorLength: config.vectorLength,
    graph: graphConfig(config),
    seed: fromHex(config.seed),
    minRoster: minUploadsOf(config)
  })
  const hold = new Set<string>()
  const held = new Map<string, unknown>()
  let gotInbox: (x: unknown) => void = () => {}
  const inbox = new Promise<unknown>(resolve => { gotInbox = resolve })
  const answer = async (payload: any): Promise<void> => {
    const send = (p: unknown): void => peer.json({ type: 'secagg', roundId: config.id, payload: p })
    switch (payload.type) {
      case 'secagg/roster': send(await mc.shareKeys(payload)); break
      case 'secagg/inbox': {
        gotInbox(payload)
        const y = await mc.maskedInput(zeroUpdate(config), payload)
        peer.send(await peer.uploadFrame({ roundId: config.id, baseVersion: config.baseVersion, encoding: 'ring-u32le' }, bytesOf(y)))
        break
      }
      case 'secagg/consistency': send(mc.consistencyCheck(payload)); break
      case 'secagg/unmask-request': send(await mc.unmask(payload)); break
    }
  }
  peer.onMessage = m => {
    if (m?.type !== 'secagg' || m.roundId !== config.id) return
    if (hold.has(m.payload.type)) { held.set(m.payload.type, m.payload); return }
    void answer(m.payload).catch(err => { observations.push(`${peer.name}: ${String(err)}`) })
  }
  return {
    mc,
    inbox,
    hold,
    async release (type) {
      hold.delete(type)
      const p = held.get(type)
      if (p !== undefined) { held.delete(type); await answer(p) }
    }
  }
}

describe('round M, mode masking: advertise → share → mask → check → unmask → ended', () => {
  it('refuses malformed and out-of-phase secagg frames in every phase; the round still publishes', async () => {
    const evil = peers.find(p => p.name === 'evil') as Peer
    const ms = [await open('m1'), await open('m2'), await open('m3')]
    const late = await open('late')
    const decliner = await open('decliner')
    const started = await c.rounds.start({ model: 'mnist', trainable: ['head'], secure: { mode: 'masking', graph: 'complete' }, selection: { minClients: 6, maxClients: 6, minUploads: 3 }, deadlines: { acceptMs: 4_000, setupMs: 600_000, trainMs: 600_000, unmaskMs: 600_000 } })
    const config = await offerOf(evil, started.id)
    const id = config.id
    const drivers = ms.map(p => maskingDriver(p, config))
    for (const [i, p] of ms.entries()) {
      drivers[i]?.hold.add('secagg/unmask-request')
      p.json({ type: 'accept', roundId: id })
      p.json({ type: 'secagg', roundId: id, payload: await drivers[i]?.mc.advertise() })
    }
    decliner.json({ type: 'decline', roundId: id, reason: 'not today' })
    evil.json({ type: 'accept', roundId: id })
    const ev = maskingDriver(evil, config)
    for (const t of ['secagg/roster', 'secagg/inbox', 'secagg/consistency', 'secagg/unmask-request']) ev.hold.add(t)
    const advertise = await ev.mc.advertise()
    const sec = (payload: unknown): string => JSON.stringify({ type: 'secagg', roundId: id, payload })
    const someone = ms[0]?.id as string
    /** Faults of a valid secagg payload `m` that every phase refuses, wrong-phase or not. */
    const payloadFaults = (m: Record<string, unknown>, label: string, right: boolean): Case[] => {
      const stage = right ? undefined : /at stage \w+, not \w+|has not|already received|was not asked|sent no masked input/
      const out: Case[] = [
        { name: `${label}: extra field`, frame: sec({ ...m, extra: 1 }), names: stage ?? /Unrecognized key.*extra/ },
        { name: `${label}: __proto__ key`, frame: sec(m).replace('"payload":{', '"payload":{"__proto__":{"x":1},'), names: stage ?? /__proto__/ },
        { name: `${label}: from another client`, frame: sec({ ...m, from: someone }), names: stage ?? /claims to be from/ },
        { name: `${label}: for another round`, frame: sec({ ...m, roundId: 'r_1111111111111111' }), names: stage ?? /for round r_1111111111111111/ }
      ]
      for (const field of Object.keys(m).filter(f => f !== 'type')) {
        out.push({ name: `${label}: ${field} missing`, frame: sec({ ...m, [field]: undefined }), names: stage ?? new RegExp(field) })
        out.push({ name: `${label}: ${field} = 7`, frame: sec({ ...m, [field]: 7 }), names: stage ?? new RegExp(field) })
        out.push({ name: `${label}: ${field} huge`, frame: sec({ ...m, [field]: 'A'.repeat(300 << 10) }), names: stage ?? new RegExp(field) })
      }
      return out
    }
    const common = (): Case[] => [
      ...schemaCases(id, evil.id, 64 << 10).filter((_k, i) => i % 3 === 0),
      ...binaryCases(id, config.baseVersion).slice(0, 8),
      { name: 'secagg payload 1', frame: sec(1), names: /unknown type undefined/ },
      { name: 'secagg payload null', frame: sec(null), names: /unknown type undefined/ },
      { name: 'secagg payload []', frame: sec([]), names: /unknown type undefined/ },
      { name: 'secagg payload "secagg/advertise"', frame: sec('secagg/advertise'), names: /unknown type undefined/ },
      { name: 'secagg payload unknown type', frame: sec({ type: 'secagg/roster' }), names: /unknown type "secagg\/roster"/ },
      { name: 'secagg payload type 3000 chars', frame: sec({ type: 'x'.repeat(3000) }), names: /unknown type/ },
      { name: 'secagg payload type deeply nested', frame: sec({ type: '@@' }).replace('"@@"', '['.repeat(20_000) + ']'.repeat(20_000)), names: /unknown type/ },
      { name: 'secagg payload deeply nested', frame: sec('@@').replace('"@@"', '['.repeat(50_000) + ']'.repeat(50_000)), names: /unknown type/ },
      { name: 'secagg for the other round', frame: JSON.stringify({ type: 'secagg', roundId: other?.id, payload: advertise }), names: /not selected/ },
      { name: 'secagg for no round', frame: JSON.stringify({ type: 'secagg', roundId: NO_ROUND, payload: advertise }), names: /not running/ },
      text('hello again', evil.helloMessage(), /already connected/)
    ]

    // Advertise phase: the accept gate times out on `late` (4 s); setup then waits for evil's advertise.
    await sleep(4_500)
    await batch(evil, [
      ...common(),
      ...payloadFaults(advertise as unknown as Record<string, unknown>, 'advertise', true),
      { name: 'advertise: signature of other bytes', frame: sec({ ...advertise, signature: toBase64(new Uint8Array(64).fill(3)) }), names: /does not verify/ },
      { name: 'advertise: cPublicKey all zero (low-order point)', frame: sec({ ...advertise, cPublicKey: toBase64(new Uint8Array(32)) }), names: /does not verify|cPublicKey/ },
      { name: 'shares in the advertise phase', frame: sec({ type: 'secagg/shares', roundId: id, from: evil.id, shares: [] }), names: /at stage advertise, not share/ },
      { name: 'signature in the advertise phase', frame: sec({ type: 'secagg/signature', roundId: id, from: evil.id, signature: toBase64(new Uint8Array(64)) }), names: /at stage advertise, not check/ },
      { name: 'unmask in the advertise phase', frame: sec({ type: 'secagg/unmask', roundId: id, from: evil.id, selfMaskShares: [], keyShares: [] }), names: /at stage advertise, not unmask/ }
    ], 'masking: advertise')
    // Out of turn from others: an accept after the accept deadline, an advertise from a client that declined.
    const lateMc = maskingDriver(late, config)
    const declinerMc = maskingDriver(decliner, config)
    await batch(late, [text('accept after acceptances closed (setup running)', { type: 'accept', roundId: id }, /acceptances are closed/)], 'masking: late accept')
    await batch(decliner, [{ name: 'advertise from a client that declined', frame: sec(await declinerMc.mc.advertise()), names: /declined|only from clients that accepted|not a participant/ }], 'masking: declined advertise')
    await batch(late, [{ name: 'advertise from a client that accepted late', frame: sec(await lateMc.mc.advertise()), names: /only from clients that accepted|acceptances|not a participant/ }], 'masking: late advertise')
    late.close()
    decliner.close()
    await Promise.all([late.closed, decliner.closed])

    evil.json({ type: 'secagg', roundId: id, payload: advertise })
    const roster = (await evil.waitFrom(0, m => m?.type === 'secagg' && m.payload?.type === 'secagg/roster', 20_000)).payload
    observations.push(`[masking] roster: ${roster.clients.length} clients (offered 6: evil, m1-m3 accepted; 'late' accepted after the deadline; 'decliner' declined)`)
    const shares = await ev.mc.shareKeys(roster) as unknown as Record<string, unknown> & { shares: Array<{ to: string, ciphertext: string }> }
    await batch(evil, [
      ...common(),
      ...payloadFaults(shares, 'shares', true),
      { name: 'shares: one neighbour missing', frame: sec({ ...shares, shares: shares.shares.slice(1) }), names: /share pairs, .* has \d+ neighbours/ },
      { name: 'shares: a neighbour twice', frame: sec({ ...shares, shares: [...shares.shares.slice(1), shares.shares[1]] }), names: /two share pairs for/ },
      { name: 'shares: to a stranger', frame: sec({ ...shares, shares: [...shares.shares.slice(1), { ...shares.shares[0], to: 'f'.repeat(64) }] }), names: /is not a neighbour of/ },
      { name: 'shares: ciphertext short', frame: sec({ ...shares, shares: shares.shares.map(s => ({ ...s, ciphertext: 'AAAA' })) }), names: /ciphertext/ },
      { name: 'advertise again in the share phase', frame: sec(advertise), names: /at stage share, not advertise/ },
      // Signed by another key, so that if it is held and looked at later (it should be refused now) it is not summed.
      { name: 'upload in the share phase (not yet allowed)', frame: await evil.uploadFrame({ roundId: id, baseVersion: config.baseVersion, encoding: 'ring-u32le' }, new Uint8Array(config.vectorLength * 4), generateSigningKey()), names: /not a participant|not collecting|did not complete|signature/ }
    ], 'masking: share')
    evil.json({ type: 'secagg', roundId: id, payload: shares })

    await untilEvent(stateReached(id, 'collecting'))
    const inbox = (await evil.waitFrom(0, m => m?.type === 'secagg' && m.payload?.type === 'secagg/inbox', 20_000)).payload
    const y = await ev.mc.maskedInput(zeroUpdate(config), inbox)
    // A reply to a frame held until uploads opened lands now, before the next batch starts.
    await sleep(500)
    const upload = async (payload: Uint8Array, patch: Record<string, unknown> = {}, key = evil.identity): Promise<Uint8Array> => await evil.uploadFrame({ roundId: id, baseVersion: config.baseVersion, encoding: 'ring-u32le', ...patch } as any, payload, key)
    await batch(evil, [
      ...common(),
      { name: 'shares again in the mask phase', frame: sec(shares), names: /at stage mask, not share/ },
      { name: 'masked upload: wrong length', frame: await upload(bytesOf(y).subarray(8)), names: /bytes, the round expects/ },
      { name: 'masked upload: encoding paillier', frame: await upload(bytesOf(y), { encoding: 'paillier' }), names: /encoding paillier/ },
      { name: 'masked upload: signed by another key', frame: await upload(bytesOf(y), {}, generateSigningKey()), names: /signature does not verify/ },
      { name: 'accept in the mask phase', frame: JSON.stringify({ type: 'accept', roundId: id }), names: /acceptances are closed/ }
    ], 'masking: mask')
    evil.send(await upload(bytesOf(y)))
    await untilEvent(stateReached(id, 'unmasking'))
    const consistency = (await evil.waitFrom(0, m => m?.type === 'secagg' && m.payload?.type === 'secagg/consistency', 20_000)).payload
    const signature = ev.mc.consistencyCheck(consistency) as unknown as Record<string, unknown>
    await batch(evil, [
      ...common(),
      ...payloadFaults(signature, 'signature', true),
      { name: 'signature: of other bytes', frame: sec({ ...signature, signature: toBase64(new Uint8Array(64).fill(9)) }), names: /does not verify over this round's survivor list/ },
      { name: 'masked upload replayed in the check phase', frame: await upload(bytesOf(y)), names: /replay|not running|not collecting/ },
      { name: 'unmask in the check phase', frame: sec({ type: 'secagg/unmask', roundId: id, from: evil.id, selfMaskShares: [], keyShares: [] }), names: /at stage check, not unmask/ }
    ], 'masking: check')
    evil.json({ type: 'secagg', roundId: id, payload: signature })
    const request = (await evil.waitFrom(0, m => m?.type === 'secagg' && m.payload?.type === 'secagg/unmask-request', 60_000)).payload
    const unmask = await ev.mc.unmask(request) as unknown as Record<string, unknown> & { selfMaskShares: Array<{ owner: string, share: string }> }
    await batch(evil, [
      ...common(),
      ...payloadFaults(unmask, 'unmask', true),
      { name: 'unmask: owners reversed minus one', frame: sec({ ...unmask, selfMaskShares: unmask.selfMaskShares.slice(1) }), names: /selfMaskShares are for/ },
      { name: 'unmask: a share of the wrong length', frame: sec({ ...unmask, selfMaskShares: unmask.selfMaskShares.map(s => ({ ...s, share: 'AAAA' })) }), names: /share/ },
      { name: 'unmask: 100 owners named', frame: sec({ ...unmask, selfMaskShares: Array.from({ length: 100 }, (_, i) => ({ owner: `${'c'.repeat(60)}${String(i).padStart(4, '0')}`, share: (unmask.selfMaskShares[0] as { share: string }).share })) }), names: /selfMaskShares are for/ },
      { name: 'signature again in the unmask phase', frame: sec(signature), names: /at stage unmask, not check/ }
    ], 'masking: unmask')
    // Its unmask with one share changed by a bit: well formed, but not the share its owner dealt.
    // The digest its owner gave at ShareKeys leaves that share out; the round still publishes,
    // from the other answerers' shares of that owner.
    evil.json({ type: 'secagg', roundId: id, payload: { ...unmask, selfMaskShares: unmask.selfMaskShares.map((s, i) => i > 0 ? s : { ...s, share: toBase64(fromBase64(s.share).map((b, j, all) => j === all.length - 1 ? b ^ 1 : b)) }) } })
    for (const d of drivers) await d.release('secagg/unmask-request')
    const result = await evil.waitFrom(0, m => m?.type === 'result' && m.roundId === id, 60_000)
    expect(result).toMatchObject({ state: 'published' })
    await batch(evil, [
      ...allTypes(id).map(m => text(`${String(m.type)} after the masking round ended`, m, /is not running/)),
      { name: 'masked upload after the end', frame: await upload(bytesOf(y)), names: /not running/ }
    ], 'masking: after end')
    for (const p of ms) p.close()
    expect(failures.filter(f => f.startsWith('[masking'))).toEqual([])
  })
})

describe('floods', () => {
  it('a client sending 5,000 bad frames gets 5,000 replies; others stay served meanwhile', async () => {
    const flood = await open('flood', { models: ['none'] })
    const probe = await open('probe', { models: ['none'] })
    const frame = JSON.stringify({ type: 'accept', roundId: NO_ROUND })
    const mark = flood.mark()
    const begun = performance.now()
    for (let i = 0; i < 5000; i++) flood.send(frame)
    const latencies: number[] = []
    const http: number[] = []
    while (flood.received.length - mark < 5000 && performance.now() - begun < 60_000) {
      const t = performance.now()
      const r = await runCase(probe, text('probe during flood', '{', /not JSON/), 'flood', 10_000)
      if (r !== undefined) latencies.push(performance.now() - t)
      const t2 = performance.now()
      await fetch(`${at}/v1/models`)
      http.push(performance.now() - t2)
    }
    const took = performance.now() - begun
    const got = flood.received.length - mark
    observations.push(`[flood] 5000 frames → ${got} replies in ${took.toFixed(0)} ms; no rate limit (connection open: ${String(flood.closeInfo === undefined)}); probe latency max ${Math.max(...latencies, 0).toFixed(0)} ms over ${latencies.length}; HTTP max ${Math.max(...http, 0).toFixed(0)} ms`)
    expect(got).toBe(5000)
    expect(Math.max(...latencies)).toBeLessThan(DEADLINE_MS)
  })

  it('a client that floods and never reads its replies (answering pings unasked) is not held without bound', async () => {
    const noread = await open('noread', { models: ['none'] })
    const socket = (noread.ws as unknown as { _socket: { pause: () => void } })._socket
    socket.pause()
    const server = serverSockets.get('noread') as WebSocket
    // Replies as long as the protocol allows: unknown keys are named in the error.
    const frame = JSON.stringify(Object.fromEntries([['type', 'accept'], ['roundId', NO_ROUND], ...Array.from({ length: 300 }, (_, i) => [`k${String(i).padStart(4, '0')}`, 0])]))
    let maxBuffered = 0
    for (let i = 0; i < 5000; i++) {
      noread.send(frame)
      if (i % 100 === 0) { noread.ws.pong(); await sleep(1); maxBuffered = Math.max(maxBuffered, server.bufferedAmount) }
    }
    for (let i = 0; i < 40 && server.readyState === server.OPEN; i++) { await sleep(50); maxBuffered = Math.max(maxBuffered, server.bufferedAmount) }
    observations.push(`[flood, unread] request ${frame.length} B × 5000; server-side bufferedAmount peaked at ${(maxBuffered / 1e6).toFixed(1)} MB; server socket state ${server.readyState}`)
    if (server.readyState === server.OPEN && maxBuffered > 4.5e6) failures.push(`[flood, unread] the coordinator holds ${(maxBuffered / 1e6).toFixed(1)} MB of unread replies for one client and keeps it connected`)
    noread.ws.terminate()
    expect(server.readyState !== server.OPEN || maxBuffered <= 4.5e6).toBe(true)
  }, 120_000)
})

describe('afterwards', () => {
  it('an honest round with real runtimes still publishes; nothing crashed; every reply met the server schema', async () => {
    for (const p of peers) p.close()
    other?.stop.abort()
    await sleep(500)
    const ps = await startParticipants(at, token, join(root, 'honest'), 3, { size: 50 })
    try {
      const summary = await c.rounds.run({ model: 'mnist', trainable: ['head'], secure: { mode: 'none' }, selection: { minClients: 3 } })
      expect(summary).toMatchObject({ state: 'published', participants: { uploaded: 3 } })
    } finally {
      await stopParticipants(ps)
    }
    const bad = new Map<string, number>()
    for (const p of peers) {
      for (const r of p.received) {
        if (r.text.startsWith('<binary')) { bad.set('binary frame from the coordinator', (bad.get('binary frame from the coordinator') ?? 0) + 1); continue }
        const parsed = serverMessageSchema.safeParse(r.json)
        if (!parsed.success) {
          const key = `${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message} — e.g. ${r.text.slice(0, 120)}… (${r.text.length} chars)`
          const short = key.replace(/— e\.g\..*/, '')
          if (![...bad.keys()].some(k => k.startsWith(short))) bad.set(key, 0)
          const k2 = [...bad.keys()].find(k => k.startsWith(short)) as string
          bad.set(k2, (bad.get(k2) ?? 0) + 1)
        }
      }
    }
    for (const [k, n] of bad) failures.push(`[replies] ${n} server frame(s) violate serverMessageSchema: ${k}`)
    expect(unhandled).toEqual([])
    expect([...bad.entries()]).toEqual([])
  }, 180_000)
})
