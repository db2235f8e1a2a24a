import { describe, expect, it } from 'vitest';
import { RECLAIM_DEFAULTS, type ReclaimState, shouldReclaim } from './reclaimMemory.ts';

const MB = 1_048_576;

function run(samples: Array<{ total: number; used?: number; busy?: number; at: number }>): boolean[] {
  const state: ReclaimState = { baselineBytes: undefined, quietInARow: 0, lastReclaimAtMs: Number.NEGATIVE_INFINITY };
  return samples.map((s) =>
    shouldReclaim(
      state,
      { totalBytes: s.total * MB, usedBytes: (s.used ?? s.total / 2) * MB, busy: s.busy ?? 0, atMs: s.at },
      RECLAIM_DEFAULTS,
    ),
  );
}

describe('shouldReclaim', () => {
  it('collects once the heap grew past its baseline and the process has been quiet twice in a row', () => {
    expect(
      run([
        { total: 50, at: 0 },
        { total: 120, busy: 0.9, at: 5000 },
        { total: 130, busy: 0.1, at: 10_000 },
        { total: 130, busy: 0.1, at: 15_000 },
      ]),
    ).toEqual([false, false, false, true]);
  });

  it('leaves a heap that did not grow much, a busy process, and a large live set to V8', () => {
    expect(
      run([
        { total: 50, at: 0 },
        { total: 70, at: 5000 },
        { total: 70, at: 10_000 },
      ]),
    ).toEqual([false, false, false]);
    expect(run([{ total: 50, at: 0 }, ...[1, 2, 3].map((i) => ({ total: 200, busy: 0.5, at: i * 5000 }))])).toEqual([
      false,
      false,
      false,
      false,
    ]);
    expect(run([{ total: 50, at: 0 }, ...[1, 2, 3].map((i) => ({ total: 400, used: 300, at: i * 5000 }))])).toEqual([
      false,
      false,
      false,
      false,
    ]);
  });
});
