import { FetchRequest, JsonRpcProvider, Network, WebSocketProvider } from 'ethers';
import { GatewayError } from '../domain/errors.ts';
import type { ChainBlock } from '../domain/types.ts';
import { type RpcBlock, type RpcReceipt, toChainBlock } from './toChainBlock.ts';

/** Options of {@link watchChain}. */
export interface WatchChainOptions {
  /** JSON-RPC endpoints of one chain, tried in order: http(s) is polled, ws(s) follows `newHeads`. */
  readonly urls: readonly string[];
  /** How often an http endpoint is asked for its head, in ms. @default 1000 */
  readonly pollIntervalMs: number;
  /** Timeout of one RPC request, in ms. @default 10000 */
  readonly requestTimeoutMs: number;
  /** Called once per new canonical block, in order of number, never concurrently. */
  readonly onBlock: (block: ChainBlock) => void;
  /** Called for RPC faults that ingest recovers from by itself (it retries). */
  readonly onError: (error: unknown, url: string) => void;
  /** Called after each RPC request with its method, endpoint, duration in seconds and outcome. */
  readonly onRequest?: (method: string, url: string, seconds: number, ok: boolean) => void;
}

/** A running chain watcher: the chain's id and head, and a `close()`. */
export interface ChainWatcher {
  readonly chainId: number;
  /** The newest block handed to `onBlock` (or the head found at start). */
  readonly head: () => ChainBlock;
  readonly close: () => Promise<void>;
}

const RECEIPT_CONCURRENCY = 8;

interface Endpoint {
  readonly url: string;
  readonly provider: JsonRpcProvider | WebSocketProvider;
}

