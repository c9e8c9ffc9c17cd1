import { describe, it, expect } from 'vitest'
import { IntegrityError, BlockfedError } from '../../shared/errors/errors.ts'

describe('errors', () => {
  it('keeps a stable name, a status and the cause', () => {
    const cause = new Error('inner')
    const e = new IntegrityError('bad hash', { cause })
    expect(e).toBeInstanceOf(BlockfedError)
    expect(e.name).toBe('IntegrityError')
    expect(e.status).toBe(502)
    expect(e.cause).toBe(cause)
  })
})
