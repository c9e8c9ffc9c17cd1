/**
 * What the trust-on-first-use pin of a coordinator's key (node-runtime/trust.ts) covers, beyond
 * trust.test: a pin is per coordinator URL, a key in the config replaces it, and only an
 * unreachable coordinator lets the pin stand in for the key it presents. Review 39b: every test
 * passed with one pin shared by all coordinators (a second coordinator on the same data dir was
 * refused as a "new key"), and with any failure of the key request (a refused token, a malformed
 * answer) taken as "offline".
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { coordinatorKey } from '../../node-runtime/trust.ts'
import type { CoordinatorClient } from '../../shared/client/coordinator-client.ts'
import { toHex } from '../../shared/crypto/bytes.ts'
import { AccessDeniedError, IntegrityError } from '../../shared/errors/errors.ts'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'blockfed-trust-scope-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

const AB = 'ab'.repeat(32)
const CD = 'cd'.repeat(32)

const at = (baseUrl: string, hex: string): CoordinatorClient =>
  ({ baseUrl, info: async () => ({ publicKey: hex }) }) as unknown as CoordinatorClient
const failing = (err: Error): CoordinatorClient =>
  ({ baseUrl: 'http://one.test', info: async () => { throw err } }) as unknown as CoordinatorClient

describe('the pin of a coordinator key', () => {
  it('is per coordinator URL: two coordinators with their own keys share a data dir, each still held to its own', async () => {
    expect(toHex(await coordinatorKey(dir, at('http://one.test', AB)))).toBe(AB)
    expect(toHex(await coordinatorKey(dir, at('http://two.test', CD)))).toBe(CD)
    expect(await readdir(join(dir, 'trust'))).toHaveLength(2)
    await expect(coordinatorKey(dir, at('http://one.test', CD))).rejects.toThrow(/coordinator http:\/\/one\.test now presents key cdcd/)
    await expect(coordinatorKey(dir, at('http://two.test', AB))).rejects.toThrow(IntegrityError)
  })

  it('stands in for the presented key only when the coordinator is unreachable: a refused request is not "offline"', async () => {
    await coordinatorKey(dir, at('http://one.test', AB))
    await expect(coordinatorKey(dir, failing(new AccessDeniedError('GET /v1/coordinator: 401')))).rejects.toThrow(AccessDeniedError)
    await expect(coordinatorKey(dir, failing(new IntegrityError('GET /v1/coordinator: malformed answer')))).rejects.toThrow(/malformed answer/)
  })

  it('is not consulted, nor written, when the config names the key', async () => {
    expect(toHex(await coordinatorKey(dir, at('http://one.test', CD), AB.toUpperCase()))).toBe(AB)
    await expect(readdir(join(dir, 'trust'))).rejects.toThrow(/ENOENT/)
  })
})
