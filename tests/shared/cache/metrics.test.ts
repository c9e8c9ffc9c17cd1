import { describe, expect, it } from 'vitest'
import { memoryCache } from '../../../shared/cache/memory-lru.ts'
import {
  cacheMetrics, PROMETHEUS_CONTENT_TYPE, prometheusText, prometheusTextGroups, tierMetrics, type TierMetrics
} from '../../../shared/cache/metrics.ts'
import { tieredCache } from '../../../shared/cache/tiered.ts'
import type { CacheStats, CacheTier } from '../../../shared/cache/types.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { testBytes, testKey } from './contract.ts'

/** A tier that only answers `stats()` with what it is given (e.g. a score-evicting tier's weights). */
function statsOnly (name: string, stats: CacheStats): CacheTier {
  const no = async (): Promise<never> => { throw new Error('not used') }
  return { name, get: no, put: no, has: no, touch: no, delete: no, pin: () => {}, unpin: () => {}, stats: () => ({ ...stats }), close: async () => {} }
}

const base: CacheStats = { hits: 0, misses: 0, entries: 0, bytes: 0, capacityBytes: 1000, evictions: 0, puts: 0, rejected: 0 }

describe('cacheMetrics', () => {
  it('reports a tier\'s counters and its hit rate (0 before any get)', async () => {
    const c = memoryCache({ capacityBytes: 250 })
    expect(cacheMetrics(c)).toEqual([{ tier: 'memory', ...base, capacityBytes: 250, hitRate: 0 }])
    for (let i = 0; i < 3; i++) await c.put(testKey(i), testBytes(100, i)) // the third evicts the first
    await c.put(testKey(9), testBytes(999, 9)) // larger than the tier: rejected
    await c.get(testKey(0))
    await c.get(testKey(1))
    await c.get(testKey(2))
    await c.get(testKey(2))
    expect(cacheMetrics(c)).toEqual([{
      tier: 'memory', hits: 3, misses: 1, hitRate: 0.75, bytes: 200, capacityBytes: 250, entries: 2, evictions: 1, puts: 3, rejected: 1
    }])
  })

  it('reports each tier of a tiered cache, memory first', async () => {
    const cache = tieredCache({ memory: memoryCache({ capacityBytes: 100, name: 'fast' }), disk: memoryCache({ capacityBytes: 1000, name: 'slow' }) })
    await cache.put(testKey(1), testBytes(100, 1))
    await cache.put(testKey(2), testBytes(100, 2))
    await cache.get(testKey(1)) // memory miss, disk hit
    await cache.get(testKey(1)) // memory hit
    await cache.get(testKey(3)) // miss in both
    const [fast, slow] = cacheMetrics(cache)
    expect(fast).toMatchObject({ tier: 'fast', hits: 1, misses: 2, entries: 1, evictions: 2 })
    expect(fast?.hitRate).toBeCloseTo(1 / 3, 15)
    expect(slow).toMatchObject({ tier: 'slow', hits: 1, misses: 1, hitRate: 0.5, entries: 2, bytes: 200 })
    // The whole cache's hit ratio follows from the tiers, as metrics.ts says.
    expect((fast!.hits + slow!.hits) / (fast!.hits + slow!.hits + slow!.misses)).toBe(cache.stats().hits / (cache.stats().hits + cache.stats().misses))
  })

  it('counts a get of a memory copy the disk tier has evicted once, as a miss', async () => {
    const cache = tieredCache({ memory: memoryCache({ capacityBytes: 1000, name: 'fast' }), disk: memoryCache({ capacityBytes: 500, name: 'slow' }) })
    await cache.put(testKey(1), testBytes(300, 1))
    await cache.put(testKey(2), testBytes(300, 2)) // the disk tier evicts key 1; memory still holds it
    expect(await cache.get(testKey(1))).toBeUndefined()
    expect(await cache.get(testKey(2))).toEqual(testBytes(300, 2))
    const [fast, slow] = cacheMetrics(cache)
    expect(fast).toMatchObject({ hits: 1, misses: 1 })
    expect(slow).toMatchObject({ hits: 0, misses: 1 })
    // The documented ratio: one hit, one miss.
    expect((fast!.hits + slow!.hits) / (fast!.hits + slow!.hits + slow!.misses)).toBe(0.5)
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1 })
  })

  it('passes on the weights of a tier that evicts by score, as a copy', () => {
    const weights = { frequency: 0.8, recency: 0.7, size: 0.5 }
    const m = cacheMetrics(statsOnly('disk', { ...base, hits: 2, misses: 6, weights }))
    expect(m).toEqual([{ tier: 'disk', ...base, hits: 2, misses: 6, hitRate: 0.25, weights }])
    m[0]!.weights!.size = 9
    expect(weights.size).toBe(0.5)
  })
})

