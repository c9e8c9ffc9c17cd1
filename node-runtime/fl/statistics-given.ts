/**
 * Which models' class statistics (NaiveMix, shared/training/mean-mix.ts) this runtime has already
 * put into a round's secure sum. A coordinator that asked again, of another set of clients, could
 * subtract the two sums and single one client out, so a runtime gives them once per model and row
 * size: recorded before the upload leaves, kept in `dir` across restarts when one is given.
 */
import { join } from 'node:path'
import { z } from 'zod'
import { IntegrityError } from '../../shared/errors/errors.ts'
import { parseJsonWith } from '../../shared/errors/parse-json.ts'
import { readIfExists, writeFileAtomic } from '../atomic-file.ts'

export const STATISTICS_GIVEN_FILE = 'class-statistics-given.json'

const fileSchema = z.array(z.string().min(1).max(400)).max(100_000)

export interface StatisticsGiven {
  has: (model: string, features: number) => Promise<boolean>
  record: (model: string, features: number) => Promise<void>
}

export function statisticsGiven (dir?: string): StatisticsGiven {
  const path = dir === undefined ? undefined : join(dir, STATISTICS_GIVEN_FILE)
  let keys: Promise<Set<string>> | undefined
  const key = (model: string, features: number): string => `${model}\n${features}`
  const load = async (): Promise<Set<string>> => {
    const text = path === undefined ? undefined : await readIfExists(path)
    if (text === undefined) return new Set()
    // Unreadable: refuse to give statistics (the caller declines) rather than forget what was given.
    return new Set(parseJsonWith(fileSchema, text, `${path} (class statistics are not given while it is unreadable)`, IntegrityError))
  }
  const current = async (): Promise<Set<string>> => {
    keys ??= load()
    try {
      return await keys
    } catch (err) {
      keys = undefined
      throw err
    }
  }
  return {
    has: async (model, features) => (await current()).has(key(model, features)),
    async record (model, features) {
      const set = await current()
      set.add(key(model, features))
      if (path !== undefined) await writeFileAtomic(path, JSON.stringify([...set]))
    }
  }
}
