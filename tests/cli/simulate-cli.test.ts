/**
 * `blockfed simulate` and `blockfed demo` as separate processes: told to stop (SIGINT, SIGTERM, a
 * closed stdout) they clean up — runtimes, coordinator, the Paillier decryptor child, the temporary
 * data — and exit 128 + the signal's number; a decryptor child never outlives its parent; a run
 * that published nothing fails; arguments the demo cannot run with are refused up front.
 * Each process gets its own TMPDIR, so what it left behind is that folder's content.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

const CLI = fileURLToPath(new URL('../../coordinator/cli/main.ts', import.meta.url))
const linux = process.platform === 'linux'

let scratch: string
const started: Array<ChildProcessByStdio<null, Readable, Readable>> = []
beforeEach(async () => { scratch = await mkdtemp(join(tmpdir(), 'blockfed-clitest-')) })
afterEach(async () => {
  for (const child of started.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  // Whatever a failing run left running under this test's folder (a decryptor) goes too.
  if (linux) for (const pid of await processesMentioning(scratch)) process.kill(pid, 'SIGKILL')
  await rm(scratch, { recursive: true, force: true })
})

function blockfed (args: string[]): { child: ChildProcessByStdio<null, Readable, Readable>, stdout: () => string, stderr: () => string, exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }> } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: scratch } })
  started.push(child)
  let out = ''
  let err = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.once('close', (code, signal) => resolve({ code, signal })))
  return { child, stdout: () => out, stderr: () => err, exited }
}

/** Resolves once `text` shows on the child's stdout (the test's own timeout bounds the wait). */
async function untilStdout (child: ChildProcessByStdio<null, Readable, Readable>, pattern: RegExp): Promise<void> {
  let seen = ''
  await new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer): void => { seen += c.toString(); if (pattern.test(seen)) { child.stdout.off('data', onData); resolve() } }
    child.stdout.on('data', onData)
    child.once('close', () => reject(new Error(`exited before printing ${String(pattern)}; stdout: ${seen}`)))
  })
}

/** Live (not zombie) processes whose command line mentions `text` (Linux /proc). */
async function processesMentioning (text: string): Promise<number[]> {
  const found: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0').join(' ')
      if (cmdline.includes(text)) found.push(Number(entry))
    } catch { /* gone meanwhile */ }
  }
  return found
}

/** The run's decryptor child: its --data is under the run's TMPDIR (the run's own command line is not). */
const decryptors = async (): Promise<number[]> => await processesMentioning(`${scratch}/`)

describe('blockfed simulate: told to stop', () => {
  it.skipIf(!linux)('SIGINT mid-run: stops its Paillier decryptor child, deletes its temporary data (and the key), exits 130', async () => {
    const run = blockfed(['simulate', '--clients', '3', '--rounds', '20', '--hidden', '16', '--secure', 'paillier', '--no-centralised'])
    await untilStdout(run.child, /round +1 +published/)
    expect(await decryptors(), 'the decryptor child runs from the run\'s temporary folder').toHaveLength(1)
    run.child.kill('SIGINT')
    const { code } = await run.exited
    expect(code, run.stderr()).toBe(130)
    expect(run.stderr()).toMatch(/^blockfed: interrupted \(SIGINT\); stopped and cleaned up$/m)
    expect(await processesMentioning(scratch)).toEqual([])
    expect(await readdir(scratch)).toEqual([])
  }, 300_000) // a 2048-bit key takes from seconds to a minute or more on a busy machine

  it.skipIf(!linux)('SIGINT while the decryptor child is still starting: stops it too, exits 130', async () => {
    const run = blockfed(['simulate', '--clients', '3', '--rounds', '2', '--hidden', '16', '--secure', 'paillier', '--no-centralised'])
    while ((await decryptors()).length === 0) {
      if (run.child.exitCode !== null) throw new Error(`simulate exited before starting its decryptor: ${run.stderr()}`)
      await sleep(100)
    }
    run.child.kill('SIGINT')
    const { code } = await run.exited
    expect(code, run.stderr()).toBe(130)
    expect(await processesMentioning(scratch)).toEqual([])
    expect(await readdir(scratch)).toEqual([])
  })

  it('SIGTERM mid-run: cleans up and exits 143', async () => {
    const run = blockfed(['simulate', '--clients', '3', '--rounds', '20', '--hidden', '16', '--secure', 'masking', '--no-centralised'])
    await untilStdout(run.child, /round +1 +published/)
    run.child.kill('SIGTERM')
    const { code } = await run.exited
    expect(code, run.stderr()).toBe(143)
    expect(run.stderr()).toMatch(/terminated \(SIGTERM\); stopped and cleaned up/)
    expect(await readdir(scratch)).toEqual([])
  })

  it('a stdout closed under it (--json | head -1): cleans up and exits 141, no EPIPE stack trace', async () => {
    const run = blockfed(['simulate', '--clients', '3', '--rounds', '20', '--hidden', '16', '--secure', 'masking', '--no-centralised', '--json'])
    await untilStdout(run.child, /\n/)
    // What `head -1` does once it has its line.
    run.child.stdout.destroy()
    const { code } = await run.exited
    expect(code, run.stderr()).toBe(141)
    expect(run.stderr()).toMatch(/standard output closed \(EPIPE\); stopped and cleaned up/)
    expect(run.stderr()).not.toMatch(/^\s+at /m)
    expect(await readdir(scratch)).toEqual([])
  })

  it.skipIf(!linux)('a decryptor child exits with its parent, also when the parent is killed outright (SIGKILL: no cleanup can run)', async () => {
    const run = blockfed(['simulate', '--clients', '3', '--rounds', '20', '--hidden', '16', '--secure', 'paillier', '--no-centralised'])
    let decryptor: number | undefined
    while (decryptor === undefined) {
      decryptor = (await decryptors())[0]
      if (run.child.exitCode !== null) throw new Error(`simulate exited before starting its decryptor: ${run.stderr()}`)
      if (decryptor === undefined) await sleep(100)
    }
    run.child.kill('SIGKILL')
    await run.exited
    // Its stdin pipe ends with the parent; it stops at once, or once its key is made. Polled: the
    // test's timeout is the deadline.
    while ((await processesMentioning(scratch)).includes(decryptor)) await sleep(100)
  })
})

