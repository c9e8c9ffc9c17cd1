/**
 * A version recorded whose checkpoint failed to commit (review 46f: a full disk refused the
 * checkpoint's COMMIT after the version's): the ledger is one entry ahead of its latest signed
 * checkpoint. `/ledger/checkpoint` kept serving the old one, and a retried ingest of the same
 * files was "unchanged" and anchored nothing, so every runtime refused the latest version until
 * the next publish or a restart. Ingest now signs in the version's transaction (the last test),
 * so only a data dir written before that holds this state; here it is made by appending a leaf
 * the way a publish does, with no checkpoint after it.
 */
import { describe, expect, it } from 'vitest'
import { DatabaseSync } from 'node:sqlite'
import { join } from 'node:path'
import { IntegrityError } from '../../shared/errors/errors.ts'
import { parseCheckpoint } from '../../shared/ledger/checkpoint.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'
import { fileCoordinator } from '../helpers/file-coordinator.ts'

const at = fileCoordinator('checkpoint-repair')

/** The size of the checkpoint `/ledger/checkpoint` serves. */
async function servedSize (): Promise<number> {
  const note = await (await fetch(`${at.url}/ledger/checkpoint`)).text()
  return parseCheckpoint(note.slice(0, note.indexOf('\n\n') + 1)).size
}

/** A leaf appended as a publish appends its version's, its checkpoint never signed. */
function unsignedLeaf (model: string, version: number): void {
  at.coordinator.log.append({ model, version, manifestCid: 'bagaaierafakefakefakefakefakefakefakefakefakefakefakefakefa', parent: null, time: new Date(0).toISOString() })
}

describe('a ledger ahead of its latest checkpoint', () => {
  it('is signed when the checkpoint is asked for', async () => {
    await at.coordinator.ingest('a', await denseModelFiles(8, [['x', 4, 1]]))
    const before = await servedSize()
    unsignedLeaf('a', 2)
    expect(at.coordinator.log.latest()?.checkpoint.size).toBe(before)
    expect(await servedSize()).toBe(before + 1)
  })

  it('is signed by a retried ingest of the same files, though the version is unchanged', async () => {
    const files = await denseModelFiles(8, [['y', 4, 2]])
    await at.coordinator.ingest('b', files)
    unsignedLeaf('b', 2)
    const size = at.coordinator.log.size()
    expect(at.coordinator.log.latest()?.checkpoint.size).toBe(size - 1)
    const again = await at.coordinator.ingest('b', files)
    expect(again.created).toBe(false)
    expect(at.coordinator.log.latest()?.checkpoint.size).toBe(size)
  })

  it('cannot happen through ingest: a version is signed in its own transaction, and one the log cannot sign is not recorded', async () => {
    await at.coordinator.ingest('c', await denseModelFiles(8, [['z', 4, 3]]))
    // Signed with the version, before any anchoring after it.
    expect(at.coordinator.log.latest()?.checkpoint.size).toBe(at.coordinator.log.size())
    // A checkpoint larger than the log (a truncated history) makes signing refuse.
    const db = new DatabaseSync(join(at.root, 'c', 'coordinator.sqlite'))
    try {
      db.prepare('INSERT INTO ledger_checkpoints (size, note, created_at) VALUES (?, ?, ?)').run(1_000_000, 'junk\n', new Date().toISOString())
      const size = at.coordinator.log.size()
      const err = await at.coordinator.ingest('d', await denseModelFiles(8, [['w', 4, 4]])).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(IntegrityError)
      expect((err as Error).message).toMatch(/checkpoint 1000000 was signed: history was truncated, refusing to sign/)
      // Neither the version nor its leaf: they went with the transaction.
      expect(at.coordinator.log.size()).toBe(size)
      expect((await fetch(`${at.url}/v1/models/d/versions`)).status).toBe(404)
    } finally {
      db.prepare('DELETE FROM ledger_checkpoints WHERE size = ?').run(1_000_000)
      db.close()
    }
  })
})
