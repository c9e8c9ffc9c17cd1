/** Defaults for the server strategies (strategy-config.ts; the maths is in aggregation/strategies). */

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
