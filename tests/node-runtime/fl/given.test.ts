/**
 * The runtime's record of what it has put into secure sums (node-runtime/fl/given.ts): which
 * models' NaiveMix class statistics, and the newest base version of each model it uploaded an
 * update from. Both survive a restart, and an unreadable record stops the runtime from giving
 * anything rather than letting it forget. One process holds a state dir at a time: participants
 * of one process share it, a second process is refused (each would keep its own copy of the
 * records, and one's would erase the other's).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { statisticsGiven, updatesGiven, STATISTICS_GIVEN_FILE, UPDATES_GIVEN_FILE } from '../../../node-runtime/fl/given.ts'
import { createParticipant } from '../../../node-runtime/fl/participant.ts'
import { generateSigningKey } from '../../../shared/crypto/sign.ts'
import { ConflictError, IntegrityError } from '../../../shared/errors/errors.ts'
import { afterUpload, newestGiven, repeatsBase } from '../../../shared/rounds/one-update.ts'

let dir: string
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'blockfed-given-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

describe('statisticsGiven', () => {
  it('remembers a model and row size across instances (a restart) when given a folder, and per instance without one', async () => {
    const first = statisticsGiven(dir)
    expect(await first.has('mnist', 784)).toBe(false)
    await first.record('mnist', 784)
    first.release()
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
  it('keeps the newest base version per model, and whether an upload from it was secure, across a restart; never moves back', async () => {
    const own = await mkdtemp(join(dir, 'updates-'))
    const first = updatesGiven(own)
    expect(await first.newest('mnist')).toBeUndefined()
    await first.record('mnist', { base: 3, secure: false })
    await first.record('mnist', { base: 1, secure: true })
    await first.record('mnist', { base: 3, secure: true })
    await first.record('mnist', { base: 3, secure: false })
    await first.record('other', { base: 0, secure: false })
    expect(await first.newest('mnist')).toEqual({ base: 3, secure: true })
    first.release()
    const restarted = updatesGiven(own)
    expect(await restarted.newest('mnist')).toEqual({ base: 3, secure: true })
    expect(await restarted.newest('other')).toEqual({ base: 0, secure: false })
    expect(await restarted.newest('third')).toBeUndefined()
    // Pairs, not an object: a model may be named __proto__.
    await restarted.record('__proto__', { base: 2, secure: true })
    expect(await updatesGiven(own).newest('__proto__')).toEqual({ base: 2, secure: true })
    expect(JSON.parse(await readFile(join(own, UPDATES_GIVEN_FILE), 'utf8'))).toEqual([['mnist', 3, true], ['other', 0, false], ['__proto__', 2, true]])
    const memory = updatesGiven()
    await memory.record('mnist', { base: 7, secure: true })
    expect(await memory.newest('mnist')).toEqual({ base: 7, secure: true })
    expect(await updatesGiven().newest('mnist')).toBeUndefined()
  })

  it('participants of one process sharing a folder share the record: one model\'s upload kept beside another\'s, in the file too', async () => {
    const shared = await mkdtemp(join(dir, 'shared-'))
    const [a, b] = [updatesGiven(shared), updatesGiven(shared)]
    await Promise.all([a.record('model-a', { base: 1, secure: true }), b.record('model-b', { base: 1, secure: false })])
    await b.record('model-b', { base: 2, secure: false })
    expect(await a.newest('model-b')).toEqual({ base: 2, secure: false })
    expect(JSON.parse(await readFile(join(shared, UPDATES_GIVEN_FILE), 'utf8'))).toEqual([['model-a', 1, true], ['model-b', 2, false]])
    // Once every user let go, the next one reads the file again (here changed from outside).
    a.release()
    b.release()
    await writeFile(join(shared, UPDATES_GIVEN_FILE), JSON.stringify([['model-a', 5, true]]))
    expect(await updatesGiven(shared).newest('model-a')).toEqual({ base: 5, secure: true })
  })

  it('refuses to answer while its file is unreadable, and names the file', async () => {
    for (const text of ['{not json', '{"mnist":1}', '[["mnist",-1,true]]', '[["mnist",1.5,true]]', '[["",1,true]]', '[["mnist",1]]']) {
      const bad = await mkdtemp(join(dir, 'bad-'))
      await writeFile(join(bad, UPDATES_GIVEN_FILE), text)
      await expect(updatesGiven(bad).newest('mnist')).rejects.toThrow(/updates-given\.json \(no update is given while it is unreadable\)/)
      await expect(updatesGiven(bad).newest('mnist')).rejects.toThrow(IntegrityError)
    }
  })
})

describe('one update per base version (shared/rounds/one-update.ts)', () => {
  const plain = (base: number): { base: number, secure: boolean } => ({ base, secure: false })
  const secure = (base: number): { base: number, secure: boolean } => ({ base, secure: true })
  it('lets an upload go only where it cannot be subtracted from a secure sum', () => {
    // [given, offer, repeats]
    const cases: Array<[ReturnType<typeof plain> | undefined, ReturnType<typeof plain>, boolean]> = [
      [undefined, secure(1), false], [undefined, plain(1), false],
      [secure(1), secure(2), false], [plain(1), secure(2), false],
      // The same base: two secure sums, a secure sum and a plain upload either way round.
      [secure(1), secure(1), true], [secure(1), plain(1), true], [plain(1), secure(1), true],
      // Two plain uploads show the coordinator nothing it had not seen.
      [plain(1), plain(1), false],
      // Never backwards.
      [plain(2), plain(1), true], [secure(2), secure(1), true]
    ]
    for (const [given, offer, repeats] of cases) expect(repeatsBase(given, offer), JSON.stringify([given, offer])).toBe(repeats)
    expect(afterUpload(plain(2), secure(1))).toEqual(plain(2))
    expect(afterUpload(plain(2), secure(2))).toEqual(secure(2))
    expect(afterUpload(secure(2), plain(2))).toEqual(secure(2))
    expect(afterUpload(secure(2), plain(3))).toEqual(plain(3))
  })

  it('merges the coordinator\'s record with the runtime\'s own word: the newer base, secure if either says so', () => {
    expect(newestGiven(undefined, undefined)).toBeUndefined()
    expect(newestGiven(plain(2), undefined)).toEqual(plain(2))
    expect(newestGiven(undefined, secure(1))).toEqual(secure(1))
    expect(newestGiven(plain(2), secure(1))).toEqual(plain(2))
    expect(newestGiven(plain(2), secure(2))).toEqual(secure(2))
    expect(newestGiven(secure(2), plain(3))).toEqual(plain(3))
  })
})

describe('holdStateDir', () => {
  const HOLDER = fileURLToPath(new URL('../../helpers/hold-state-dir.ts', import.meta.url))
  const participant = (stateDir: string): ReturnType<typeof createParticipant> => createParticipant({
    // Nothing listens there: the refusal must come before any connection is tried.
    url: 'http://127.0.0.1:9',
    token: 't',
    identity: generateSigningKey(),
    models: {},
    fetchVersion: async () => { throw new Error('no round is expected here') },
    stateDir,
    reconnectMs: 60_000
  })

  it('is shared by the participants of one process, refused to a second process while one holds it, and free once the holder is killed', async () => {
    const state = join(dir, 'held', 'state') // created on first hold
    const a = participant(state)
    const b = participant(state)
    await a.start()
    await b.start()
    await a.stop()
    // b still holds it for this process: another process is refused.
    const child = spawn(process.execPath, [HOLDER, state], { stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<{ code: number | null, stderr: string }>(resolve => {
      let stderr = ''
      child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
      child.once('exit', code => { resolve({ code, stderr }) })
    })
    const { code, stderr } = await exited
    expect(code).not.toBe(0)
    expect(stderr).toMatch(new RegExp(`state dir ${state} is in use by another participant process \\(pid ${process.pid} on .+\\): one state dir serves one process; stop the other, or give this one its own stateDir`))
    await b.stop()

    // Now the child takes it, and a participant here is refused at start, naming the child.
    const holder = spawn(process.execPath, [HOLDER, state], { stdio: ['ignore', 'pipe', 'pipe'] })
    const gone = new Promise(resolve => holder.once('exit', resolve))
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error('the holder did not take the dir within 30 s')) }, 30_000)
        holder.stdout.on('data', (c: Buffer) => { if (c.toString().includes('held')) { clearTimeout(timer); resolve() } })
      })
      const c = participant(state)
      await expect(c.start()).rejects.toThrow(ConflictError)
      await expect(c.start()).rejects.toThrow(new RegExp(`in use by another participant process \\(pid ${holder.pid ?? 0} on `))
      await c.stop()
    } finally {
      holder.kill('SIGKILL')
      await gone
    }
    // Killed without any clean-up: the dir is free at once, and the records still read.
    const d = participant(state)
    await d.start()
    await d.stop()
    const updates = updatesGiven(state)
    expect(await updates.newest('mnist')).toBeUndefined()
    updates.release()
  }, 60_000)
})
