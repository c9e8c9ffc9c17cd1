/**
 * Reads an AoE model config file (shared/config/aoe.ts) from disk. Every failure — unreadable,
 * too large, not UTF-8, empty, not JSON (with line and column), or failing the schema (with
 * each field's JSON path) — is an InvalidConfigError whose message starts with the file's path.
 */
import { constants, type Stats } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { parseAoeConfig, type AoeConfig } from '../../shared/config/aoe.ts'
import { MAX_CONFIG_FILE_BYTES } from '../../shared/config/constants.ts'
import { parseJsonText } from '../../shared/config/json.ts'
import { InvalidConfigError } from '../../shared/errors/errors.ts'

function refuseIrregular (what: string, stats: Stats): void {
  if (stats.isFile()) return
  const kind = stats.isDirectory() ? 'a folder' : stats.isFIFO() ? 'a named pipe' : stats.isSocket() ? 'a socket' : 'a device or other special file'
  throw new InvalidConfigError(`${what}: not a regular file (it is ${kind})`)
}

/**
 * @example
 * const config = await loadAoeConfig('config/examples/mnist-digits.aoe.json')
 * config.engine // 'tfjs'
 */
export async function loadAoeConfig (path: string): Promise<AoeConfig> {
  const what = `aoe config ${path}`
  let bytes: Uint8Array
  try {
    // Checked before opening: open(2) of a FIFO waits for a writer, holding one of libuv's
    // four threadpool threads (four such stall every file operation of the process).
    refuseIrregular(what, await stat(path))
    // Non-blocking, and checked again: the path may have been swapped for a FIFO meanwhile.
    const file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK)
    try {
      const opened = await file.stat()
      refuseIrregular(what, opened)
      // Checked before reading, so pointing at a model file by mistake costs nothing.
      if (opened.size > MAX_CONFIG_FILE_BYTES) {
        throw new InvalidConfigError(`${what}: ${opened.size} bytes, larger than a config can be (${MAX_CONFIG_FILE_BYTES})`)
      }
      bytes = await file.readFile()
    } finally {
      await file.close()
    }
  } catch (err) {
    if (err instanceof InvalidConfigError) throw err
    const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : 'error'
    throw new InvalidConfigError(`${what}: cannot read the file (${code})`, { cause: err })
  }
  let text: string
  try {
    // The BOM is left in for parseJsonText, which drops it for Node and browsers alike.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes)
  } catch (err) {
    throw new InvalidConfigError(`${what}: not UTF-8 text`, { cause: err })
  }
  return parseAoeConfig(parseJsonText(text, what), path)
}
