/**
 * createNodeRuntime's own options are checked when the runtime is created, where the caller
 * hears of it: the access history opens in the background after the first load, where an error
 * was swallowed and prefetching silently never ran.
 */
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNodeRuntime } from '../../node-runtime/runtime.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'

let root: string | undefined
afterAll(async () => { if (root !== undefined) await rm(root, { recursive: true, force: true }) })

describe('createNodeRuntime options', () => {
  it('refuse access-history settings that leave nothing to keep, naming the option', async () => {
    root = await mkdtemp(join(tmpdir(), 'blockfed-runtime-options-'))
    await expect(createNodeRuntime({ dataDir: root, accessHistory: { maxSuccessors: 0 } })).rejects.toThrow(InvalidInputError)
    await expect(createNodeRuntime({ dataDir: root, accessHistory: { decay: 2 } })).rejects.toThrow(/decay/)
    const runtime = await createNodeRuntime({ dataDir: root, accessHistory: { maxSuccessors: 2 } })
    await runtime.stop()
  })

  it('refuse model code given as the code itself instead of a function that makes it (the README once showed it so)', async () => {
    root ??= await mkdtemp(join(tmpdir(), 'blockfed-runtime-options-'))
    const code = { init: async () => {}, preProcess: async (x: unknown) => x, run: async (x: unknown) => x, postProcess: async (x: unknown) => x, release: async () => {} }
    await expect(createNodeRuntime({ dataDir: root, codes: { digits: code as never } })).rejects.toThrow('codes["digits"]: expected a function that makes the model\'s code (one instance per load), got object')
  })

  it('name the unset variable a config\'s tokenEnv points at, before any request', async () => {
    root ??= await mkdtemp(join(tmpdir(), 'blockfed-runtime-options-'))
    const runtime = await createNodeRuntime({ dataDir: root })
    const config = { version: '1', tag: 't', runtime: 'tfjs', source: 'blockfed', modelDir: 'm', modelName: 'm', updateURL: 'http://127.0.0.1:1', tokenEnv: 'BLOCKFED_TEST_UNSET_TOKEN' }
    delete process.env.BLOCKFED_TEST_UNSET_TOKEN
    await expect(runtime.load(config)).rejects.toThrow('aoe config for m: no API token: its "tokenEnv" names BLOCKFED_TEST_UNSET_TOKEN, which is not set in this process\'s environment')
    await runtime.stop()
  })
})
