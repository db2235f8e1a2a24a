import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // End-to-end files each start their own anvil and gateway on free ports; two at a time fits 2 cores.
    maxWorkers: 2,
    pool: 'forks',
  },
});
