/**
 * Trust on first use of a coordinator's key (node-runtime/trust.ts): the pin is created whole
 * or not at all, the first load to pin wins, and a later different key is refused.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { coordinatorKey } from '../../node-runtime/trust.ts'
import type { CoordinatorClient } from '../../shared/client/coordinator-client.ts'
import { toHex } from '../../shared/crypto/bytes.ts'
import { IntegrityError, TimeoutError } from '../../shared/errors/errors.ts'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'blockfed-trust-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

const presenting = (hex: string, delayMs = 5): CoordinatorClient => ({
  baseUrl: 'http://coordinator.test',
  info: async () => { await new Promise(resolve => setTimeout(resolve, delayMs)); return { publicKey: hex } }
}) as unknown as CoordinatorClient

describe('coordinatorKey, trust on first use', () => {
  it('two loads pinning at once both succeed, and leave one complete pin and no temporary file', async () => {
    const key = 'ab'.repeat(32)
    const got = await Promise.all([coordinatorKey(dir, presenting(key)), coordinatorKey(dir, presenting(key))])
    expect(got.map(toHex)).toEqual([key, key])
    const files = await readdir(join(dir, 'trust'))
    expect(files).toHaveLength(1)
    expect((await readFile(join(dir, 'trust', files[0] as string), 'utf8')).trim()).toBe(key)
  })

  it('of two loads that see different keys at first contact, the second is refused', async () => {
    const results = await Promise.allSettled([coordinatorKey(dir, presenting('ab'.repeat(32), 5)), coordinatorKey(dir, presenting('cd'.repeat(32), 50))])
    expect(results[0].status).toBe('fulfilled')
    expect(results[1].status).toBe('rejected')
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/now presents key cdcd.*but abab.* was pinned at first use/)
    await expect(coordinatorKey(dir, presenting('cd'.repeat(32)))).rejects.toThrow(IntegrityError)
  })

  it('an empty pin (torn by a crash of an earlier release) counts as no pin', async () => {
    await coordinatorKey(dir, presenting('ab'.repeat(32)))
    const [file] = await readdir(join(dir, 'trust'))
    await writeFile(join(dir, 'trust', file as string), '')
    expect(toHex(await coordinatorKey(dir, presenting('ab'.repeat(32))))).toBe('ab'.repeat(32))
    expect((await readFile(join(dir, 'trust', file as string), 'utf8')).trim()).toBe('ab'.repeat(32))
  })

  it('a coordinator that does not answer in time counts as offline: the pinned key is used', async () => {
    await coordinatorKey(dir, presenting('ab'.repeat(32)))
    const silent = { baseUrl: 'http://coordinator.test', info: async () => { throw new TimeoutError('GET /v1/coordinator: no answer within 1000 ms') } } as unknown as CoordinatorClient
    expect(toHex(await coordinatorKey(dir, silent))).toBe('ab'.repeat(32))
    await mkdir(join(dir, 'fresh'))
    await expect(coordinatorKey(join(dir, 'fresh'), silent)).rejects.toThrow(TimeoutError)
  })

  it('a pin edited or damaged by hand is refused, naming its file, online and offline', async () => {
    await coordinatorKey(dir, presenting('ab'.repeat(32)))
    const [file] = await readdir(join(dir, 'trust'))
    await writeFile(join(dir, 'trust', file as string), 'not a key\n')
    const silent = { baseUrl: 'http://coordinator.test', info: async () => { throw new TimeoutError('no answer') } } as unknown as CoordinatorClient
    // Before: offline, the hex parser's own error; online, "now presents key …, but not a key was pinned".
    for (const client of [silent, presenting('ab'.repeat(32))]) {
      const err = await coordinatorKey(dir, client).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(IntegrityError)
      expect((err as Error).message).toContain(`${join(dir, 'trust', file as string)} is not 64 lowercase hex digits`)
    }
  })
})
