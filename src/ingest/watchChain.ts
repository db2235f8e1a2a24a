import { errorMessage, GatewayError, RpcFaultError } from '../domain/errors.ts';
import type { ChainBlock, Hex } from '../domain/types.ts';
import { isMethodUnsupported } from './Capabilities.ts';
import {
  checkBlock,
  checkBlockReceipts,
  checkTxReceipt,
  type Header,
  toChainId,
  toHeader,
  toQuantity,
  wrongChain,
} from './checkBlock.ts';
import { RpcPool } from './RpcPool.ts';
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
  /** Largest JSON-RPC answer read, in bytes; a larger one is refused (fault `too_large`). @default 134217728 */
  readonly maxResponseBytes?: number;
  /** How often the endpoint in use is asked for its chain id again, in ms (and after every failover). @default 60000 */
  readonly chainIdCheckIntervalMs?: number;
  /** How long `eth_getBlockReceipts` stays off for an endpoint that said it lacks it, in ms. @default 600000 */
  readonly capabilityRetryMs?: number;
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
  readonly onRetract: (block: Header) => void;
  /**
   * After a reorg was applied: how many blocks it orphaned, and whether no block held (the window,
   * fewer after a start or a revert) was an ancestor of the new branch, so that all were retracted.
   */
  readonly onReorg?: (depth: number, pastWindow: boolean) => void;
  /** Blocks fetched to close a gap (beyond the one head that revealed it). */
  readonly onBackfill?: (blocks: number) => void;
  /** Faults that ingest recovers from by itself, other than a node's answers (the head watchdog, a capability off). */
  readonly onError: (error: unknown, url: string) => void;
  /** Each answer of a node that was not used, once, with the endpoint it came from. @default onError */
  readonly onFault?: (fault: RpcFaultError, url: string) => void;
  /** Every RPC request: method, endpoint, seconds, outcome. */
  readonly onRequest?: (method: string, url: string, seconds: number, ok: boolean) => void;
  /** An endpoint answered (`true`) or failed (`false`). */
  readonly onEndpoint?: (url: string, up: boolean) => void;
}

/** A running chain watcher. */
export interface ChainWatcher {
  readonly chainId: number;
  /** The head found at start, the first block of the chain handed over. */
  readonly startBlock: ChainBlock;
  /** The newest canonical block. */
  readonly head: () => Header;
  /** The endpoint in use. */
  readonly currentUrl: () => string;
  readonly close: () => Promise<void>;
}

/** A block asked for: by number, by hash, or both (then by hash, and its number is checked too). */
interface BlockRequest {
  readonly number?: number;
  readonly hash?: Hex;
  /** How many transactions the node said the block has, where known. */
  readonly txCount?: number;
}

/** The node's head, with its transaction count when the node listed them. */
interface HeadHeader extends Header {
  readonly txCount?: number;
}

const DEFAULT_CHAIN_ID_CHECK_MS = 60_000;
/** Receipts fetched at once where an endpoint has no `eth_getBlockReceipts`. */
const RECEIPT_CONCURRENCY = 8;

/**
 * Follows a chain over JSON-RPC and hands over its canonical blocks in order: never a gap,
 * never a repeat, nothing a node sent that contradicts itself or the chain. Each round checks,
 * when due, that the endpoint serves the chain, then asks for its head; a higher head is caught
 * up block by block (fetched `backfillConcurrency` at a time, each checked with its receipts,
 * applied in order); a block whose parent is not the known head starts a walk back by parent
 * hash to the common ancestor within the window of recent blocks, the orphaned blocks are
 * retracted newest first, then the new branch is applied. A branch with no ancestor among the
 * blocks held (a reorg deeper than the window, or a node reset) retracts them all and continues
 * on the new branch. A head below ours is waited out for a grace period before it is followed.
 * Faults fail the round (nothing of a faulty block or of a half-fetched branch is applied) and
 * fail over to the next endpoint; a head that stops moving reconnects.
 */
