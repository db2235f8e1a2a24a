import { describe, expect, it } from 'vitest';
import { backoffDelay, longestDelay, validateBackoff } from './backoff.ts';

const backoff = { initialMs: 100, maxMs: 1000, factor: 2, jitter: 0.5 };

describe('backoffDelay', () => {
  it('grows by the factor per attempt up to maxMs', () => {
    const noJitter = { ...backoff, jitter: 0 };
    expect([0, 1, 2, 3, 4, 5, 50].map((attempt) => backoffDelay(attempt, noJitter))).toEqual([
      100, 200, 400, 800, 1000, 1000, 1000,
    ]);
  });

  it('takes off at most `jitter` of the delay at random', () => {
    expect(backoffDelay(2, backoff, () => 0)).toBe(400);
    expect(backoffDelay(2, backoff, () => 0.999_999)).toBe(200);
    for (let i = 0; i < 200; i++) {
      const delay = backoffDelay(1, backoff);
      expect(delay).toBeGreaterThanOrEqual(100);
      expect(delay).toBeLessThanOrEqual(200);
    }
  });

  it('stays bounded for a huge attempt count and a factor of 1', () => {
    expect(backoffDelay(Number.MAX_SAFE_INTEGER, { ...backoff, jitter: 0 })).toBe(1000);
    expect(backoffDelay(1000, { ...backoff, factor: 1, jitter: 0 })).toBe(100);
  });

  it('waits the longest delay after a 4029', () => {
    expect(longestDelay(backoff, () => 0)).toBe(1000);
    expect(longestDelay(backoff, () => 0.999_999)).toBe(500);
  });
});

describe('validateBackoff', () => {
  it.each([
    [{ initialMs: 0 }, 'backoff.initialMs'],
    [{ initialMs: Number.NaN }, 'backoff.initialMs'],
    [{ maxMs: 50 }, 'backoff.maxMs'],
    [{ factor: 0.5 }, 'backoff.factor'],
    [{ jitter: 1.5 }, 'backoff.jitter'],
    [{ jitter: -0.1 }, 'backoff.jitter'],
  ])('refuses %o with a TypeError naming the key', (override, key) => {
    expect(() => validateBackoff({ ...backoff, ...override })).toThrow(TypeError);
    expect(() => validateBackoff({ ...backoff, ...override })).toThrow(key);
  });
});
