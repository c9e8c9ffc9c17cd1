/** Retry-After as delay-seconds (RFC 9110 §10.2.3), clamped to [0.1 s, 30 s]; undefined when absent or not a number. */
export function retryAfterMs (header: string | null): number | undefined {
  if (header === null || !/^\d{1,9}$/.test(header.trim())) return undefined
  return Math.min(30_000, Math.max(100, Number(header.trim()) * 1000))
}
