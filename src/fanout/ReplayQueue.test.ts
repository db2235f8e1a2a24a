import { describe, expect, it } from 'vitest';
import { type ReplayJob, ReplayQueue } from './ReplayQueue.ts';

/** A job of `slices` slices; records each slice and when it finished. */
class CountingJob implements ReplayJob {
  slices = 0;
  cancelled = false;
  finished = false;
  readonly #needed: number;
  readonly #log: string[];
  readonly #name: string;

  constructor(name: string, needed: number, log: string[]) {
    this.#name = name;
    this.#needed = needed;
    this.#log = log;
  }

  step(): boolean {
    this.slices++;
    this.#log.push(this.#name);
    this.finished = this.slices >= this.#needed;
    return this.finished;
  }

  cancel(): void {
    this.cancelled = true;
  }
}

/** Resolves once `done()` holds (bounded). */
async function until(done: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('ReplayQueue', () => {
  it('finishes a one-slice job within submit when nothing waits', () => {
    const queue = new ReplayQueue<string>({ maxQueued: 10, maxPerOwner: 2 });
    const job = new CountingJob('a', 1, []);
    expect(queue.submit('c1', job)).toBe('done');
    expect(job.finished).toBe(true);
    expect(queue.size).toBe(0);
  });

  it('runs jobs one at a time in order of arrival, a slice per turn of the event loop', async () => {
    const log: string[] = [];
    const sizes: number[] = [];
    const queue = new ReplayQueue<string>({ maxQueued: 10, maxPerOwner: 5, onSize: (n) => sizes.push(n) });
    const a = new CountingJob('a', 3, log);
    const b = new CountingJob('b', 2, log);
    expect(queue.submit('c1', a)).toBe('queued');
    expect(queue.submit('c2', b)).toBe('queued');
    expect(log).toEqual(['a']);
    await until(() => b.finished);
    expect(log).toEqual(['a', 'a', 'a', 'b', 'b']);
    expect(queue.size).toBe(0);
    expect(sizes.at(-1)).toBe(0);
  });

  it('refuses past the bound in all and past the bound per owner, and takes again once one ends', async () => {
    const queue = new ReplayQueue<string>({ maxQueued: 3, maxPerOwner: 2 });
    const jobs = [new CountingJob('a', 50, []), new CountingJob('b', 50, []), new CountingJob('c', 50, [])];
    expect(queue.submit('c1', jobs[0] as CountingJob)).toBe('queued');
    expect(queue.submit('c1', jobs[1] as CountingJob)).toBe('queued');
    expect(queue.submit('c1', jobs[2] as CountingJob)).toBe('full');
    expect(queue.submit('c2', jobs[2] as CountingJob)).toBe('queued');
    expect(queue.submit('c3', new CountingJob('d', 1, []))).toBe('full');
    queue.cancel(jobs[1] as CountingJob);
    expect((jobs[1] as CountingJob).cancelled).toBe(true);
    expect(queue.submit('c1', new CountingJob('e', 1, []))).toBe('queued');
    queue.close();
    expect(jobs.every((j) => j.cancelled || j.finished)).toBe(true);
  });

  it('skips a cancelled job and reports the time its slices took', async () => {
    let seconds = 0;
    const log: string[] = [];
    const queue = new ReplayQueue<string>({ maxQueued: 10, maxPerOwner: 5, onWork: (s) => (seconds += s) });
    const a = new CountingJob('a', 2, log);
    const b = new CountingJob('b', 2, log);
    const c = new CountingJob('c', 1, log);
    queue.submit('c1', a);
    queue.submit('c1', b);
    queue.submit('c1', c);
    queue.cancel(b);
    await until(() => c.finished);
    expect(log).toEqual(['a', 'a', 'c']);
    expect(seconds).toBeGreaterThan(0);
  });
});

describe('ReplayQueue waits', () => {
  it('refuses a job that would wait longer than the bound, judging by what jobs took lately', () => {
    const queue = new ReplayQueue<string>({ maxQueued: 1000, maxPerOwner: 1000, maxWaitMs: 10 });
    // A job of known cost: busy for `ms` each slice, finished after `slices`.
    const busy = (ms: number, slices: number): ReplayJob => {
      let left = slices;
      return {
        step: () => {
          const until = performance.now() + ms;
          while (performance.now() < until);
          return --left === 0;
        },
        cancel: () => undefined,
      };
    };
    expect(queue.submit('a', busy(3, 1))).toBe('done');
    expect(queue.estimatedWaitMs()).toBe(0);
    let queued = 0;
    for (let i = 0; i < 100 && queue.submit(`o${i}`, busy(3, 2)) === 'queued'; i++) queued++;
    // Each waiting job counts about what the last took (a few ms) twice: a handful fit in 10 ms.
    expect(queued).toBeGreaterThan(0);
    expect(queued).toBeLessThan(10);
    expect(queue.estimatedWaitMs()).toBeGreaterThan(10);
    queue.close();
  });
});
