import { errorMessage, GatewayError, RpcFaultError } from '../domain/errors.ts';
import type { TxEvent } from '../domain/types.ts';
import { Capabilities, isMethodUnsupported } from './Capabilities.ts';
import { toChainId, txChainId, wrongChain } from './checkBlock.ts';
import { createRpcClient, isWebSocketUrl, type RpcClient } from './createRpcClient.ts';
import { excerpt } from './excerpt.ts';
import { toPendingTxEvent } from './toPendingTxEvent.ts';

/** Options of {@link watchPending}. */
export interface WatchPendingOptions {
  /** JSON-RPC endpoints of one chain, in failover order: ws(s) subscribes, http(s) polls a filter. */
  readonly urls: readonly string[];
  /**
   * The chain the endpoints must serve: checked on each connection and every
   * `chainIdCheckIntervalMs`; a transaction that names another chain is dropped. `undefined`: unchecked.
   */
  readonly chainId?: number;
  /** How often an http endpoint's pending-transaction filter is polled, in ms. @default 1000 */
  readonly pollIntervalMs: number;
  /** Timeout of one RPC request, in ms. @default 10000 */
  readonly requestTimeoutMs: number;
  /** Largest JSON-RPC answer read, in bytes; a larger one is refused (fault `too_large`). @default 134217728 */
  readonly maxResponseBytes?: number;
  /** How often the endpoint in use is asked for its chain id again, in ms. @default 60000 */
  readonly chainIdCheckIntervalMs?: number;
  /** How long an endpoint that said it has no mempool methods is left alone, in ms. @default 600000 */
  readonly capabilityRetryMs?: number;
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
  /** Each answer of a node that was not used, once, with the endpoint it came from. @default onError */
  readonly onFault?: (fault: RpcFaultError, url: string) => void;
}

/** A running mempool watcher. */
export interface PendingWatcher {
  /** Whether an endpoint's mempool is being followed right now. */
  readonly following: () => boolean;
  readonly close: () => Promise<void>;
}

interface Session {
  readonly url: string;
  readonly client: RpcClient;
  /** Stops polling and closes the connection (`final`: at once, without goodbyes to the node). */
  readonly stop: (final: boolean) => void;
}

const DEFAULT_CONCURRENCY = 8;
const DEFAULT_MAX_QUEUED = 10_000;
const DEFAULT_CHAIN_ID_CHECK_MS = 60_000;
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
 * that starts serving after it misses nothing the node announces from then on. Faults reconnect
 * (failing over) with backoff; an endpoint whose node says it has no such methods is left alone
 * for `capabilityRetryMs`, and asked again after it.
 */
