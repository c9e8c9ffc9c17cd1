/**
 * `blockfed coordinator --decryptor URL --decryptor-token T` asks the decryptor at its start, so
 * that an operator sees a wrong URL or token at once rather than at the first Paillier round
 * (review 39a: only the public key was asked, which needs no token, so a wrong token was
 * reported usable).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
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
    expect(await decryptorLine('wrong', 'not-the-decryptor-token-0123')).toMatch(new RegExp(`^blockfed: decryptor ${decryptor.url} is not usable: .*bearer token.* \\(its token: --decryptor-token or BLOCKFED_DECRYPTOR_TOKEN, as the decryptor was started with\\); Paillier rounds fail until it is$`))
    expect(await decryptorLine('right', TOKEN)).toMatch(new RegExp(`^\\s+decryptor\\s+${decryptor.url} \\(Paillier key ${decryptor.keyId}\\)$`))
  }, 90_000)
})
