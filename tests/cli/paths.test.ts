/**
 * Folder options checked before any work (coordinator/cli/paths.ts): one this user cannot write
 * is refused naming the option, where a pull met a bare EACCES after its whole download (review
 * 38c). The check runs as an unprivileged user (setpriv), since root writes anywhere.
 */
import { afterAll, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { chmod, lstat, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { existsSync } from 'node:fs'
import { firstStartCleaned, folderOption } from '../../coordinator/cli/paths.ts'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'

const run = promisify(execFile)
const root = await mkdtemp(join(tmpdir(), 'blockfed-paths-'))
afterAll(async () => { await rm(root, { recursive: true, force: true }) })
const paths = fileURLToPath(new URL('../../coordinator/cli/paths.ts', import.meta.url))

/** folderOption('--out', path) in a process of uid/gid 65534: its error message, or 'ok'. */
async function asNobody (path: string): Promise<string> {
  const script = `import(${JSON.stringify(paths)}).then(m => m.folderOption('--out', ${JSON.stringify(path)})).then(() => console.log('ok'), e => console.log(e.name + ': ' + e.message))`
  const { stdout } = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--experimental-strip-types', '-e', script])
  return stdout.trim()
}

it('refuses a folder this user cannot write, or one to be made inside it, naming the option', async () => {
  const closed = join(root, 'closed')
  await mkdir(closed)
  await chmod(root, 0o755)
  await chmod(closed, 0o755)
  if (process.getuid?.() === 0) {
    expect(await asNobody(closed)).toBe(`InvalidInputError: --out ${closed}: it cannot be written by this user (EACCES); give a folder it may write`)
    expect(await asNobody(join(closed, 'new', 'deeper'))).toBe(`InvalidInputError: --out ${join(closed, 'new', 'deeper')}: ${closed} cannot be written by this user (EACCES); give a folder it may write`)
    await chmod(closed, 0o777)
    expect(await asNobody(join(closed, 'new'))).toBe('ok')
  } else {
    await chmod(closed, 0o555)
    await expect(folderOption('--out', closed)).rejects.toThrow(/cannot be written by this user \(EACCES\)/)
  }
  await expect(folderOption('--out', join(root, 'writable', 'new'))).resolves.toBeUndefined()
})

it('a failed first start removes the data dir it made, but not one another start holds (review 46d)', async () => {
  // With the parents it made (review 46d: a/b stayed).
  const failed = join(root, 'failed-first', 'a', 'b')
  await expect(firstStartCleaned(failed, async () => { expect(existsSync(failed)).toBe(true); throw new InvalidInputError('--port 1: taken') })).rejects.toThrow('--port 1: taken')
  expect(existsSync(join(root, 'failed-first'))).toBe(false)
  // A link to a folder not there yet (a disk not mounted) is the operator's: neither followed to make it nor removed.
  const link = join(root, 'linked-data')
  await symlink(join(root, 'unmounted', 'blockfed'), link)
  // (Made through the link, the start would run on the root disk under the mount point.)
  let seen: boolean | undefined
  await expect(firstStartCleaned(link, async () => { seen = existsSync(join(root, 'unmounted')); throw new Error('ENOENT: no such file or directory') })).rejects.toThrow('ENOENT')
  expect(seen).toBe(false)
  expect((await lstat(link)).isSymbolicLink()).toBe(true)
  expect(existsSync(join(root, 'unmounted'))).toBe(false)
  // Two coordinators started at once on one new dir: the one that lost the dir's lock (here the
  // second, told the dir is new before the first made it) leaves it to the other.
  const shared = join(root, 'double-start')
  let firstRunning: () => void = () => {}
  const running = new Promise<void>(resolve => { firstRunning = resolve })
  const second = firstStartCleaned(shared, async () => {
    await running
    return await createCoordinator({ dataDir: shared, port: 0, logger: false })
  })
  const first = await createCoordinator({ dataDir: shared, port: 0, logger: false })
  try {
    await first.start()
    firstRunning()
    await expect(second).rejects.toMatchObject({ name: 'ConflictError' })
    expect(existsSync(join(shared, 'coordinator.sqlite'))).toBe(true)
  } finally {
    await first.stop()
  }
})
