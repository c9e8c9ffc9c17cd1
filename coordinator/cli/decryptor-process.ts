/**
 * Starts `blockfed decryptor` as its own process — the Paillier key holder must not live inside
 * the coordinator — and resolves with its URL once it listens. The child is tied to its parent:
 * it reads a pipe on its stdin (`--exit-with-parent`) and stops when that pipe ends, which the
 * kernel does when the parent dies however it dies, so no key holder outlives the run.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { TimeoutError } from '../../shared/errors/errors.ts'
import { DECRYPTOR_TOKEN_ENV } from '../decryptor/constants.ts'

/** How long a decryptor gets to stop after SIGTERM before it is killed. */
export const DECRYPTOR_STOP_GRACE_MS = 5000

export interface DecryptorProcess {
  url: string
  /** The bearer token it requires (fresh per process, handed over in its environment). */
  token: string
  /** Its Paillier key's id (hex SHA-256 of n), as it printed it: what runtimes pin (secureClients paillierKeyId). */
  keyId: string
  pid: number
  stop: () => Promise<void>
}

export async function spawnDecryptor (dataDir: string, args: string[] = [], timeoutMs = 60_000, signal?: AbortSignal): Promise<DecryptorProcess> {
  signal?.throwIfAborted()
  const cli = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './main.ts' : './main.js', import.meta.url))
  const token = randomBytes(24).toString('base64url')
  const child: ChildProcess = spawn(process.execPath, [cli, 'decryptor', '--data', dataDir, '--port', '0', '--exit-with-parent', ...args], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, [DECRYPTOR_TOKEN_ENV]: token } })
  // Nothing is written to it: the pipe only tells the child its parent is alive.
  child.stdin?.on('error', () => {})
  const stop = async (): Promise<void> => { await stopChild(child, DECRYPTOR_STOP_GRACE_MS) }
  let onAbort = (): void => {}
  try {
    const { url, keyId } = await new Promise<{ url: string, keyId: string }>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new TimeoutError(`decryptor did not start within ${timeoutMs} ms`)) }, timeoutMs)
      onAbort = () => { clearTimeout(timer); reject(signal?.reason) }
      signal?.addEventListener('abort', onAbort, { once: true })
      let seen = ''
      child.stdout?.on('data', (chunk: Buffer) => {
        seen += chunk.toString()
        const url = /listening on (\S+)/.exec(seen)?.[1]
        const keyId = /key id\s+([0-9a-f]{64})\n/.exec(seen)?.[1]
        if (url !== undefined && keyId !== undefined) { clearTimeout(timer); resolve({ url, keyId }) }
      })
      child.once('exit', code => { clearTimeout(timer); reject(new Error(`decryptor exited with ${String(code)}`)) })
      child.once('error', err => { clearTimeout(timer); reject(err) })
    })
    return { url, token, keyId, pid: child.pid as number, stop }
  } catch (err) {
    await stop()
    throw err
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
}

/**
 * Ends `child`: SIGTERM, then SIGKILL if it has not exited within `graceMs` (a decryptor stuck in
 * a decryption would otherwise hold its parent's cleanup for ever). Resolves once it has exited.
 */
export async function stopChild (child: ChildProcess, graceMs: number): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  await new Promise<void>(resolve => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    child.once('exit', () => { clearTimeout(timer); resolve() })
    child.kill('SIGTERM')
  })
}
