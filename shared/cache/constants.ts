/** Defaults for the block cache (DESIGN.md, "Cache"). */

/** Memory tier: enough for a small model's blocks (default block size is 1 MiB). */
export const DEFAULT_MEMORY_CAPACITY_BYTES = 128 * 1024 * 1024

/** Disk tier: room for a few versions of a few models, so rollback stays local. */
export const DEFAULT_DISK_CAPACITY_BYTES = 2 * 1024 * 1024 * 1024

/** Half-life of an access in the disk tier's frequency count: one day. */
export const DEFAULT_HALF_LIFE_MS = 24 * 60 * 60 * 1000

/**
 * Weights of the disk tier's eviction score (see score.ts). In "doublings": one doubling of
 * the decayed access count is worth `frequency`, each half-life idle costs `recency` on top of
 * the decay itself, and each doubling of size costs `size`. So by default a block 4× larger needs
 * 2× the decayed accesses to rank the same — halfway between hit-rate-optimal (size weight 1,
 * as GDSF) and byte-hit-rate-optimal (size weight 0) caching.
 */
export const DEFAULT_SCORE_WEIGHTS = Object.freeze({ frequency: 1, recency: 0.5, size: 0.5 })
