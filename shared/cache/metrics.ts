/**
 * Cache metrics: each tier's counters as a plain object (for a dashboard or a JSON endpoint), and
 * the same in the Prometheus text exposition format, version 0.0.4 (prometheus/docs,
 * content/docs/instrumenting/exposition_formats.md, "Text format details"): a `# HELP` and a
 * `# TYPE` line before each metric's samples, all samples of a metric in one group, label values
 * with `\`, `"` and line feed escaped, the last line ending in a line feed. Counters end in
 * `_total` (the Prometheus naming convention, kept by OpenMetrics).
 *
 * Only tiers are exported, each under a `tier` label, never the stacked cache's own totals:
 * summing a metric over `tier` must not count a get twice. For a memory-over-disk cache every get
 * reaches the memory tier and its misses reach the disk tier (tiered.ts counts a memory copy the
 * disk tier no longer holds as a memory miss, not as a hit), so the whole cache's hit ratio is
 * `sum(hits_total) / (sum(hits_total) + misses_total{tier="disk"})`.
 */
import { InvalidInputError } from '../errors/errors.ts'
import type { ScoreWeights } from './score.ts'
import type { TieredCache } from './tiered.ts'
import type { CacheStats, CacheTier } from './types.ts'

/** One tier's figures. */
export interface TierMetrics {
  /** The tier's name (`CacheTier.name`): the `tier` label. */
  tier: string
  hits: number
  misses: number
  /** hits / (hits + misses), 0 before any get. */
  hitRate: number
  bytes: number
  capacityBytes: number
  entries: number
  evictions: number
  puts: number
  rejected: number
  /** The score weights in use, for tiers that evict by score. */
  weights?: ScoreWeights
}

/** Constant labels (e.g. `{ model: 'mnist' }`) put on every sample. */
export type MetricLabels = Readonly<Record<string, string>>

/** The samples of one cache, with the labels that tell it from other caches in one exposition. */
export interface MetricsGroup {
  labels?: MetricLabels
  metrics: readonly TierMetrics[]
}

/** The HTTP Content-Type of `prometheusText`'s output. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/** A tier's metrics from its stats. */
export function tierMetrics (tier: string, stats: CacheStats): TierMetrics {
  const gets = stats.hits + stats.misses
  const out: TierMetrics = {
    tier,
    hits: stats.hits,
    misses: stats.misses,
    hitRate: gets === 0 ? 0 : stats.hits / gets,
    bytes: stats.bytes,
    capacityBytes: stats.capacityBytes,
    entries: stats.entries,
    evictions: stats.evictions,
    puts: stats.puts,
    rejected: stats.rejected
  }
  if (stats.weights !== undefined) out.weights = { ...stats.weights }
  return out
}

function isTiered (cache: CacheTier | TieredCache): cache is TieredCache {
  return 'tierStats' in cache && typeof cache.tierStats === 'function'
}

/**
 * One entry per tier: the tier itself, or a tiered cache's memory then disk tier.
 *
 * @example
 * cacheMetrics(cache) // [{ tier: 'memory', hits: 40, misses: 10, hitRate: 0.8, … }, { tier: 'disk', … }]
 */
export function cacheMetrics (cache: CacheTier | TieredCache): TierMetrics[] {
  if (isTiered(cache)) {
    const s = cache.tierStats()
    return [tierMetrics(cache.memory.name, s.memory), tierMetrics(cache.disk.name, s.disk)]
  }
  return [tierMetrics(cache.name, cache.stats())]
}

// Exposition syntax (the spec: "the usual Prometheus expression language restrictions").
const METRIC_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/ // colons are left to recording rules
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
/** Labels this module sets itself. */
const OWN_LABELS = new Set(['tier', 'component'])

interface Family {
  suffix: string
  type: 'counter' | 'gauge'
  help: string
  value: (m: TierMetrics) => number
}

const FAMILIES: readonly Family[] = [
  { suffix: 'hits_total', type: 'counter', help: 'Cache gets answered by the tier.', value: (m) => m.hits },
  { suffix: 'misses_total', type: 'counter', help: 'Cache gets the tier could not answer.', value: (m) => m.misses },
  { suffix: 'hit_ratio', type: 'gauge', help: 'Hits / (hits + misses) since the tier opened; 0 before any get.', value: (m) => m.hitRate },
  { suffix: 'bytes', type: 'gauge', help: 'Bytes held by the tier.', value: (m) => m.bytes },
  { suffix: 'capacity_bytes', type: 'gauge', help: 'Bound on the bytes the tier holds.', value: (m) => m.capacityBytes },
  { suffix: 'entries', type: 'gauge', help: 'Entries held by the tier.', value: (m) => m.entries },
  { suffix: 'evictions_total', type: 'counter', help: 'Entries removed by the tier\'s eviction policy.', value: (m) => m.evictions },
  { suffix: 'puts_total', type: 'counter', help: 'Puts the tier stored.', value: (m) => m.puts },
  { suffix: 'rejected_total', type: 'counter', help: 'Puts not stored: the value alone is larger than the tier\'s capacity.', value: (m) => m.rejected }
]

