/**
 * Starts `blockfed decryptor` as its own process — the Paillier key holder must not live inside
 * the coordinator — and resolves with its URL once it listens.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { TimeoutError } from '../../shared/errors/errors.ts'

export interface DecryptorProcess {
  url: string
  stop: () => Promise<void>
}

export async function spawnDecryptor (dataDir: string, args: string[] = [], timeoutMs = 60_000): Promise<DecryptorProcess> {
  const cli = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './main.ts' : './main.js', import.meta.url))
  const child: ChildProcess = spawn(process.execPath, [cli, 'decryptor', '--data', dataDir, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
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
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return
      await new Promise<void>(resolve => { child.once('exit', () => resolve()); child.kill('SIGTERM') })
    }
  }
}
