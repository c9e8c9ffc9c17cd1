/**
 * One coordinator per data dir (node-runtime/dir-lock.ts): a second one, in this
 * process or another, is refused before it touches anything; a stopped or killed holder frees
 * the dir at once (the OS drops the lock with the process, so nothing stale is left).
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { createDecryptor } from '../../coordinator/decryptor/decryptor.ts'
import { createWitness } from '../../node-runtime/witness/server.ts'
import { ConflictError } from '../../shared/errors/errors.ts'

const CLI = fileURLToPath(new URL('../../coordinator/cli/main.ts', import.meta.url))

let root: string
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'blockfed-dir-lock-')) })
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

it('refuses a second coordinator on a data dir in use by this process, naming the holder, until the first stops', async () => {
  const dir = join(root, 'in-process')
  const first = await createCoordinator({ dataDir: dir, port: 0 })
  const files = (await readdir(dir)).sort()
  const second = createCoordinator({ dataDir: dir, port: 0 })
  await expect(second).rejects.toThrow(ConflictError)
  await expect(second).rejects.toThrow(new RegExp(`data dir ${dir} is in use by another coordinator \\(pid ${process.pid} on .+\\): one data dir serves one coordinator`))
  // The refused one changed nothing.
  expect((await readdir(dir)).sort()).toEqual(files)
  await first.stop()
  const after = await createCoordinator({ dataDir: dir, port: 0 })
  await after.start()
  await after.stop()
})

it('refuses one while a coordinator process holds the dir, and takes it once that process is killed', async () => {
  const dir = join(root, 'other-process')
  const child = spawn(process.execPath, [CLI, 'coordinator', '--data', dir, '--port', '0', '--no-p2p'], { stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise(resolve => child.once('exit', resolve))
  try {
    await new Promise<void>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => { reject(new Error(`the coordinator did not start: ${out}`)) }, 30_000)
      child.stdout.on('data', (c: Buffer) => { out += c.toString(); if (/listening on/.test(out)) { clearTimeout(timer); resolve() } })
    })
    await expect(createCoordinator({ dataDir: dir, port: 0 })).rejects.toThrow(new RegExp(`in use by another coordinator \\(pid ${child.pid ?? 0} on `))
  } finally {
    child.kill('SIGKILL')
    await exited
  }
  // Killed without any clean-up: the dir is free at once.
  const next = await createCoordinator({ dataDir: dir, port: 0 })
  await next.stop()
}, 60_000)

it('refuses a second decryptor on a data dir in use, whose index of summed clients it would not see', async () => {
  const dir = join(root, 'decryptor')
  const first = createDecryptor({ dataDir: dir, port: 0, keyBits: 1024 })
  await first.start()
  try {
    await expect(createDecryptor({ dataDir: dir, port: 0, keyBits: 1024 }).start()).rejects.toThrow(new RegExp(`data dir ${dir} is in use by another decryptor \\(pid ${process.pid} on .+\\): one data dir serves one decryptor`))
  } finally {
    await first.stop()
  }
  const again = createDecryptor({ dataDir: dir, port: 0, keyBits: 1024 })
  await again.start()
  await again.stop()
}, 60_000)

it('gives the lock back when it cannot write its holder file, so the next try says why again instead of blaming itself', async () => {
  const dir = join(root, 'unwritable-holder')
  await mkdir(join(dir, 'coordinator.pid'), { recursive: true }) // a directory where the pid file goes
  for (let i = 0; i < 2; i++) {
    const tried = createCoordinator({ dataDir: dir, port: 0 })
    await expect(tried).rejects.toThrow(/the coordinator cannot write there \(EISDIR.*, at coordinator\.pid\)/)
    await expect(tried).rejects.not.toThrow(ConflictError)
  }
})

it('says which data dir a process cannot write its lock in, instead of SQLite\'s bare words', async () => {
  const dir = join(root, 'lock-is-a-folder')
  await mkdir(join(dir, 'decryptor.lock'), { recursive: true }) // the lock database cannot be opened
  expect(() => createDecryptor({ dataDir: dir, port: 0 })).not.toThrow()
  await expect(createDecryptor({ dataDir: dir, port: 0 }).start()).rejects.toThrow(new RegExp(`^data dir ${dir}: the decryptor cannot write there \\(.+, at decryptor\\.lock\\); it needs a data dir it may create files in$`))
  // A lock file that is not SQLite's is said to be that, not an unwritable dir.
  const garbled = join(root, 'lock-is-garbage')
  await mkdir(garbled, { recursive: true })
  await writeFile(join(garbled, 'coordinator.lock'), 'x'.repeat(4096))
  await expect(createCoordinator({ dataDir: garbled, port: 0 })).rejects.toThrow(`data dir ${garbled}: coordinator.lock is not a lock database (file is not a database, at coordinator.lock); remove it, nothing is kept in it`)
})

it('keeps a coordinator and a decryptor apart: neither starts on a data dir holding the other\'s files (review 49b)', async () => {
  // The decryptor's secret key beside the coordinator's keys would let whoever holds that dir decrypt one client's update.
  const shared = join(root, 'coordinator-then-decryptor')
  const coordinator = await createCoordinator({ dataDir: shared, port: 0 })
  await coordinator.stop()
  await expect(createDecryptor({ dataDir: shared, port: 0, keyBits: 1024 }).start()).rejects.toThrow(`data dir ${shared} is a coordinator's (coordinator.sqlite): give the decryptor a data dir of its own, which the coordinator's user cannot read`)
  // Refused before it wrote anything there.
  expect(existsSync(join(shared, 'paillier.key.json')) || existsSync(join(shared, 'decryptor.lock'))).toBe(false)
  const other = join(root, 'decryptor-then-coordinator')
  const decryptor = createDecryptor({ dataDir: other, port: 0, keyBits: 1024 })
  await decryptor.start()
  await decryptor.stop()
  await expect(createCoordinator({ dataDir: other, port: 0 })).rejects.toThrow(`data dir ${other} holds a Paillier decryptor's key (paillier.key.json): move it and the decryptor's rounds/ to a data dir of the decryptor's own, which the coordinator's user cannot read`)
  expect(existsSync(join(other, 'coordinator.sqlite')) || existsSync(join(other, 'coordinator.lock'))).toBe(false)
}, 60_000)

it('lets only one of a coordinator and a decryptor started at the same moment on one new data dir start (review 49d)', async () => {
  const dir = join(root, 'started-at-once')
  // Not awaited one by one: both check for the other's files before either has written any.
  const decryptor = createDecryptor({ dataDir: dir, port: 0, keyBits: 1024 })
  const [coordinator, started] = await Promise.allSettled([createCoordinator({ dataDir: dir, port: 0 }), decryptor.start()])
  try {
    const outcomes = [coordinator.status, started.status]
    expect(outcomes.filter(s => s === 'fulfilled')).toHaveLength(1)
    const [winner, loser] = coordinator.status === 'fulfilled' ? ['coordinator', 'decryptor'] : ['decryptor', 'coordinator']
    const refusal = (coordinator.status === 'rejected' ? coordinator.reason : (started as PromiseRejectedResult).reason) as Error
    expect(refusal).toBeInstanceOf(ConflictError)
    expect(refusal.message).toMatch(new RegExp(`^data dir ${dir} is a ${winner}'s \\(its role file says so\\): give the ${loser} a data dir of its own.* \\(if the ${winner}'s files have all been moved out of it, remove its role file\\)$`))
    expect((await readFile(join(dir, 'role'), 'utf8')).trim()).toBe(winner)
    // The refused one wrote nothing of its own there: no lock, no database, no key, no temporary.
    const names = await readdir(dir)
    expect(names.filter(n => n.startsWith(loser) || n.endsWith('.tmp') || (loser === 'decryptor' && n.startsWith('paillier')))).toEqual([])
  } finally {
    if (coordinator.status === 'fulfilled') await coordinator.value.stop()
    if (started.status === 'fulfilled') await decryptor.stop()
  }
}, 60_000)

it('claims a data dir from before the role file at its next start, and names a role file it cannot read as one', async () => {
  const dir = join(root, 'claimed-later')
  const first = await createCoordinator({ dataDir: dir, port: 0 })
  await first.stop()
  await rm(join(dir, 'role'))
  const again = await createCoordinator({ dataDir: dir, port: 0 })
  await again.stop()
  expect(await readFile(join(dir, 'role'), 'utf8')).toBe('coordinator\n')
  await writeFile(join(dir, 'role'), 'runtime\n')
  await expect(createCoordinator({ dataDir: dir, port: 0 })).rejects.toThrow(`data dir ${dir}: its role file holds "runtime", not coordinator, decryptor, witness; blockfed writes it at a server's first start there: give the coordinator a data dir of its own, or put back the word this dir's server wrote`)
  // A role that is a folder: said as a role file that cannot be read, not Node's bare EISDIR.
  const folder = join(root, 'role-is-a-folder')
  await mkdir(join(folder, 'role'), { recursive: true })
  await expect(createDecryptor({ dataDir: folder, port: 0, keyBits: 1024 }).start()).rejects.toThrow(new RegExp(`^data dir ${folder}: its role file, which says which server the dir is for, cannot be read \\(EISDIR.*\\); give the decryptor a data dir of its own, which the coordinator's user cannot read$`))
  expect(await readdir(folder)).toEqual(['role'])
}, 60_000)

it('refuses a dir that is nobody\'s yet but holds files (a mistyped --data), and narrows an empty one made by hand to 0700 (review 54b)', async () => {
  // A model folder given as a coordinator's data dir: taken over, it started a new identity beside the model's files.
  const model = join(root, 'a-model-folder')
  await mkdir(model, { recursive: true })
  await writeFile(join(model, 'model.json'), '{}')
  await writeFile(join(model, 'weights.bin'), 'w')
  await expect(createCoordinator({ dataDir: model, port: 0 })).rejects.toThrow(`data dir ${model} holds files that are not a coordinator's (model.json, weights.bin): a coordinator starts on a new or empty dir, or on its own; check --data, or give the coordinator a data dir of its own`)
  expect((await readdir(model)).sort()).toEqual(['model.json', 'weights.bin'])
  // A runtime's home (its kept keys) given to a decryptor.
  const home = join(root, 'a-runtime-home')
  await mkdir(join(home, 'digits'), { recursive: true })
  await writeFile(join(home, 'digits', 'keys.json'), '{}')
  await mkdir(join(home, 'keys'), { recursive: true })
  await writeFile(join(home, 'keys', 'client.ed25519'), 'k')
  await expect(createDecryptor({ dataDir: home, port: 0, keyBits: 1024 }).start()).rejects.toThrow(`data dir ${home} holds files that are not a decryptor's (digits, keys)`)
  // Nor a coordinator: a runtime's keys/ is not a coordinator's own.
  await expect(createCoordinator({ dataDir: home, port: 0 })).rejects.toThrow(`data dir ${home} holds files that are not a coordinator's (digits, keys)`)
  expect((await readdir(home)).sort()).toEqual(['digits', 'keys'])
  // A coordinator's dir given to a witness: claimed as the coordinator's, refused as such.
  const coordinatorDir = join(root, 'watched-log')
  await (await createCoordinator({ dataDir: coordinatorDir, port: 0 })).stop()
  await expect(createWitness({ dataDir: coordinatorDir, name: 'witness.example/w1', logs: [] })).rejects.toThrow(`data dir ${coordinatorDir} is a coordinator's (its role file says so): give the witness a data dir of its own`)
  expect(existsSync(join(coordinatorDir, 'witness.ed25519')) || existsSync(join(coordinatorDir, 'witness.sqlite'))).toBe(false)
  // An empty dir made by hand (0755), with only hidden files and a volume's lost+found: taken, and narrowed.
  const premade = join(root, 'premade')
  await mkdir(join(premade, 'lost+found'), { recursive: true, mode: 0o755 })
  await chmod(premade, 0o755)
  await writeFile(join(premade, '.keep'), '')
  await (await createCoordinator({ dataDir: premade, port: 0 })).stop()
  expect((await stat(premade)).mode & 0o777).toBe(0o700)
  // A dir from before the claim keeps its mode: its owner may have chosen it.
  await rm(join(premade, 'role'))
  await chmod(premade, 0o750)
  await (await createCoordinator({ dataDir: premade, port: 0 })).stop()
  expect((await stat(premade)).mode & 0o777).toBe(0o750)
}, 60_000)
