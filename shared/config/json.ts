/**
 * JSON text → value, for config files, with syntax errors reported by line and column (RFC 8259
 * grammar). `JSON.parse` does the parsing; only when it fails does a small scanner walk the text
 * to find where and why, because V8's messages do not always carry a position and some quote
 * the input — which for a config could be its API token.
 */
import { InvalidConfigError } from '../errors/errors.ts'

export interface JsonSyntaxProblem {
  /** UTF-16 offset into the text. */
  offset: number
  /** 1-based. */
  line: number
  /** 1-based, in UTF-16 code units. */
  column: number
  /** What the grammar wanted there, e.g. `',' or '}' after a property value`. */
  expected: string
  /** A short description of what was found (never more than one character of the text). */
  found: string
}

/**
 * Parses `text` as JSON; on a syntax error throws InvalidConfigError
 * `"<what>: not valid JSON at line L, column C: expected …, found …"`.
 * A leading UTF-8 byte order mark (as some Windows editors write) is ignored.
 *
 * @example
 * parseJsonText('{"a": 1,}', 'aoe config x.json') // throws: … at line 1, column 9: expected a property name in double quotes, found '}'
 */
export function parseJsonText (text: string, what: string): unknown {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
  if (body.trim() === '') throw new InvalidConfigError(`${what}: empty file, expected a JSON object`)
  try {
    return JSON.parse(body)
  } catch (err) {
    const p = locateJsonSyntaxError(body)
    const where = p === undefined ? '' : ` at line ${p.line}, column ${p.column}: expected ${p.expected}, found ${p.found}`
    throw new InvalidConfigError(`${what}: not valid JSON${where}`, { cause: err })
  }
}

/** The first syntax error in `text`, or undefined when it is valid JSON. */
export function locateJsonSyntaxError (text: string): JsonSyntaxProblem | undefined {
  let i = 0
  const ws = (): void => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++
  }
  class Stop {
    readonly expected: string
    constructor (expected: string) { this.expected = expected }
  }
  const fail = (expected: string): never => { throw new Stop(expected) }

  const literal = (word: string): void => {
    for (let k = 0; k < word.length; k++, i++) if (text[i] !== word[k]) fail(`'${word}'`)
  }
  const string = (): void => {
    i++ // opening quote
    for (;;) {
      if (i >= text.length) fail('a closing \'"\'')
      const c = text.charCodeAt(i)
      if (c === 0x22) { i++; return }
      if (c < 0x20) fail('a character (control characters must be escaped in strings)')
      if (c === 0x5c) {
        i++
        const e = text[i]
        if (e === 'u') {
          i++
          for (let k = 0; k < 4; k++, i++) if (!/[0-9a-fA-F]/.test(text[i] ?? '')) fail('a hex digit of a \\u escape')
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) {
          i++
        } else {
          fail('an escape (\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)')
        }
      } else {
        i++
      }
    }
  }
  const digits = (): void => {
    if (!/[0-9]/.test(text[i] ?? '')) fail('a digit')
    while (/[0-9]/.test(text[i] ?? '')) i++
  }
  const number = (): void => {
    if (text[i] === '-') i++
    if (text[i] === '0') {
      i++
      if (/[0-9]/.test(text[i] ?? '')) fail('no leading zero (a number is not written 01)')
    } else {
      digits()
    }
    if (text[i] === '.') { i++; digits() }
    if (text[i] === 'e' || text[i] === 'E') {
      i++
      if (text[i] === '+' || text[i] === '-') i++
      digits()
    }
  }
  const member = (): void => {
    ws()
    if (text[i] !== '"') fail('a property name in double quotes')
    string()
    ws()
    if (text[i] !== ':') fail('\':\' after a property name')
    i++
  }
  const scalar = (c: string | undefined): void => {
    if (c === '"') string()
    else if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) number()
    else if (c === 't') literal('true')
    else if (c === 'f') literal('false')
    else if (c === 'n') literal('null')
    else fail('a JSON value (object, array, string, number, true, false or null)')
  }
  /** One JSON value, with the containers still open on a stack (no recursion: any depth is followed). */
  const value = (): void => {
    const open: string[] = []
    for (;;) {
      ws()
      const c = text[i]
      if (c === '{' || c === '[') {
        i++
        ws()
        if (text[i] === (c === '{' ? '}' : ']')) {
          i++
        } else {
          open.push(c)
          if (c === '{') member()
          continue
        }
      } else {
        scalar(c)
      }
      // A value ended: close the containers it ends, or go on to the next member or element.
      for (;;) {
        const top = open.at(-1)
        if (top === undefined) return
        ws()
        if (text[i] === ',') {
          i++
          if (top === '{') member()
          break
        }
        if (text[i] === (top === '{' ? '}' : ']')) {
          i++
          open.pop()
          continue
        }
        fail(top === '{' ? '\',\' or \'}\' after a property value' : '\',\' or \']\' after an array element')
      }
    }
  }

  try {
    value()
    ws()
    if (i < text.length) fail('the end of the text after the JSON value')
    return undefined
  } catch (err) {
    if (!(err instanceof Stop)) throw err
    return { offset: i, ...lineAndColumn(text, i), expected: err.expected, found: describeChar(text, i) }
  }
}

function lineAndColumn (text: string, offset: number): { line: number, column: number } {
  let line = 1
  let start = 0
  for (let k = 0; k < offset && k < text.length; k++) {
    if (text[k] === '\n') {
      line++
      start = k + 1
    }
  }
  return { line, column: offset - start + 1 }
}

function describeChar (text: string, offset: number): string {
  if (offset >= text.length) return 'the end of the text'
  const c = text.codePointAt(offset) ?? 0
  if (c === 0x0a) return 'a line break'
  if (c < 0x20 || c === 0x7f) return `control character U+${c.toString(16).padStart(4, '0').toUpperCase()}`
  if (c === 0xfeff) return 'a byte order mark'
  return `'${String.fromCodePoint(c)}'`
}
