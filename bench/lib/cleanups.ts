/** Things a benchmark started, to stop at its end: add each with `unshift`, so the newest stops first. */
export type Cleanups = Array<() => Promise<void>>;

/**
 * Runs each of `cleanups` once, newest first, emptying the list first (so a second call, or one
 * that overlaps, runs nothing twice); logs what fails and goes on.
 */
export async function runCleanups(cleanups: Cleanups, log: (line: string) => void): Promise<void> {
  for (const cleanup of cleanups.splice(0)) {
    try {
      await cleanup();
    } catch (error) {
      log(`cleanup: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

/**
 * The cleanups of a benchmark run, also run on SIGINT and SIGTERM (then the process exits 130):
 * `stopAll` runs each once, newest first, logging what fails and going on; `release` stops
 * listening for the signals.
 */
export function cleanupOnExit(log: (line: string) => void): {
  readonly cleanups: Cleanups;
  readonly stopAll: () => Promise<void>;
  readonly release: () => void;
} {
  const cleanups: Cleanups = [];
  const stopAll = (): Promise<void> => runCleanups(cleanups, log);
  const onSignal = (): void => {
    void stopAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const release = (): void => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  return { cleanups, stopAll, release };
}
