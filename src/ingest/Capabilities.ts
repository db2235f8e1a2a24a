import { RpcFaultError } from '../domain/errors.ts';

/** Optional JSON-RPC features that ingest uses where an endpoint offers them. */
export type Capability =
  /** `eth_getBlockReceipts` (otherwise one `eth_getTransactionReceipt` per transaction). */
  | 'blockReceipts'
  /** The mempool: `eth_subscribe newPendingTransactions` (ws) or `eth_newPendingTransactionFilter` (http). */
  | 'mempool';

const UNSUPPORTED_MESSAGE =
  /\bmethod\b.*\b(not (found|supported|available|allowed|implemented)|does not exist|unsupported)|\b(unsupported|unknown) method\b|\bnot (supported|implemented)\b/i;

/**
 * Whether a node refused a request because it does not offer the method: only a JSON-RPC error
 * object of the node can say so (code -32601, or a message that says the method does not exist
 * or is not supported). Timeouts, broken links, HTTP errors and unreadable answers never do.
 */
export function isMethodUnsupported(error: unknown): boolean {
  if (!(error instanceof RpcFaultError) || error.fault !== 'node_error') return false;
  return error.rpcCode === -32601 || UNSUPPORTED_MESSAGE.test(error.rpcMessage ?? '');
}

/**
 * Which capabilities each endpoint lacks, for a while: one switched off for an endpoint is
 * probed again after `retryMs`, and another endpoint still tries it.
 */
export class Capabilities {
  readonly #retryMs: number;
  readonly #now: () => number;
  /** `url capability` → when it may be tried again (the clock of `now`, in ms). */
  readonly #offUntil = new Map<string, number>();

  /**
   * @param retryMs How long a capability stays off for an endpoint, in ms. @default 600000
   * @param now The clock, in ms. @default performance.now
   */
  constructor(retryMs = 600_000, now: () => number = () => performance.now()) {
    this.#retryMs = retryMs;
    this.#now = now;
  }

  /** Whether `capability` is to be tried on `url` (it is, unless switched off less than `retryMs` ago). */
  has(url: string, capability: Capability): boolean {
    const key = `${url} ${capability}`;
    const until = this.#offUntil.get(key);
    if (until === undefined) return true;
    if (this.#now() < until) return false;
    this.#offUntil.delete(key);
    return true;
  }

  /** Switches `capability` off for `url` for `retryMs`. */
  switchOff(url: string, capability: Capability): void {
    this.#offUntil.set(`${url} ${capability}`, this.#now() + this.#retryMs);
  }

  /** In how many ms `capability` is tried again on `url` (0 when it is on). */
  retryInMs(url: string, capability: Capability): number {
    const until = this.#offUntil.get(`${url} ${capability}`);
    return until === undefined ? 0 : Math.max(0, until - this.#now());
  }
}
