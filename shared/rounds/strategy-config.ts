/**
 * The strategy config that a round offer carries to clients and the coordinator persists: a
 * zod schema (it crosses the wire), strict so that a misspelt key is an error, with the defaults
 * of strategy-defaults.ts filled in. It lives in shared/ because round offers carry it; the
 * strategies themselves are in aggregation/strategies.
 */
import { z } from 'zod'
import { DEFAULT_FEDAVGM, DEFAULT_FEDOPT, DEFAULT_FEDPROX_MU } from './strategy-defaults.ts'

const decay = (what: string): z.ZodNumber => z.number().min(0, `${what} must be in [0, 1)`).lt(1, `${what} must be in [0, 1)`)
const positive = (what: string): z.ZodNumber => z.number().positive(`${what} must be a positive number`)

const fedOptFields = {
  /** Server learning rate η. */
  lr: positive('lr').default(DEFAULT_FEDOPT.lr),
  /** First-moment decay β1. */
  beta1: decay('beta1').default(DEFAULT_FEDOPT.beta1),
  /** Second-moment decay β2. */
  beta2: decay('beta2').default(DEFAULT_FEDOPT.beta2),
  /** Adaptivity τ: floor of the denominator √v + τ, and √ of the initial v. */
  tau: positive('tau').default(DEFAULT_FEDOPT.tau)
}

export const strategyConfigSchema = z.discriminatedUnion('name', [
  z.strictObject({ name: z.literal('fedavg') }),
  z.strictObject({
    name: z.literal('fedprox'),
    /** Proximal weight μ for the clients' term μ/2·‖w − w_global‖²; the server ignores it. */
    mu: z.number().min(0, 'mu must be a non-negative number').default(DEFAULT_FEDPROX_MU)
  }),
  z.strictObject({
    name: z.literal('fedavgm'),
    /** Server learning rate η (1: the momentum buffer is added as is). */
    lr: positive('lr').default(DEFAULT_FEDAVGM.lr),
    /** Server momentum β; 0 is FedAvg. */
    momentum: decay('momentum').default(DEFAULT_FEDAVGM.momentum)
  }),
  z.strictObject({ name: z.literal('fedadam'), ...fedOptFields }),
  z.strictObject({ name: z.literal('fedyogi'), ...fedOptFields })
])

/** A parsed strategy config, defaults filled in. */
export type StrategyConfig = z.output<typeof strategyConfigSchema>
/** A strategy config as written (defaults may be left out). */
export type StrategyConfigInput = z.input<typeof strategyConfigSchema>
export type StrategyName = StrategyConfig['name']
