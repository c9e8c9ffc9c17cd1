/**
 * Argument parsers and defaults shared by the `blockfed` commands: each turns one string into a
 * checked value or throws commander's InvalidArgumentError with what was expected.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { InvalidArgumentError, Option } from 'commander'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import type { z } from 'zod'
import { modelNameSchema } from '../../shared/manifest/schema.ts'
import { parseJsonWith } from '../../shared/errors/parse-json.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { corsOrigins } from '../http/cors.ts'
import { failedListens } from '../../shared/p2p/listen-failures.ts'

export const LOCAL_COORDINATOR = 'http://127.0.0.1:7070'
export const COORDINATOR_ENV = 'BLOCKFED_COORDINATOR'

/**
 * `--coordinator <url>`, else BLOCKFED_COORDINATOR, else LOCAL_COORDINATOR. The variable goes
 * through commander's `.env()` so `url` checks it and the refusal names it (a plain default is
 * never parsed: '' became the URL); set but empty means unset, as for BLOCKFED_TOKEN.
 */
export function coordinatorOption (env: NodeJS.ProcessEnv = process.env): Option {
  const option = new Option('--coordinator <url>', 'coordinator URL').argParser(url).default(LOCAL_COORDINATOR)
  return env[COORDINATOR_ENV] === '' ? option : option.env(COORDINATOR_ENV)
}

/** Decimal digits, optionally with a fraction and an exponent: Number() also takes 0x50, 0b1, ' 1 ' and '' (0). */
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/
const decimal = (value: string): number => DECIMAL.test(value) ? Number(value) : NaN

export function port (value: string): number {
  // Digits only: Number() took 0x50 as 80 and '' as 0 (a random port).
  const n = /^\s*\d+\s*$/.test(value) ? Number(value) : NaN
  if (!(n >= 0 && n <= 65535)) throw new InvalidArgumentError('expected a port number 0-65535')
  return n
}

export function url (value: string): string {
  try {
    const u = new URL(value)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)')
    return value
  } catch {
    throw new InvalidArgumentError('expected an http:// or https:// URL')
  }
}

