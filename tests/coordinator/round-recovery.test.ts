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
