/** Reconnect delays: exponential, bounded, with jitter. */
export interface Backoff {
  /** Delay before the first reconnect, in ms. @default 500 */
  readonly initialMs: number;
  /** Largest delay, in ms; also the wait after a 4029 close. @default 30000 */
  readonly maxMs: number;
  /** Growth of the delay per failed attempt (>= 1). @default 2 */
  readonly factor: number;
  /** Fraction of the delay taken off at random (0 none, 1 anywhere down to zero). @default 0.5 */
  readonly jitter: number;
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first after a healthy connection), in
 * ms: `min(maxMs, initialMs × factor^attempt)`, less a random share of up to `jitter` of it.
 */
export function backoffDelay(attempt: number, backoff: Backoff, random: () => number = Math.random): number {
  const base = Math.min(backoff.maxMs, backoff.initialMs * backoff.factor ** Math.max(0, attempt));
  return Math.round(base * (1 - backoff.jitter * random()));
}

/** The longest delay (`maxMs`, less its jitter), in ms: the wait after a 4029 close. */
export function longestDelay(backoff: Backoff, random: () => number = Math.random): number {
  return Math.round(backoff.maxMs * (1 - backoff.jitter * random()));
}

/** Throws a `TypeError` naming the key when a backoff setting is impossible. */
export function validateBackoff(backoff: Backoff): void {
  const { initialMs, maxMs, factor, jitter } = backoff;
  if (!Number.isFinite(initialMs) || initialMs <= 0) {
    throw new TypeError(`backoff.initialMs: must be a positive number of ms, got ${initialMs}`);
  }
  if (!Number.isFinite(maxMs) || maxMs < initialMs) {
    throw new TypeError(`backoff.maxMs: must be at least backoff.initialMs (${initialMs}), got ${maxMs}`);
  }
  if (!Number.isFinite(factor) || factor < 1) throw new TypeError(`backoff.factor: must be >= 1, got ${factor}`);
  if (!(jitter >= 0 && jitter <= 1)) throw new TypeError(`backoff.jitter: must be between 0 and 1, got ${jitter}`);
}
