/** What machine a benchmark ran on, printed beside every result. */
import { cpus, totalmem } from 'node:os'

export function machine (): Record<string, string | number> {
  const c = cpus()
  return { cpu: c[0]?.model ?? 'unknown', cores: c.length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, platform: `${process.platform}-${process.arch}` }
}
