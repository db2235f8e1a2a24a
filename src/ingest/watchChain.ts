import { errorMessage, GatewayError } from '../domain/errors.ts';
import type { BlockRef, ChainBlock, Hex } from '../domain/types.ts';
import { RpcPool } from './RpcPool.ts';
import { isUnsupportedMethod } from './rpc.ts';
import { type RpcBlock, type RpcReceipt, toChainBlock } from './toChainBlock.ts';

/** Options of {@link watchChain}. */
export interface WatchChainOptions {
  /** JSON-RPC endpoints of one chain, in failover order: http(s) is polled, ws(s) also follows `newHeads`. */
  readonly urls: readonly string[];
  /** The chain id the endpoints must serve; `undefined` takes whatever the first endpoint says. */
  readonly expectedChainId?: number;
  /** How often the node is asked for its head, in ms. @default 1000 */
  readonly pollIntervalMs: number;
  /** Timeout of one RPC request, in ms; a timeout fails over to the next endpoint. @default 10000 */
  readonly requestTimeoutMs: number;
  /** Recent canonical blocks kept, linked by parent hash, to find a reorg's common ancestor. @default 128 */
  readonly reorgWindowBlocks: number;
  /** Blocks fetched at once while catching up after a gap. @default 4 */
  readonly backfillConcurrency: number;
  /**
   * Head watchdog: no new head for this many expected block times (the median interval of the
   * recent blocks) reconnects and fails over. @default 10
   */
  readonly headTimeoutBlocks: number;
  /** The watchdog never fires sooner than this, in ms (a quiet chain is not a dead link). @default 30000 */
  readonly headTimeoutMinMs: number;
  /** A new canonical block, in order of number; never called concurrently. */
  readonly onBlock: (block: ChainBlock) => void;
  /** A block that left the canonical chain, newest first, before the new branch's blocks. */
  readonly onRetract: (block: BlockRef & { readonly parentHash: Hex }) => void;
  /** After a reorg was applied: how many blocks it orphaned, and whether it reached past the window. */
  readonly onReorg?: (depth: number, pastWindow: boolean) => void;
  /** Blocks fetched to close a gap (beyond the one head that revealed it). */
  readonly onBackfill?: (blocks: number) => void;
  /** RPC faults that ingest recovers from by itself. */
  readonly onError: (error: unknown, url: string) => void;
  /** Every RPC request: method, endpoint, seconds, outcome. */
  readonly onRequest?: (method: string, url: string, seconds: number, ok: boolean) => void;
  /** An endpoint became the one in use (`true`) or failed (`false`). */
  readonly onEndpoint?: (url: string, up: boolean) => void;
}

/** A running chain watcher. */
export interface ChainWatcher {
  readonly chainId: number;
  /** The newest canonical block handed over (or the head found at start). */
  readonly head: () => ChainBlock;
  /** The endpoint in use. */
  readonly currentUrl: () => string;
  readonly close: () => Promise<void>;
}

interface Header {
  readonly number: number;
  readonly hash: Hex;
  readonly parentHash: Hex;
}

function toHeader(raw: { number: string; hash: string; parentHash: string }): Header {
  return {
    number: Number(raw.number),
    hash: raw.hash.toLowerCase() as Hex,
    parentHash: raw.parentHash.toLowerCase() as Hex,
  };
}

/**
 * Follows a chain over JSON-RPC and hands over its canonical blocks in order: never a gap,
 * never a repeat. Each round asks the node for its head; a higher head is caught up block by
 * block (fetched `backfillConcurrency` at a time, applied in order); a block whose parent is not
 * the known head starts a walk back by parent hash to the common ancestor within the window of
 * recent blocks, the orphaned blocks are retracted newest first, then the new branch is applied.
 * A reorg deeper than the window retracts the whole window and continues on the new branch.
 * Faults fail over to the next endpoint; a head that stops moving reconnects.
 */
