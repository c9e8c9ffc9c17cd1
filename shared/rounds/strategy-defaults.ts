/**
 * Defaults for the server strategies (strategy-config.ts; the maths is in aggregation/strategies)
 * and for the clients' label-skew corrections (config.ts; the maths is in shared/training).
 */

/**
 * FedProx proximal weight μ: the middle of the grid {0.001, 0.01, 0.1, 1} that Li et al. 2020
 * ("Federated Optimization in Heterogeneous Networks", §5) search per task.
 */
export const DEFAULT_FEDPROX_MU = 0.01

/**
 * FedAdam / FedYogi (Reddi et al. 2021, "Adaptive Federated Optimization"). β1 = 0.9 and
 * β2 = 0.99 are fixed in all of the paper's experiments (§5). The server learning rate η and the
 * adaptivity τ are tuned per task there (grids in its Appendix D); η = 1e-2 and τ = 1e-3 are a
 * conservative starting point inside those grids (also the defaults of Flower's FedYogi).
 */
export const DEFAULT_FEDOPT = Object.freeze({ lr: 1e-2, beta1: 0.9, beta2: 0.99, tau: 1e-3 })

/**
 * FedAvgM (Hsu, Qi & Brown 2019, "Measuring the Effects of Non-Identical Data Distribution for
 * Federated Visual Classification"): server momentum β = 0.9, the usual momentum, and server
 * learning rate η = 1, so that β = 0 is exactly FedAvg. The paper tunes β together with the
 * effective step η/(1 − β) per task; simulate's own choice is in BENCHMARKS.md.
 */
export const DEFAULT_FEDAVGM = Object.freeze({ lr: 1, momentum: 0.9 })

/**
 * FedRS's factor α on the logits of classes a client lacks (Li & Zhan 2021): 0.5, the stronger of
 * the two values ({0.5, 0.9}) their comparison with FedAvg and FedProx reports.
 */
export const DEFAULT_FEDRS_ALPHA = 0.5

/**
 * FedLC's calibration strength τ in z_c − τ·n_c^(−1/4) (Zhang et al. 2022), tuned per task in the
 * paper; 1 is the neutral starting point (the offset of a class seen once is −1).
 */
export const DEFAULT_FEDLC_TAU = 1
