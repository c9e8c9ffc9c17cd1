/**
 * The runtime's record of which models' NaiveMix class statistics it has given
 * (node-runtime/fl/statistics-given.ts): it survives a restart, and an unreadable record stops
 * the runtime from giving any rather than letting it forget.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { statisticsGiven, STATISTICS_GIVEN_FILE } from '../../../node-runtime/fl/statistics-given.ts'
import { IntegrityError } from '../../../shared/errors/errors.ts'

let dir: string
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'blockfed-statistics-given-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

describe('statisticsGiven', () => {
  it('remembers a model and row size across instances (a restart) when given a folder, and per instance without one', async () => {
    const first = statisticsGiven(dir)
    expect(await first.has('mnist', 784)).toBe(false)
    await first.record('mnist', 784)
    const restarted = statisticsGiven(dir)
    expect(await restarted.has('mnist', 784)).toBe(true)
    expect(await restarted.has('mnist', 100)).toBe(false)
    expect(await restarted.has('other', 784)).toBe(false)
    const memory = statisticsGiven()
    await memory.record('mnist', 784)
    expect(await memory.has('mnist', 784)).toBe(true)
    expect(await statisticsGiven().has('mnist', 784)).toBe(false)
  })

  it('refuses to answer while its file is unreadable, instead of forgetting what was given', async () => {
    for (const text of ['{not json', '{"mnist":1}', JSON.stringify([''])]) {
      const bad = await mkdtemp(join(dir, 'bad-'))
      await writeFile(join(bad, STATISTICS_GIVEN_FILE), text)
      await expect(statisticsGiven(bad).has('mnist', 784)).rejects.toThrow(IntegrityError)
    }
  })
})
