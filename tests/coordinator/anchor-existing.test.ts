/**
 * Versions recorded before the data dir had a ledger are anchored at start
 * (coordinator/ledger/anchor-existing.ts): every one of them, oldest first across models, and
 * each model's in version order even where a clock set back gave a later version an earlier
 * time, since runtimes refuse entries off a model's chain (shared/ledger/monitor.ts). A real
 * SQLite database through the coordinator's own store and log.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { anchorExisting } from '../../coordinator/ledger/anchor-existing.ts'
import { versionLog } from '../../coordinator/ledger/log.ts'
import { openDatabase } from '../../coordinator/store/database.ts'
import { repository } from '../../coordinator/store/repository.ts'
import { generateSigningKey } from '../../shared/crypto/sign.ts'
import { parseEntry } from '../../shared/ledger/entry.ts'

let dir: string | undefined
afterEach(async () => { if (dir !== undefined) await rm(dir, { recursive: true, force: true }) })

describe('anchorExisting', () => {
  it('anchors every unanchored version oldest first, each model\'s in version order whatever its times', async () => {
    dir = await mkdtemp(join(tmpdir(), 'blockfed-anchor-existing-'))
    const database = openDatabase(join(dir, 'coordinator.sqlite'))
    try {
      const { db } = database
      const add = db.prepare('INSERT INTO versions (model, version, parent, manifest_cid, signed_manifest, blocks, weight_bytes, round, created_at) VALUES (?, ?, ?, ?, \'{}\', 0, 0, NULL, ?)')
      for (const name of ['a', 'b']) db.prepare('INSERT INTO models (name, format, created_at) VALUES (?, \'onnx\', ?)').run(name, '2026-01-01T00:00:00.000Z')
      // a@2 was recorded after a@1 by a clock set back a day; b's versions fall between.
      add.run('a', 1, null, 'bafya1', '2026-01-02T00:00:00.000Z')
      add.run('a', 2, 1, 'bafya2', '2026-01-01T00:00:00.000Z')
      add.run('b', 1, null, 'bafyb1', '2026-01-01T12:00:00.000Z')
      add.run('b', 2, 1, 'bafyb2', '2026-01-03T00:00:00.000Z')
      const log = versionLog({ database, signing: generateSigningKey(), keyId: 'test' })
      expect(anchorExisting(database, repository(database), log)).toBe(4)
      const order = log.entries(0, 4).map(leaf => { const e = parseEntry(leaf); return `${e.model}@${e.version}` })
      expect(order).toEqual(['b@1', 'a@1', 'a@2', 'b@2'])
      // Nothing is left to anchor the second time.
      expect(anchorExisting(database, repository(database), log)).toBe(0)
    } finally {
      database.close()
    }
  })
})
