/**
 * One log's trust under one data dir, shared by processes (a runtime and `blockfed verify`, two
 * runtimes of different models): advances are serialised between processes (process-mutex.ts),
 * so none saves a checkpoint older than one another saved after it read. Without that, a process
 * that read trusted checkpoint 5 and fetched 8 saved 8 over the 10 another had saved meanwhile,
 * and a fork of the log at 10 (consistent with 8, not with 10) was then taken (review, stop 34).
 * Real child processes over one data dir, a real Merkle log and signed checkpoints.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { advanceTrusted } from '../../../node-runtime/versions/ledger-trust.ts'
import { LedgerSecurityError } from '../../../shared/errors/errors.ts'
import { F, forkClient, forkTrust, H } from '../../helpers/ledger-fork.ts'

const CHILD = fileURLToPath(new URL('../../helpers/advance-trusted-child.ts', import.meta.url))

let dataDir: string
beforeEach(async () => { dataDir = await mkdtemp(join(tmpdir(), 'blockfed-trust-processes-')) })
afterEach(async () => { await rm(dataDir, { recursive: true, force: true }) })

/** Resolves when the child prints `line`; rejects if it exits first or after 30 s. */
async function said (child: ReturnType<typeof spawn>, line: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => { reject(new Error(`the child did not say "${line}" within 30 s (${out})`)) }, 30_000)
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      if (out.includes(`${line}\n`)) { clearTimeout(timer); resolve() }
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`the child exited (${code ?? 'signal'}) before "${line}": ${out}`)) })
  })
}

describe('advanceTrusted across processes', () => {
  it('waits for another process\'s advance of the same log, so the trusted checkpoint never goes back, and a fork is still refused', async () => {
    expect((await advanceTrusted(dataDir, forkTrust, forkClient(H, 5))).checkpoint.size).toBe(5)
    // The child has fetched checkpoint 8 and is proving it consistent with 5 when this process fetches 10.
    const gate = join(dataDir, 'gate')
    const child = spawn(process.execPath, [CHILD, dataDir, '8', gate], { stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = new Promise<number | null>(resolve => child.once('exit', resolve))
    try {
      await said(child, 'at gate')
      let done = false
      const advance = advanceTrusted(dataDir, forkTrust, forkClient(H, 10)).finally(() => { done = true })
      await new Promise(resolve => setTimeout(resolve, 500))
      expect(done).toBe(false)
      await writeFile(gate, '')
      const saved = said(child, 'saved')
      expect((await advance).checkpoint.size).toBe(10)
      await saved
    } finally {
      child.kill('SIGKILL')
    }
    expect(await exited).toBe(0)
    // What is kept is 10 (a stale 5 adds nothing), and F at 10 is not H at 10.
    expect((await advanceTrusted(dataDir, forkTrust, forkClient(H, 5))).checkpoint.size).toBe(10)
    await expect(advanceTrusted(dataDir, forkTrust, forkClient(F, 10))).rejects.toThrow(LedgerSecurityError)
  }, 60_000)
})
