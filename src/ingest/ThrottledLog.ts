/**
 * A log that writes at most one line per key every `intervalMs` (a node that fails every 50 ms
 * must not flood the log); the next line of a key says how many of its lines were held back.
 */
export class ThrottledLog<F = void> {
  readonly #write: (line: string, fields: F) => void;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #keys = new Map<string, { lastAt: number; held: number }>();

  /**
   * @param write Where lines go.
   * @param intervalMs Least time between two lines of one key, in ms. @default 10000
   * @param now The clock, in ms. @default performance.now
   */
  constructor(
    write: (line: string, fields: F) => void,
    intervalMs = 10_000,
    now: () => number = () => performance.now(),
  ) {
    this.#write = write;
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /**
   * Writes `line` (with `fields`, what it is about) unless a line of `key` was written less than
   * `intervalMs` ago (then it is counted).
   */
  write(key: string, line: string, fields: F): void {
    const now = this.#now();
    const state = this.#keys.get(key);
    if (state !== undefined && now - state.lastAt < this.#intervalMs) {
      state.held++;
      return;
    }
    const held = state?.held ?? 0;
    this.#keys.set(key, { lastAt: now, held: 0 });
    this.#write(held === 0 ? line : `${line} (and ${held} more like it since the last line, not logged)`, fields);
  }
}
