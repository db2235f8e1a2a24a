/** A piece of replay work done in slices: one resume's catch-up. */
export interface ReplayJob {
  /**
   * Does work until it is finished or `until` (a `performance.now()` time) has passed, at least
   * one unit of work; returns true when finished.
   */
  step(until: number): boolean;
  /** Abandons the job (its subscription ended): it does nothing more. */
  cancel(): void;
}

/** What {@link ReplayQueue.submit} did with a job. */
export type SubmitResult = 'done' | 'queued' | 'full';

/** Options of {@link ReplayQueue}. */
export interface ReplayQueueOptions {
  /** Jobs waiting or in progress, in all; past it a job is refused. @default 1000 */
  readonly maxQueued: number;
  /** Jobs waiting or in progress for one owner (a connection); past it a job is refused. @default 16 */
  readonly maxPerOwner: number;
  /** Longest uninterrupted slice of replay work, in ms. @default 2 */
  readonly sliceMs?: number;
  /**
   * Longest a new job may expect to wait for its turn, in ms; past it the job is refused (its
   * client told to come back later) rather than held. @default 250
   */
  readonly maxWaitMs?: number;
  /** The number of jobs waiting or in progress changed. */
  readonly onSize?: (jobs: number) => void;
  /** A slice of replay work ran, for this many seconds. */
  readonly onWork?: (seconds: number) => void;
}

const DEFAULT_SLICE_MS = 2;
const DEFAULT_MAX_WAIT_MS = 250;
/** What a job is taken to cost before any has finished, in ms of work. */
const FIRST_JOB_MS = 2;

/**
 * Runs replay work (resumes) in short slices between everything else the process does, first
 * come first served, one job at a time (so one job's frames are held at once). A slice lasts at
 * most `sliceMs`, and the next one waits as long as the last one took, so replay takes at most
 * about half the time of a busy process: live blocks, pings and new connections are served in
 * between, never behind a queue of resumes. Bounded in all, per owner, and by the wait a new job
 * can expect (the jobs ahead of it times the work a job has taken lately): a job past any bound
 * is refused at once, and its client told to try again later, so that nothing is held for long.
 */
export class ReplayQueue<K> {
  readonly #options: ReplayQueueOptions;
  readonly #sliceMs: number;
  readonly #maxWaitMs: number;
  /** The work a finished job took, averaged over the recent ones, in ms. */
  #jobMs = FIRST_JOB_MS;
  /**
   * Jobs in order of arrival (a Map: cancelling one is O(1)), the first in progress, each with
   * its owner and the work it has had so far, in ms.
   */
  readonly #jobs = new Map<ReplayJob, { readonly owner: K; workMs: number }>();
  readonly #perOwner = new Map<K, number>();
  /** Cancels the scheduled slice, while one is scheduled. */
  #timer: (() => void) | undefined;
  #closed = false;

  constructor(options: ReplayQueueOptions) {
    this.#options = options;
    this.#sliceMs = options.sliceMs ?? DEFAULT_SLICE_MS;
    this.#maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  }

  /**
   * How long a job submitted now can expect to wait for its first slice, in ms: the jobs ahead
   * of it, each taking about what jobs took lately, at half the process's time.
   */
  estimatedWaitMs(): number {
    return this.#jobs.size * this.#jobMs * 2;
  }

  /** Jobs waiting or in progress. */
  get size(): number {
    return this.#jobs.size;
  }

  /**
   * Takes a job: when nothing waits, its first slice runs at once (a short resume finishes
   * within the call: `done`); otherwise it waits its turn (`queued`), or is refused (`full`)
   * past a bound.
   */
  submit(owner: K, job: ReplayJob): SubmitResult {
    if (this.#closed) return 'full';
    const owned = this.#perOwner.get(owner) ?? 0;
    if (this.#jobs.size >= this.#options.maxQueued || owned >= this.#options.maxPerOwner) return 'full';
    if (this.#jobs.size > 0 && this.estimatedWaitMs() > this.#maxWaitMs) return 'full';
    const state = { owner, workMs: 0 };
    if (this.#jobs.size === 0 && this.#timer === undefined && this.#run(job, state)) return 'done';
    this.#jobs.set(job, state);
    this.#perOwner.set(owner, owned + 1);
    this.#options.onSize?.(this.#jobs.size);
    this.#schedule(0);
    return 'queued';
  }

  /** Cancels a job (waiting or in progress); cancelling it again, or a finished one, does nothing. */
  cancel(job: ReplayJob): void {
    job.cancel();
    this.#remove(job);
  }

  /** Cancels every job and stops. */
  close(): void {
    this.#closed = true;
    for (const job of [...this.#jobs.keys()]) this.cancel(job);
    this.#clearTimer();
  }

  /** One slice of a job; true when it finished (what it took then counts in {@link estimatedWaitMs}). */
  #run(job: ReplayJob, state: { workMs: number }): boolean {
    const started = performance.now();
    const finished = job.step(started + this.#sliceMs);
    const ms = performance.now() - started;
    this.#options.onWork?.(ms / 1000);
    state.workMs += ms;
    if (finished) this.#jobMs = 0.8 * this.#jobMs + 0.2 * state.workMs;
    return finished;
  }

  #remove(job: ReplayJob): void {
    const state = this.#jobs.get(job);
    if (state === undefined) return;
    this.#jobs.delete(job);
    const left = (this.#perOwner.get(state.owner) ?? 1) - 1;
    if (left > 0) this.#perOwner.set(state.owner, left);
    else this.#perOwner.delete(state.owner);
    this.#options.onSize?.(this.#jobs.size);
  }

  #clearTimer(): void {
    this.#timer?.();
    this.#timer = undefined;
  }

  #schedule(delayMs: number): void {
    if (this.#timer !== undefined || this.#jobs.size === 0 || this.#closed) return;
    const pump = (): void => {
      this.#timer = undefined;
      this.#pump();
    };
    // Past 1 ms, wait as long as the slice took: replay gets at most half of a busy process.
    if (delayMs >= 1) {
      const timeout = setTimeout(pump, Math.ceil(delayMs));
      this.#timer = () => clearTimeout(timeout);
    } else {
      const immediate = setImmediate(pump);
      this.#timer = () => clearImmediate(immediate);
    }
  }

  #pump(): void {
    const first = this.#jobs.entries().next().value;
    if (first === undefined) return;
    const [job, state] = first;
    const started = performance.now();
    // A step may cancel its own job (a write that closes a slow connection): removal is idempotent.
    if (this.#run(job, state)) this.#remove(job);
    this.#schedule(performance.now() - started);
  }
}