// --- A strict reader of the text format 0.0.4, one regex per line kind -------------------------
// prometheus/docs, content/docs/instrumenting/exposition_formats.md, "Text format details".
const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*'
/** A label value: any characters but `\`, `"` and line feed, which appear only escaped. */
const VALUE = '(?:[^\\\\"\\n]|\\\\\\\\|\\\\"|\\\\n)*'
const HELP_LINE = new RegExp(`^# HELP (${NAME}) ((?:[^\\\\\\n]|\\\\\\\\|\\\\n)*)$`)
const TYPE_LINE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`)
const SAMPLE_LINE = new RegExp(`^(${NAME})(\\{${LABEL}="${VALUE}"(?:,${LABEL}="${VALUE}")*\\})? ` +
  '(NaN|[+-]Inf|-?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?)$')
const PAIR = new RegExp(`(${LABEL})="(${VALUE})"`, 'g')

function unescapeValue (v: string): string {
  return v.replace(/\\(\\|"|n)/g, (_, c: string) => c === 'n' ? '\n' : c)
}

interface Parsed {
  families: Array<{ name: string, type: string, help: string, samples: Array<{ name: string, labels: Record<string, string>, value: number }> }>
}

/** Parses the whole exposition, failing on any line or ordering the spec does not allow. */
function parseExposition (text: string): Parsed {
  expect(text.endsWith('\n')).toBe(true)
  const lines = text.slice(0, -1).split('\n')
  const families: Parsed['families'] = []
  const opened = new Set<string>()
  const seriesSeen = new Set<string>()
  let current: Parsed['families'][number] | undefined
  for (const line of lines) {
    let m: RegExpExecArray | null
    if ((m = HELP_LINE.exec(line)) !== null) {
      const [, name, help] = m as unknown as [string, string, string]
      // HELP opens a new family: once per name.
      expect(opened.has(name), line).toBe(false)
      opened.add(name)
      current = { name, type: 'untyped', help: help.replace(/\\(\\|n)/g, (_, c: string) => c === 'n' ? '\n' : c), samples: [] }
      families.push(current)
    } else if ((m = TYPE_LINE.exec(line)) !== null) {
      const [, name, type] = m as unknown as [string, string, string]
      expect(current?.name, line).toBe(name)
      expect(current?.samples.length, 'TYPE before the first sample').toBe(0)
      expect(current?.type, 'one TYPE per name').toBe('untyped')
      current!.type = type
    } else if ((m = SAMPLE_LINE.exec(line)) !== null) {
      const [, name, labelBlock, value] = m as unknown as [string, string, string | undefined, string]
      expect(current?.name, `sample in its family's group: ${line}`).toBe(name)
      const labels: Record<string, string> = {}
      for (const [, k, v] of (labelBlock ?? '').matchAll(PAIR)) {
        expect(labels[k!], `label ${k} once`).toBeUndefined()
        labels[k!] = unescapeValue(v!)
      }
      const id = `${name}${JSON.stringify(Object.entries(labels).sort())}`
      expect(seriesSeen.has(id), `unique series: ${line}`).toBe(false)
      seriesSeen.add(id)
      current!.samples.push({ name, labels, value: value === '+Inf' ? Infinity : value === '-Inf' ? -Infinity : Number(value) })
    } else {
      throw new Error(`not a line of the text format: ${JSON.stringify(line)}`)
    }
  }
  return { families }
}

describe('the strict reader (so that passing it means something)', () => {
  it('reads the spec\'s own escaping example', () => {
    const text = '# HELP msdos_file_access_time_seconds Access time.\n# TYPE msdos_file_access_time_seconds gauge\n' +
      'msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9\n'
    const [family] = parseExposition(text).families
    expect(family?.samples[0]).toEqual({
      name: 'msdos_file_access_time_seconds',
      labels: { path: 'C:\\DIR\\FILE.TXT', error: 'Cannot find file:\n"FILE.TXT"' },
      value: 1.458255915e9
    })
  })

  it('refuses lines and orders the spec does not allow', () => {
    const head = '# HELP x_total X.\n# TYPE x_total counter\n'
    for (const bad of [
      head + 'x_total 1', // no final line feed
      head + 'x_total{a="un"escaped"} 1\n',
      head + 'x_total{a="raw\\"} 1\n', // a lone backslash escaping the closing quote
      head + 'x_total{a-b="v"} 1\n',
      head + 'x_total 1 2 3\n',
      head + 'x_total Infinity\n',
      head + 'x_total 1\n# TYPE x_total counter\n', // TYPE after a sample
      head + 'y 1\n', // a sample outside its family's group
      head + 'x_total 1\nx_total 2\n', // the same series twice
      head + 'x_total 1\n' + head // a family opened twice
    ]) {
      expect(() => parseExposition(bad), JSON.stringify(bad)).toThrow()
    }
  })
})

