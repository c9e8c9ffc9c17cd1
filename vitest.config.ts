import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Real models, real crypto and real servers: generous per-test budgets, but every wait inside
    // the code under test still has its own deadline.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: keep files from fighting over them.
    pool: 'forks',
    maxWorkers: 2,
    // The JSON report lets .ci/run print a runner-neutral 'N passed, N failed' line.
    reporters: ['default', 'json'],
    outputFile: { json: '.vitest/results.json' }
  }
})
