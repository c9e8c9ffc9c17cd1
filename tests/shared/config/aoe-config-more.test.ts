/**
 * parseAoeConfig (shared/config/aoe.ts) cases the main suite leaves open: a password without a
 * user name in the coordinator URL, contradicting pairs reported beside other fields' problems,
 * the bound on how many problems one error lists, and no guessed key for a short unknown one.
 */
import { describe, expect, it } from 'vitest'
import { parseAoeConfig } from '../../../shared/config/aoe.ts'
import { InvalidConfigError } from '../../../shared/errors/errors.ts'
import { aoeExample as aoe } from '../../helpers/aoe.ts'

/** The InvalidConfigError message for `input`, failing the test if it parses. */
function problem (input: unknown): string {
  try {
    parseAoeConfig(input, 'mnist.json')
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidConfigError)
    return (err as Error).message
  }
  throw new Error('expected the config to be refused')
}

describe('parseAoeConfig', () => {
  it('refuses a coordinator URL with a password and no user name, without showing the password', () => {
    const m = problem({ ...aoe, updateURL: 'https://:s3cret@coordinator.example/api' })
    expect(m).toBe('aoe config mnist.json: "updateURL": remove the user name and password from the URL (the coordinator takes the API token from "token" or "tokenEnv")')
  })

  it('reports a contradicting pair together with other fields\' problems, in one run', () => {
    // A value of the wrong type (one zod does not check further) as the other problem.
    const m = problem({ ...aoe, token: 't', tokenEnv: 'T', version: 7 })
    expect(m).toMatch(/"version": expected a non-empty version label .*, got 7/)
    expect(m).toMatch(/"tokenEnv": give "token" or "tokenEnv", not both/)
  })

  it('lists at most ten problems and counts the rest', () => {
    const wrong = Object.fromEntries(['version', 'tag', 'runtime', 'source', 'modelDir', 'modelName', 'updateURL', 'pin', 'channel', 'token', 'tokenEnv', 'coordinatorKey'].map(k => [k, 42]))
    const m = problem({ ...aoe, ...wrong, pin: 'x' })
    expect(m.replace(/^aoe config mnist\.json: /, '').split('; ')).toHaveLength(11)
    // Twelve fields of the wrong type, and both contradicting pairs: fourteen problems.
    expect(m).toMatch(/; and 4 more$/)
  })

  it('guesses no known key for an unknown key of two letters', () => {
    expect(problem({ ...aoe, ta: 1 })).toBe('aoe config mnist.json: "ta": unknown key')
  })
})