describe('prometheusText', () => {
  const memory: TierMetrics = tierMetrics('memory', { ...base, hits: 30, misses: 10, entries: 3, bytes: 700, evictions: 4, puts: 7, rejected: 1 })
  const disk: TierMetrics = tierMetrics('disk', { ...base, capacityBytes: 5000, hits: 6, misses: 4, entries: 9, bytes: 4000, puts: 13, weights: { frequency: 1.25, recency: 0.25, size: 0.5 } })

  it('writes the exact exposition for one tier (checked by hand against the spec)', () => {
    expect(prometheusText('blockfed_cache', [tierMetrics('memory', { ...base, hits: 3, misses: 1, entries: 2, bytes: 200, puts: 2 })], { model: 'mnist' })).toBe([
      '# HELP blockfed_cache_hits_total Cache gets answered by the tier.',
      '# TYPE blockfed_cache_hits_total counter',
      'blockfed_cache_hits_total{model="mnist",tier="memory"} 3',
      '# HELP blockfed_cache_misses_total Cache gets the tier could not answer.',
      '# TYPE blockfed_cache_misses_total counter',
      'blockfed_cache_misses_total{model="mnist",tier="memory"} 1',
      '# HELP blockfed_cache_hit_ratio Hits / (hits + misses) since the tier opened; 0 before any get.',
      '# TYPE blockfed_cache_hit_ratio gauge',
      'blockfed_cache_hit_ratio{model="mnist",tier="memory"} 0.75',
      '# HELP blockfed_cache_bytes Bytes held by the tier.',
      '# TYPE blockfed_cache_bytes gauge',
      'blockfed_cache_bytes{model="mnist",tier="memory"} 200',
      '# HELP blockfed_cache_capacity_bytes Bound on the bytes the tier holds.',
      '# TYPE blockfed_cache_capacity_bytes gauge',
      'blockfed_cache_capacity_bytes{model="mnist",tier="memory"} 1000',
      '# HELP blockfed_cache_entries Entries held by the tier.',
      '# TYPE blockfed_cache_entries gauge',
      'blockfed_cache_entries{model="mnist",tier="memory"} 2',
      '# HELP blockfed_cache_evictions_total Entries removed by the tier\'s eviction policy.',
      '# TYPE blockfed_cache_evictions_total counter',
      'blockfed_cache_evictions_total{model="mnist",tier="memory"} 0',
      '# HELP blockfed_cache_puts_total Puts the tier stored.',
      '# TYPE blockfed_cache_puts_total counter',
      'blockfed_cache_puts_total{model="mnist",tier="memory"} 2',
      '# HELP blockfed_cache_rejected_total Puts not stored: the value alone is larger than the tier\'s capacity.',
      '# TYPE blockfed_cache_rejected_total counter',
      'blockfed_cache_rejected_total{model="mnist",tier="memory"} 0',
      ''
    ].join('\n'))
    expect(PROMETHEUS_CONTENT_TYPE).toBe('text/plain; version=0.0.4; charset=utf-8')
  })

  it('parses line by line under a strict reader, and every value reads back', () => {
    const parsed = parseExposition(prometheusText('bf', [memory, disk]))
    const byName = new Map(parsed.families.map((f) => [f.name, f]))
    expect([...byName.keys()]).toEqual([
      'bf_hits_total', 'bf_misses_total', 'bf_hit_ratio', 'bf_bytes', 'bf_capacity_bytes', 'bf_entries',
      'bf_evictions_total', 'bf_puts_total', 'bf_rejected_total', 'bf_score_weight'
    ])
    for (const f of parsed.families) {
      expect(f.help.length, f.name).toBeGreaterThan(0)
      // Counters, and only counters, end in _total.
      expect(f.type === 'counter', f.name).toBe(f.name.endsWith('_total'))
    }
    const value = (name: string, labels: Record<string, string>): number | undefined =>
      byName.get(name)?.samples.find((s) => JSON.stringify(s.labels) === JSON.stringify(labels))?.value
    for (const m of [memory, disk]) {
      const l = { tier: m.tier }
      expect(value('bf_hits_total', l)).toBe(m.hits)
      expect(value('bf_misses_total', l)).toBe(m.misses)
      expect(value('bf_hit_ratio', l)).toBe(m.hitRate)
      expect(value('bf_bytes', l)).toBe(m.bytes)
      expect(value('bf_capacity_bytes', l)).toBe(m.capacityBytes)
      expect(value('bf_entries', l)).toBe(m.entries)
      expect(value('bf_evictions_total', l)).toBe(m.evictions)
      expect(value('bf_puts_total', l)).toBe(m.puts)
      expect(value('bf_rejected_total', l)).toBe(m.rejected)
    }
    expect(value('bf_hit_ratio', { tier: 'memory' })).toBe(0.75)
    // Weights only for the tier that has them.
    expect(byName.get('bf_score_weight')?.samples).toEqual([
      { name: 'bf_score_weight', labels: { tier: 'disk', component: 'frequency' }, value: 1.25 },
      { name: 'bf_score_weight', labels: { tier: 'disk', component: 'recency' }, value: 0.25 },
      { name: 'bf_score_weight', labels: { tier: 'disk', component: 'size' }, value: 0.5 }
    ])
  })

  it('escapes label values as the spec says, and they read back unchanged', () => {
    const awkward = 'C:\\DIR\\FILE.TXT "quoted"\nsecond line ü ✓'
    const text = prometheusText('bf', [{ ...memory, tier: 'mem"ory\\' }], { path: awkward, empty: '' })
    expect(text).toContain('bf_hits_total{path="C:\\\\DIR\\\\FILE.TXT \\"quoted\\"\\nsecond line ü ✓",empty="",tier="mem\\"ory\\\\"} 30\n')
    const parsed = parseExposition(text)
    for (const f of parsed.families) {
      for (const s of f.samples) expect(s.labels).toEqual({ path: awkward, empty: '', tier: 'mem"ory\\' })
    }
  })

  it('writes values as Go\'s ParseFloat reads them', () => {
    const odd = { ...memory, hitRate: Number.NaN, bytes: Infinity, capacityBytes: 1e21, entries: 5e-7, evictions: -Infinity }
    const parsed = parseExposition(prometheusText('bf', [odd]))
    const v = (name: string): number | undefined => parsed.families.find((f) => f.name === name)?.samples[0]?.value
    expect(v('bf_hit_ratio')).toBeNaN()
    expect(v('bf_bytes')).toBe(Infinity)
    expect(v('bf_capacity_bytes')).toBe(1e21)
    expect(v('bf_entries')).toBe(5e-7)
    expect(v('bf_evictions_total')).toBe(-Infinity)
  })

  it('puts several caches in one exposition, each metric in one group', () => {
    const text = prometheusTextGroups('bf', [
      { labels: { model: 'a' }, metrics: [memory, disk] },
      { labels: { model: 'b' }, metrics: [memory] }
    ])
    const parsed = parseExposition(text)
    const hits = parsed.families.find((f) => f.name === 'bf_hits_total')!
    expect(hits.samples.map((s) => s.labels)).toEqual([
      { model: 'a', tier: 'memory' }, { model: 'a', tier: 'disk' }, { model: 'b', tier: 'memory' }
    ])
    expect(prometheusTextGroups('bf', [])).toBe('')
    expect(prometheusText('bf', [])).toBe('')
  })

  it('refuses what would make an invalid exposition, naming it', () => {
    expect(() => prometheusText('9bad', [memory])).toThrow(/prefix/)
    expect(() => prometheusText('bad-name', [memory])).toThrow(InvalidInputError)
    expect(() => prometheusText('bf', [memory], { 'no-dash': 'x' })).toThrow(/label name "no-dash"/)
    expect(() => prometheusText('bf', [memory], { __reserved: 'x' })).toThrow(/__/)
    expect(() => prometheusText('bf', [memory], { tier: 'x' })).toThrow(/"tier" is set by the exporter/)
    expect(() => prometheusText('bf', [memory, memory])).toThrow(/two series/)
    expect(() => prometheusText('bf', [memory], { model: 'broken \uD800' })).toThrow(/well-formed/)
    expect(() => prometheusTextGroups('bf', [{ labels: { model: 'a' }, metrics: [memory] }, { labels: { model: 'a' }, metrics: [memory] }])).toThrow(/two series/)
    // The same labels in another order are the same series.
    expect(() => prometheusTextGroups('bf', [{ labels: { model: 'a', run: '1' }, metrics: [memory] }, { labels: { run: '1', model: 'a' }, metrics: [memory] }])).toThrow(/two series/)
  })
})
