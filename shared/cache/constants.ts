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

/**
 * Adaptation of the disk tier's frequency and recency weights (adapt.ts). The learning rate is
 * LeCaR's (Vietri et al., HotStorage 2018, λ = 0.45): one fresh regret multiplies the weight
 * blamed by e^−0.45 ≈ 0.64 before renormalising.
 */
export const DEFAULT_ADAPT_RATE = 0.45

/**
 * Evictions remembered as ghosts. LeCaR keeps as many as the cache holds entries; a disk tier
 * bounded in bytes does not know that number in advance, so a fixed bound: 1024 keys of at most
 * 200 characters stay well under 1 MiB, and cover a 1 GiB tier of 1 MiB blocks.
 */
export const DEFAULT_ADAPT_HISTORY_SIZE = 1024

/**
 * Floor on the share of frequency and of recency in their sum: neither weight reaches 0, so a
 * workload that changes back can still move it (a multiplicative update cannot revive a 0).
 * 0.05 lets the ratio between them range from 1:19 to 19:1.
 */
export const DEFAULT_ADAPT_MIN_SHARE = 0.05

/**
 * A regret's strength fades with the evictions since its ghost was evicted, to this factor at
 * the end of the history (LeCaR's discount d = 0.005^(1/N)): a key that came back only after
 * many others were evicted is weak evidence that another order would have kept it.
 */
export const ADAPT_DISCOUNT_AT_HISTORY_END = 0.005
