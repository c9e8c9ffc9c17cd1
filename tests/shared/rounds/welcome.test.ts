/**
 * The welcome a runtime parses (round protocol 8): `awaiting` names rounds as `rounds` does, and a
 * welcome whose `awaiting` is not that is refused naming the field, before the participant acts
 * on it (it would send an upload again for what it names).
 */
import { describe, expect, it } from 'vitest'
import { parseFrame, serverMessageSchema } from '../../../shared/rounds/messages.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'

const clientId = 'ab'.repeat(32)
const welcome = (extra: Record<string, unknown>): string => JSON.stringify({ type: 'welcome', clientId, ...extra })

describe('a welcome with the rounds awaiting an upload', () => {
  it('is taken with round ids, and refused, naming awaiting, with anything else', () => {
    expect(parseFrame(serverMessageSchema, welcome({ rounds: ['r_0123456789abcdef'], awaiting: ['r_0123456789abcdef'] }), 'coordinator message')).toEqual({ type: 'welcome', clientId, rounds: ['r_0123456789abcdef'], awaiting: ['r_0123456789abcdef'] })
    for (const awaiting of [['not-a-round'], 'r_0123456789abcdef', Array.from({ length: 1001 }, () => 'r_0123456789abcdef'), [7]]) {
      const refused = (): unknown => parseFrame(serverMessageSchema, welcome({ awaiting }), 'coordinator message')
      expect(refused).toThrow(InvalidInputError)
      expect(refused).toThrow(/awaiting/)
    }
  })
})
