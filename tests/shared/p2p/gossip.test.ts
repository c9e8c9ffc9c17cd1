/**
 * Gossip messages (shared/p2p/gossip.ts): what a runtime accepts from a model topic. Every
 * malformed message must be refused with an InvalidInputError that names the problem, before
 * anything in it is used; a well-formed one must come back exactly as it was sent.
 */
import { describe, it, expect } from 'vitest'
import { blockFilter, decodeBlockFilter } from '../../../shared/p2p/bloom.ts'
import { decodeGossip, encodeGossip, modelTopic, readTopicMessage, GOSSIP_MAX_MESSAGE_BYTES, type GossipMessage } from '../../../shared/p2p/gossip.ts'
import { rawCid } from '../../../shared/crypto/cid.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)
const json = (value: unknown): Uint8Array => text(JSON.stringify(value))

/** CIDv1(json, sha2-256) of `{}` (shared/crypto/cid.ts jsonCid): any manifest CID would do. */
const MANIFEST_CID = 'bagaaieraiqjw7i2vwntyuekgvulpp2det2kpwt6cd7tx5ayqybqpmhfk76fa'
const version = { type: 'version', model: 'mnist-mlp', version: 3, manifestCid: MANIFEST_CID }
const have = { type: 'have', filter: 'AQID', blocks: 2 }

function refusal (bytes: Uint8Array): InvalidInputError {
  try {
    decodeGossip(bytes)
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidInputError)
    return err as InvalidInputError
  }
  throw new Error('decodeGossip accepted the message')
}

