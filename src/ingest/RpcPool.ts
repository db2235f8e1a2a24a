import { GatewayError, RpcFaultError } from '../domain/errors.ts';
import { Capabilities } from './Capabilities.ts';
import { createRpcClient, type RpcClient } from './createRpcClient.ts';

/** Options of {@link RpcPool}. */
export interface RpcPoolOptions {
  /** Endpoints of one chain, in failover order. */
  readonly urls: readonly string[];
  /** Timeout of one request, in ms. */
  readonly requestTimeoutMs: number;
  /** Largest answer read, in bytes. @default 134217728 */
  readonly maxResponseBytes?: number;
  /** How long a capability an endpoint refused stays off for it, in ms. @default 600000 */
  readonly capabilityRetryMs?: number;
  /** Each fault of an endpoint, once (requests cut short by a failover or `close()` are none). */
  readonly onFault: (fault: RpcFaultError, url: string) => void;
  readonly onRequest?: (method: string, url: string, seconds: number, ok: boolean) => void;
  /** An endpoint's health changed: `true` once a request succeeds, `false` once one fails. */
  readonly onEndpoint?: (url: string, up: boolean) => void;
  /**
   * A ws endpoint announced a new head (`newHeads`) or its socket closed: time to ask for the
   * head. `head` is the notification's header as the node sent it (unchecked), so that the
   * caller may fetch that block by hash at once instead of asking for `latest` first;
   * `undefined` when the socket closed.
   */
  readonly onWake?: (head?: unknown) => void;
}

/** Whether `error` is the node's JSON-RPC error object, in an answer otherwise well formed. */
function isNodeAnswer(error: unknown): boolean {
  return error instanceof RpcFaultError && error.fault === 'node_error';
}

/**
 * The JSON-RPC endpoints of one chain, one in use at a time. Every request has a timeout and a
 * size cap; `failover()` drops the connection in use and moves to the next endpoint (or
 * reconnects the only one). Which optional methods each endpoint lacks is kept per endpoint
 * ({@link Capabilities}), as is whether the connection in use was checked to serve the chain.
 */
export class RpcPool {
  readonly #options: RpcPoolOptions;
  /** Capabilities each endpoint refused, for a while. */
  readonly capabilities: Capabilities;
  #index = 0;
  #client: RpcClient;
  readonly #health = new Map<string, boolean>();
  readonly #reported = new WeakSet<object>();
  #chainCheckedAt: number | undefined;
  #closed = false;

  constructor(options: RpcPoolOptions) {
    if (options.urls.length === 0) throw new GatewayError('BAD_CONFIG', 'rpc: at least one RPC URL is needed');
    this.#options = options;
    this.capabilities = new Capabilities(options.capabilityRetryMs);
    this.#client = this.#connect(this.currentUrl());
  }

  /** The endpoint in use. */
  currentUrl(): string {
    return this.#options.urls[this.#index] as string;
  }

  #connect(url: string): RpcClient {
    const client: RpcClient = createRpcClient(url, {
      timeoutMs: this.#options.requestTimeoutMs,
      ...(this.#options.maxResponseBytes === undefined ? {} : { maxResponseBytes: this.#options.maxResponseBytes }),
      onFault: (fault) => {
        if (client === this.#client) this.report(fault, url);
      },
      onClose: () => {
        if (client === this.#client && !this.#closed) this.#options.onWake?.();
      },
    });
    if (client.transport === 'ws' && this.#options.onWake !== undefined) {
      const wake = this.#options.onWake;
      // The notification's header is handed over unchecked: whoever uses it checks it (and the
      // block it names) as it checks any answer of the node.
      client
        .subscribe(['newHeads'], (head) => wake(head))
        .catch((error: unknown) => {
          if (client === this.#client && !this.#closed && error instanceof RpcFaultError) this.report(error, url);
        });
    }
    return client;
  }

  #mark(url: string, up: boolean): void {
    if (this.#health.get(url) === up) return;
    this.#health.set(url, up);
    this.#options.onEndpoint?.(url, up);
  }

  /**
   * Hands a fault of `url` to `onFault`, once per fault however often it is reported. An answer
   * that was not used marks the endpoint down as a failed request does (a node behind is not down).
   */
  report(fault: RpcFaultError, url: string): void {
    if (this.#reported.has(fault)) return;
    this.#reported.add(fault);
    if (fault.fault !== 'behind') this.#mark(url, false);
    this.#options.onFault(fault, url);
  }

  /**
   * Sends one request to the endpoint in use and resolves with its unchecked `result`; rejects
   * with an {@link RpcFaultError}, which is reported (unless a failover or `close()` cut it short).
   */
  async send(method: string, params: readonly unknown[]): Promise<unknown> {
    return this.#request(method, params, false);
  }

  async #request(method: string, params: readonly unknown[], probe: boolean): Promise<unknown> {
    const client = this.#client;
    const url = client.url;
    const started = performance.now();
    try {
      const result = await client.request(method, params);
      this.#options.onRequest?.(method, url, (performance.now() - started) / 1000, true);
      this.#mark(url, true);
      return result;
    } catch (error) {
      // A request cut short by a failover or close is no fault of the node.
      if (client !== this.#client || this.#closed) throw error;
      this.#options.onRequest?.(method, url, (performance.now() - started) / 1000, false);
      // The node's error object is its answer to this request (the node is up): for a probe,
      // the caller's to judge. Everything else (no answer, or none that is JSON-RPC) is a fault.
      if (probe && isNodeAnswer(error)) {
        this.#mark(url, true);
        throw error;
      }
      // report() marks the endpoint down, except for a node behind (which a request never is).
      if (error instanceof RpcFaultError) this.report(error, url);
      else this.#mark(url, false);
      throw error;
    }
  }

  /**
   * {@link send} for a request the node may well refuse (a method it may not offer, an `eth_call`
   * that may revert, a block it may not trace): a JSON-RPC error answer (fault `node_error`) is
   * the node's word on the request, not a fault of the node. It still rejects with it (so the
   * caller tells a method the node lacks, see `isMethodUnsupported`, from a revert), but it is not
   * reported and leaves the endpoint up. A fault of the link or the answer (timeout, closed
   * connection, HTTP error, unreadable or oversized answer) is as for `send`.
   */
  async probe(method: string, params: readonly unknown[]): Promise<unknown> {
    return this.#request(method, params, true);
  }

  /** Whether the connection in use still has to be checked to serve the chain (new, or checked `intervalMs` ago). */
  chainCheckDue(intervalMs: number): boolean {
    return this.#chainCheckedAt === undefined || performance.now() - this.#chainCheckedAt >= intervalMs;
  }

  /** Notes that the connection in use was just found to serve the chain. */
  chainChecked(): void {
    this.#chainCheckedAt = performance.now();
  }

  /** Drops the connection in use and connects to the next endpoint (the same one if it is alone). */
  failover(): void {
    if (this.#closed) return;
    this.#client.close();
    this.#index = (this.#index + 1) % this.#options.urls.length;
    this.#chainCheckedAt = undefined;
    this.#client = this.#connect(this.currentUrl());
  }

  /** Closes the connection in use; requests in flight are rejected. */
  close(): void {
    this.#closed = true;
    this.#client.close();
  }
}
