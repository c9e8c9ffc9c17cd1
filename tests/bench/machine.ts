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

/**
 * CPU time (user + system, every thread) process `pid` has used so far, in ms, from Linux
 * /proc/PID/stat (proc(5): fields 14 and 15, in clock ticks of 1/100 s on Linux x86-64 and arm64), or null elsewhere.
 */
export function processCpuMs (pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(fields[11]) + Number(fields[12])
    return Number.isFinite(ticks) ? ticks * 10 : null
  } catch {
    return null
  }
}
