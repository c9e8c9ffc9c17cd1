import { describe, expect, it } from 'vitest'
import { locateJsonSyntaxError, parseJsonText } from '../../../shared/config/json.ts'
import { InvalidConfigError } from '../../../shared/errors/errors.ts'

describe('parseJsonText', () => {
  it('parses JSON, ignoring a leading byte order mark', () => {
    expect(parseJsonText('{"a": [1, 2.5e3, true, null, "x\\u00e9"]}', 'f')).toEqual({ a: [1, 2500, true, null, 'xé'] })
    expect(parseJsonText('\ufeff{"a": 1}', 'f')).toEqual({ a: 1 })
  })

  it('says an empty file is empty', () => {
    for (const text of ['', '  \n', '\ufeff']) {
      expect(() => parseJsonText(text, 'aoe config x.json')).toThrow(new InvalidConfigError('aoe config x.json: empty file, expected a JSON object'))
    }
  })

  const cases: Array<[string, string]> = [
    ['xyz', 'line 1, column 1: expected a JSON value (object, array, string, number, true, false or null), found \'x\''],
    ['{"a": 1,}', 'line 1, column 9: expected a property name in double quotes, found \'}\''],
    ['{\n  "a": 1\n  "b": 2\n}', 'line 3, column 3: expected \',\' or \'}\' after a property value, found \'"\''],
    ['{"a": tru}', 'line 1, column 10: expected \'true\', found \'}\''],
    ['{"a": "x', 'line 1, column 9: expected a closing \'"\', found the end of the text'],
    ['[1,2', 'line 1, column 5: expected \',\' or \']\' after an array element, found the end of the text'],
    ['{"a":1} x', 'line 1, column 9: expected the end of the text after the JSON value, found \'x\''],
    ['{\n  "a": 01\n}', 'line 2, column 9: expected no leading zero (a number is not written 01), found \'1\''],
    ["{'a': 1}", 'line 1, column 2: expected a property name in double quotes, found \'\''],
    ['{"a": "\\q"}', 'line 1, column 9: expected an escape'],
    ['{"a": "x\ny"}', 'line 1, column 9: expected a character (control characters must be escaped in strings), found a line break'],
    ['{"a" 1}', 'line 1, column 6: expected \':\' after a property name, found \'1\''],
    ['{"a": -}', 'line 1, column 8: expected a digit, found \'}\'']
  ]
  for (const [text, where] of cases) {
    it(`locates the error in ${JSON.stringify(text)}`, () => {
      expect(() => parseJsonText(text, 'f.json')).toThrow(`f.json: not valid JSON at ${where}`)
    })
  }

  it('agrees with JSON.parse on what is valid', () => {
    const valid = ['0', '-0.5e-3', '"\\ud83d\\ude00"', '[]', '{}', ' [ { "a" : [ ] } ] ', '1E+2', '"\\/"']
    for (const t of valid) expect(locateJsonSyntaxError(t), t).toBeUndefined()
    const invalid = ['01', '1.', '.5', '+1', '[1,]', '{"a":1,}', 'nul', '"\t"', 'NaN', '[1]]', '{"a"}']
    for (const t of invalid) {
      expect(() => JSON.parse(t), t).toThrow()
      expect(locateJsonSyntaxError(t), t).toBeDefined()
    }
  })

  it('does not quote the text beyond one character (a token may be in it)', () => {
    const text = '{"token": "very-secret-token" "x": 1}'
    try {
      parseJsonText(text, 'f')
      expect.unreachable()
    } catch (err) {
      expect((err as Error).message).not.toContain('secret')
    }
  })

  it('follows any nesting without overflowing the stack, to the real error', () => {
    const deep = '['.repeat(100_000)
    expect(() => parseJsonText(deep, 'f')).toThrow('f: not valid JSON at line 1, column 100001: expected a JSON value (object, array, string, number, true, false or null), found the end of the text')
    // A trailing comma 300 levels down was reported as "at most 256 levels of nesting" at column 278.
    const comma = '{"a":'.repeat(300) + '[1,]' + '}'.repeat(300)
    expect(() => parseJsonText(comma, 'f')).toThrow(/^f: not valid JSON at line 1, column 1504: expected a JSON value .*, found ']'$/)
    const valid = '{"a":'.repeat(300_000) + '1' + '}'.repeat(300_000)
    expect(locateJsonSyntaxError(valid)).toBeUndefined()
  })
})
