import { errorMessage, GatewayError } from '../domain/errors.ts';
import type { TxEvent } from '../domain/types.ts';
import {
  httpProvider,
  isUnsupportedMethod,
  isWebSocketUrl,
  type Provider,
  sendWithTimeout,
  socketProvider,
} from './rpc.ts';
import { toPendingTxEvent } from './toPendingTxEvent.ts';

/** Options of {@link watchPending}. */
export interface WatchPendingOptions {
  /** JSON-RPC endpoints of one chain, in failover order: ws(s) subscribes, http(s) polls a filter. */
  readonly urls: readonly string[];
  /** How often an http endpoint's pending-transaction filter is polled, in ms. @default 1000 */
  readonly pollIntervalMs: number;
  /** Timeout of one RPC request, in ms. @default 10000 */
  readonly requestTimeoutMs: number;
  /** Transactions fetched by hash at the same time. @default 8 */
  readonly maxConcurrentFetches?: number;
  /** Announced hashes waiting to be fetched; past it, new ones are dropped. @default 10000 */
  readonly maxQueuedHashes?: number;
  /** Whether anyone wants pending transactions now; while not, announced ones are dropped unfetched. */
  readonly wanted: () => boolean;
  /** A batch of mempool transactions not seen before, in the order they were fetched. */
  readonly onPending: (events: readonly TxEvent[]) => void;
  /** Faults that the watcher recovers from by itself (it reconnects, with backoff). */
  readonly onError: (error: unknown, url: string) => void;
}

/** A running mempool watcher. */
export interface PendingWatcher {
  /** Whether an endpoint's mempool is being followed right now. */
  readonly following: () => boolean;
  readonly close: () => Promise<void>;
}

/** What ethers' socket providers call for each `eth_subscription` notification of an id. */
interface SocketRegistrar {
  _register(id: string, subscriber: { _handleMessage(message: unknown): void }): void;
}

interface Session {
  readonly url: string;
  readonly provider: Provider;
  /** Stops polling and closes the connection. */
  readonly stop: () => void;
}

const DEFAULT_CONCURRENCY = 8;
const DEFAULT_MAX_QUEUED = 10_000;
/** Hashes remembered to drop repeated announcements (a resubscription replays the pool). */
const MAX_SEEN_HASHES = 100_000;
const MAX_BACKOFF_MS = 30_000;
const HASH = /^0x[0-9a-fA-F]{64}$/;

/**
 * Follows the mempool of a chain's node and hands over its transactions as `tx` events (see
 * {@link toPendingTxEvent}), each hash at most once. On a ws(s) endpoint it subscribes to
 * `newPendingTransactions` with full transactions (falling back to hashes where the node only
 * gives those); on http(s) it polls `eth_newPendingTransactionFilter`. Hashes are fetched with
 * `eth_getTransactionByHash`, `maxConcurrentFetches` at a time; a transaction already in a block
 * when fetched is left to its block. Resolves once the first endpoint was tried, so that a caller
 * that starts serving after it misses nothing the node announces from then on; faults reconnect
 * (failing over) with backoff; endpoints that do not offer their mempool are given up on.
 */