export async function watchPending(options: WatchPendingOptions): Promise<PendingWatcher> {
  if (options.urls.length === 0) throw new GatewayError('BAD_CONFIG', 'rpc: at least one RPC URL is needed');
  const maxConcurrent = options.maxConcurrentFetches ?? DEFAULT_CONCURRENCY;
  const maxQueued = options.maxQueuedHashes ?? DEFAULT_MAX_QUEUED;
  const chainIdCheckIntervalMs = options.chainIdCheckIntervalMs ?? DEFAULT_CHAIN_ID_CHECK_MS;
  const capabilities = new Capabilities(options.capabilityRetryMs);
  const onFault = options.onFault ?? options.onError;
  const reported = new WeakSet<object>();
  let closed = false;
  let session: Session | undefined;
  let urlIndex = 0;
  let failures = 0;
  let retryTimer: NodeJS.Timeout | undefined;

  const seen = new Set<string>();
  let queue: string[] = [];
  let queueHead = 0;
  let inFlight = 0;
  let overflowing = false;
  let ready: TxEvent[] = [];
  let flushScheduled = false;

  /** Hands a fault to `onFault`, once however often it is reported. */
  function fault(error: RpcFaultError, url: string): void {
    if (reported.has(error)) return;
    reported.add(error);
    onFault(error, url);
  }

  function connect(url: string): RpcClient {
    const client: RpcClient = createRpcClient(url, {
      timeoutMs: options.requestTimeoutMs,
      ...(options.maxResponseBytes === undefined ? {} : { maxResponseBytes: options.maxResponseBytes }),
      onFault: (error) => {
        if (!closed && !client.isClosed()) fault(error, url);
      },
      onClose: (error) => {
        if (closed || session?.client !== client) return;
        fault(error, url);
        restart();
      },
    });
    return client;
  }

  /** One request; a fault is reported unless the session was dropped meanwhile. */
  async function send(client: RpcClient, method: string, params: readonly unknown[]): Promise<unknown> {
    try {
      return await client.request(method, params);
    } catch (error) {
      if (!closed && !client.isClosed() && error instanceof RpcFaultError) fault(error, client.url);
      throw error;
    }
  }

  async function checkChain(client: RpcClient): Promise<void> {
    if (options.chainId === undefined) return;
    const id = toChainId(await send(client, 'eth_chainId', []));
    if (id !== options.chainId) throw wrongChain(id, options.chainId, 'its mempool is not used');
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

  /** The event of a pending transaction from the node, or `undefined` (in a block, or not used: reported). */
  function toEvent(raw: unknown, url: string, method: string): TxEvent | undefined {
    let event: TxEvent | undefined;
    try {
      event = toPendingTxEvent(raw);
    } catch (error) {
      fault(new RpcFaultError('malformed', `${method}: ${errorMessage(error)}`, { method }), url);
      return undefined;
    }
    if (event === undefined || options.chainId === undefined) return event;
    const txChain = (raw as Record<string, unknown>)['chainId'];
    const n = txChainId(txChain);
    if (Number.isNaN(n)) {
      fault(
        new RpcFaultError('malformed', `${method}: transaction ${event.id} has chainId ${excerpt(txChain)}`, {
          method,
        }),
        url,
      );
      return undefined;
    }
    if (n !== undefined && n !== options.chainId) {
      fault(
        new RpcFaultError(
          'inconsistent',
          `${method}: transaction ${event.id} is of chain ${n}, not ${options.chainId}`,
          {
            method,
          },
        ),
        url,
      );
      return undefined;
    }
    return event;
  }

  function pump(): void {
    while (!closed && inFlight < maxConcurrent && queueHead < queue.length) {
      const hash = queue[queueHead++] as string;
      const current = session;
      if (current === undefined) continue;
      inFlight++;
      send(current.client, 'eth_getTransactionByHash', [hash])
        .then((raw) => {
          if (closed || raw === null) return; // dropped from the pool before it was fetched
          const event = toEvent(raw, current.url, 'eth_getTransactionByHash');
          if (event !== undefined) deliver(event);
        })
        .catch(() => {
          // Reported by send(); a lost transaction is not worth a reconnect.
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
  function announce(item: unknown, url: string, method: string): void {
    if (closed || !options.wanted()) return;
    if (typeof item === 'string') {
      if (!HASH.test(item)) {
        fault(new RpcFaultError('malformed', `${method}: announced ${excerpt(item)}, not a hash`, { method }), url);
        return;
      }
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
    const event = toEvent(item, url, method);
    if (event !== undefined && remember(event.id)) deliver(event);
  }

  /** Asks the chain id again every `chainIdCheckIntervalMs`; a wrong answer (or none) reconnects. */
  function watchChainId(client: RpcClient, url: string): NodeJS.Timeout | undefined {
    if (options.chainId === undefined) return undefined;
    return setInterval(() => {
      checkChain(client).catch((error: unknown) => {
        if (closed || session?.client !== client) return;
        if (error instanceof RpcFaultError) fault(error, url);
        restart();
      });
    }, chainIdCheckIntervalMs);
  }

  async function subscribe(url: string): Promise<Session> {
    const client = connect(url);
    if (client.transport !== 'ws') throw new TypeError('subscribe() needs a ws(s) endpoint');
    try {
      await checkChain(client);
      const method = 'eth_subscribe(newPendingTransactions)';
      const onItem = (item: unknown): void => announce(item, url, method);
      try {
        await client.subscribe(['newPendingTransactions', true], onItem);
      } catch (error) {
        // A node that does not take the full-transactions flag still announces hashes.
        if (!(error instanceof RpcFaultError) || error.fault !== 'node_error') throw error;
        await client.subscribe(['newPendingTransactions'], onItem);
      }
    } catch (error) {
      client.close();
      throw error;
    }
    const timer = watchChainId(client, url);
    return {
      url,
      client,
      stop: () => {
        clearInterval(timer);
        client.close();
      },
    };
  }

  async function newFilter(client: RpcClient): Promise<string> {
    const id = await send(client, 'eth_newPendingTransactionFilter', []);
    if (typeof id !== 'string' || id.length === 0 || id.length > 130) {
      throw new RpcFaultError('malformed', `eth_newPendingTransactionFilter answered ${excerpt(id)}`, {
        method: 'eth_newPendingTransactionFilter',
      });
    }
    return id;
  }

  async function pollFilter(url: string): Promise<Session> {
    const client = connect(url);
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let filterId: string;
    try {
      await checkChain(client);
      filterId = await newFilter(client);
    } catch (error) {
      client.close();
      throw error;
    }
    const poll = async (): Promise<void> => {
      let changes: unknown;
      try {
        changes = await send(client, 'eth_getFilterChanges', [filterId]);
      } catch (error) {
        // Nodes drop filters that were not polled for a while: make a new one.
        if (!(error instanceof RpcFaultError) || !/filter not found/i.test(error.rpcMessage ?? '')) throw error;
        filterId = await newFilter(client);
        return;
      }
      if (!Array.isArray(changes)) {
        throw new RpcFaultError('malformed', `eth_getFilterChanges answered ${excerpt(changes)}`, {
          method: 'eth_getFilterChanges',
        });
      }
      for (const item of changes) announce(item, url, 'eth_getFilterChanges');
    };
    const schedule = (): void => {
      if (stopped) return;
      timer = setTimeout(() => {
        poll().then(schedule, (error: unknown) => {
          if (stopped) return;
          if (error instanceof RpcFaultError) fault(error, url);
          else options.onError(error, url);
          restart();
        });
      }, options.pollIntervalMs);
    };
    schedule();
    const chainTimer = watchChainId(client, url);
    return {
      url,
      client,
      stop: (final) => {
        stopped = true;
        clearTimeout(timer);
        clearInterval(chainTimer);
        if (final) {
          client.close();
          return;
        }
        client
          .request('eth_uninstallFilter', [filterId])
          .catch(() => undefined)
          .finally(() => client.close());
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
        next.stop(true);
        return;
      }
      session = next;
      failures = 0;
    } catch (error) {
      if (closed) return;
      if (error instanceof RpcFaultError) fault(error, url);
      else options.onError(error, url);
      if (isMethodUnsupported(error)) capabilities.switchOff(url, 'mempool');
      if (options.urls.every((u) => !capabilities.has(u, 'mempool'))) {
        // Asked again once the first endpoint's time is up: a node may be upgraded or reconfigured.
        const waits = options.urls.map((u) => capabilities.retryInMs(u, 'mempool'));
        const waitMs = Math.min(...waits);
        urlIndex = waits.indexOf(waitMs);
        options.onError(
          new GatewayError(
            'RPC_FAILED',
            `no endpoint offers its mempool (${errorMessage(error)}): pending is off, asked again in ${Math.round(waitMs / 60_000)} min`,
          ),
          url,
        );
        retryTimer = setTimeout(() => void start(), waitMs);
        return;
      }
      restart();
    }
  }

  /** Drops the session in use and tries the next endpoint that may offer its mempool, after a backoff. */
  function restart(): void {
    if (closed || retryTimer !== undefined) return;
    session?.stop(false);
    session = undefined;
    failures++;
    for (let i = 0; i < options.urls.length; i++) {
      urlIndex = (urlIndex + 1) % options.urls.length;
      if (capabilities.has(options.urls[urlIndex] as string, 'mempool')) break;
    }
    const delayMs = Math.min(MAX_BACKOFF_MS, options.pollIntervalMs * 2 ** Math.min(failures - 1, 10));
    retryTimer = setTimeout(() => void start(), delayMs);
  }

  await start();

  return {
    following: () => session !== undefined,
    close: async () => {
      closed = true;
      clearTimeout(retryTimer);
      session?.stop(true);
      session = undefined;
    },
  };
}
