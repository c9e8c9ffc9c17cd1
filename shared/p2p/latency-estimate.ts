/**
 * A smoothed estimate of a latency and of its variation, as TCP estimates a round-trip time
 * (RFC 6298 §2: SRTT and RTTVAR, with α = 1/8 and β = 1/4), for deadlines that follow what a node
 * actually sees: `upper(4)` is TCP's retransmission timeout before its floor and ceiling. A
 * fixed header deadline cut honest peers of a CPU-starved swarm (17 processes on 2 cores, where
 * a reply's header took seconds) and rested them; a long one let silent peers cost every load
 * that long. Pure and clock-free: the caller measures.
 */
export interface LatencyEstimate {
  /** Takes one measured latency, in milliseconds. */
  observe: (ms: number) => void
  /** SRTT + k·RTTVAR, or undefined before the first measure. */
  upper: (k: number) => number | undefined
  /** Measures taken. */
  readonly samples: number
}

export function latencyEstimate (): LatencyEstimate {
  let srtt: number | undefined
  let rttvar = 0
  let samples = 0
  return {
    get samples () { return samples },
    observe (ms) {
      if (!(Number.isFinite(ms) && ms >= 0)) return
      samples++
      if (srtt === undefined) {
        // RFC 6298 (2.2): the first measurement R sets SRTT = R and RTTVAR = R/2.
        srtt = ms
        rttvar = ms / 2
        return
      }
      // (2.3): RTTVAR first, from the SRTT before this measure.
      rttvar = 0.75 * rttvar + 0.25 * Math.abs(srtt - ms)
      srtt = 0.875 * srtt + 0.125 * ms
    },
    upper: k => srtt === undefined ? undefined : srtt + k * rttvar
  }
}
