/**
 * The runtime's record of what it has put into secure sums (node-runtime/fl/given.ts): which
 * models' NaiveMix class statistics, and the newest base version of each model it uploaded an
 * update from. Both survive a restart, and an unreadable record stops the runtime from giving
 * anything rather than letting it forget.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { statisticsGiven, updatesGiven, STATISTICS_GIVEN_FILE, UPDATES_GIVEN_FILE } from '../../../node-runtime/fl/given.ts'
import { IntegrityError } from '../../../shared/errors/errors.ts'

let dir: string
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'blockfed-given-')) })
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

describe('updatesGiven', () => {
  it('keeps the newest base version per model across a restart, and never moves it back', async () => {
    const own = await mkdtemp(join(dir, 'updates-'))
    const first = updatesGiven(own)
    expect(await first.newestBase('mnist')).toBeUndefined()
    await first.record('mnist', 3)
    await first.record('mnist', 1)
    await first.record('other', 0)
    expect(await first.newestBase('mnist')).toBe(3)
    const restarted = updatesGiven(own)
    expect(await restarted.newestBase('mnist')).toBe(3)
    expect(await restarted.newestBase('other')).toBe(0)
    expect(await restarted.newestBase('third')).toBeUndefined()
    expect(JSON.parse(await readFile(join(own, UPDATES_GIVEN_FILE), 'utf8'))).toEqual({ mnist: 3, other: 0 })
    const memory = updatesGiven()
    await memory.record('mnist', 7)
    expect(await memory.newestBase('mnist')).toBe(7)
    expect(await updatesGiven().newestBase('mnist')).toBeUndefined()
  })

  it('refuses to answer while its file is unreadable, and names the file', async () => {
    for (const text of ['{not json', '["mnist"]', '{"mnist":-1}', '{"mnist":1.5}', '{"":1}']) {
      const bad = await mkdtemp(join(dir, 'bad-'))
      await writeFile(join(bad, UPDATES_GIVEN_FILE), text)
      await expect(updatesGiven(bad).newestBase('mnist')).rejects.toThrow(/updates-given\.json \(no update is given to a secure round while it is unreadable\)/)
      await expect(updatesGiven(bad).newestBase('mnist')).rejects.toThrow(IntegrityError)
    }
  })
})
