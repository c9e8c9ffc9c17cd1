/** A coordinator in its own process (`blockfed coordinator`), as deployed: for kill -9 tests and benchmarks. */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export interface CoordinatorProcess {
  url: string
  child: ChildProcess
  /** What it printed on stdout so far. */
  output: () => string
  kill: (signal?: NodeJS.Signals) => Promise<void>
}

const CLI = fileURLToPath(new URL('../../coordinator/cli/main.ts', import.meta.url))

export async function spawnCoordinator (dataDir: string, args: string[] = [], port = 0): Promise<CoordinatorProcess> {
  const child = spawn(process.execPath, [CLI, 'coordinator', '--data', dataDir, '--port', String(port), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  let seen = ''
  child.stdout.on('data', (chunk: Buffer) => { seen += chunk.toString() })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('coordinator did not start within 30 s')), 30_000)
    child.stdout.on('data', () => {
      const match = /listening on (\S+)/.exec(seen)
      if (match !== null) { clearTimeout(timer); resolve(match[1] as string) }
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`coordinator exited with ${String(code)}`)) })
  })
  return {
    url,
    child,
    output: () => seen,
    async kill (signal = 'SIGKILL') {
      if (child.exitCode !== null || child.signalCode !== null) return
      await new Promise<void>(resolve => { child.once('exit', () => resolve()); child.kill(signal) })
    }
  }
}
