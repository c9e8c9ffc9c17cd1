/** Node runtime defaults; the AoE config's own values win. */
export const DEFAULT_MEMORY_CACHE_BYTES = 256 << 20
export const DEFAULT_DISK_CACHE_BYTES = 4 * 1024 ** 3
export const DEFAULT_HALF_LIFE_HOURS = 24
export const DEFAULT_FETCH_CONCURRENCY = 8
export const DEFAULT_FETCH_TIMEOUT_MS = 30_000
