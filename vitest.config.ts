import { defineConfig } from 'vitest/config';

/**
 * Tests that measure the gateway under attack (latency, CPU, memory) or load the machine for
 * seconds (a 100,000-transaction block): they run one at a time, after the others, so that no
 * test's figures are another test's noise.
 */
const ALONE = ['test/fuzz.test.ts', 'test/attacks.test.ts', 'test/limits.test.ts', 'test/hostileNode.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['src/**/*.test.ts', 'packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: ALONE,
          // End-to-end files each start their own anvil and gateway on free ports; two at a time fits 2 cores.
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          // Type tests (`*.test-d.ts`): tsc over tsconfig.typecheck.json, nothing run.
          name: 'types',
          include: [],
          typecheck: {
            enabled: true,
            only: true,
            include: ['src/**/*.test-d.ts'],
            tsconfig: './tsconfig.typecheck.json',
          },
        },
      },
      {
        extends: true,
        test: {
          name: 'alone',
          include: ALONE,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