export async function watchChain(options: WatchChainOptions): Promise<ChainWatcher> {
  const pool = new RpcPool({
    urls: options.urls,
    requestTimeoutMs: options.requestTimeoutMs,
    onError: options.onError,
    ...(options.onRequest === undefined ? {} : { onRequest: options.onRequest }),
    ...(options.onEndpoint === undefined ? {} : { onEndpoint: options.onEndpoint }),
  });
  let closed = false;
  let hasBlockReceipts = true;

  async function fetchReceipts(block: RpcBlock): Promise<RpcReceipt[]> {
    if (block.transactions.length === 0) return [];
    if (hasBlockReceipts) {
      try {
        return await pool.send<RpcReceipt[]>('eth_getBlockReceipts', [block.hash]);
      } catch (error) {
        if (!isUnsupportedMethod(error)) throw error;
        hasBlockReceipts = false;
      }
    }
    const receipts: RpcReceipt[] = [];
    for (let i = 0; i < block.transactions.length; i += 8) {
      const batch = block.transactions.slice(i, i + 8);
      receipts.push(
        ...(await Promise.all(batch.map((tx) => pool.send<RpcReceipt>('eth_getTransactionReceipt', [tx.hash])))),
      );
    }
    return receipts;
  }

  async function fetchBlock(chainId: number, method: string, param: string): Promise<ChainBlock> {
    const raw = await pool.send<RpcBlock | null>(method, [param, true]);
    if (raw === null) throw new GatewayError('RPC_FAILED', `${method}(${param}) returned no block`);
    const receipts = await fetchReceipts(raw);
    // Receipts are fetched by block hash; a node that answers with another block's is not trusted.
    const foreign = receipts.find(
      (r) => r.blockHash !== undefined && r.blockHash.toLowerCase() !== raw.hash.toLowerCase(),
    );
    if (foreign !== undefined)
      throw new GatewayError('RPC_FAILED', `receipts of ${raw.hash} belong to ${foreign.blockHash}`);
    return toChainBlock(chainId, raw, receipts);
  }

  const byNumber = (chainId: number, n: number): Promise<ChainBlock> =>
    fetchBlock(chainId, 'eth_getBlockByNumber', `0x${n.toString(16)}`);
  const byHash = (chainId: number, hash: Hex): Promise<ChainBlock> => fetchBlock(chainId, 'eth_getBlockByHash', hash);

  async function latestHeader(): Promise<Header> {
    const raw = await pool.send<{ number: string; hash: string; parentHash: string } | null>('eth_getBlockByNumber', [
      'latest',
      false,
    ]);
    if (raw === null) throw new GatewayError('RPC_FAILED', 'the node has no latest block');
    return toHeader(raw);
  }

  // Start: the first endpoint that answers names the chain; the latest block is the head.
  let start: { chainId: number; head: ChainBlock } | undefined;
  const startErrors: string[] = [];
  for (let attempt = 0; attempt < options.urls.length && start === undefined; attempt++) {
    try {
      const chainId = Number(await pool.send<string>('eth_chainId', []));
      if (options.expectedChainId !== undefined && chainId !== options.expectedChainId) {
        throw new GatewayError(
          'BAD_CONFIG',
          `chains: ${pool.currentUrl()} serves chain ${chainId}, not ${options.expectedChainId}`,
        );
      }
      const header = await latestHeader();
      start = { chainId, head: await byHash(chainId, header.hash) };
    } catch (error) {
      if (error instanceof GatewayError && error.code === 'BAD_CONFIG') {
        await pool.close();
        throw error;
      }
      startErrors.push(`${pool.currentUrl()}: ${errorMessage(error)}`);
      pool.failover();
    }
  }
  if (start === undefined) {
    await pool.close();
    throw new GatewayError('RPC_FAILED', `no RPC endpoint answered: ${startErrors.join('; ')}`);
  }
  const chainId = start.chainId;
  let head = start.head;
  const window = new Map<number, Header>([[head.number, head]]);

  const recentTimestamps: number[] = [head.timestamp];

  /** The median interval between recent blocks, in ms (the poll interval until there are some). */
  function expectedBlockTimeMs(): number {
    const gaps = recentTimestamps.slice(1).map((t, i) => t - (recentTimestamps[i] as number));
    const positive = gaps.filter((g) => g > 0).sort((a, b) => a - b);
    const median = positive[Math.floor(positive.length / 2)];
    return median === undefined ? options.pollIntervalMs : median * 1000;
  }

  function apply(block: ChainBlock): void {
    recentTimestamps.push(block.timestamp);
    if (recentTimestamps.length > 33) recentTimestamps.shift();
    window.set(block.number, block);
    window.delete(block.number - options.reorgWindowBlocks);
    head = block;
    options.onBlock(block);
  }

  /** Makes `tip` (whose parent is not the head) canonical: walk back, retract, apply. */
  async function reorgTo(tip: ChainBlock): Promise<void> {
    if (window.get(tip.number)?.hash === tip.hash) {
      // The node went back to a block we hold (a revert): only what is above it is orphaned.
      retract([...window.values()].filter((h) => h.number > tip.number));
      head = tip;
      return;
    }
    const branch = [tip];
    let oldest = tip;
    let pastWindow = false;
    for (let steps = 0; ; steps++) {
      const ours = window.get(oldest.number - 1);
      if (ours?.hash === oldest.parentHash) break;
      if (ours === undefined || steps > options.reorgWindowBlocks) {
        pastWindow = true;
        break;
      }
      oldest = await byHash(chainId, oldest.parentHash);
      branch.unshift(oldest);
    }
    retract(
      [...window.values()].filter((h) => h.number >= oldest.number || pastWindow),
      pastWindow,
    );
    for (const block of branch) apply(block);
  }

  /** Retracts the given blocks of the window, newest first, and reports the reorg. */
  function retract(orphaned: Header[], pastWindow = false): void {
    orphaned.sort((a, b) => b.number - a.number);
    for (const header of orphaned) {
      window.delete(header.number);
      options.onRetract(header);
    }
    options.onReorg?.(orphaned.length, pastWindow);
  }

  async function catchUp(target: Header): Promise<void> {
    if (target.hash === head.hash) return;
    if (target.number <= head.number) {
      // The node's head is at or below ours with another hash: it moved to another branch.
      await reorgTo(await byHash(chainId, target.hash));
      return;
    }
    const from = head.number + 1;
    if (target.number > from) options.onBackfill?.(target.number - from);
    const inflight = new Map<number, Promise<ChainBlock>>();
    let next = from;
    try {
      for (let n = from; n <= target.number && !closed; n++) {
        while (next <= target.number && next < n + options.backfillConcurrency) {
          const promise = byNumber(chainId, next);
          promise.catch(() => undefined); // awaited below, or dropped when the round ends early
          inflight.set(next, promise);
          next++;
        }
        const block = await (inflight.get(n) as Promise<ChainBlock>);
        inflight.delete(n);
        if (block.parentHash !== head.hash) {
          await reorgTo(block);
          return;
        }
        apply(block);
      }
    } finally {
      inflight.clear();
    }
  }

  let wake: (() => void) | undefined;
  let lastHeadChangeAt = performance.now();
  let lastHeadHash = head.hash;

  const onNewHead = (): void => wake?.();

  async function round(): Promise<void> {
    const target = await latestHeader();
    if (target.hash !== lastHeadHash) {
      lastHeadHash = target.hash;
      lastHeadChangeAt = performance.now();
    } else {
      const timeoutMs = Math.max(options.headTimeoutMinMs, options.headTimeoutBlocks * expectedBlockTimeMs());
      if (performance.now() - lastHeadChangeAt > timeoutMs) {
        lastHeadChangeAt = performance.now();
        throw new GatewayError('RPC_FAILED', `no new head for ${Math.round(timeoutMs)} ms: reconnecting`);
      }
    }
    await catchUp(target);
  }

  const loop = (async () => {
    while (!closed) {
      try {
        await round();
      } catch (error) {
        if (closed) break;
        options.onError(error, pool.currentUrl());
        pool.failover();
        pool.onNewHead(onNewHead);
      }
      if (closed) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.pollIntervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  })();
  pool.onNewHead(onNewHead);

  return {
    chainId,
    head: () => head,
    currentUrl: () => pool.currentUrl(),
    close: async () => {
      closed = true;
      wake?.();
      await loop;
      await pool.close();
    },
  };
}
