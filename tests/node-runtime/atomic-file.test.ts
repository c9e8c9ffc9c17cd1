/**
 * writeFileAtomic and createFileAtomic (node-runtime/atomic-file.ts) sync the folder after the
 * rename (or link): before, a power cut could lose the rename, so the runtime's trusted
 * checkpoint could revert to an older one (or vanish: trust on first use again) and versions.json
 * lose the versions rolled back from. Shown by watching the fs calls (no power cut simulated).
 */
import { describe, it, expect, vi } from 'vitest'
import { dirname, join } from 'node:path'
import { tmpdir } from 'node:os'

const events: string[] = []
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>()
  return {
    ...fs,
    default: fs,
    async rename (a: string, b: string) { await fs.rename(a, b); events.push(`rename ${b}`) },
    async open (path: string, flags?: string, mode?: number) {
      const h = await fs.open(path, flags, mode)
      const sync = h.sync.bind(h)
      h.sync = async () => { await sync(); events.push(`sync ${path}`) }
      return h
    }
  }
})

describe('durability of the runtime trust state', () => {
  it('the directory of a replaced trust file is fsynced after the rename', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises')
    const { advanceTrusted } = await import('../../node-runtime/versions/ledger-trust.ts')
    const { localVersions } = await import('../../node-runtime/versions/local-store.ts')
    const { entry, fakeLog, logVerifier } = await import('../helpers/ledger-fake-log.ts')
    const dataDir = await mkdtemp(join(tmpdir(), 'rl-dur-'))
    try {
      const log = fakeLog()
      log.append(entry('m', 1))
      log.serve(log.note(1))
      await advanceTrusted(dataDir, { log: logVerifier, witnesses: [], minWitnesses: 0 }, log.client)
      await localVersions(join(dataDir, 'm')).saveState({ current: 1, previous: null, rejected: [] })
      for (const renamed of events.filter(e => e.startsWith('rename ')).map(e => e.slice(7))) {
        const at = events.indexOf(`rename ${renamed}`)
        const dirSynced = events.slice(at + 1).includes(`sync ${dirname(renamed)}`)
        expect(dirSynced, `${renamed.slice(dataDir.length)} renamed into place, its directory never fsynced (events: ${JSON.stringify(events.map(e => e.replace(dataDir, '')))})`).toBe(true)
      }
      expect(events.some(e => e.startsWith('rename '))).toBe(true)
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})
