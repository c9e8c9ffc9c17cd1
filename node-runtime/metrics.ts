/**
 * A runtime's metrics in the Prometheus text format 0.0.4: every model folder's cache tiers
 * (hits, misses, hit ratio, bytes, evictions: shared/cache/metrics.ts) and the swarm's
 * counters (bytes and objects served to peers, refused requests, DHT provides) and the
 * access-history prefetches.
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
  provideFailures: 'DHT provides that failed.',
  parityEncodes: 'Blocks Reed-Solomon encoded to answer parity-shard requests.',
  requestsSlowed: 'Shard requests read late because their peer or host was over its request rate.',
  streamsRefused: 'Inbound libp2p streams reset because their peer opened streams past its rate.',
  streamsWasted: 'Inbound libp2p streams refused or reset by their peer.',
  connectionsCut: 'libp2p connections closed because their peer kept wasting streams.',
  connectionsRefused: 'Inbound libp2p connections refused while their peer or host was cooling down after a stream flood.'
}

/** Access-history prefetches (node-runtime/runtime.ts `afterLoad`). */
export interface PrefetchCounters {
  prefetches: number
  failures: number
  blocks: number
  bytesFetched: number
}

const PREFETCH_HELP: Record<keyof PrefetchCounters, string> = {
  prefetches: 'Access-history prefetches that completed.',
  failures: 'Access-history prefetches that failed or were stopped.',
  blocks: 'Blocks the access-history prefetches fetched into the cache.',
  bytesFetched: 'Bytes the access-history prefetches fetched.'
}

const snake = (name: string): string => name.replace(/[A-Z]/g, c => `_${c.toLowerCase()}`)

function counters<K extends string> (prefix: string, help: Record<K, string>, values: Record<K, number>): string {
  return (Object.keys(help) as K[]).map(key => {
    const name = `${prefix}_${snake(key)}_total`
    return `# HELP ${name} ${help[key]}\n# TYPE ${name} counter\n${name} ${values[key]}\n`
  }).join('')
}

export interface RuntimeMetrics {
  caches: Array<{ modelDir: string, cache: CacheTier }>
  swarm?: SwarmCounters
  prefetch: PrefetchCounters
}

export function runtimeMetricsText ({ caches, swarm, prefetch }: RuntimeMetrics): string {
  let text = caches.length === 0 ? '' : prometheusTextGroups('blockfed_cache', caches.map(({ modelDir, cache }) => ({ labels: { model_dir: modelDir }, metrics: cacheMetrics(cache) })))
  if (swarm !== undefined) text += counters('blockfed_swarm', SWARM_HELP, swarm)
  return text + counters('blockfed_prefetch', PREFETCH_HELP, prefetch)
}
