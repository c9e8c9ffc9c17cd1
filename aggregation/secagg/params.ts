/**
 * Degree k and Shamir threshold t of a round's masking graph, sized to a threat model as Bell et
 * al. 2020 do in their analyses. The procedure follows Google's SecAgg+ parameter finder
 * (federated-compute `graph_parameter_finder.cc`), rewritten here with the n − 1 other clients as
 * the population a neighbourhood is drawn from and the semi-malicious threshold rule (2) always:
 *
 *  - n clients in the roster, at most A = ⌊γN⌋ of them colluding with the server, where N ≥ n is
 *    the number of clients offered the round (`population`: the server picks the roster among
 *    them), and at most D = ⌊δn⌋ dropping out after ShareKeys.
 *  - Sparse (Harary): the smallest even k such that
 *      (1) the graph stays connected once the A + D bad clients are removed, except with
 *          probability < 2^−(σ+1). Cutting a random H(n, k) needs k/2 consecutive bad clients in
 *          two places: at most n(n − k − 1)/2 pairs of places, each all-bad with probability
 *          (A + D)_k / (n)_k (falling factorials: bad clients drawn without replacement);
 *      (2) with a = the least integer such that P[Hyp(n − 1, A, k) > a] ≤ 2^−(σ+1)/n (a client's
 *          colluding neighbours exceed a with negligible probability, union bound over clients),
 *          t = ⌊(k + a)/2⌋ + 1, so 2t > k + a: a server that tells some neighbours "u survived"
 *          and the others "u dropped" cannot gather t shares of both b_u and s_u^SK, even with a
 *          colluders answering both ways — each honest neighbour answers once (client.ts);
 *      (3) P[Hyp(n − 1, n − 1 − D, k) < t] ≤ 2^−η/n: every client keeps at least t surviving
 *          neighbours, so every needed secret can be rebuilt, except with probability < 2^−η.
 *    If no k ≤ n − 2 qualifies, the complete graph is used.
 *  - Complete (Bonawitz et al. 2017): k = n − 1, a = A, t = ⌊(k + a)/2⌋ + 1, and t ≤ k − D must
 *    hold, or the threat model is infeasible for n clients.
 *
 * σ = SECURITY_BITS, η = CORRECTNESS_BITS (constants.ts). Explicit `degree` / `threshold` override
 * the search; they are checked to give t in (k/2, k] so that (2) holds at least with a = 0.
 */
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { CORRECTNESS_BITS, DEFAULT_ADVERSARIAL_RATE, DEFAULT_DROPOUT_RATE, MAX_CLIENTS, SECURITY_BITS } from './constants.ts'
import type { GraphKind } from './graph.ts'

export interface GraphConfig {
  kind: GraphKind
  /** γ: fraction of clients assumed to collude with the server. */
  adversarialRate?: number
  /** δ: fraction of clients assumed to drop out between ShareKeys and MaskedInput. */
  dropoutRate?: number
  /** Harary degree k (even), instead of the search. */
  degree?: number
  /** Shamir threshold t, instead of the rule above. */
  threshold?: number
  /**
   * The clients the round was offered to (default: the roster). Colluders are counted over them,
   * ⌊γ · population⌋, not over the roster: the server chooses the roster, and by leaving honest
   * clients out of it (they look like slow ones) would double its colluders' share of a roster
   * of half the offer, where the threshold would assume ⌊γ · n⌋ (stop 31's review: 2 colluders in
   * a roster of 20 out of 40 offered rebuilt a client's input).
   */
  population?: number
}

export interface GraphParameters {
  kind: GraphKind
  /** Number of clients the graph is laid over (the roster). */
  n: number
  degree: number
  threshold: number
}

const logFactorials: number[] = [0, 0]

/** ln(m!), exact to float rounding: a running sum of ln i, cached (n ≤ MAX_CLIENTS keeps it small). */
function logFactorial (m: number): number {
  for (let i = logFactorials.length; i <= m; i++) logFactorials.push((logFactorials[i - 1] as number) + Math.log(i))
  return logFactorials[m] as number
}

function logChoose (m: number, r: number): number {
  return logFactorial(m) - logFactorial(r) - logFactorial(m - r)
}

/**
 * P[X = i] for X ~ Hypergeometric(population, successes, draws): the chance that `draws` items
 * taken without replacement from `population` hold exactly i of the `successes`.
 */
export function hypergeometricPmf (population: number, successes: number, draws: number, i: number): number {
  if (i < Math.max(0, draws - (population - successes)) || i > Math.min(draws, successes)) return 0
  return Math.exp(logChoose(successes, i) + logChoose(population - successes, draws - i) - logChoose(population, draws))
}

/** P[X ≤ i], summed over the lower tail itself (no 1 − … cancellation for tiny tails). */
export function hypergeometricCdf (population: number, successes: number, draws: number, i: number): number {
  let p = 0
  for (let j = 0; j <= i; j++) p += hypergeometricPmf(population, successes, draws, j)
  return Math.min(1, p)
}

/** P[X > i], summed over the upper tail itself, so that tails near 2^−41 keep their precision. */
export function hypergeometricSurvival (population: number, successes: number, draws: number, i: number): number {
  let p = 0
  for (let j = Math.min(draws, successes); j > i; j--) p += hypergeometricPmf(population, successes, draws, j)
  return Math.min(1, p)
}

function rates (config: GraphConfig): { gamma: number, delta: number } {
  const gamma = config.adversarialRate ?? DEFAULT_ADVERSARIAL_RATE
  const delta = config.dropoutRate ?? DEFAULT_DROPOUT_RATE
  if (!(gamma >= 0 && gamma < 1)) throw new InvalidInputError(`graph adversarialRate: expected a number in [0, 1), got ${gamma}`)
  if (!(delta >= 0 && delta < 1)) throw new InvalidInputError(`graph dropoutRate: expected a number in [0, 1), got ${delta}`)
  return { gamma, delta }
}

