/**
 * Privacy accounting for the Gaussian mechanism by Rényi differential privacy (Mironov 2017,
 * "Rényi Differential Privacy"):
 *  - one round with L2 sensitivity C and noise z·C is (α, α/(2z²))-RDP for every order α > 1
 *    (Table 2, Gaussian mechanism);
 *  - R rounds compose by adding RDP at each order (Prop. 1): (α, R·α/(2z²));
 *  - (α, ρ)-RDP implies (ρ + log(1/δ)/(α − 1), δ)-DP (Prop. 3), minimised over a grid of orders.
 *
 * Conservative: every round is charged as if every client's data were used (no amplification
 * by client subsampling), and the conversion is Mironov's, not the tighter ones of Balle et al.
 * 2020 or Canonne et al. 2020: under the assumptions of dp/noise.ts the true ε is never larger
 * than what is reported here.
 */

/**
 * The orders α tried: Opacus's and TF Privacy's default grid (1.1, 1.2, …, 10.9 and 12, 13, …, 63),
 * extended by 64 … 1024 so that large noise multipliers (optimum α ≈ 1 + z·√(2 log(1/δ)/R)) are
 * not cut short. Any α > 1 yields a valid bound; a coarser grid only loosens it.
 */
export const RDP_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, i) => 1 + (i + 1) / 10),
  ...Array.from({ length: 52 }, (_, i) => 12 + i),
  64, 80, 96, 128, 192, 256, 384, 512, 768, 1024
])

/** A cumulative privacy spend: after `round` rounds the release so far is (epsilon, delta)-DP. */
export interface PrivacySpend {
  round: number
  epsilon: number
  delta: number
}

function checkNoise (noiseMultiplier: number, where: string): void {
  if (!(Number.isFinite(noiseMultiplier) && noiseMultiplier > 0)) throw new RangeError(`${where}: noiseMultiplier must be a positive finite number, got ${String(noiseMultiplier)}`)
}

function checkDelta (delta: number, where: string): void {
  if (!(delta > 0 && delta < 1)) throw new RangeError(`${where}: delta must be in (0, 1), got ${String(delta)}`)
}

function checkRounds (rounds: number, where: string): void {
  if (!(Number.isSafeInteger(rounds) && rounds >= 0)) throw new RangeError(`${where}: rounds must be a non-negative integer, got ${String(rounds)}`)
}

/** min over RDP_ORDERS of R·α/(2z²) + log(1/δ)/(α − 1); 0 for R = 0. Arguments already checked. */
function epsilonAt (noiseMultiplier: number, rounds: number, delta: number): number {
  if (rounds === 0) return 0
  const perOrder = rounds / (2 * noiseMultiplier * noiseMultiplier)
  const logInvDelta = Math.log(1 / delta)
  let best = Infinity
  for (const alpha of RDP_ORDERS) best = Math.min(best, alpha * perOrder + logInvDelta / (alpha - 1))
  return best
}

/**
 * ε after `rounds` rounds of the Gaussian mechanism with noise multiplier z = σ/C, at the given δ.
 *
 * @example gaussianEpsilon({ noiseMultiplier: 1, rounds: 1, delta: 1e-5 }) // ≈ 5.2985
 */
export function gaussianEpsilon ({ noiseMultiplier, rounds, delta }: { noiseMultiplier: number, rounds: number, delta: number }): number {
  checkNoise(noiseMultiplier, 'gaussianEpsilon')
  checkRounds(rounds, 'gaussianEpsilon')
  checkDelta(delta, 'gaussianEpsilon')
  return epsilonAt(noiseMultiplier, rounds, delta)
}

/** A running privacy ledger for one model's training: call `spend()` once per aggregated round. */
export interface DpAccountant {
  /** Charges one round and returns the cumulative spend. */
  spend: () => PrivacySpend
  /** The cumulative spend so far, without charging (ε = 0 before any round). */
  spent: () => PrivacySpend
}

/**
 * An accountant for a fixed noise multiplier and δ. Its whole state is the round count, so the
 * coordinator persists `spent().round` and passes it back as `rounds` after a restart.
 */
export function dpAccountant ({ noiseMultiplier, delta, rounds = 0 }: { noiseMultiplier: number, delta: number, rounds?: number }): DpAccountant {
  checkNoise(noiseMultiplier, 'dpAccountant')
  checkDelta(delta, 'dpAccountant')
  checkRounds(rounds, 'dpAccountant')
  let round = rounds
  const spent = (): PrivacySpend => ({ round, epsilon: epsilonAt(noiseMultiplier, round, delta), delta })
  return {
    spend: () => {
      round++
      return spent()
    },
    spent
  }
}