function isWebSocketUrl(url: string): boolean {
  return url.startsWith('ws://') || url.startsWith('wss://');
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new GatewayError('RPC_FAILED', `${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Follows a chain's head over JSON-RPC and hands every new block, with its transactions and
 * receipts, to `onBlock` in order. Blocks between the last one handed over and a new head are
 * fetched one by one, so a head notification that skips numbers leaves no gap. On an RPC fault
 * the next endpoint takes over and the fetch is retried.
 */
export async function watchChain(options: WatchChainOptions): Promise<ChainWatcher> {
  if (options.urls.length === 0) throw new GatewayError('BAD_CONFIG', 'rpc: at least one RPC URL is needed');
  let endpointIndex = 0;
  let endpoint: Endpoint | undefined;
  let closed = false;
  let hasBlockReceipts = true;

  function connect(url: string, chainId: number | undefined): Endpoint {
    const network = chainId === undefined ? undefined : Network.from(chainId);
    const opts = network === undefined ? { batchMaxCount: 1 } : { staticNetwork: network, batchMaxCount: 1 };
    if (isWebSocketUrl(url)) return { url, provider: new WebSocketProvider(url, network, opts) };
    const request = new FetchRequest(url);
    request.timeout = options.requestTimeoutMs;
    return { url, provider: new JsonRpcProvider(request, network, opts) };
  }

  async function send<T>(method: string, params: unknown[]): Promise<T> {
    const current = endpoint;
    if (current === undefined) throw new GatewayError('RPC_FAILED', 'no RPC endpoint connected');
    const started = performance.now();
    try {
      const result = (await withTimeout(
        current.provider.send(method, params),
        options.requestTimeoutMs,
        `${method} on ${current.url}`,
      )) as T;
      options.onRequest?.(method, current.url, (performance.now() - started) / 1000, true);
      return result;
    } catch (error) {
      options.onRequest?.(method, current.url, (performance.now() - started) / 1000, false);
      throw error;
    }
  }

  async function fetchReceipts(block: RpcBlock): Promise<RpcReceipt[]> {
    if (block.transactions.length === 0) return [];
    if (hasBlockReceipts) {
      try {
        return await send<RpcReceipt[]>('eth_getBlockReceipts', [block.number]);
      } catch (error) {
        if (!/method|not (found|supported|available)|-32601/i.test(describe(error))) throw error;
        hasBlockReceipts = false;
      }
    }
    const receipts: RpcReceipt[] = [];
    for (let i = 0; i < block.transactions.length; i += RECEIPT_CONCURRENCY) {
      const batch = block.transactions.slice(i, i + RECEIPT_CONCURRENCY);
      receipts.push(
        ...(await Promise.all(batch.map((tx) => send<RpcReceipt>('eth_getTransactionReceipt', [tx.hash])))),
      );
    }
    return receipts;
  }

  async function fetchBlock(chainId: number, tag: number | 'latest'): Promise<ChainBlock> {
    const param = tag === 'latest' ? tag : `0x${tag.toString(16)}`;
    const block = await send<RpcBlock | null>('eth_getBlockByNumber', [param, true]);
    if (block === null) throw new GatewayError('RPC_FAILED', `block ${param} is not available yet`);
    return toChainBlock(chainId, block, await fetchReceipts(block));
  }

  async function startOn(url: string): Promise<{ chainId: number; head: ChainBlock }> {
    endpoint = connect(url, undefined);
    const chainId = Number(await send<string>('eth_chainId', []));
    await endpoint.provider.destroy();
    endpoint = connect(url, chainId);
    return { chainId, head: await fetchBlock(chainId, 'latest') };
  }

  let start: { chainId: number; head: ChainBlock } | undefined;
  const startErrors: string[] = [];
  for (const url of options.urls) {
    try {
      start = await startOn(url);
      break;
    } catch (error) {
      startErrors.push(`${url}: ${describe(error)}`);
      await endpoint?.provider.destroy();
      endpoint = undefined;
      endpointIndex++;
    }
  }
  if (start === undefined) {
    throw new GatewayError('RPC_FAILED', `no RPC endpoint answered: ${startErrors.join('; ')}`);
  }
  const chainId = start.chainId;
  let head = start.head;
  let target = head.number;
  let pumping = false;
  let pollTimer: NodeJS.Timeout | undefined;

  async function failover(error: unknown): Promise<void> {
    const failed = endpoint;
    options.onError(error, failed?.url ?? '');
    if (options.urls.length < 2 || failed === undefined) return;
    endpointIndex = (endpointIndex + 1) % options.urls.length;
    await failed.provider.destroy();
    const url = options.urls[endpointIndex] as string;
    endpoint = connect(url, chainId);
    listen();
  }

  async function pump(): Promise<void> {
    if (pumping || closed) return;
    pumping = true;
    try {
      while (!closed && head.number < target) {
        const block = await fetchBlock(chainId, head.number + 1);
        if (closed) return;
        head = block;
        options.onBlock(block);
      }
    } catch (error) {
      if (!closed) await failover(error);
    } finally {
      pumping = false;
    }
  }

  function onHead(n: number): void {
    if (n > target) target = n;
    void pump();
  }

  async function poll(): Promise<void> {
    try {
      onHead(Number(await send<string>('eth_blockNumber', [])));
    } catch (error) {
      if (!closed) await failover(error);
    }
  }

  function schedulePoll(): void {
    if (closed) return;
    pollTimer = setTimeout(() => {
      void poll().finally(schedulePoll);
    }, options.pollIntervalMs);
  }

  function listen(): void {
    const current = endpoint;
    if (current === undefined || !(current.provider instanceof WebSocketProvider)) return;
    current.provider.on('block', onHead).catch((error: unknown) => options.onError(error, current.url));
  }

  listen();
  // Polling runs for WebSocket endpoints too, at the same interval: it is the safety net for a
  // missed or stalled `newHeads` notification, and costs one request per interval.
  schedulePoll();

  return {
    chainId,
    head: () => head,
    close: async () => {
      closed = true;
      clearTimeout(pollTimer);
      await endpoint?.provider.destroy();
    },
  };
}
