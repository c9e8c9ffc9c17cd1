/**
 * `blockfed coordinator --decryptor URL --decryptor-token T` asks the decryptor at its start, so
 * that an operator sees a wrong URL or token at once rather than at the first Paillier round
 * (review 39a: only the public key was asked, which needs no token, so a wrong token was
 * reported usable).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createDecryptor, type Decryptor } from '../../coordinator/decryptor/decryptor.ts'

const CLI = fileURLToPath(new URL('../../coordinator/cli/main.ts', import.meta.url))
const TOKEN = 'the-decryptor-token-0123456789'
let root: string
let decryptor: Decryptor

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-decryptor-probe-'))
  decryptor = createDecryptor({ dataDir: join(root, 'decryptor'), port: 0, host: '127.0.0.1', keyBits: 1024, minClients: 3, maxClients: 8, token: TOKEN })
  await decryptor.start()
}, 60_000)

afterAll(async () => {
  await decryptor.stop()
  await rm(root, { recursive: true, force: true })
})

/** Starts a coordinator with `token`, waits (≤ 30 s) for the line about its decryptor, stops it. */
async function decryptorLine (name: string, token: string): Promise<string> {
  const child = spawn(process.execPath, [CLI, 'coordinator', '--data', join(root, name), '--port', '0', '--no-p2p', '--decryptor', decryptor.url, '--decryptor-token', token], { stdio: ['ignore', 'pipe', 'pipe'] })
  try {
    return await new Promise<string>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => reject(new Error(`no decryptor line within 30 s: ${out}`)), 30_000)
      const read = (chunk: Buffer): void => {
        out += chunk.toString()
        const line = /^.*decryptor.*(Paillier key|not usable).*$/m.exec(out)
        if (line !== null) { clearTimeout(timer); resolve(line[0]) }
      }
      child.stdout.on('data', read)
      child.stderr.on('data', read)
      child.once('exit', code => { clearTimeout(timer); reject(new Error(`the coordinator exited (${String(code)}): ${out}`)) })
    })
  } finally {
    child.kill('SIGKILL')
  }
}

describe('blockfed coordinator --decryptor', () => {
  it('says at its start that the decryptor refuses its token, and that it is usable with the right one', async () => {
    expect(await decryptorLine('wrong', 'not-the-decryptor-token-0123')).toMatch(new RegExp(`^blockfed: decryptor ${decryptor.url} is not usable: .*bearer token.* \\(its token: --decryptor-token or BLOCKFED_DECRYPTOR_TOKEN, as the decryptor was started with\\); Paillier rounds are refused until it is \\(asked again every 15 s\\)$`))
    expect(await decryptorLine('right', TOKEN)).toMatch(new RegExp(`^\\s+decryptor\\s+${decryptor.url} \\(Paillier key ${decryptor.keyId}\\)$`))
  }, 90_000)

  it('asks again a decryptor that was not usable at its start, and says once when it is (review 54b)', async () => {
    const free = createServer()
    await new Promise<void>(resolve => free.listen(0, '127.0.0.1', resolve))
    const port = (free.address() as AddressInfo).port
    await new Promise(resolve => free.close(resolve))
    const at = `http://127.0.0.1:${port}`
    const child = spawn(process.execPath, [CLI, 'coordinator', '--data', join(root, 'later'), '--port', '0', '--no-p2p', '--decryptor', at, '--decryptor-token', TOKEN], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
    const seen = async (pattern: RegExp, ms: number): Promise<void> => {
      for (const until = Date.now() + ms; !pattern.test(out) && Date.now() < until;) await new Promise(resolve => setTimeout(resolve, 100))
      expect(out).toMatch(pattern)
    }
    const later = createDecryptor({ dataDir: join(root, 'later-decryptor'), port, host: '127.0.0.1', keyBits: 1024, minClients: 3, maxClients: 8, token: TOKEN })
    try {
      await seen(/is not usable: .*unreachable/, 30_000)
      await later.start()
      await seen(new RegExp(`^blockfed: decryptor ${at} is usable now \\(Paillier key ${later.keyId}\\)$`, 'm'), 40_000)
      expect(out.match(/is not usable/g)).toHaveLength(1)
    } finally {
      child.kill('SIGKILL')
      await later.stop()
    }
  }, 90_000)
})