export async function watchPending(options: WatchPendingOptions): Promise<PendingWatcher> {
  if (options.urls.length === 0) throw new GatewayError('BAD_CONFIG', 'rpc: at least one RPC URL is needed');
  const maxConcurrent = options.maxConcurrentFetches ?? DEFAULT_CONCURRENCY;
  const maxQueued = options.maxQueuedHashes ?? DEFAULT_MAX_QUEUED;
  let closed = false;
  let session: Session | undefined;
  let urlIndex = 0;
  let failures = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  const unsupported = new Set<string>();

  const seen = new Set<string>();
  let queue: string[] = [];
  let queueHead = 0;
  let inFlight = 0;
  let overflowing = false;
  let ready: TxEvent[] = [];
  let flushScheduled = false;

  function send<T>(provider: Provider, method: string, params: unknown[]): Promise<T> {
    return sendWithTimeout<T>(provider, method, params, options.requestTimeoutMs);
  }

  function remember(hash: string): boolean {
    if (seen.has(hash)) return false;
    seen.add(hash);
    if (seen.size > MAX_SEEN_HASHES) {
      // Sets iterate in insertion order: forget the oldest tenth.
      for (const old of seen) {
        seen.delete(old);
        if (seen.size <= MAX_SEEN_HASHES * 0.9) break;
      }
    }
    return true;
  }

  function flush(): void {
    flushScheduled = false;
    if (closed || ready.length === 0) return;
    const batch = ready;
    ready = [];
    try {
      options.onPending(batch);
    } catch (error) {
      options.onError(error, session?.url ?? '');
    }
  }

  function deliver(event: TxEvent): void {
    ready.push(event);
    if (flushScheduled) return;
    flushScheduled = true;
    // Transactions that arrive in the same turn of the event loop go out as one batch.
    setImmediate(flush);
  }

  function pump(): void {
    while (!closed && inFlight < maxConcurrent && queueHead < queue.length) {
      const hash = queue[queueHead++] as string;
      const current = session;
      if (current === undefined) continue;
      inFlight++;
      send<unknown>(current.provider, 'eth_getTransactionByHash', [hash])
        .then((raw) => {
          if (closed || raw === null) return; // dropped from the pool before it was fetched
          const event = toPendingTxEvent(raw);
          if (event !== undefined) deliver(event);
        })
        .catch((error: unknown) => {
          if (!closed && session === current) options.onError(error, current.url);
        })
        .finally(() => {
          inFlight--;
          pump();
        });
    }
    if (queueHead >= queue.length) {
      queue = [];
      queueHead = 0;
      overflowing = false;
    }
  }

  /** One `newPendingTransactions` notification or filter entry: a hash or a whole transaction. */
  function announce(item: unknown, url: string): void {
    if (closed || !options.wanted()) return;
    if (typeof item === 'string') {
      if (!HASH.test(item)) return;
      const hash = item.toLowerCase();
      if (!remember(hash)) return;
      if (queue.length - queueHead >= maxQueued) {
        if (!overflowing) {
          overflowing = true;
          options.onError(
            new GatewayError('RPC_FAILED', `more than ${maxQueued} pending hashes wait to be fetched: dropping`),
            url,
          );
        }
        return;
      }
      queue.push(hash);
      pump();
      return;
    }
    try {
      const event = toPendingTxEvent(item);
      if (event !== undefined && remember(event.id)) deliver(event);
    } catch (error) {
      options.onError(error, url);
    }
  }

  async function subscribe(url: string): Promise<Session> {
    let stopped = false;
    const provider = socketProvider(url, (socket) => {
      socket.on('error', (error) => {
        if (!stopped) options.onError(error, url);
      });
      socket.on('close', () => {
        if (!stopped && session?.provider === provider) {
          options.onError(new GatewayError('RPC_FAILED', 'mempool subscription socket closed'), url);
          restart();
        }
      });
    });
    const stop = (): void => {
      stopped = true;
      Promise.resolve(provider.destroy()).catch(() => undefined);
    };
    try {
      let id: string;
      try {
        id = await send<string>(provider, 'eth_subscribe', ['newPendingTransactions', true]);
      } catch (error) {
        // A node that does not take the full-transactions flag still announces hashes.
        if (!/param/i.test(errorMessage(error))) throw error;
        id = await send<string>(provider, 'eth_subscribe', ['newPendingTransactions']);
      }
      (provider as unknown as SocketRegistrar)._register(id, { _handleMessage: (m) => announce(m, url) });
      return { url, provider, stop };
    } catch (error) {
      stop();
      throw error;
    }
  }

  async function pollFilter(url: string): Promise<Session> {
    const provider = httpProvider(url, options.requestTimeoutMs);
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let filterId: string;
    try {
      filterId = await send<string>(provider, 'eth_newPendingTransactionFilter', []);
    } catch (error) {
      provider.destroy();
      throw error;
    }
    const poll = async (): Promise<void> => {
      let changes: unknown;
      try {
        changes = await send<unknown>(provider, 'eth_getFilterChanges', [filterId]);
      } catch (error) {
        // Nodes drop filters that were not polled for a while: make a new one.
        if (!/filter not found/i.test(errorMessage(error))) throw error;
        filterId = await send<string>(provider, 'eth_newPendingTransactionFilter', []);
        return;
      }
      if (Array.isArray(changes)) for (const item of changes) announce(item, url);
    };
    const schedule = (): void => {
      if (stopped) return;
      timer = setTimeout(() => {
        poll().then(schedule, (error: unknown) => {
          if (stopped) return;
          options.onError(error, url);
          restart();
        });
      }, options.pollIntervalMs);
    };
    schedule();
    return {
      url,
      provider,
      stop: () => {
        stopped = true;
        clearTimeout(timer);
        send(provider, 'eth_uninstallFilter', [filterId])
          .catch(() => undefined)
          .finally(() => provider.destroy());
      },
    };
  }

  async function start(): Promise<void> {
    retryTimer = undefined;
    if (closed) return;
    const url = options.urls[urlIndex] as string;
    try {
      const next = await (isWebSocketUrl(url) ? subscribe(url) : pollFilter(url));
      if (closed) {
        next.stop();
        return;
      }
      session = next;
      failures = 0;
    } catch (error) {
      if (closed) return;
      if (isUnsupportedMethod(error)) unsupported.add(url);
      if (unsupported.size === options.urls.length) {
        options.onError(
          new GatewayError('RPC_FAILED', `no endpoint offers its mempool (${errorMessage(error)}): pending is off`),
          url,
        );
        return;
      }
      options.onError(error, url);
      restart();
    }
  }

  /** Drops the session in use and tries the next endpoint after a backoff. */
  function restart(): void {
    if (closed || retryTimer !== undefined) return;
    session?.stop();
    session = undefined;
    failures++;
    do urlIndex = (urlIndex + 1) % options.urls.length;
    while (unsupported.has(options.urls[urlIndex] as string));
    const delayMs = Math.min(MAX_BACKOFF_MS, options.pollIntervalMs * 2 ** Math.min(failures - 1, 10));
    retryTimer = setTimeout(() => void start(), delayMs);
  }

  await start();

  return {
    following: () => session !== undefined,
    close: async () => {
      closed = true;
      clearTimeout(retryTimer);
      session?.stop();
      session = undefined;
    },
  };
}