// Nudges a rate upward before flooring so that 0.1 · 30 counts as 3, not 2.999… (rounding never favours the insecure side).
const EPSILON = 1e-12

/** Threshold for degree k, or undefined when k does not meet (1)–(3). */
function checkDegree (n: number, k: number, bad: number, adversarial: number, dropouts: number): number | undefined {
  const ln2 = Math.log(2)
  const securityLog = -(SECURITY_BITS + 1) * ln2
  if (k <= bad) {
    const logPairs = Math.log(n) + Math.log(n - k - 1) - ln2
    const logAllBad = logFactorial(bad) - logFactorial(bad - k) - logFactorial(n) + logFactorial(n - k)
    if (logPairs + logAllBad >= securityLog) return undefined
  }
  const tail = Math.exp(securityLog) / n
  // The least a with P[X > a] ≤ tail, X ~ Hyp(n − 1, A, k): the tail is accumulated once from the
  // top (the order hypergeometricSurvival sums in, so the same a comes out), O(k) per degree
  // rather than O(k²): the roster's n is the server's choice, up to MAX_CLIENTS.
  let a = Math.min(k, adversarial)
  let above = 0
  while (a > 0) {
    const next = above + hypergeometricPmf(n - 1, adversarial, k, a)
    if (Math.min(1, next) > tail) break
    above = next
    a--
  }
  const t = Math.max(2, Math.floor((k + a) / 2) + 1)
  if (t > k) return undefined
  return hypergeometricCdf(n - 1, n - 1 - dropouts, k, t - 1) <= 2 ** -CORRECTNESS_BITS / n ? t : undefined
}

/**
 * Degree and threshold for `n` clients under `config`. Throws InvalidInputError when the threat
 * model cannot be met with n clients, or when explicit values are out of range.
 *
 * @example graphParameters(100, { kind: 'harary', dropoutRate: 0.1 }) // { degree: …, threshold: … }
 */
export function graphParameters (n: number, config: GraphConfig): GraphParameters {
  if (!Number.isInteger(n) || n < 3 || n > MAX_CLIENTS) throw new InvalidInputError(`graph n: expected an integer in [3, ${MAX_CLIENTS}] clients, got ${n}`)
  if (config.kind !== 'harary' && config.kind !== 'complete') throw new InvalidInputError(`graph kind: expected 'harary' or 'complete', got ${String(config.kind)}`)
  const { gamma, delta } = rates(config)
  const population = config.population ?? n
  if (!Number.isInteger(population) || population < n || population > MAX_CLIENTS) {
    throw new InvalidInputError(`graph population: expected an integer in [${n} (the roster), ${MAX_CLIENTS}] clients offered, got ${population}`)
  }
  const adversarial = Math.floor((gamma + EPSILON) * population)
  const dropouts = Math.floor((delta + EPSILON) * n)
  // ⌊δn⌋ is 0 below 1/δ clients (under 10 at the default δ = 0.1), and such a round fails at its
  // first dropout: tolerate one wherever the clients allow it (from 4, a complete graph can).
  if (delta > 0 && dropouts === 0 && config.degree === undefined && config.threshold === undefined) {
    try {
      return solve(n, config, gamma, delta, adversarial, 1)
    } catch {}
  }
  return solve(n, config, gamma, delta, adversarial, dropouts)
}

function solve (n: number, config: GraphConfig, gamma: number, delta: number, adversarial: number, dropouts: number): GraphParameters {
  if (config.degree !== undefined || config.threshold !== undefined) {
    const degree = config.kind === 'complete' ? n - 1 : config.degree
    if (config.kind === 'complete' && config.degree !== undefined && config.degree !== n - 1) {
      throw new InvalidInputError(`graph degree: the complete graph over ${n} clients has degree ${n - 1}, got ${config.degree}`)
    }
    if (degree === undefined) throw new InvalidInputError('graph degree: a sparse graph with an explicit threshold needs an explicit degree too')
    if (!Number.isInteger(degree) || degree < 2 || (degree !== n - 1 && (degree > n - 2 || degree % 2 !== 0))) {
      throw new InvalidInputError(`graph degree: expected an even integer in [2, ${n - 2}] or ${n - 1}, got ${degree}`)
    }
    const threshold = config.threshold ?? Math.floor(degree / 2) + 1
    if (!Number.isInteger(threshold) || threshold <= degree / 2 || threshold > degree || threshold < 2) {
      throw new InvalidInputError(`graph threshold: expected an integer in (${degree / 2}, ${degree}] (more than half the neighbours, at least 2), got ${threshold}`)
    }
    return { kind: degree === n - 1 ? 'complete' : 'harary', n, degree, threshold }
  }

  if (config.kind === 'harary') {
    for (let k = 2; k <= n - 2; k += 2) {
      const t = checkDegree(n, k, adversarial + dropouts, adversarial, dropouts)
      if (t !== undefined) return { kind: 'harary', n, degree: k, threshold: t }
    }
  }
  const k = n - 1
  const t = Math.max(2, Math.floor((k + Math.min(adversarial, k)) / 2) + 1)
  if (t > k - dropouts) {
    throw new InvalidInputError(`graph: ${n} clients cannot meet the threat model (adversarial rate ${gamma}, dropout rate ${delta}): threshold ${t} exceeds the ${k - dropouts} neighbours sure to survive`)
  }
  return { kind: 'complete', n, degree: k, threshold: t }
}
