/**
 * The lock between processes (node-runtime/process-mutex.ts): a second holder waits, and gives up
 * at its deadline with a TimeoutError naming what it guards; the lock is free once the first
 * task ends, or fails. Two SQLite connections in this process conflict as two processes do
 * (ledger-trust-processes.test shows it across real processes).
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { withProcessMutex } from '../../node-runtime/process-mutex.ts'
import { TimeoutError } from '../../shared/errors/errors.ts'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'blockfed-mutex-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

describe('withProcessMutex', () => {
  it('makes a second holder wait until the first is done, or time out naming what it guards', async () => {
    const path = join(dir, 'x.lock')
    const order: string[] = []
    let release = (): void => {}
    const held = new Promise<void>(resolve => { release = resolve })
    let entered = (): void => {}
    const inside = new Promise<void>(resolve => { entered = resolve })
    const first = withProcessMutex(path, async () => { entered(); order.push('first in'); await held; order.push('first out') }, { waitMs: 10_000, what: 'log x' })
    await inside
    await expect(withProcessMutex(path, async () => 'never', { waitMs: 100, what: 'log x' })).rejects.toThrow(TimeoutError)
    await expect(withProcessMutex(path, async () => 'never', { waitMs: 100, what: 'log x' })).rejects.toThrow(/^log x: another process on this machine held it for more than 100 ms/)
    const second = withProcessMutex(path, async () => { order.push('second'); return 42 }, { waitMs: 10_000, what: 'log x' })
    release()
    await first
    expect(await second).toBe(42)
    expect(order).toEqual(['first in', 'first out', 'second'])
  })

  it('is free again after a task that throws', async () => {
    const path = join(dir, 'y.lock')
    await expect(withProcessMutex(path, async () => { throw new Error('task failed') }, { waitMs: 100, what: 'y' })).rejects.toThrow('task failed')
    expect(await withProcessMutex(path, async () => 'ok', { waitMs: 100, what: 'y' })).toBe('ok')
  })

  it('stops waiting when its signal is aborted', async () => {
    const path = join(dir, 'z.lock')
    let release = (): void => {}
    const held = new Promise<void>(resolve => { release = resolve })
    let entered = (): void => {}
    const inside = new Promise<void>(resolve => { entered = resolve })
    const first = withProcessMutex(path, async () => { entered(); await held }, { waitMs: 10_000, what: 'z' })
    await inside
    const controller = new AbortController()
    const waiting = withProcessMutex(path, async () => 'never', { waitMs: 10_000, what: 'z', signal: controller.signal })
    controller.abort(new Error('caller gave up'))
    await expect(waiting).rejects.toThrow('caller gave up')
    release()
    await first
  })
})