const WEIGHT_HELP = 'Eviction score weight in use, by score component (frequency, recency, size).'

/** A sample value as Go's strconv.ParseFloat reads it (the spec's reference). */
function formatValue (x: number): string {
  if (Number.isNaN(x)) return 'NaN'
  if (x === Infinity) return '+Inf'
  if (x === -Infinity) return '-Inf'
  return String(x) // JS prints 1e+21, 5e-7, 0.1: all ParseFloat syntax
}

function escapeLabelValue (v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

function escapeHelp (v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

function checkLabelValue (what: string, v: unknown): asserts v is string {
  if (typeof v !== 'string' || LONE_SURROGATE.test(v)) {
    throw new InvalidInputError(`prometheusText: ${what} must be a well-formed string (UTF-8), got ${typeof v === 'string' ? 'a lone surrogate' : typeof v}`)
  }
}

function labelText (pairs: ReadonlyArray<readonly [string, string]>): string {
  return pairs.length === 0 ? '' : `{${pairs.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`
}

/**
 * The metrics of one cache in the Prometheus text format 0.0.4, `labels` on every sample.
 *
 * @example
 * prometheusText('blockfed_cache', cacheMetrics(cache), { model: 'mnist' })
 * // # HELP blockfed_cache_hits_total Cache gets answered by the tier.
 * // # TYPE blockfed_cache_hits_total counter
 * // blockfed_cache_hits_total{model="mnist",tier="memory"} 40
 * // …
 */
export function prometheusText (prefix: string, metrics: readonly TierMetrics[], labels: MetricLabels = {}): string {
  return prometheusTextGroups(prefix, [{ labels, metrics }])
}

/**
 * Several caches in one exposition (each metric's samples must form one group, so separate
 * `prometheusText` outputs cannot just be concatenated). No two samples of a metric may carry
 * the same labels: a repeated tier name within the same group labels is refused.
 */
export function prometheusTextGroups (prefix: string, groups: readonly MetricsGroup[]): string {
  if (typeof prefix !== 'string' || !METRIC_NAME.test(prefix)) {
    throw new InvalidInputError(`prometheusText: prefix must match [a-zA-Z_][a-zA-Z0-9_]*, got ${JSON.stringify(prefix)}`)
  }
  // Validate everything before writing anything, and find each series' labels once.
  const series: Array<{ metrics: TierMetrics, labels: Array<readonly [string, string]> }> = []
  const seen = new Set<string>()
  for (const group of groups) {
    const pairs = Object.entries(group.labels ?? {})
    for (const [k, v] of pairs) {
      if (!LABEL_NAME.test(k) || k.startsWith('__')) {
        throw new InvalidInputError(`prometheusText: label name ${JSON.stringify(k)} must match [a-zA-Z_][a-zA-Z0-9_]* and not start with "__"`)
      }
      if (OWN_LABELS.has(k)) throw new InvalidInputError(`prometheusText: label "${k}" is set by the exporter itself`)
      checkLabelValue(`label "${k}"`, v)
    }
    for (const m of group.metrics) {
      checkLabelValue('a tier name', m.tier)
      const labels = [...pairs, ['tier', m.tier] as const]
      // Label order does not make another series: {a,b} and {b,a} are one (found by review).
      const id = labelText([...labels].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
      if (seen.has(id)) throw new InvalidInputError(`prometheusText: two series with the labels ${id}`)
      seen.add(id)
      series.push({ metrics: m, labels })
    }
  }
  const lines: string[] = []
  const header = (name: string, type: string, help: string): void => {
    lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`)
  }
  if (series.length > 0) {
    for (const f of FAMILIES) {
      const name = `${prefix}_${f.suffix}`
      header(name, f.type, f.help)
      for (const s of series) lines.push(`${name}${labelText(s.labels)} ${formatValue(f.value(s.metrics))}`)
    }
  }
  const weighted = series.flatMap((s) => s.metrics.weights === undefined ? [] : [{ weights: s.metrics.weights, labels: s.labels }])
  if (weighted.length > 0) {
    const name = `${prefix}_score_weight`
    header(name, 'gauge', WEIGHT_HELP)
    for (const { weights: w, labels } of weighted) {
      for (const component of ['frequency', 'recency', 'size'] as const) {
        lines.push(`${name}${labelText([...labels, ['component', component]])} ${formatValue(w[component])}`)
      }
    }
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n'
}
