/**
 * The decryptor's round log as one-sum-per-base index (coordinator/decryptor/rounds.ts), driven
 * directly: claims that race, a retry of a decided round beside a newer claim (found by review:
 * its failed claim restored the index over the newer one, letting a third sum in), and the
 * records of earlier versions it must read at start.
 */
import { afterEach, beforeEach, expect, it, vi } from 'vitest'
import { mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { roundLog, type RoundRecord } from '../../coordinator/decryptor/rounds.ts'
import { RepeatedClientError, RoundDecidedError } from '../../aggregation/paillier/errors.ts'

const [X, Y, Z, W] = ['a', 'b', 'c', 'd'].map(c => c.repeat(64)) as [string, string, string, string]
const record = (roundId: string, baseVersion: number, clients: string[]): RoundRecord => ({ roundId, keyId: 'k', model: 'mnist', baseVersion, length: 1, clients, claimedAt: '', requestSha256: roundId })

/**
 * Hooks on the file calls the round log makes, set by a test that needs one order of concurrent
 * claims (the order the file system answers in is not fixed: seen in CI, a later claim's check
 * came back before its elders'). Off unless set.
 */
const hooks: { access?: (path: string) => Promise<void>, open?: (path: string) => void, link?: (to: string) => Promise<void> } = {}
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>()
  const hooked = {
    ...fs,
    async access (path: Parameters<typeof fs.access>[0], mode?: number) { await hooks.access?.(String(path)); await fs.access(path, mode) },
    async open (path: Parameters<typeof fs.open>[0], flags?: Parameters<typeof fs.open>[1], mode?: Parameters<typeof fs.open>[2]) { hooks.open?.(String(path)); return await fs.open(path, flags, mode) },
    async link (from: Parameters<typeof fs.link>[0], to: Parameters<typeof fs.link>[1]) { await hooks.link?.(String(to)); await fs.link(from, to) }
  }
  return { ...hooked, default: hooked }
})

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'blockfed-round-log-')) })
afterEach(async () => {
  for (const k of Object.keys(hooks) as Array<keyof typeof hooks>) delete hooks[k]
  await rm(dir, { recursive: true, force: true })
})

/** A promise and its resolve. */
function gate (): { opened: Promise<void>, open: () => void } {
  let open = (): void => {}
  const opened = new Promise<void>(resolve => { open = resolve })
  return { opened, open }
}

it('keeps a newer claim made while a retry of a decided round fails, so a third sum from that base is refused', async () => {
  const log = await roundLog(dir)
  await log.claim(record('r1', 5, [X, Y, Z]))
  const [retry, newer] = await Promise.allSettled([log.claim(record('r1', 5, [X, Y, Z])), log.claim(record('r2', 6, [X, Y, Z, W]))])
  expect(retry).toMatchObject({ status: 'rejected', reason: expect.any(RoundDecidedError) })
  expect(newer.status).toBe('fulfilled')
  // r2 − r3 would be W's update.
  await expect(log.claim(record('r3', 6, [X, Y, Z]))).rejects.toThrow(/client a{64} is already in the sum of round r2 from mnist@6/)
})

it('undoes a failed claim only where its own reservation stands: a later base claimed meanwhile keeps its', async () => {
  const log = await roundLog(dir)
  // Twins of r1 both find no file and reserve; r2 (a later base) reserves over them; the twin
  // that loses the file race undoes its reservation, which must not bring back base 5. That order
  // is held by hooks: a twin reserves before it writes its temporary (`open`), and r2 before its own.
  const bothTwinsReserved = gate()
  const firstLinked = gate()
  const r2Reserved = gate()
  let twinsWriting = 0
  let links = 0
  hooks.open = path => {
    if (path.includes('r1.json.') && ++twinsWriting === 2) bothTwinsReserved.open()
    if (path.includes('r2.json.')) r2Reserved.open()
  }
  hooks.access = async path => { if (path.endsWith('r2.json')) await firstLinked.opened }
  hooks.link = async to => {
    if (!to.endsWith('r1.json')) return
    if (++links === 1) {
      await bothTwinsReserved.opened
      firstLinked.open()
    } else {
      await r2Reserved.opened
    }
  }
  const settled = await Promise.allSettled([log.claim(record('r1', 5, [X, Y])), log.claim(record('r1', 5, [X, Y])), log.claim(record('r2', 6, [X, Y, Z]))])
  expect(links).toBe(2)
  expect(settled.slice(0, 2).map(s => s.status).sort()).toEqual(['fulfilled', 'rejected'])
  expect(settled[2]?.status).toBe('fulfilled')
  await expect(log.claim(record('r3', 6, [X, Y]))).rejects.toThrow(/already in the sum of round r2 from mnist@6/)
})

