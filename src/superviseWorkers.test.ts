import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { superviseWorkers, type Workers } from './superviseWorkers.ts';

// Real child processes running tiny scripts written here; they report through files in `dir`.

/** Says it is up (a file named after its worker number and pid), notes SIGHUP, waits for a signal. */
const WAITER = `
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const [dir, ...rest] = process.argv.slice(2);
const me = join(dir, 'worker-' + process.env.BLOCKCAST_WORKER + '-' + process.pid);
process.on('SIGHUP', () => appendFileSync(me + '.hup', 'hup\\n'));
if (rest.includes('--ignore-term')) process.on('SIGTERM', () => undefined);
writeFileSync(me, JSON.stringify({ args: rest, worker: process.env.BLOCKCAST_WORKER, extra: process.env.EXTRA }));
setInterval(() => undefined, 60_000);
`;

/** Fails at once. */
const FAILER = 'process.exit(1);\n';

/** A log that keeps its lines and can wait for one (bounded). */
function recordingLog() {
  const lines: string[] = [];
  const waiters: Array<{ pattern: RegExp; count: number; resolve: () => void }> = [];
  const add = (line: string): void => {
    lines.push(line);
    for (const waiter of [...waiters]) {
      if (lines.filter((l) => waiter.pattern.test(l)).length < waiter.count) continue;
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };
  return {
    lines,
    log: { info: add, warn: add },
    /** Resolves once `count` lines match `pattern`; rejects after `timeoutMs`. */
    waitFor: (pattern: RegExp, count = 1, timeoutMs = 10_000): Promise<void> =>
      new Promise((resolve, reject) => {
        if (lines.filter((l) => pattern.test(l)).length >= count) {
          resolve();
          return;
        }
        const timer = setTimeout(
          () =>
            reject(new Error(`fewer than ${count} lines matching ${pattern} in ${timeoutMs} ms:\n${lines.join('\n')}`)),
          timeoutMs,
        );
        waiters.push({
          pattern,
          count,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      }),
  };
}

/** Waits (bounded) until `condition` holds, looking every 20 ms. */
async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('superviseWorkers', () => {
  let dir: string;
  let waiter: string;
  let failer: string;
  const started: Workers[] = [];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'blockcast-workers-'));
    waiter = join(dir, 'waiter.mjs');
    failer = join(dir, 'failer.mjs');
    writeFileSync(waiter, WAITER);
    writeFileSync(failer, FAILER);
  });

  afterEach(async () => {
    await Promise.all(started.splice(0).map((workers) => workers.stop()));
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs count workers with their number, arguments and environment; forwards signals; stop() ends them all', async () => {
    const recorded = recordingLog();
    const workers = superviseWorkers({
      count: 2,
      entry: waiter,
      args: [dir, '--flag'],
      env: { ...process.env, EXTRA: 'yes' },
      log: recorded.log,
    });
    started.push(workers);
    await recorded.waitFor(/worker \d started \(pid \d+\)/, 2);
    const pids = workers.pids();
    expect(pids).toHaveLength(2);
    const files = (): string[] => [1, 2].map((n, i) => join(dir, `worker-${n}-${pids[i]}`));
    await until(() => files().every(existsSync), 'both workers wrote their file');
    for (const [i, file] of files().entries()) {
      expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ args: ['--flag'], worker: String(i + 1), extra: 'yes' });
    }

    workers.signal('SIGHUP');
    await until(() => files().every((file) => existsSync(`${file}.hup`)), 'both workers saw SIGHUP');

    await workers.stop();
    expect(workers.pids()).toEqual([]);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(recorded.lines.filter((l) => /worker \d was ended by SIGTERM/.test(l))).toHaveLength(2);
    // Stopped workers are not restarted.
    expect(recorded.lines.some((l) => l.includes('restarting'))).toBe(false);
  });

  it('restarts a worker that exits, waiting twice as long each time, naming it and its exit code', async () => {
    const recorded = recordingLog();
    const workers = superviseWorkers({
      count: 1,
      entry: failer,
      args: [],
      env: process.env,
      log: recorded.log,
      restartBackoffMs: 20,
    });
    started.push(workers);
    await recorded.waitFor(/restarting/, 4);
    const waits = recorded.lines
      .filter((l) => l.includes('restarting'))
      .slice(0, 4)
      .map((l) => {
        expect(l).toMatch(/^workers: worker 1 exited with code 1 after \d+\.\d s: restarting it in \d+ ms$/);
        return Number(/in (\d+) ms$/.exec(l)?.[1]);
      });
    expect(waits).toEqual([20, 40, 80, 160]);
    expect(recorded.lines.filter((l) => /worker 1 started/.test(l)).length).toBeGreaterThanOrEqual(4);
    await workers.stop();
    const after = recorded.lines.length;
    // Nothing to wait for: this checks that nothing happens. A restart pending at stop() would
    // have started within the longest wait logged, so wait that long (and a margin) once.
    const longestWaitMs = Math.max(...recorded.lines.map((l) => Number(/in (\d+) ms$/.exec(l)?.[1] ?? 0)));
    await new Promise((resolve) => setTimeout(resolve, longestWaitMs + 100));
    expect(recorded.lines.slice(after).filter((l) => l.includes('started'))).toEqual([]);
    expect(workers.pids()).toEqual([]);
  });

  it('kills a worker that ignores the stop signal once stopTimeoutMs has passed', async () => {
    const recorded = recordingLog();
    const workers = superviseWorkers({
      count: 1,
      entry: waiter,
      args: [dir, '--ignore-term'],
      env: process.env,
      log: recorded.log,
      stopTimeoutMs: 300,
    });
    started.push(workers);
    await recorded.waitFor(/worker 1 started/);
    const [pid] = workers.pids();
    await until(() => existsSync(join(dir, `worker-1-${pid}`)), 'the worker is up');
    const stopping = performance.now();
    await workers.stop();
    expect(performance.now() - stopping).toBeLessThan(5_000);
    expect(alive(pid as number)).toBe(false);
    expect(recorded.lines).toContain(`workers: 1 worker(s) still running 300 ms after SIGTERM: killing pid ${pid}`);
    expect(recorded.lines).toContain('workers: worker 1 was ended by SIGKILL');
  });

  it('refuses a count that is not a whole number of workers', () => {
    const options = { entry: waiter, args: [], env: process.env, log: recordingLog().log };
    expect(() => superviseWorkers({ ...options, count: 0 })).toThrow(TypeError);
    expect(() => superviseWorkers({ ...options, count: 1.5 })).toThrow('count must be a whole number');
  });
});
