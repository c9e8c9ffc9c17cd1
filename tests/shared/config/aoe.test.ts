import { describe, expect, it } from 'vitest'
import { aoeConfigJsonSchema, parseAoeConfig } from '../../../shared/config/aoe.ts'
import { DEFAULT_CACHE_CONFIG, DEFAULT_FETCH_CONFIG } from '../../../shared/config/constants.ts'
import { InvalidConfigError } from '../../../shared/errors/errors.ts'
import { aoeExample } from '../../helpers/aoe.ts'

const aoe = aoeExample

/** The InvalidConfigError message for `input`, failing the test if it parses. */
function problem (input: unknown, source = 'mnist.json'): string {
  try {
    parseAoeConfig(input, source)
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidConfigError)
    return (err as Error).message
  }
  throw new Error('expected the config to be refused')
}

describe('parseAoeConfig: accepts', () => {
  it('a config as AoE writes it, filling defaults and the engine', () => {
    const c = parseAoeConfig(aoe)
    expect(c).toEqual({ ...aoe, engine: 'tfjs', upgrade: 'auto', ledger: { witnesses: [], minWitnesses: 0 }, cache: { ...DEFAULT_CACHE_CONFIG }, fetch: { ...DEFAULT_FETCH_CONFIG } })
  })

  it('the version policy and ledger keys, checked against each other', () => {
    const witness = 'w.test/1+0123abcd+BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
    const c = parseAoeConfig({ ...aoe, channel: 'canary', upgrade: { validate: { margin: 0.01 } }, rollback: { below: 0.9 }, ledger: { witnesses: [witness], minWitnesses: 1 } })
    expect(c).toMatchObject({ channel: 'canary', upgrade: { validate: { margin: 0.01 } }, rollback: { below: 0.9 }, ledger: { witnesses: [witness], minWitnesses: 1 } })
    expect(parseAoeConfig({ ...aoe, upgrade: { validate: {} } }).upgrade).toEqual({ validate: { margin: 0 } })
    expect(() => parseAoeConfig({ ...aoe, ledger: { minWitnesses: 2, witnesses: [witness] } })).toThrow(/"ledger.minWitnesses": requires 2 witness cosignatures but "ledger.witnesses" lists 1/)
    // The same witness twice (same name, even under another key) cannot meet minWitnesses 2.
    const again = 'w.test/1+89abcdef+BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB'
    expect(() => parseAoeConfig({ ...aoe, ledger: { minWitnesses: 2, witnesses: [witness, again] } })).toThrow(/"ledger.witnesses\[1\]": names witness "w.test\/1" a second time \(entry 0\); list each witness once/)
    expect(() => parseAoeConfig({ ...aoe, upgrade: 'sometimes' })).toThrow(/"upgrade": expected "auto", "manual" or/)
    expect(() => parseAoeConfig({ ...aoe, rollback: { below: 2 } })).toThrow(/"rollback.below": expected a metric bound from 0 to 1/)
    expect(() => parseAoeConfig({ ...aoe, rollback: { bellow: 0.5 } })).toThrow(/"rollback.bellow": unknown key \(did you mean "below"\?\)/)
    expect(() => parseAoeConfig({ ...aoe, ledger: { key: 'no key' } })).toThrow(/"ledger.key": expected a log verifier key/)
  })

  it('a cloud model config as AoE\'s Android SDK writes it: "cloud" source, modelId and modelSign, no tag', () => {
    const { tag: _tag, ...untagged } = aoe
    const c = parseAoeConfig({ ...untagged, source: 'cloud', modelId: 1024, modelSign: '8d2f3c6a' })
    expect(c).toMatchObject({ source: 'cloud', modelId: 1024, modelSign: '8d2f3c6a', tag: aoe.modelName })
    expect(parseAoeConfig({ ...aoe, source: 'local' }).source).toBe('local')
  })

  it('takes back a config it returned (engine and all), and still refuses an engine a file sets', () => {
    const once = parseAoeConfig({ ...aoe, channel: 'canary' })
    expect(parseAoeConfig(once)).toEqual(once)
    expect(parseAoeConfig(JSON.parse(JSON.stringify(once)))).toEqual(once)
    expect(() => parseAoeConfig({ ...aoe, engine: 'onnx' })).toThrow(/"engine": unknown key/)
  })

  it('maps every AoE runtime name to its engine, keeping the original', () => {
    const engines = { tensorflow: 'tfjs', tfjs: 'tfjs', tensorflowjs: 'tfjs', onnx: 'onnx', onnxruntime: 'onnx' }
    for (const [runtime, engine] of Object.entries(engines)) {
      const c = parseAoeConfig({ ...aoe, runtime })
      expect(c.runtime).toBe(runtime)
      expect(c.engine).toBe(engine)
    }
  })

  it('blockfed\'s optional keys, with partial cache and fetch objects completed', () => {
    const c = parseAoeConfig({
      ...aoe,
      source: 'blockfed',
      pin: 3,
      token: 's3cret',
      coordinatorKey: 'D75A980182B10AB7D54BFED3C964073A0EE172F3DAA62325AF021A68F707511A',
      cache: { diskBytes: 1000 },
      fetch: { retries: 0 }
    })
    expect(c.pin).toBe(3)
    expect(c.token).toBe('s3cret')
    expect(c.coordinatorKey).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a')
    expect(c.cache).toEqual({ ...DEFAULT_CACHE_CONFIG, diskBytes: 1000 })
    expect(c.fetch).toEqual({ ...DEFAULT_FETCH_CONFIG, retries: 0 })
    expect(parseAoeConfig({ ...aoe, channel: 'canary', tokenEnv: 'BLOCKFED_TOKEN' }).channel).toBe('canary')
  })

  it('nested relative model folders, and names with dots and dashes', () => {
    expect(parseAoeConfig({ ...aoe, modelDir: 'vision/pose/v2.1' }).modelDir).toBe('vision/pose/v2.1')
    expect(parseAoeConfig({ ...aoe, modelName: 'movenet-lightning.v4' }).modelName).toBe('movenet-lightning.v4')
    expect(parseAoeConfig({ ...aoe, modelDir: 'a..b' }).modelDir).toBe('a..b')
  })

  it('a "$schema" key, for editors', () => {
    expect(parseAoeConfig({ ...aoe, $schema: '../aoe-config.schema.json' }).$schema).toBe('../aoe-config.schema.json')
  })
})