it('lets one of two concurrent claims of one new round through, and the index still holds it', async () => {
  const log = await roundLog(dir)
  const twins = await Promise.allSettled([log.claim(record('r1', 2, [X, Y])), log.claim(record('r1', 2, [X, Y]))])
  expect(twins.map(t => t.status).sort()).toEqual(['fulfilled', 'rejected'])
  await expect(log.claim(record('r2', 2, [Y, Z]))).rejects.toThrow(RepeatedClientError)
  // Another model, or a later base, is a new sum.
  await expect(log.claim({ ...record('r3', 2, [X, Y]), model: 'other' })).resolves.toBeUndefined()
  await expect(log.claim(record('r4', 3, [X, Y]))).resolves.toBeUndefined()
})

it('reads the records of earlier versions at start: without a model (not indexed), without a request hash, or left empty by a crashed claim', async () => {
  const log0 = await roundLog(dir)
  await log0.claim(record('kept', 7, [X]))
  await writeFile(join(dir, 'rounds', 'v1.json'), JSON.stringify({ roundId: 'v1', keyId: 'k', length: 1, clients: [Y], claimedAt: '' }))
  await writeFile(join(dir, 'rounds', 'v1-empty.json'), '')
  const log = await roundLog(dir)
  await expect(log.claim(record('again', 7, [X]))).rejects.toThrow(/already in the sum of round kept from mnist@7/)
  await expect(log.claim(record('fresh', 1, [Y]))).resolves.toBeUndefined()
})

it('keeps a decrypted sum beside its record, so records stay small; a sum gone or altered is not answered again', async () => {
  const log = await roundLog(dir)
  const sum = new Uint8Array(4 << 20).map((_, i) => i * 7)
  await log.claim(record('big', 1, [X, Y]))
  await log.finish(record('big', 1, [X, Y]), { sum })
  const text = await readFile(join(dir, 'rounds', 'big.json'), 'utf8')
  expect(text.length).toBeLessThan(2000)
  expect(JSON.parse(text)).toMatchObject({ outcome: 'decrypted', sumSha256: expect.stringMatching(/^[0-9a-f]{64}$/) })
  expect((await log.read('big'))?.sum).toBe(Buffer.from(sum).toString('base64'))
  // A record of the version before kept its sum inline: it is still answered.
  await writeFile(join(dir, 'rounds', 'inline.json'), JSON.stringify({ ...record('inline', 1, [Z]), outcome: 'decrypted', sum: 'AAAA' }))
  expect((await (await roundLog(dir)).read('inline'))?.sum).toBe('AAAA')
  // One byte changed, or the file gone: the round stays decided, with no answer to give again.
  const altered = Uint8Array.from(sum)
  altered[12345] = (altered[12345] as number) ^ 1
  for (const damage of [async () => { await writeFile(join(dir, 'rounds', 'big.sum'), altered) }, async () => { await unlink(join(dir, 'rounds', 'big.sum')) }]) {
    await damage()
    const read = await log.read('big')
    expect(read?.outcome).toBe('decrypted')
    expect(read !== undefined && 'sum' in read).toBe(false)
  }
  await expect(log.claim(record('big', 1, [X, Y]))).rejects.toThrow(RoundDecidedError)
})

it('records a failed round with its reason and no sum', async () => {
  const log = await roundLog(dir)
  await log.claim(record('bad', 1, [X]))
  await log.finish(record('bad', 1, [X]), { reason: 'a slot overflowed' })
  const read = await log.read('bad')
  expect(read).toMatchObject({ outcome: 'failed', reason: 'a slot overflowed' })
  expect(read !== undefined && ('sum' in read || 'sumSha256' in read)).toBe(false)
  await expect(readFile(join(dir, 'rounds', 'bad.sum'))).rejects.toThrow(/ENOENT/)
})
