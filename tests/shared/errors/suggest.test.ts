/**
 * "Did you mean …?" for unknown keys (shared/errors/suggest.ts): the guess itself, and zod's
 * message for every strict object once the module is loaded, nested and defaulted ones included.
 */
import { describe, it, expect } from 'vitest'
import { z } from 'zod'
import { closestKey } from '../../../shared/errors/suggest.ts'
import { parseJsonWith } from '../../../shared/errors/parse-json.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { roundRequestSchema } from '../../../shared/rounds/config.ts'

describe('closestKey', () => {
  it('finds a key in another case, or within two edits, and nothing further away', () => {
    const known = ['epochs', 'minClients', 'maxClients', 'learningRate']
    expect(closestKey('epoch', known)).toBe('epochs')
    expect(closestKey('MINCLIENTS', known)).toBe('minClients')
    expect(closestKey('learnignRate', known)).toBe('learningRate')
    expect(closestKey('batchSize', known)).toBeUndefined()
    // Short keys allow fewer edits: "ab" is not a typo of "epochs".
    expect(closestKey('ab', ['a', 'epochs'])).toBeUndefined()
    expect(closestKey('x'.repeat(65), ['x'.repeat(64)])).toBeUndefined()
  })

  it('prefers the closer of two candidates', () => {
    expect(closestKey('minClient', ['maxClients', 'minClients'])).toBe('minClients')
  })
})

describe('zod messages for unknown keys', () => {
  it('name the key each one likely meant, in nested and defaulted objects', () => {
    const schema = z.object({ secure: z.object({ mode: z.string() }).strict().default({ mode: 'none' }), epochs: z.number().default(1) }).strict()
    const issues = schema.safeParse({ epoch: 2, secure: { modes: 'x', mode: 'none' } }).error?.issues ?? []
    expect(issues.map(i => [i.path.join('.'), i.message])).toEqual([
      ['secure', 'Unrecognized key: "modes" (did you mean "mode"?)'],
      ['', 'Unrecognized key: "epoch" (did you mean "epochs"?)']
    ])
  })

  it('say nothing more when no key is close, and bound how many keys they name', () => {
    const schema = z.object({ epochs: z.number() }).strict()
    expect(schema.safeParse({ epochs: 1, banana: 1 }).error?.issues[0]?.message).toBe('Unrecognized key: "banana"')
    const many = Object.fromEntries(Array.from({ length: 40_000 }, (_, i) => [`k${i}`, 1]))
    const message = schema.safeParse({ epochs: 1, ...many }).error?.issues[0]?.message ?? ''
    expect(message).toBe('Unrecognized keys: "k0", "k1", "k2", "k3", "k4" and 39995 more')
  })

  it('reach the messages a round request file gets', () => {
    expect(() => parseJsonWith(roundRequestSchema, '{"model": "m", "epoch": 2}', 'round request')).toThrow(InvalidInputError)
    expect(() => parseJsonWith(roundRequestSchema, '{"model": "m", "epoch": 2}', 'round request')).toThrow(/round request: Unrecognized key: "epoch" \(did you mean "epochs"\?\)/)
  })
})
