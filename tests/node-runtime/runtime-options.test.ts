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
})