describe('blockfed simulate: outcomes', () => {
  it('exits 1 and prints "gap -" when no round published', async () => {
    // --seed 13 drops 3 of the 6 clients after their upload in round 1 (simulate-run.test): more
    // than the masking graph absorbs, so the round fails.
    const run = blockfed(['simulate', '--clients', '6', '--rounds', '1', '--hidden', '16', '--secure', 'masking', '--dropout', '0.3', '--seed', '13'])
    const { code } = await run.exited
    expect(run.stdout()).toMatch(/round +1 +failed .* clients 6\/6 \(3 dropped after upload\) /)
    expect(run.stdout()).toMatch(/^final accuracy -/m)
    expect(run.stdout()).toMatch(/^centralised .* gap -$/m)
    expect(run.stderr()).toMatch(/no round published a version/)
    expect(code).toBe(1)
    expect(await readdir(scratch)).toEqual([])
  })

  it('says on stderr how many clients got data when the partition left some out; stdout stays JSON', async () => {
    const run = blockfed(['simulate', '--clients', '3', '--rounds', '1', '--hidden', '16', '--secure', 'none', '--partition', 'dirichlet:0.01', '--seed', '24', '--no-centralised', '--json'])
    const { code } = await run.exited
    expect(code, run.stderr()).toBe(0)
    expect(run.stderr()).toMatch(/^blockfed: 2 of 3 clients got data \(--partition dirichlet:0\.01, --seed 24\)/m)
    const lines = run.stdout().trim().split('\n').map(l => JSON.parse(l) as { type: string, clients?: number })
    expect(lines.at(-1)).toMatchObject({ type: 'summary', clients: 2, publishedRounds: 1 })
  })

  it('refuses a partition that leaves one client with data, naming the partition and the seed', async () => {
    const run = blockfed(['simulate', '--clients', '2', '--secure', 'none', '--partition', 'dirichlet:0.01', '--seed', '65', '--rounds', '1'])
    const { code } = await run.exited
    expect(code).toBe(1)
    expect(run.stderr()).toMatch(/--partition dirichlet:0\.01 with --seed 65 gives data to 1 of 2 clients/)
    expect(await readdir(scratch)).toEqual([])
  })
})

describe('blockfed demo', () => {
  it('refuses fewer than 5 runtimes with the reason (2 of 10 classes each), before starting anything', async () => {
    for (const n of ['2', '3', '4']) {
      const run = blockfed(['demo', '--runtimes', n])
      const { code } = await run.exited
      expect(code, n).toBe(1)
      expect(run.stderr(), n).toMatch(new RegExp(`at least 5: the demo gives each runtime 2 of the 10 digit classes \\(classes:2\\), so ${n} runtimes cannot hold them all`))
    }
    const run = blockfed(['demo', '--runtimes', '65'])
    await run.exited
    expect(run.stderr()).toMatch(/expected an integer 5-64/)
    const mode = blockfed(['demo', '--secure', 'maskng'])
    expect((await mode.exited).code).toBe(1)
    expect(mode.stderr()).toMatch(/option '--secure <mode>' argument 'maskng' is invalid\. expected none, masking or paillier/)
  })

  it('refuses round flags beside --load-only (they were dropped unsaid), before starting anything', async () => {
    const run = blockfed(['demo', '--load-only', '--rounds', '5', '--secure', 'none'])
    expect((await run.exited).code).toBe(1)
    expect(run.stderr()).toMatch(/--load-only runs no rounds; --rounds, --secure cannot be given with it/)
    expect(run.stdout()).toBe('')
    expect(await readdir(scratch)).toEqual([])
  })

  it('--load-only, SIGINT while the model trains: stops training at once, cleans up, exits 130', async () => {
    const run = blockfed(['demo', '--load-only'])
    // Printed just before the 5-epoch training starts (≈ 9 s here, which used to run to its end).
    await untilStdout(run.child, /^coordinator /m)
    run.child.kill('SIGINT')
    const { code } = await run.exited
    expect(code, run.stderr()).toBe(130)
    expect(run.stdout()).not.toMatch(/^trained /m)
    expect(await readdir(scratch)).toEqual([])
  })
})
