/** The timing options of `watchChain` in unit tests against fake nodes: quick polls, short timeouts, a small window. */
export const TEST_WATCH_OPTIONS = {
  pollIntervalMs: 20,
  requestTimeoutMs: 1000,
  reorgWindowBlocks: 16,
  backfillConcurrency: 4,
  headTimeoutBlocks: 10,
  headTimeoutMinMs: 30_000,
} as const;
