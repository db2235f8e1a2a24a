/**
 * Gives memory back after a burst. V8 keeps the heap it grew to during a burst of work (an
 * attack of connections, a storm of resumes) and, once the process is quiet, allocates too little
 * for its own collector to run again soon: the garbage of the burst, and the memory under it,
 * stay for minutes. This asks V8 for one full collection once the process has been quiet for a
 * while after such a growth, and only while what is live is small enough to collect in a few
 * milliseconds. Part of the composition root: `src/main.ts` starts it.
 */
import { performance } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** One look at the process. */
export interface HeapSample {
  /** Heap V8 holds, in bytes. */
  readonly totalBytes: number;
  /** Heap in use (live objects and garbage not yet collected), in bytes. */
  readonly usedBytes: number;
  /** Share of the last interval the event loop was busy, 0 to 1. */
  readonly busy: number;
  /** `performance.now()` of the sample, in ms. */
  readonly atMs: number;
}

/** When a collection is worth it (see {@link shouldReclaim}). */
export interface ReclaimPolicy {
  /** Growth of the heap over its size after the last collection that makes one worth it, in bytes. @default 33554432 */
  readonly minGrowthBytes: number;
  /** Busier than this (share of the event loop), the process is not quiet. @default 0.25 */
  readonly maxBusy: number;
  /** Samples in a row that must be quiet. @default 2 */
  readonly quietSamples: number;
  /** Past this much heap in use, V8's own collector is left to do it (a full pause would be long), in bytes. @default 134217728 */
  readonly maxUsedBytes: number;
  /** Least time between two collections, in ms. @default 60000 */
  readonly minIntervalMs: number;
}

/** Every default of {@link ReclaimPolicy}. */
export const RECLAIM_DEFAULTS: ReclaimPolicy = Object.freeze({
  minGrowthBytes: 33_554_432,
  maxBusy: 0.25,
  quietSamples: 2,
  maxUsedBytes: 134_217_728,
  minIntervalMs: 60_000,
});

/** What {@link shouldReclaim} remembers between samples. */
export interface ReclaimState {
  /** Heap size after the last collection (or at the first sample), in bytes. */
  baselineBytes: number | undefined;
  quietInARow: number;
  lastReclaimAtMs: number;
}

/** Whether to collect now: the heap grew past the baseline, and the process has been quiet for a while. */
export function shouldReclaim(state: ReclaimState, sample: HeapSample, policy: ReclaimPolicy): boolean {
  if (state.baselineBytes === undefined || sample.totalBytes < state.baselineBytes) {
    state.baselineBytes = sample.totalBytes;
  }
  state.quietInARow = sample.busy <= policy.maxBusy ? state.quietInARow + 1 : 0;
  return (
    sample.totalBytes - state.baselineBytes >= policy.minGrowthBytes &&
    state.quietInARow >= policy.quietSamples &&
    sample.usedBytes <= policy.maxUsedBytes &&
    sample.atMs - state.lastReclaimAtMs >= policy.minIntervalMs
  );
}

/** V8's full collection, made callable at run time; `undefined` where the flag cannot be set. */
function fullCollection(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

/** Starts looking at the heap every `intervalMs` (default 5 s) and collecting after bursts; returns a stop function. */
export function watchHeap(options: {
  readonly log: (message: string) => void;
  readonly intervalMs?: number;
  readonly policy?: Partial<ReclaimPolicy>;
}): () => void {
  const gc = fullCollection();
  if (gc === undefined) return () => undefined;
  const policy = { ...RECLAIM_DEFAULTS, ...options.policy };
  const state: ReclaimState = { baselineBytes: undefined, quietInARow: 0, lastReclaimAtMs: Number.NEGATIVE_INFINITY };
  let last = performance.eventLoopUtilization();
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    const heap = getHeapStatistics();
    const sample = { totalBytes: heap.total_heap_size, usedBytes: heap.used_heap_size, busy, atMs: performance.now() };
    if (!shouldReclaim(state, sample, policy)) return;
    const started = performance.now();
    gc();
    const after = getHeapStatistics().total_heap_size;
    state.baselineBytes = after;
    state.lastReclaimAtMs = performance.now();
    const mb = (bytes: number): string => `${Math.round(bytes / 1_048_576)} MB`;
    options.log(
      `memory: heap ${mb(sample.totalBytes)} → ${mb(after)} after a burst (full collection, ${Math.round(performance.now() - started)} ms)`,
    );
  }, options.intervalMs ?? 5000);
  timer.unref();
  return () => clearInterval(timer);
}
