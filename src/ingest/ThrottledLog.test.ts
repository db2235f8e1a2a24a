import { describe, expect, it } from 'vitest';
import { ThrottledLog } from './ThrottledLog.ts';

describe('ThrottledLog', () => {
  it('writes one line per key every interval and then says how many were held back', () => {
    let now = 0;
    const lines: string[] = [];
    const log = new ThrottledLog(
      (line) => lines.push(line),
      10_000,
      () => now,
    );
    log.write('a timeout', 'first');
    log.write('a timeout', 'second');
    log.write('b timeout', 'other endpoint');
    now = 9_999;
    log.write('a timeout', 'third');
    now = 10_000;
    log.write('a timeout', 'fourth');
    now = 25_000;
    log.write('a timeout', 'fifth');
    expect(lines).toEqual([
      'first',
      'other endpoint',
      'fourth (and 2 more like it since the last line, not logged)',
      'fifth',
    ]);
  });
});
