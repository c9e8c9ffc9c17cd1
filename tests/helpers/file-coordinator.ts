/**
 * One real coordinator for a test file: on 127.0.0.1, any port, in a temporary folder (its data
 * dir is `root/c`; the rest of `root` is the file's to use), started before the file's tests and
 * stopped and removed after them. Read its fields inside tests or hooks, once it has started.
 */
import { afterAll, beforeAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'

export interface FileCoordinator {
  readonly coordinator: Coordinator
  /** Its HTTP base URL. */
  readonly url: string
  /** The temporary folder holding its data dir (`c`). */
  readonly root: string
}

export function fileCoordinator (name: string): FileCoordinator {
  let started: { coordinator: Coordinator, url: string, root: string } | undefined
  const get = (): NonNullable<typeof started> => {
    if (started === undefined) throw new Error('fileCoordinator: read before its beforeAll ran')
    return started
  }
  beforeAll(async () => {
    const root = await mkdtemp(join(tmpdir(), `blockfed-${name}-`))
    const coordinator = await createCoordinator({ dataDir: join(root, 'c'), port: 0, host: '127.0.0.1' })
    started = { coordinator, url: await coordinator.start(), root }
  }, 60_000)
  afterAll(async () => {
    if (started === undefined) return
    await started.coordinator.stop()
    await rm(started.root, { recursive: true, force: true })
  })
  return {
    get coordinator () { return get().coordinator },
    get url () { return get().url },
    get root () { return get().root }
  }
}
