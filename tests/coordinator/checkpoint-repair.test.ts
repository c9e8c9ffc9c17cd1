/**
 * A version recorded whose checkpoint failed to commit (review 46f: a full disk refused the
 * checkpoint's COMMIT after the version's): the ledger is one entry ahead of its latest signed
 * checkpoint. `/ledger/checkpoint` kept serving the old one, and a retried ingest of the same
 * files was "unchanged" and anchored nothing, so every runtime refused the latest version until
 * the next publish or a restart. Here the state is made by appending a leaf the way a publish
 * does, with no checkpoint after it.
 */
import { describe, expect, it } from 'vitest'
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
})
