/**
 * The argument parsers (coordinator/cli/args.ts) called as commander calls them: numerals that
 * Number() would take (hex, exponents, fractions, spaces, '') are refused with what was
 * expected, BLOCKFED_COORDINATOR is checked as --coordinator is, and an empty --token is refused.
 */
import { describe, expect, it } from 'vitest'
import { Command, InvalidArgumentError } from 'commander'
import { coordinatorOption, megabytes, modelRef, number, port, portFree, token } from '../../coordinator/cli/args.ts'
import { createServer, type AddressInfo } from 'node:net'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** What `parse` throws for `value`, or undefined. */
function refusal (parse: (value: string) => unknown, value: string): unknown {
  try {
    parse(value)
    return undefined
  } catch (err) {
    return err
  }
}

describe('modelRef', () => {
  it('takes a version in decimal digits, 1 to 2^53 - 1', () => {
    expect(modelRef('anti@1')).toEqual({ name: 'anti', version: 1 })
    expect(modelRef('anti@9007199254740991')).toEqual({ name: 'anti', version: Number.MAX_SAFE_INTEGER })
    expect(modelRef('anti')).toEqual({ name: 'anti', version: 'latest' })
    expect(modelRef('anti@latest')).toEqual({ name: 'anti', version: 'latest' })
  })

  it.each(['0x1', '1e0', '1.0', ' 1', '1 ', '+1', '0', '-1', '', '9007199254740992', '9007199254740993', '1e21', 'Infinity'])('refuses the version %j instead of reading another number from it', version => {
    const err = refusal(modelRef, `anti@${version}`)
    expect(err).toBeInstanceOf(InvalidArgumentError)
    expect((err as Error).message).toBe(`version "${version}" is not a positive integer (1 to 9007199254740991, decimal digits only)`)
  })
})

describe('port', () => {
  it('takes decimal digits 0-65535', () => {
    expect(port('0')).toBe(0)
    expect(port('7070')).toBe(7070)
    expect(port('65535')).toBe(65535)
  })

  it.each(['0x50', '0o120', '0b1010000', '8e1', '80.0', '', ' ', '-1', '65536'])('refuses %j (0x50 listened on port 80)', value => {
    const err = refusal(port, value)
    expect(err).toBeInstanceOf(InvalidArgumentError)
    expect((err as Error).message).toBe('expected a port number 0-65535')
  })
})

describe('number and megabytes', () => {
  it('take decimals, with a fraction or an exponent', () => {
    expect(number(0, 10)('0.01')).toBe(0.01)
    expect(number(0, 10)('1e-3')).toBe(0.001)
    expect(number(0, 10)('.5')).toBe(0.5)
    expect(megabytes(0.001)('0.5')).toBe(0.5)
    expect(megabytes(0.001)('512')).toBe(512)
    expect(megabytes(0.001)('1e3')).toBe(1000)
  })

  it.each(['0x1', '0b1', '0o1', ' 1', '1 ', '', ' ', 'Infinity', '1,5'])('refuse %j', value => {
    expect(refusal(number(0, 10), value)).toBeInstanceOf(InvalidArgumentError)
    const err = refusal(megabytes(0.001), value)
    expect(err).toBeInstanceOf(InvalidArgumentError)
    expect((err as Error).message).toBe('expected a number of megabytes from 0.001 to 1000000')
  })
})

describe('coordinatorOption', () => {
  /** The --coordinator a command gets from `argv` with BLOCKFED_COORDINATOR as `env` has it, or commander's error. */
  async function coordinator (env: string | undefined, argv: string[] = []): Promise<string> {
    const saved = process.env.BLOCKFED_COORDINATOR
    if (env === undefined) delete process.env.BLOCKFED_COORDINATOR
    else process.env.BLOCKFED_COORDINATOR = env
    try {
      const command = new Command().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} }).addOption(coordinatorOption())
      await command.parseAsync(argv, { from: 'user' })
      return command.opts<{ coordinator: string }>().coordinator
    } catch (err) {
      return (err as Error).message
    } finally {
      if (saved === undefined) delete process.env.BLOCKFED_COORDINATOR
      else process.env.BLOCKFED_COORDINATOR = saved
    }
  }

  it('takes BLOCKFED_COORDINATOR when set, --coordinator over it, and the local default when it is unset or empty', async () => {
    expect(await coordinator(undefined)).toBe('http://127.0.0.1:7070')
    expect(await coordinator('')).toBe('http://127.0.0.1:7070')
    expect(await coordinator('https://coord.example')).toBe('https://coord.example')
    expect(await coordinator('https://coord.example', ['--coordinator', 'http://127.0.0.1:1'])).toBe('http://127.0.0.1:1')
  })

  it('checks BLOCKFED_COORDINATOR as it checks --coordinator, naming the variable', async () => {
    expect(await coordinator('ftp://x')).toMatch(/value 'ftp:\/\/x' from env 'BLOCKFED_COORDINATOR' is invalid\. expected an http:\/\/ or https:\/\/ URL/)
    expect(await coordinator('127.0.0.1:7070')).toMatch(/from env 'BLOCKFED_COORDINATOR' is invalid/)
  })
})

describe('token', () => {
  it('refuses an empty --token, naming the flag, instead of sending it on (review 46a)', async () => {
    for (const empty of ['', ' ']) {
      const err = await token({ token: empty }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(InvalidInputError)
      expect((err as Error).message).toBe('--token is empty: give an API token, or leave --token out to use --data\'s admin.token or BLOCKFED_TOKEN')
    }
    expect(await token({ token: 'bf_x' })).toBe('bf_x')
  })

  it('refuses an empty admin.token in --data naming it, and takes a blank BLOCKFED_TOKEN as unset (review 46d)', async () => {
    const data = await mkdtemp(join(tmpdir(), 'blockfed-args-'))
    try {
      await writeFile(join(data, 'admin.token'), ' \n')
      const err = await token({ data }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(InvalidInputError)
      expect((err as Error).message).toBe(`--data ${data}: its admin.token is empty; start the coordinator once to renew it, or give --token`)
      const before = process.env.BLOCKFED_TOKEN
      process.env.BLOCKFED_TOKEN = '  '
      try {
        expect(await token({})).toBeUndefined()
      } finally {
        if (before === undefined) delete process.env.BLOCKFED_TOKEN
        else process.env.BLOCKFED_TOKEN = before
      }
    } finally {
      await rm(data, { recursive: true, force: true })
    }
  })
})

describe('portFree (a decryptor probes its port before it makes its key: review 52a)', () => {
  it('says a taken port as the real listen would, and lets a free one, or port 0, pass and stay free', async () => {
    const taken = createServer()
    await new Promise<void>(resolve => taken.listen(0, '127.0.0.1', resolve))
    const busy = (taken.address() as AddressInfo).port
    try {
      await expect(portFree('127.0.0.1', busy)).rejects.toThrow(new InvalidInputError(`--port ${busy}: 127.0.0.1:${busy} is already in use (another blockfed, or another program); give another --port, or --port 0 for any free one`))
    } finally {
      await new Promise(resolve => taken.close(resolve))
    }
    await portFree('127.0.0.1', busy)
    await portFree('127.0.0.1', 0)
    // Probed and let go: the port can be listened on right after.
    const again = createServer()
    await new Promise<void>(resolve => again.listen(busy, '127.0.0.1', resolve))
    await new Promise(resolve => again.close(resolve))
  })
})