export function integer (min: number, max: number) {
  return (value: string): number => {
    // Decimal digits only: Number() would also take 0x10, 1e2 and 0b11.
    const n = /^\s*-?\d+\s*$/.test(value) ? Number(value) : NaN
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer ${min}-${max}`)
    return n
  }
}

/** A number in [min, max]; `exclusive` leaves out either end (a learning rate of 0 is no rate). */
export function number (min: number, max: number, exclusive: { min?: boolean, max?: boolean } = {}) {
  return (value: string): number => {
    const n = decimal(value)
    const low = exclusive.min === true ? n <= min : n < min
    const high = exclusive.max === true ? n >= max : n > max
    if (!Number.isFinite(n) || low || high) throw new InvalidArgumentError(`expected a number in ${exclusive.min === true ? '(' : '['}${min}, ${max}${exclusive.max === true ? ')' : ']'}`)
    return n
  }
}

/** A size in megabytes (2^20 bytes) from `min` to 1,000,000; fractions are sizes too (0.5 is 512 KiB). */
export function megabytes (min: number) {
  return (value: string): number => {
    const n = decimal(value)
    if (!(n >= min) || n > 1_000_000) throw new InvalidArgumentError(`expected a number of megabytes from ${min} to 1000000`)
    return n
  }
}

export function modelName (value: string): string {
  const parsed = modelNameSchema.safeParse(value)
  if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues[0]?.message ?? 'invalid model name')
  return value
}

export function modelRef (value: string): { name: string, version: number | 'latest' } {
  const parts = value.split('@')
  if (parts.length > 2) throw new InvalidArgumentError(`expected NAME or NAME@VERSION, got "${value}"`)
  const [name = '', version] = parts
  modelName(name)
  if (version === undefined || version === 'latest') return { name, version: 'latest' }
  // Digits only, up to 2^53 - 1: Number() made anti@0x1, anti@1e0, anti@1.0 and "anti@ 1" all
  // anti@1, and 9007199254740993 a neighbour's number (…992, past the bound, is refused).
  const n = /^\d+$/.test(version) ? Number(version) : NaN
  if (!(n >= 1 && n <= Number.MAX_SAFE_INTEGER)) {
    throw new InvalidArgumentError(`version "${version}" is not a positive integer (1 to ${Number.MAX_SAFE_INTEGER}, decimal digits only)`)
  }
  return { name, version: n }
}

/** A JSON option checked by `schema`; the error names the first bad field, in one line. */
export function jsonArgument<T> (schema: z.ZodType<T>, what: string) {
  return (value: string): T => {
    try {
      return parseJsonWith(schema, value, `not ${what}`)
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message)
    }
  }
}

/** How messages name the token `token()` picks: the flag, the data dir's admin.token, or the variable. */
export function tokenSource (options: { token?: string, data?: string }): string {
  return options.token !== undefined ? '--token' : options.data !== undefined ? `--data ${options.data}'s admin.token` : 'BLOCKFED_TOKEN'
}

/**
 * Said on stderr when a token was given and not used: every data key was kept in `home` by an
 * earlier pull or verify, so the token was never shown to the coordinator (review 52a: a revoked
 * or made-up --token "worked").
 */
export function tokenUnused (options: { token?: string, data?: string }, home: string, keysFetched: boolean): void {
  // --data's admin.token is the operator's own: nothing to try out there.
  if (keysFetched || (options.token === undefined && options.data !== undefined)) return
  console.error(`blockfed: ${tokenSource(options)} was not used: the data keys were kept in ${home} by an earlier pull or verify, so the coordinator was not asked for them (a fresh --home asks it)`)
}

/**
 * The API token a command sends: `--token`, else the admin token of `--data`, else
 * `BLOCKFED_TOKEN`. Flags beat the environment: with the variable set to a runtime's edge token
 * (as the README's AoE example does), `--data ./coord` was overridden unsaid (review 40a).
 */
export async function token (options: { token?: string, data?: string }): Promise<string | undefined> {
  // Said with the flag: passed on, "" met a check of the AoE config the command builds (review 46a).
  if (options.token?.trim() === '') throw new InvalidInputError('--token is empty: give an API token, or leave --token out to use --data\'s admin.token or BLOCKFED_TOKEN')
  if (options.token !== undefined) return options.token
  if (options.data !== undefined) {
    const path = join(options.data, 'admin.token')
    let kept: string
    try {
      kept = (await readFile(path, 'utf8')).trim()
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT') throw new InvalidInputError(`--data ${options.data}: no admin.token there; is it the data dir of a coordinator that has started once?`)
      throw new InvalidInputError(`--data ${options.data}: its admin.token cannot be read (${code ?? (err as Error).message}); run as the coordinator's user, or give --token`, { cause: err })
    }
    // A coordinator writes a new one at its next start (a torn file, coordinator/tokens/keeper.ts).
    if (kept === '') throw new InvalidInputError(`--data ${options.data}: its admin.token is empty; start the coordinator once to renew it, or give --token`)
    return kept
  }
  const fromEnv = process.env.BLOCKFED_TOKEN?.trim()
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv
}

/** A multiaddr to listen on (checked by parsing it); repeatable options collect them. */
export function listenAddr (value: string, previous: string[] = []): string[] {
  try {
    multiaddr(value)
  } catch {
    throw new InvalidArgumentError(`"${value.slice(0, 120)}" is not a multiaddr (e.g. /ip4/0.0.0.0/tcp/4001)`)
  }
  return [...previous, value]
}

/** `--cors-origin`: `*` or a web origin (coordinator/http/server.ts, corsOrigins); repeatable. */
export function corsOrigin (value: string, previous: string[] = []): string[] {
  try {
    return [...previous, ...corsOrigins([value])]
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message)
  }
}

/**
 * Fails now, as `listenFailure` says it, when `host:port` cannot be listened on: for a command that
 * does seconds of work (a decryptor's new key) before it listens (review 52a: a taken port was
 * found after the key). A port taken between this probe and the real listen is still met there.
 */
export async function portFree (host: string, port: number): Promise<void> {
  if (port === 0) return
  const probe = createServer()
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject)
      probe.listen(port, host, resolve)
    })
  } catch (err) {
    throw listenFailure(err, host, port)
  } finally {
    await new Promise(resolve => probe.close(resolve))
  }
}

/**
 * A listen that failed, said with the flag that chose the address (a taken --port, a --host that
 * is no address of this machine, a taken --p2p-listen address); any other error as it is.
 */
export function listenFailure (err: unknown, host: string, port: number): unknown {
  const e = err as NodeJS.ErrnoException | undefined
  if (e?.code === 'EADDRINUSE') return new InvalidInputError(`--port ${port}: ${host}:${port} is already in use (another blockfed, or another program); give another --port, or --port 0 for any free one`, { cause: err })
  if (e?.code === 'ENOTFOUND' || e?.code === 'EAI_AGAIN' || e?.code === 'EADDRNOTAVAIL') {
    const why = { ENOTFOUND: 'no address of that name', EAI_AGAIN: 'the name service did not answer; try again, or give an address', EADDRNOTAVAIL: 'not an address of this machine' }[e.code]
    return new InvalidInputError(`--host ${host}: ${why} (${e.code}); give one of this machine's addresses (127.0.0.1, ::1, or 0.0.0.0 for all)`, { cause: err })
  }
  if (e?.name === 'UnsupportedListenAddressesError') {
    // libp2p names each address that failed in one message, with its error's stack beneath.
    const failed = failedListens(e.message).map(({ address, why }) => `${address} (${why})`)
    return new InvalidInputError(`--p2p-listen: cannot listen on ${failed.length > 0 ? failed.join(', ') : 'the addresses given'}; give other addresses (port 0 for any free one)`, { cause: err })
  }
  return err
}
