/**
 * The runtime's access history (shared/load/access-history.ts) kept in its data dir, so that
 * what one process learnt about load order serves the next cold start. Only transitions within
 * one runtime's life are counted; configs are remembered by file path only, never by content,
 * so no API token is copied into the history.
 *
 * The file is an optimisation: one that cannot be read, is not JSON or fails its schema is
 * treated as empty and replaced by the next write; loading never fails because of it.
 */
import { join } from 'node:path'
import { accessHistory, accessHistorySchema, type AccessHistory, type AccessHistoryOptions } from '../shared/load/access-history.ts'
import { readIfExists, writeFileAtomic } from './atomic-file.ts'

export const ACCESS_HISTORY_FILE = 'access-history.json'

export interface AccessLog {
  /** A load of `model` finished (its config read from the file `config`, if any); persisted. */
  record: (model: string, config?: string) => Promise<void>
  likelyNext: AccessHistory['likelyNext']
}

export async function openAccessLog (dataDir: string, options?: AccessHistoryOptions): Promise<AccessLog> {
  const path = join(dataDir, ACCESS_HISTORY_FILE)
  let state
  const text = await readIfExists(path).catch(() => undefined)
  if (text !== undefined) {
    try {
      const parsed = accessHistorySchema.safeParse(JSON.parse(text))
      if (parsed.success) state = parsed.data
    } catch {
      // Not JSON: start empty.
    }
  }
  const history = accessHistory(state, options)
  let previous: string | undefined
  let writing: Promise<void> = Promise.resolve()
  return {
    async record (model, config) {
      history.record(previous, model, config)
      previous = model
      const json = JSON.stringify(history.toJSON())
      writing = writing.catch(() => {}).then(async () => await writeFileAtomic(path, json))
      await writing
    },
    likelyNext: model => history.likelyNext(model)
  }
}
