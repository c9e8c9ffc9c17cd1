/**
 * A runtime's metrics in the Prometheus text format 0.0.4: every model folder's cache tiers
 * (hits, misses, hit ratio, bytes, evictions: shared/cache/metrics.ts) and the swarm's
 * counters (bytes and objects served to peers, refused requests, DHT provides).
 */
import { cacheMetrics, prometheusTextGroups } from '../shared/cache/metrics.ts'
import type { CacheTier } from '../shared/cache/types.ts'
import type { SwarmCounters } from './p2p/swarm.ts'

const SWARM_HELP: Record<keyof SwarmCounters, string> = {
  bytesServed: 'Bytes of blocks and shards served to peers.',
  objectsServed: 'Blocks and shards served to peers.',
  badRequests: 'Shard requests refused as malformed.',
  busy: 'Shard requests answered busy (too many answers in flight).',
  notFound: 'Shard requests for objects this runtime does not hold.',
  provided: 'Block CIDs provided in the DHT.',
  provideFailures: 'DHT provides that failed.'
}

const snake = (name: string): string => name.replace(/[A-Z]/g, c => `_${c.toLowerCase()}`)

export function runtimeMetricsText (caches: Array<{ modelDir: string, cache: CacheTier }>, swarm: SwarmCounters | undefined): string {
  let text = caches.length === 0 ? '' : prometheusTextGroups('blockfed_cache', caches.map(({ modelDir, cache }) => ({ labels: { model_dir: modelDir }, metrics: cacheMetrics(cache) })))
  if (swarm !== undefined) {
    for (const key of Object.keys(SWARM_HELP) as Array<keyof SwarmCounters>) {
      const name = `blockfed_swarm_${snake(key)}_total`
      text += `# HELP ${name} ${SWARM_HELP[key]}\n# TYPE ${name} counter\n${name} ${swarm[key]}\n`
    }
  }
  return text
}
