/**
 * Runs N copies of one Node.js module as child processes and keeps them running: the
 * supervisor of `--workers N`, where several gateway processes share one port. It knows nothing
 * of gateways: a module, its arguments and environment.
 */
import { type ChildProcess, spawn } from 'node:child_process';

/** Options of {@link superviseWorkers}. */
export interface SuperviseOptions {
  /** How many workers run at once. */
  readonly count: number;
  /** The module each worker runs (a path). */
  readonly entry: string;
  /** Its arguments. */
  readonly args: readonly string[];
  /** Its environment; each worker also gets `BLOCKCAST_WORKER=<i>` (1 to `count`). */
  readonly env: NodeJS.ProcessEnv;
  /** Node.js's own options, before the module (`--import tsx`). @default [] */
  readonly execArgv?: readonly string[];
  readonly log: { info(message: string): void; warn(message: string): void };
  /** Wait before the first restart of a worker that exited, in ms; doubled each time (10 s at most). @default 500 */
  readonly restartBackoffMs?: number;
  /** How long {@link Workers.stop} waits for a worker after its signal before SIGKILL, in ms. @default 10_000 */
  readonly stopTimeoutMs?: number;
}

/** Running workers. */
export interface Workers {
  /** The process ids of the workers running now. */
  readonly pids: () => number[];
  /**
   * Sends `signal` to every worker, restarts none, and resolves once all have exited (SIGKILL
   * for those still running after `stopTimeoutMs`). Calling it again returns the same promise.
   * @default 'SIGTERM'
   */
  readonly stop: (signal?: 'SIGTERM' | 'SIGINT') => Promise<void>;
  /** Sends `signal` to every running worker (SIGHUP: reload the certificate). */
  readonly signal: (signal: NodeJS.Signals) => void;
}

/** Restarts never wait longer than this, in ms. */
const MAX_RESTART_BACKOFF_MS = 10_000;
/** A worker that ran this long before it exited starts again after the first wait, in ms. */
const HEALTHY_RUN_MS = 30_000;
/** After SIGKILL, how long stop() still waits for exits before it gives up on them, in ms. */
const KILL_WAIT_MS = 5_000;

/** One worker slot: the process in it now, and how long the next restart waits. */
interface Slot {
  readonly number: number;
  child: ChildProcess | undefined;
  exited: Promise<void>;
  startedAt: number;
  backoffMs: number;
  restartTimer: ReturnType<typeof setTimeout> | undefined;
}

/** How a worker ended, for a log line. */
function howItEnded(code: number | null, signal: NodeJS.Signals | null, error: Error | undefined): string {
  if (error !== undefined) return `failed to run (${error.message})`;
  if (signal !== null) return `was ended by ${signal}`;
  return `exited with code ${code}`;
}

/**
 * Starts `count` workers (`node ...execArgv entry ...args`, stdio inherited) and restarts any
 * that exits while not stopping, after a wait that doubles from `restartBackoffMs` up to 10 s
 * (back to the first after a run of 30 s), so a worker that fails at once does not spin.
 */
export function superviseWorkers(options: SuperviseOptions): Workers {
  if (!Number.isInteger(options.count) || options.count < 1) {
    throw new TypeError(`count must be a whole number of workers, 1 or more; got ${options.count}`);
  }
  const firstBackoffMs = options.restartBackoffMs ?? 500;
  const stopTimeoutMs = options.stopTimeoutMs ?? 10_000;
  const { log } = options;
  const slots: Slot[] = [];
  /** Set once stop() is called: no worker starts again. */
  let stopping = false;
  let stopped: Promise<void> | undefined;

  const start = (slot: Slot): void => {
    const child = spawn(process.execPath, [...(options.execArgv ?? []), options.entry, ...options.args], {
      env: { ...options.env, BLOCKCAST_WORKER: String(slot.number) },
      stdio: 'inherit',
    });
    slot.child = child;
    slot.startedAt = performance.now();
    slot.exited = new Promise((resolve) => {
      let ended = false;
      // A process that could not be spawned reports `error` and perhaps no `exit`: handle the first.
      const onEnd = (code: number | null, signal: NodeJS.Signals | null, error?: Error): void => {
        if (ended) return;
        ended = true;
        if (slot.child === child) slot.child = undefined;
        resolve();
        afterExit(slot, howItEnded(code, signal, error));
      };
      child.once('exit', (code, signal) => onEnd(code, signal));
      child.once('error', (error) => onEnd(null, null, error));
    });
    if (child.pid !== undefined) log.info(`workers: worker ${slot.number} started (pid ${child.pid})`);
  };

  /** Logs how a worker ended (`exited with code 1`) and, unless stopping, starts it again after its wait. */
  const afterExit = (slot: Slot, ending: string): void => {
    if (stopping) {
      log.info(`workers: worker ${slot.number} ${ending}`);
      return;
    }
    const ranMs = performance.now() - slot.startedAt;
    if (ranMs >= HEALTHY_RUN_MS) slot.backoffMs = firstBackoffMs;
    const waitMs = slot.backoffMs;
    slot.backoffMs = Math.min(slot.backoffMs * 2, MAX_RESTART_BACKOFF_MS);
    log.warn(
      `workers: worker ${slot.number} ${ending} after ${(ranMs / 1000).toFixed(1)} s: restarting it in ${waitMs} ms`,
    );
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (!stopping) start(slot);
    }, waitMs);
  };

  for (let number = 1; number <= options.count; number++) {
    const slot: Slot = {
      number,
      child: undefined,
      exited: Promise.resolve(),
      startedAt: 0,
      backoffMs: Math.min(firstBackoffMs, MAX_RESTART_BACKOFF_MS),
      restartTimer: undefined,
    };
    slots.push(slot);
    start(slot);
  }

  const running = (): ChildProcess[] =>
    slots.flatMap((slot) => (slot.child === undefined || slot.child.pid === undefined ? [] : [slot.child]));
  const runningPids = (): string =>
    running()
      .map((child) => child.pid)
      .join(', ');

  const stopAll = async (signal: 'SIGTERM' | 'SIGINT'): Promise<void> => {
    for (const slot of slots) clearTimeout(slot.restartTimer);
    for (const child of running()) child.kill(signal);
    const all = Promise.all(slots.map((slot) => slot.exited));
    if (await settlesWithin(all, stopTimeoutMs)) return;
    const left = running();
    log.warn(
      `workers: ${left.length} worker(s) still running ${stopTimeoutMs} ms after ${signal}: killing pid ${runningPids()}`,
    );
    for (const child of left) child.kill('SIGKILL');
    if (!(await settlesWithin(all, KILL_WAIT_MS))) log.warn(`workers: pid ${runningPids()} did not exit after SIGKILL`);
  };

  return {
    pids: () => running().map((child) => child.pid as number),
    stop: (signal = 'SIGTERM') => {
      stopping = true;
      stopped ??= stopAll(signal);
      return stopped;
    },
    signal: (signal) => {
      for (const child of running()) child.kill(signal);
    },
  };
}

/** Whether `promise` settles within `timeoutMs`. */
async function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
