/**
 * A round a restart left is being recovered (coordinator/rounds/rounds.ts, `recover`, which runs
 * after the API listens): a new round of its model is refused meanwhile, since of two rounds
 * from one base only the first to finish could publish. Real round manager over a real SQLite
 * store; the base model read is held open to keep the recovery going.
 */
import { afterAll, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { roundManager } from '../../coordinator/rounds/rounds.ts'
import type { RoundIo } from '../../coordinator/rounds/secure/types.ts'
import { plainServer } from '../../coordinator/rounds/secure/none.ts'
import { roundStore } from '../../coordinator/rounds/store.ts'
import { openDatabase, type Database } from '../../coordinator/store/database.ts'
import { roundConfigSchema } from '../../shared/rounds/config.ts'
import { encodeUpdate, fixedPointParams, sampleWeight, cryptoUniform } from '../../aggregation/fixed-point.ts'
import { ConflictError } from '../../shared/errors/errors.ts'

let root: string | undefined
let database: Database | undefined
afterAll(async () => {
  database?.close()
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

it('refuses a new round of a model while a round of it left by the last start is being recovered, and not after', async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-recovery-'))
  database = openDatabase(join(root, 'c.sqlite'))
  database.db.prepare('INSERT INTO models (name, format, created_at) VALUES (\'m\', \'tfjs-layers\', ?)').run(new Date().toISOString())
  const store = roundStore(database)
  const ids = ['a', 'b'].map(c => c.repeat(64))
  const fixedPoint = fixedPointParams({ clip: 1, clients: 2 })
  const config = roundConfigSchema.parse({
    model: 'm', id: 'r_00000000000000aa', baseVersion: 1, manifestCid: 'bafyexampleexample', trainable: ['x'], tensors: ['x'],
    vectorLength: 9, clients: ids, fixedPoint, seed: '00'.repeat(32), secure: { mode: 'none', graph: 'sparse' }
  })
  store.create(config)
  store.transition(config.id, 'collecting')
  for (const id of ids) {
    const encoded = encodeUpdate(new Float32Array(8).fill(0.01), { params: fixedPoint, weight: sampleWeight({ samples: 10, sampleCap: config.sampleCap }), random: cryptoUniform() })
    store.putUpload(config.id, id, { payload: new Uint8Array(encoded.buffer), signature: '' })
  }
  let release: () => void = () => {}
  const held = new Promise<void>(resolve => { release = resolve })
  let asked = false
  const manager = roundManager({
    store,
    repo: {} as never,
    hub: () => ({ get: () => undefined, clients: () => [] }) as never,
    publish: async () => { throw new Error('unreached') },
    readBase: async () => { asked = true; await held; throw new Error('no base model in this test') },
    secureServer: async c => plainServer(c)
  })
  const recovered = manager.recover()
  for (let i = 0; i < 200 && !asked; i++) await new Promise(resolve => setTimeout(resolve, 10))
  expect(asked).toBe(true)
  const request = { model: 'm', trainable: ['x'], secure: { mode: 'none' as const } }
  await expect(manager.start(request)).rejects.toThrow(ConflictError)
  await expect(manager.start(request)).rejects.toThrow('model m: round r_00000000000000aa (left by the last start, being recovered) is still running; one round per model at a time')
  release()
  expect((await recovered).map(r => r.state)).toEqual(['failed'])
  // Recovered (failed here, with no base model): the model is free; the start now gets as far as the base lookup.
  await expect(manager.start(request)).rejects.not.toThrow(ConflictError)
})

/** A store holding one round of model `m` left at `state` with two uploads, and the manager's stub deps. */
async function leftRound (mode: 'none' | 'paillier', unmaskMs = 20_000): Promise<{ store: ReturnType<typeof roundStore>, config: ReturnType<typeof roundConfigSchema.parse> }> {
  const dir = await mkdtemp(join(root ?? tmpdir(), `left-${mode}-`))
  const db = openDatabase(join(dir, 'c.sqlite'))
  opened.push(db)
  db.db.prepare('INSERT INTO models (name, format, created_at) VALUES (\'m\', \'tfjs-layers\', ?)').run(new Date().toISOString())
  const store = roundStore(db)
  const ids = ['a', 'b'].map(c => c.repeat(64))
  const config = roundConfigSchema.parse({
    model: 'm', id: 'r_00000000000000bb', baseVersion: 1, manifestCid: 'bafyexampleexample', trainable: ['x'], tensors: ['x'],
    vectorLength: 9, clients: ids, fixedPoint: fixedPointParams({ clip: 1, clients: 2 }), seed: '00'.repeat(32), secure: { mode, graph: 'sparse' }, deadlines: { unmaskMs }
  })
  store.create(config)
  store.transition(config.id, 'collecting')
  store.transition(config.id, 'unmasking')
  for (const id of ids) {
    // Paillier's are the stub's to read; a plain sum reads real fixed-point updates.
    const payload = mode === 'paillier' ? new Uint8Array(8) : new Uint8Array(encodeUpdate(new Float32Array(8).fill(0.01), { params: config.fixedPoint, weight: sampleWeight({ samples: 10, sampleCap: config.sampleCap }), random: cryptoUniform() }).buffer)
    store.putUpload(config.id, id, { payload, signature: '' })
  }
  return { store, config }
}
const opened: Database[] = []
afterAll(() => { for (const db of opened) db.close() })

/** A round manager over `store` with no clients, no repository and no publishing; `readBase` ends a sum's aftermath. */
function managerOver (store: ReturnType<typeof roundStore>, secureServer: Parameters<typeof roundManager>[0]['secureServer'], readBase: () => Promise<never>): ReturnType<typeof roundManager> {
  return roundManager({
    store,
    repo: {} as never,
    hub: () => ({ get: () => undefined, clients: () => [] }) as never,
    publish: async () => { throw new Error('unreached') },
    readBase,
    secureServer
  })
}

/** A Paillier round server whose sum is `sum`: it stands for the decryptor. */
const paillierStub = (sum: (io: RoundIo) => Promise<Uint32Array>): Parameters<typeof roundManager>[0]['secureServer'] => async () => ({
  mode: 'paillier',
  uploadBytes: 8,
  setup: async a => a,
  message () {},
  checkUpload () {},
  drop () {},
  snapshot: () => null,
  needsClients: () => false,
  sum: async (_uploads, io) => await sum(io)
})

it('gives a recovered Paillier sum the decryptor call\'s own time, not the unmask deadline', async () => {
  const { store, config } = await leftRound('paillier', 300)
  let summed = false
  // Takes longer than unmaskMs, and stops if its call is aborted.
  const manager = managerOver(store, paillierStub(async io => await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      summed = true
      const sum = new Uint32Array(9)
      sum[8] = config.fixedPoint.weightScale
      resolve(sum)
    }, 3 * config.deadlines.unmaskMs)
    io.signal.addEventListener('abort', () => { clearTimeout(timer); reject(new Error('decryptor call aborted')) }, { once: true })
  })), async () => { throw new Error('no base model in this test (the sum was done)') })
  const [recovered] = await manager.recover()
  expect(summed).toBe(true)
  expect(recovered?.reason).toMatch(/the sum was done/)
})

