import { WebSocketProvider } from 'ethers';
import { GatewayError } from '../domain/errors.ts';
import { httpProvider, isWebSocketUrl, type Provider, sendWithTimeout, socketProvider } from './rpc.ts';

/** Options of {@link RpcPool}. */
export interface RpcPoolOptions {
  /** Endpoints of one chain, in failover order. */
  readonly urls: readonly string[];
  /** Timeout of one request, in ms. */
  readonly requestTimeoutMs: number;
  readonly onError: (error: unknown, url: string) => void;
  readonly onRequest?: (method: string, url: string, seconds: number, ok: boolean) => void;
  /** An endpoint's health changed: `true` once a request succeeds, `false` once one fails. */
  readonly onEndpoint?: (url: string, up: boolean) => void;
}

/**
 * The JSON-RPC endpoints of one chain, one in use at a time. Every request has a timeout;
 * `failover()` drops the connection in use and moves to the next endpoint (or reconnects the
 * only one). ethers' WebSocketProvider never reconnects by itself, so this does.
 */
export class RpcPool {
  readonly #options: RpcPoolOptions;
  #index = 0;
  #provider: Provider;
  readonly #health = new Map<string, boolean>();
  #closed = false;

  constructor(options: RpcPoolOptions) {
    if (options.urls.length === 0) throw new GatewayError('BAD_CONFIG', 'rpc: at least one RPC URL is needed');
    this.#options = options;
    this.#provider = this.#connect(this.currentUrl());
  }

  /** The endpoint in use. */
  currentUrl(): string {
    return this.#options.urls[this.#index] as string;
  }

  #connect(url: string): Provider {
    if (!isWebSocketUrl(url)) return httpProvider(url, this.#options.requestTimeoutMs);
    // A refused or dropped socket surfaces as request timeouts and a failover.
    return socketProvider(url, (socket) => socket.on('error', (error) => this.#options.onError(error, url)));
  }

  #mark(url: string, up: boolean): void {
    if (this.#health.get(url) === up) return;
    this.#health.set(url, up);
    this.#options.onEndpoint?.(url, up);
  }

  /** Sends one request to the endpoint in use; rejects on an error or after the timeout. */
  async send<T>(method: string, params: unknown[]): Promise<T> {
    const url = this.currentUrl();
    const provider = this.#provider;
    const started = performance.now();
    try {
      const result = await sendWithTimeout<T>(provider, method, params, this.#options.requestTimeoutMs);
      this.#options.onRequest?.(method, url, (performance.now() - started) / 1000, true);
      this.#mark(url, true);
      return result;
    } catch (error) {
      this.#options.onRequest?.(method, url, (performance.now() - started) / 1000, false);
      this.#mark(url, false);
      throw error;
    }
  }

  /** Drops the connection in use and connects to the next endpoint (the same one if it is alone). */
  failover(): void {
    if (this.#closed) return;
    this.#destroy(this.#provider);
    this.#index = (this.#index + 1) % this.#options.urls.length;
    this.#provider = this.#connect(this.currentUrl());
  }

  /** Calls `listener` on every `newHeads` notification of a ws endpoint in use (no-op for http). */
  onNewHead(listener: () => void): void {
    const provider = this.#provider;
    if (!(provider instanceof WebSocketProvider)) return;
    provider.on('block', listener).catch((error: unknown) => this.#options.onError(error, this.currentUrl()));
  }

  /** Closes the connection in use. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#provider.destroy();
  }

  #destroy(provider: Provider): void {
    // A WebSocketProvider closes asynchronously; a failure to close a dropped socket is moot.
    Promise.resolve(provider.destroy()).catch(() => undefined);
  }
}
