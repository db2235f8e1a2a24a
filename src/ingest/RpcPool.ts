import { FetchRequest, JsonRpcProvider, Network, WebSocketProvider } from 'ethers';
import { WebSocket } from 'ws';
import { GatewayError } from '../domain/errors.ts';

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

// Ingest sends raw JSON-RPC only, so the network object never matters; a static one keeps
// ethers from probing (and retrying forever, with console noise) when a node is down.
const STATIC_NETWORK = Network.from(1);

function isWebSocketUrl(url: string): boolean {
  return url.startsWith('ws://') || url.startsWith('wss://');
}

/**
 * The JSON-RPC endpoints of one chain, one in use at a time. Every request has a timeout;
 * `failover()` drops the connection in use and moves to the next endpoint (or reconnects the
 * only one). ethers' WebSocketProvider never reconnects by itself, so this does.
 */
export class RpcPool {
  readonly #options: RpcPoolOptions;
  #index = 0;
  #provider: JsonRpcProvider | WebSocketProvider;
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

  #connect(url: string): JsonRpcProvider | WebSocketProvider {
    const options = { staticNetwork: STATIC_NETWORK, batchMaxCount: 1 };
    if (isWebSocketUrl(url)) {
      const create = () => {
        const socket = new WebSocket(url);
        // A refused or dropped socket surfaces as request timeouts and a failover.
        socket.on('error', (error) => this.#options.onError(error, url));
        return socket;
      };
      return new WebSocketProvider(create as never, STATIC_NETWORK, options);
    }
    const request = new FetchRequest(url);
    request.timeout = this.#options.requestTimeoutMs;
    return new JsonRpcProvider(request, STATIC_NETWORK, options);
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
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new GatewayError('RPC_FAILED', `${method} timed out after ${this.#options.requestTimeoutMs} ms`)),
        this.#options.requestTimeoutMs,
      );
    });
    try {
      const result = (await Promise.race([provider.send(method, params), timeout])) as T;
      this.#options.onRequest?.(method, url, (performance.now() - started) / 1000, true);
      this.#mark(url, true);
      return result;
    } catch (error) {
      this.#options.onRequest?.(method, url, (performance.now() - started) / 1000, false);
      this.#mark(url, false);
      throw error;
    } finally {
      clearTimeout(timer);
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

  #destroy(provider: JsonRpcProvider | WebSocketProvider): void {
    // A WebSocketProvider closes asynchronously; a failure to close a dropped socket is moot.
    Promise.resolve(provider.destroy()).catch(() => undefined);
  }
}