it('keeps a schedule going while another round holds its model, instead of ending it', async () => {
  const { store } = await leftRound('none')
  let release: () => void = () => {}
  const held = new Promise<void>(resolve => { release = resolve })
  let asked = false
  const manager = managerOver(store, async c => plainServer(c), async () => { asked = true; await held; throw new Error('no base model in this test') })
  const recovered = manager.recover()
  for (let i = 0; i < 200 && !asked; i++) await new Promise(resolve => setTimeout(resolve, 10))
  const errors: Error[] = []
  const schedule = manager.schedule({ model: 'm', trainable: ['x'], secure: { mode: 'none' } }, { rounds: 1, pauseMs: 20, onError: err => errors.push(err) })
  await new Promise(resolve => setTimeout(resolve, 200))
  // Tries that met the recovered round neither ended the schedule nor counted as its one round.
  expect(errors).toEqual([])
  release()
  await recovered
  for (let i = 0; i < 300 && errors.length === 0; i++) await new Promise(resolve => setTimeout(resolve, 10))
  // Past the recovery the schedule got as far as the base lookup, which this test has none for.
  expect(errors).toHaveLength(1)
  expect(errors[0]).not.toBeInstanceOf(ConflictError)
  await schedule.stop()
})

it('stops a recovered Paillier sum when the coordinator stops, and leaves the round for the next start', async () => {
  const { store, config } = await leftRound('paillier')
  let asked = false
  // A decryptor that never answers, but stops when its call is aborted.
  const manager = managerOver(store, paillierStub(async io => await new Promise((_resolve, reject) => {
    asked = true
    io.signal.addEventListener('abort', () => { reject(new Error('decryptor call aborted')) }, { once: true })
  })), async () => { throw new Error('unreached') })
  const recovered = manager.recover()
  for (let i = 0; i < 200 && !asked; i++) await new Promise(resolve => setTimeout(resolve, 10))
  expect(asked).toBe(true)
  await manager.stop()
  expect((await recovered).map(r => r.state)).toEqual(['unmasking'])
  expect(store.get(config.id)?.state).toBe('unmasking')
})