describe('gossip messages', () => {
  it('round-trips a version announcement', () => {
    const message: GossipMessage = { type: 'version', model: 'mnist-mlp', version: 3, manifestCid: MANIFEST_CID }
    expect(decodeGossip(encodeGossip(message))).toEqual(message)
    // The wire form is plain JSON with exactly these fields (no sender: that is gossipsub's signed `from`).
    expect(JSON.parse(new TextDecoder().decode(encodeGossip(message)))).toEqual(version)
  })

  it('round-trips a Bloom filter of held blocks, which still answers for its blocks', async () => {
    const cids = await Promise.all([1, 2, 3].map(async i => await rawCid(new Uint8Array([i]))))
    const filter = blockFilter({ capacity: 100, falsePositiveRate: 0.01 })
    for (const cid of cids) filter.add(cid)
    const decoded = decodeGossip(encodeGossip({ type: 'have', filter: filter.encode(), blocks: cids.length }))
    expect(decoded.type).toBe('have')
    if (decoded.type !== 'have') return
    expect(decoded.blocks).toBe(3)
    expect(decoded.filter).toEqual(filter.encode())
    const again = decodeBlockFilter(decoded.filter)
    for (const cid of cids) expect(again.has(cid)).toBe(true)
  })

  it('round-trips seeded random filters of every length up to 300 bytes (base64 padding cases)', () => {
    const next = mulberry32(7)
    for (let length = 1; length <= 300; length++) {
      const filter = new Uint8Array(length).map(() => Math.floor(next() * 256))
      const message: GossipMessage = { type: 'have', filter, blocks: length }
      expect(decodeGossip(encodeGossip(message))).toEqual(message)
    }
  })

  it('refuses bytes that are not UTF-8', () => {
    for (const bytes of [
      new Uint8Array([0x7b, 0xff, 0x7d]), // 0xff never occurs in UTF-8
      new Uint8Array([0xc0, 0xbb]), // an overlong encoding of "{"
      new Uint8Array([0xed, 0xa0, 0x80]) // a lone surrogate
    ]) {
      expect(refusal(bytes).message).toBe('gossip message: not UTF-8')
    }
  })

  it('refuses text that is not JSON', () => {
    for (const s of ['', '{"type":"version"', 'version 3', "{'type':'have'}"]) {
      expect(refusal(text(s)).message).toBe('gossip message: not JSON')
    }
  })

  it('refuses JSON that is not a message object', () => {
    for (const value of [null, 3, 'have', [have], {}]) {
      expect(refusal(json(value)).message).toMatch(/^gossip message: /)
    }
  })

  it('refuses an unknown message type', () => {
    for (const type of ['want', 'VERSION', '', 7]) {
      expect(refusal(json({ ...version, type })).message).toMatch(/^gossip message: type: /)
    }
  })

  it('refuses extra fields, including a claimed sender', () => {
    const e = refusal(json({ ...version, from: '12D3KooWExample' }))
    expect(e.message).toMatch(/Unrecognized key/)
    expect(e.message).toMatch(/from/)
    expect(refusal(json({ ...have, peers: [] })).message).toMatch(/Unrecognized key.*peers/)
  })

  it('refuses missing or mistyped fields, naming them', () => {
    const { manifestCid: _, ...noCid } = version
    expect(refusal(json(noCid)).message).toMatch(/manifestCid/)
    for (const v of [0, -1, 1.5, '3', null]) expect(refusal(json({ ...version, version: v })).message).toMatch(/version: /)
    for (const c of ['', 'x'.repeat(201), 42]) expect(refusal(json({ ...version, manifestCid: c })).message).toMatch(/manifestCid: /)
    for (const b of [-1, 0.5, '2', null]) expect(refusal(json({ ...have, blocks: b })).message).toMatch(/blocks: /)
    expect(refusal(json({ ...have, filter: '' })).message).toMatch(/filter: /)
    expect(refusal(json({ ...have, filter: [1, 2, 3] })).message).toMatch(/filter: /)
  })

  it('refuses a bad model name (the same rule as topic names)', () => {
    for (const model of ['', '../etc', 'a b', '-lead', '.hidden', 'x'.repeat(129), 'mnist/mlp', 'ünicode']) {
      expect(refusal(json({ ...version, model })).message).toMatch(/^gossip message: model: /)
      expect(() => modelTopic(model)).toThrow(InvalidInputError)
    }
    expect(modelTopic('x'.repeat(128))).toBe(`blockfed/model/${'x'.repeat(128)}`)
    expect(modelTopic('Mnist_MLP-2.1')).toBe('blockfed/model/Mnist_MLP-2.1')
  })

  it('refuses a filter that is not base64', () => {
    // Characters outside the alphabet, padding inside the text, an impossible length, and a
    // final character whose unused low bits are not zero (so two texts would decode alike).
    for (const filter of ['not base64!', 'AAA=A', 'A', 'AB', '-_-_', 'AAAA\n', ' AAAA']) {
      const e = refusal(json({ ...have, filter }))
      expect(e.message).toBe('gossip message: filter: not base64')
      expect(e.cause).toBeInstanceOf(Error)
    }
  })

  it(`refuses a message above ${GOSSIP_MAX_MESSAGE_BYTES} bytes before decoding it, and accepts one at the bound`, () => {
    const base = JSON.stringify(have)
    // JSON allows trailing white space: pad a valid message to exactly the bound.
    const atBound = text(base + ' '.repeat(GOSSIP_MAX_MESSAGE_BYTES - base.length))
    expect(atBound.length).toBe(GOSSIP_MAX_MESSAGE_BYTES)
    expect(decodeGossip(atBound)).toEqual({ type: 'have', filter: new Uint8Array([1, 2, 3]), blocks: 2 })
    const above = new Uint8Array(GOSSIP_MAX_MESSAGE_BYTES + 1)
    above.set(atBound)
    above[GOSSIP_MAX_MESSAGE_BYTES] = 0x20
    expect(refusal(above).message).toBe(`gossip message: ${GOSSIP_MAX_MESSAGE_BYTES + 1} bytes, above the ${GOSSIP_MAX_MESSAGE_BYTES}-byte bound`)
    // Checked before UTF-8 or JSON: an oversized message of garbage gets the size error, not a parse error.
    expect(refusal(new Uint8Array(GOSSIP_MAX_MESSAGE_BYTES + 1).fill(0xff)).message).toMatch(/above the/)
  })
})

describe('readTopicMessage (what a topic validator accepts)', () => {
  const topic = modelTopic('mnist-mlp')

  it('returns a version of the topic\'s model, and a have with its filter decoded', async () => {
    expect(readTopicMessage(topic, json(version))).toEqual(version)
    const cid = await rawCid(new Uint8Array([9]))
    const filter = blockFilter({ capacity: 64, falsePositiveRate: 0.01 })
    filter.add(cid)
    const read = readTopicMessage(topic, encodeGossip({ type: 'have', filter: filter.encode(), blocks: 1 }))
    expect(read.type === 'have' && read.blocks === 1 && read.filter.has(cid)).toBe(true)
  })

  it('refuses a version of another model, naming both', () => {
    expect(() => readTopicMessage(modelTopic('other-mlp'), json(version))).toThrow('gossip message: a version of model "mnist-mlp" on topic "blockfed/model/other-mlp"')
  })

  it('refuses a have whose filter does not decode, with the Bloom decoder\'s reason', () => {
    // Valid base64 of three bytes, [1, 2, 3]: the retired version 1, then m = 2.
    expect(() => readTopicMessage(topic, json(have))).toThrow(InvalidInputError)
    expect(() => readTopicMessage(topic, json(have))).toThrow(/^bloom filter: unsupported encoding version 1/)
  })

  it('refuses what decodeGossip refuses', () => {
    expect(() => readTopicMessage(topic, text('not json'))).toThrow(InvalidInputError)
  })
})
