/**
 * Starts `blockfed decryptor` as its own process — the Paillier key holder must not live inside
 * the coordinator — and resolves with its URL once it listens.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { TimeoutError } from '../../shared/errors/errors.ts'
import { DECRYPTOR_TOKEN_ENV } from '../decryptor/constants.ts'

export interface DecryptorProcess {
  url: string
  /** The bearer token it requires (fresh per process, handed over in its environment). */
  token: string
  stop: () => Promise<void>
}

export async function spawnDecryptor (dataDir: string, args: string[] = [], timeoutMs = 60_000): Promise<DecryptorProcess> {
  const cli = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './main.ts' : './main.js', import.meta.url))
  const token = randomBytes(24).toString('base64url')
  const child: ChildProcess = spawn(process.execPath, [cli, 'decryptor', '--data', dataDir, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, [DECRYPTOR_TOKEN_ENV]: token } })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill(); reject(new TimeoutError(`decryptor did not start within ${timeoutMs} ms`)) }, timeoutMs)
    let seen = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      seen += chunk.toString()
      const match = /listening on (\S+)/.exec(seen)
      if (match !== null) { clearTimeout(timer); resolve(match[1] as string) }
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`decryptor exited with ${String(code)}`)) })
  })
  return {
    url,
    token,
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return
      await new Promise<void>(resolve => { child.once('exit', () => resolve()); child.kill('SIGTERM') })
    }
  }
}