describe('parseAoeConfig: refuses, naming the field and what was expected', () => {
  it('a value of the wrong type', () => {
    expect(problem({ ...aoe, cache: { memoryBytes: -1 } }))
      .toBe('aoe config mnist.json: "cache.memoryBytes": expected a positive integer (bytes), got -1')
    expect(problem({ ...aoe, version: 1 })).toMatch(/"version": expected a non-empty version label .*, got 1$/)
    expect(problem({ ...aoe, tag: '' })).toMatch(/"tag": expected a non-empty tag/)
    expect(problem({ ...aoe, fetch: { concurrency: '8' } })).toMatch(/"fetch\.concurrency": expected an integer from 1 to 64, got "8"/)
    expect(problem({ ...aoe, fetch: { concurrency: 65, retries: 1.5 } }))
      .toMatch(/"fetch\.concurrency": expected an integer from 1 to 64, got 65; "fetch\.retries": expected an integer from 0 to 5, got 1\.5/)
    expect(problem({ ...aoe, cache: [] })).toMatch(/"cache": expected an object \{ memoryBytes, diskBytes, halfLifeHours, weights, adapt \}, got an array/)
    expect(problem({ ...aoe, pin: 0 })).toMatch(/"pin": expected a positive integer version, got 0/)
    expect(problem({ ...aoe, channel: 'beta' })).toMatch(/"channel": expected "stable" or "canary", got "beta"/)
    expect(problem({ ...aoe, source: 'web' })).toMatch(/"source": expected one of "local", "cloud", "installed", "remote", "blockfed", got "web"/)
    expect(problem({ ...aoe, modelId: 0 })).toMatch(/"modelId": expected a positive integer/)
  })

  it('a runtime it has no engine for', () => {
    expect(problem({ ...aoe, runtime: 'ncnn' }))
      .toBe('aoe config mnist.json: "runtime": expected one of "tensorflow", "tfjs", "tensorflowjs", "onnx", "onnxruntime", got "ncnn"')
  })

  it('an unknown key, suggesting the intended one', () => {
    expect(problem({ ...aoe, modelname: 'x' })).toBe('aoe config mnist.json: "modelname": unknown key (did you mean "modelName"?)')
    expect(problem({ ...aoe, chanel: 'stable' })).toMatch(/"chanel": unknown key \(did you mean "channel"\?\)/)
    expect(problem({ ...aoe, cache: { diskbytes: 1 } })).toBe('aoe config mnist.json: "cache.diskbytes": unknown key (did you mean "diskBytes"?)')
    expect(problem({ ...aoe, inputs: [] })).toBe('aoe config mnist.json: "inputs": unknown key')
  })

  it('a huge key is quoted short, and thousands of unknown keys are counted, not all listed', () => {
    expect(problem({ ...aoe, ['k'.repeat(1_000_000)]: 1 })).toBe(`aoe config mnist.json: "${'k'.repeat(64)}… (1000000 characters)": unknown key`)
    const many = problem({ ...aoe, ...Object.fromEntries(Array.from({ length: 40_000 }, (_, i) => [`x${i}`, 1])) })
    expect(many).toMatch(/^aoe config mnist\.json: "x0": unknown key; "x1": unknown key; .*"x9": unknown key; and 39990 more$/)
  })

  it('an array longer than its bound says the bound', () => {
    const witness = `w.test/1+01234567+${Buffer.alloc(33, 1).toString('base64')}`
    expect(problem({ ...aoe, ledger: { witnesses: Array.from({ length: 65 }, () => witness) } })).toMatch(/"ledger\.witnesses": expected at most 64 witness keys, got 65/)
    const listen = Array.from({ length: 9 }, (_, i) => `/ip4/127.0.0.1/tcp/${4001 + i}`)
    expect(problem({ ...aoe, peers: { bootstrap: ['/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'], listen } })).toMatch(/"peers\.listen": expected at most 8 listen multiaddrs, got 9/)
  })

  it('a missing modelName (and every other missing field at once)', () => {
    const { modelName: _, ...noName } = aoe
    expect(problem(noName)).toBe('aoe config mnist.json: "modelName": missing, expected a model name matching [a-z0-9][a-z0-9._-]{0,63}')
    const all = problem({})
    for (const k of ['version', 'runtime', 'source', 'modelDir', 'modelName', 'updateURL']) expect(all).toContain(`"${k}": missing`)
    expect(all).not.toContain('"tag"')
  })

  it('a bad model name', () => {
    for (const modelName of ['MNIST', '-x', '', 'a'.repeat(65), 'a/b', 'a b']) {
      expect(problem({ ...aoe, modelName })).toMatch(/"modelName": expected a model name matching/)
    }
  })

  it('a bad URL', () => {
    for (const updateURL of ['ftp://coordinator.example', 'coordinator.example', 'javascript:alert(1)', 'http://', 42]) {
      expect(problem({ ...aoe, updateURL })).toMatch(/"updateURL": expected an http:\/\/ or https:\/\/ URL of the coordinator/)
    }
    expect(problem({ ...aoe, updateURL: 'ftp://x' })).toMatch(/got "ftp:\/\/x"$/)
  })

  it('a modelDir that could leave the data dir', () => {
    for (const modelDir of ['..', '../x', 'a/../b', 'a/..', '/abs', 'C:\\models', 'C:x', 'a\\..\\b', '.', './a', 'a//b', 'a/', '', 'a\u0000b']) {
      expect(problem({ ...aoe, modelDir }), JSON.stringify(modelDir)).toMatch(/"modelDir": expected a relative folder path/)
    }
  })

  it('a modelDir with a segment blockfed uses inside a model\'s folder', () => {
    for (const modelDir of ['blocks', 'a/blocks', 'a/blocks/tmp', 'anchors/x', 'a/Blocks/tmp', 'a/BLOCKS', 'a/blocks.', 'a/anchors ', 'ANCHORS/x']) {
      expect(problem({ ...aoe, modelDir }), modelDir).toMatch(/"modelDir": expected a relative folder path such as .* \(no "\.\.", "\.", "blocks" or "anchors" segment/)
    }
    for (const modelDir of ['a/blocks2', 'a/my-blocks', 'anchorsx', 'a/.blocks']) expect(parseAoeConfig({ ...aoe, modelDir }).modelDir).toBe(modelDir)
  })

  it('a modelDir that starts with a folder the runtime keeps its own state in', () => {
    for (const modelDir of ['keys', 'trust', 'ledger/x', 'p2p', 'P2P/models', 'Keys.', 'trust ', 'access-history.json']) {
      expect(problem({ ...aoe, modelDir }), modelDir).toMatch(/"modelDir": expected a folder of the model's own: the runtime keeps its state in "keys", "trust", "ledger", "p2p", "access-history.json" of its data dir, got/)
    }
    for (const modelDir of ['a/keys', 'keys2', 'my-trust', 'models/p2p', 'access-history']) expect(parseAoeConfig({ ...aoe, modelDir }).modelDir).toBe(modelDir)
  })

  it('a coordinator URL with credentials, a query or a fragment, saying what to remove and never showing the password', () => {
    const credentials = problem({ ...aoe, updateURL: 'https://admin:s3cret@coordinator.example/api' })
    expect(credentials).toBe('aoe config mnist.json: "updateURL": remove the user name and password from the URL (the coordinator takes the API token from "token" or "tokenEnv")')
    expect(problem({ ...aoe, updateURL: 'https://admin@coordinator.example' })).toMatch(/"updateURL": remove the user name and password/)
    const other = problem({ ...aoe, updateURL: 'ftp://admin:s3cret@coordinator.example/api' })
    expect(other).toMatch(/got "…@coordinator\.example\/api"/)
    expect(other).not.toContain('s3cret')
    // Nor when the text is no URL, the password holding a character that ends an authority.
    for (const updateURL of ['http://admin:s3cr/et@host/', 'http://admin:s3cr#et@host/', 'http://admin:s3cr?et@host/', 'http:/admin:s3cret@host/', 'http:\\\\admin:s3cret@host/']) {
      expect(problem({ ...aoe, updateURL }), updateURL).not.toMatch(/s3cr/)
    }
    for (const updateURL of ['https://coordinator.example/api?x=1', 'https://coordinator.example/?']) {
      expect(problem({ ...aoe, updateURL })).toMatch(/"updateURL": remove the query \("\?…"\) from the URL: give the coordinator's base URL/)
    }
    expect(problem({ ...aoe, updateURL: 'https://coordinator.example/api#v1' })).toMatch(/"updateURL": remove the fragment \("#…"\) from the URL/)
    expect(parseAoeConfig({ ...aoe, updateURL: 'https://coordinator.example:8443/a@b/api' }).updateURL).toBe('https://coordinator.example:8443/a@b/api')
  })

  it('a cache half-life so long that it overflows in milliseconds', () => {
    expect(problem({ ...aoe, cache: { halfLifeHours: 1e306 } })).toBe('aoe config mnist.json: "cache.halfLifeHours": expected a number of hours of at most 1000000, got 1e+306')
    expect(parseAoeConfig({ ...aoe, cache: { halfLifeHours: 1_000_000 } }).cache.halfLifeHours).toBe(1_000_000)
  })

  it('contradicting pairs', () => {
    expect(problem({ ...aoe, token: 't', tokenEnv: 'T' })).toMatch(/"tokenEnv": give "token" or "tokenEnv", not both/)
    expect(problem({ ...aoe, pin: 2, channel: 'stable' })).toMatch(/"channel": give "pin" .* or "channel" .*, not both/)
  })

  it('a bad coordinator key or env var name', () => {
    expect(problem({ ...aoe, coordinatorKey: 'abc' })).toMatch(/"coordinatorKey": expected 64 hex characters \(an Ed25519 public key\), got "abc"/)
    expect(problem({ ...aoe, tokenEnv: 'MY-TOKEN' })).toMatch(/"tokenEnv": expected an environment variable name/)
  })

  it('without echoing a token', () => {
    const m = problem({ ...aoe, token: '' })
    expect(m).toMatch(/"token": expected a non-empty API token string, got an empty string/)
    const m2 = problem({ ...aoe, token: 'sekrit', tokenEnv: 'X', version: 7 })
    expect(m2).not.toContain('sekrit')
  })

  it('something that is not an object', () => {
    for (const input of [null, [aoe], 'mnist', 42, undefined]) {
      expect(problem(input)).toMatch(/^aoe config mnist\.json: (missing, )?expected a JSON object \(an AoE model config\)/)
    }
  })

  it('lists every problem, and names no file when given none', () => {
    const m = problem({ ...aoe, runtime: 'x', modelDir: '../x', extra: 1 })
    expect(m.split('; ')).toHaveLength(3)
    expect(() => parseAoeConfig({ ...aoe, pin: -1 })).toThrow(/^aoe config: "pin"/)
  })
})

describe('aoeConfigJsonSchema', () => {
  it('describes the input: strict, six AoE fields required (tag defaults to the model name), defaults shown', () => {
    const s = aoeConfigJsonSchema() as { additionalProperties: boolean, required: string[], properties: Record<string, { properties?: Record<string, { default?: unknown }> }> }
    expect(s.additionalProperties).toBe(false)
    expect([...s.required].sort()).toEqual(['modelDir', 'modelName', 'runtime', 'source', 'updateURL', 'version'])
    expect(s.properties.cache?.properties?.memoryBytes?.default).toBe(DEFAULT_CACHE_CONFIG.memoryBytes)
    expect(s.properties.fetch?.properties?.concurrency?.default).toBe(DEFAULT_FETCH_CONFIG.concurrency)
  })
})