export async function watchChain(options: WatchChainOptions): Promise<ChainWatcher> {
  const chainIdCheckIntervalMs = options.chainIdCheckIntervalMs ?? DEFAULT_CHAIN_ID_CHECK_MS;
  let closed = false;
  let wake: (() => void) | undefined;
  const pool = new RpcPool({
    urls: options.urls,
    requestTimeoutMs: options.requestTimeoutMs,
    ...(options.maxResponseBytes === undefined ? {} : { maxResponseBytes: options.maxResponseBytes }),
    ...(options.capabilityRetryMs === undefined ? {} : { capabilityRetryMs: options.capabilityRetryMs }),
    onFault: options.onFault ?? options.onError,
    onWake: () => wake?.(),
    ...(options.onRequest === undefined ? {} : { onRequest: options.onRequest }),
    ...(options.onEndpoint === undefined ? {} : { onEndpoint: options.onEndpoint }),
  });

  /** The recent canonical chain by number; contiguous up to the head. */
  const window = new Map<number, Header>();
  const numberOf = (hash: Hex): number | undefined => {
    for (const header of window.values()) if (header.hash === hash) return header.number;
    return undefined;
  };

  async function askChainId(): Promise<number> {
    return toChainId(await pool.send('eth_chainId', []));
  }

  /** The receipts of a checked block; `early` is an `eth_getBlockReceipts` already sent for it. */
  async function fetchReceipts(block: RpcBlock, header: Header, early?: Promise<unknown>): Promise<RpcReceipt[]> {
    const count = block.transactions.length;
    if (count === 0) return [];
    const url = pool.currentUrl();
    if (early !== undefined || pool.capabilities.has(url, 'blockReceipts')) {
      try {
        const raw = await (early ?? pool.send('eth_getBlockReceipts', [header.hash]));
        return checkBlockReceipts(raw, block, header, `eth_getBlockReceipts(${header.hash})`);
      } catch (error) {
        if (!isMethodUnsupported(error)) throw error;
        pool.capabilities.switchOff(url, 'blockReceipts');
        const minutes = Math.round(pool.capabilities.retryInMs(url, 'blockReceipts') / 60_000);
        options.onError(
          new GatewayError(
            'RPC_FAILED',
            `eth_getBlockReceipts is not offered (${errorMessage(error)}): receipts one by one here, asked again in ${minutes} min`,
          ),
          url,
        );
      }
    }
    const receipts: RpcReceipt[] = [];
    for (let i = 0; i < count; i += RECEIPT_CONCURRENCY) {
      const batch: Promise<RpcReceipt>[] = [];
      for (let j = i; j < Math.min(count, i + RECEIPT_CONCURRENCY); j++) {
        const hash = (block.transactions[j] as { hash: string }).hash;
        const call = `eth_getTransactionReceipt(${hash})`;
        batch.push(
          pool.send('eth_getTransactionReceipt', [hash]).then((raw) => checkTxReceipt(raw, j, block, header, call)),
        );
      }
      for (const receipt of await Promise.all(batch)) receipts.push(receipt);
    }
    return receipts;
  }

  /**
   * One block by number or by hash (or both), with its receipts, checked and converted. A block
   * the node got wrong is reported here, even when the round has already failed on another.
   */
  async function fetchBlock(chainId: number, asked: BlockRequest): Promise<ChainBlock> {
    const url = pool.currentUrl();
    try {
      return await fetchCheckedBlock(chainId, asked);
    } catch (error) {
      // Faults of the request itself are reported by the pool (unless a failover cut it short).
      if (error instanceof RpcFaultError && (error.fault === 'malformed' || error.fault === 'inconsistent')) {
        pool.report(error, url);
      }
      throw error;
    }
  }

  async function fetchCheckedBlock(chainId: number, asked: BlockRequest): Promise<ChainBlock> {
    const method = asked.hash === undefined ? 'eth_getBlockByNumber' : 'eth_getBlockByHash';
    const param = asked.hash ?? toQuantity(asked.number as number);
    const call = `${method}(${param})`;
    // Where the hash and a transaction count are known (the head), the receipts are asked for at
    // the same time as the block: a large block's two answers then arrive together.
    const early =
      asked.hash !== undefined && (asked.txCount ?? 0) > 0 && pool.capabilities.has(pool.currentUrl(), 'blockReceipts')
        ? pool.send('eth_getBlockReceipts', [asked.hash])
        : undefined;
    early?.catch(() => undefined); // awaited in fetchReceipts, or dropped with the block
    const raw = await pool.send(method, [param, true]);
    const { block, header } = checkBlock(raw, {
      ...(asked.number === undefined ? {} : { number: asked.number }),
      ...(asked.hash === undefined ? {} : { hash: asked.hash }),
      chainId,
      call,
      numberOf,
    });
    const receipts = await fetchReceipts(block, header, early);
    try {
      return toChainBlock(chainId, block, receipts);
    } catch (error) {
      const fault = error instanceof RpcFaultError ? error.fault : 'malformed';
      throw new RpcFaultError(fault, `${call}: ${errorMessage(error)}`, { method, cause: error });
    }
  }

  async function latestHeader(): Promise<HeadHeader> {
    const call = 'eth_getBlockByNumber(latest)';
    const raw = await pool.send('eth_getBlockByNumber', ['latest', false]);
    const header = toHeader(raw, call);
    const hashes = (raw as { transactions?: unknown }).transactions;
    return Array.isArray(hashes) ? { ...header, txCount: hashes.length } : header;
  }

  // Start: the first endpoint that answers names the chain; the latest block is the head.
  let start: { chainId: number; head: ChainBlock } | undefined;
  const startErrors: string[] = [];
  for (let attempt = 0; attempt < options.urls.length && start === undefined; attempt++) {
    try {
      const chainId = await askChainId();
      if (options.expectedChainId !== undefined && chainId !== options.expectedChainId) {
        const host = URL.canParse(pool.currentUrl()) ? new URL(pool.currentUrl()).host : 'an endpoint';
        throw new GatewayError('BAD_CONFIG', `chains: ${host} serves chain ${chainId}, not ${options.expectedChainId}`);
      }
      pool.chainChecked();
      const header = await latestHeader();
      start = { chainId, head: await fetchBlock(chainId, header) };
    } catch (error) {
      if (error instanceof GatewayError && error.code === 'BAD_CONFIG') {
        pool.close();
        throw error;
      }
      if (error instanceof RpcFaultError) pool.report(error, pool.currentUrl());
      startErrors.push(errorMessage(error));
      pool.failover();
    }
  }
  if (start === undefined) {
    pool.close();
    throw new GatewayError('RPC_FAILED', `no RPC endpoint answered: ${startErrors.join('; ')}`);
  }
  const chainId = start.chainId;
  const startBlock = start.head;
  let head: Header = { number: startBlock.number, hash: startBlock.hash, parentHash: startBlock.parentHash };
  window.set(head.number, head);

  const recentTimestamps: number[] = [startBlock.timestamp];

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
    const header: Header = { number: block.number, hash: block.hash, parentHash: block.parentHash };
    window.set(block.number, header);
    window.delete(block.number - options.reorgWindowBlocks);
    head = header;
    options.onBlock(block);
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

  /** The node went back to a block we hold (a revert): only what is above it is orphaned. */
  function revertTo(held: Header): void {
    retract([...window.values()].filter((h) => h.number > held.number));
    head = held;
  }

  /** Makes `tip` (a checked block whose parent is not the head) canonical: walk back, retract, apply. */
  async function reorgTo(tip: ChainBlock): Promise<void> {
    const held = window.get(tip.number);
    if (held?.hash === tip.hash) {
      revertTo(held);
      return;
    }
    if (tip.parentHash === head.hash) {
      // Caught up blocks are fetched by number, so this is a block fetched by hash.
      throw new RpcFaultError(
        'inconsistent',
        `eth_getBlockByHash(${tip.hash}) answered block ${tip.number} whose parent is our head, block ${head.number}`,
        { method: 'eth_getBlockByHash' },
      );
    }
    // The whole branch is fetched and checked before anything is retracted.
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
      const parent = await fetchBlock(chainId, { number: oldest.number - 1, hash: oldest.parentHash });
      oldest = parent;
      branch.unshift(parent);
    }
    retract(
      [...window.values()].filter((h) => h.number >= oldest.number || pastWindow),
      pastWindow,
    );
    for (const block of branch) apply(block);
  }

  async function catchUp(target: HeadHeader): Promise<void> {
    if (target.hash === head.hash) return;
    if (target.number <= head.number) {
      // The node's head is at our height (or below, after the grace period) with another hash.
      await reorgTo(await fetchBlock(chainId, target));
      return;
    }
    const from = head.number + 1;
    if (target.number > from) options.onBackfill?.(target.number - from);
    const inflight = new Map<number, Promise<ChainBlock>>();
    let next = from;
    try {
      for (let n = from; n <= target.number && !closed; n++) {
        while (next <= target.number && next < n + options.backfillConcurrency) {
          const promise = fetchBlock(chainId, next === target.number ? target : { number: next });
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

  let lastHeadChangeAt = performance.now();
  let lastHeadHash = head.hash;
  /** Since when the node's head has been below ours (one episode); `undefined` when it is not. */
  let behindSince: number | undefined;

  /** Throws once the node's head has not moved (or stayed behind) past the watchdog's timeout. */
  function watchdog(target: Header | undefined): void {
    if (target !== undefined && target.hash !== lastHeadHash) {
      lastHeadHash = target.hash;
      lastHeadChangeAt = performance.now();
      return;
    }
    const timeoutMs = Math.max(options.headTimeoutMinMs, options.headTimeoutBlocks * expectedBlockTimeMs());
    if (performance.now() - lastHeadChangeAt > timeoutMs) {
      lastHeadChangeAt = performance.now();
      throw new GatewayError('RPC_FAILED', `no new head for ${Math.round(timeoutMs)} ms: reconnecting`);
    }
  }

  /**
   * The node's head is below ours: a lagging endpoint, a load balancer between backends, or a
   * node that went back. Only when it stays below for the grace period is it followed, and never
   * below the window (the watchdog fails over instead).
   */
  async function behind(target: HeadHeader): Promise<void> {
    const now = performance.now();
    if (behindSince === undefined) {
      behindSince = now;
      pool.report(
        new RpcFaultError(
          'behind',
          `eth_getBlockByNumber(latest) answered block ${target.number}, below our head ${head.number}: waiting`,
          { method: 'eth_getBlockByNumber' },
        ),
        pool.currentUrl(),
      );
    }
    watchdog(undefined);
    const graceMs = Math.max(2 * expectedBlockTimeMs(), 2 * options.pollIntervalMs, 1000);
    const held = window.get(target.number);
    if (now - behindSince < graceMs || held === undefined) return;
    if (held.hash === target.hash) revertTo(held);
    else {
      await catchUp(target);
    }
    behindSince = undefined;
  }

  async function round(): Promise<void> {
    if (pool.chainCheckDue(chainIdCheckIntervalMs)) {
      const id = await askChainId();
      if (id !== chainId) throw wrongChain(id, chainId, 'its answers are not used');
      pool.chainChecked();
    }
    const target = await latestHeader();
    if (target.number < head.number) {
      await behind(target);
      return;
    }
    behindSince = undefined;
    watchdog(target);
    await catchUp(target);
  }

  const loop = (async () => {
    while (!closed) {
      try {
        await round();
      } catch (error) {
        if (closed) break;
        const url = pool.currentUrl();
        if (error instanceof RpcFaultError) pool.report(error, url);
        else options.onError(error, url);
        behindSince = undefined;
        pool.failover();
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

  return {
    chainId,
    startBlock,
    head: () => head,
    currentUrl: () => pool.currentUrl(),
    close: async () => {
      closed = true;
      wake?.();
      await loop;
      pool.close();
    },
  };
}
