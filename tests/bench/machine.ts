/** What machine a benchmark ran on, printed beside every result. */
import { readFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'

export function machine (): Record<string, string | number> {
  const c = cpus()
  return { cpu: c[0]?.model ?? 'unknown', cores: c.length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, platform: `${process.platform}-${process.arch}` }
}

/** This process's bytes read and written through system calls so far (Linux /proc/self/io: sockets and files), or null elsewhere. */
export function procIo (): { rchar: number, wchar: number } | null {
  try {
    const fields = new Map(readFileSync('/proc/self/io', 'utf8').trim().split('\n').map(l => l.split(':').map(s => s.trim()) as [string, string]))
    const rchar = Number(fields.get('rchar'))
    const wchar = Number(fields.get('wchar'))
    return Number.isFinite(rchar) && Number.isFinite(wchar) ? { rchar, wchar } : null
  } catch {
    return null
  }
}
