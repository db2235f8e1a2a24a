import { errorMessage, GatewayError, RpcFaultError } from '../domain/errors.ts';
import type { BlockLink, BlockRef, ChainBlock, Finality, Hex } from '../domain/types.ts';
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
import type { BlockEnricher } from './enrichBlock.ts';
import { type PlanLimits, type BlockRequest as PlannedBlock, planChain } from './planChain.ts';
import { RpcPool } from './RpcPool.ts';
import { type RpcBlock, type RpcReceipt, toChainBlock, toChainHead } from './toChainBlock.ts';

/** Options of {@link watchChain}. */
export interface WatchChainOptions {
  /** JSON-RPC endpoints of one chain, in failover order: http(s) is polled, ws(s) also follows `newHeads`. */
  readonly urls: readonly string[];
  /** The chain id the endpoints must serve; `undefined` takes whatever the first endpoint says. */
  readonly expectedChainId?: number;
  /** How often the node is asked for its head, in ms; also the wait before a round is tried again. @default 1000 */
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
  /**
   * The canonical tail of the chain log to continue from: called once at start, once the chain id
   * is known and checked, with up to `reorgWindowBlocks` blocks, oldest first, contiguous by parent
   * hash (empty for a new log). Non-empty, its last block is the head and the first round catches
   * up from it (backfill, or retractions when it is no longer canonical on the node); empty (or no
   * `seed`), the node's latest block is the first block handed to `onBlock` before `watchChain`
   * resolves. A rejection rejects `watchChain`.
   */
  readonly seed?: (chainId: number) => Promise<readonly BlockLink[]>;
  /**
   * A new canonical block, in order of number, continuing the last block handed over and not
   * retracted (except after a reorg past the window); never called concurrently. Awaited: the
   * block is ours (the head, the window) only once this resolves. A throw or rejection is a sink
   * error ({@link onSinkError}): the round is tried again and the block handed over again.
   */
  readonly onBlock: (block: ChainBlock, restart: boolean) => void | Promise<void>;
  /**
   * The header of the next block, as soon as the node announced it (a `newHeads` notification or
   * the `latest` header) and before the block is fetched: a {@link ChainBlock} with `headerOnly`,
   * its transaction count and the finality tags as last read. Only for a header that continues
   * the head and tells its transaction count. `onBlock` of the same hash follows, or, if the node's
   * block turns out to be another, the next `onBlock` or `onRetract` passes it by (the sink
   * retracts it then). Awaited before that next call; a failure is a sink error ({@link
   * onSinkError}) and changes nothing else.
   */
  readonly onHead?: (head: ChainBlock) => void | Promise<void>;
  /**
   * A block that left the canonical chain, always the newest handed over and not yet retracted,
   * newest first, before the new branch's blocks. Awaited like `onBlock`: the head moves to the
   * block's parent only once this resolves.
   */
  readonly onRetract: (link: BlockLink) => void | Promise<void>;
  /**
   * `onBlock` or `onRetract` threw or rejected (the log is unreachable, the lease was lost): not a
   * fault of the node (no failover); the round is tried again after `pollIntervalMs`.
   * @default onError(error, the endpoint in use)
   */
  readonly onSinkError?: (error: unknown) => void;
  /**
   * After a reorg's retractions: how many blocks it orphaned, and whether no block held (the
   * window, fewer after a start or a revert) was an ancestor of the new branch, so that all were
   * retracted.
   */
  readonly onReorg?: (depth: number, pastWindow: boolean) => void;
  /** Blocks fetched to close a gap (beyond the one head that revealed it). */
  readonly onBackfill?: (blocks: number) => void;
  /**
   * Read the node's `safe` and `finalized` blocks with each new head and hand them over with the
   * blocks (`ChainBlock.finality`); a node without the tags is found out at start and never asked
   * again. @default true
   */
  readonly finality?: boolean;
  /**
   * Makes what adds to each fetched block before it is handed over (internal transfers, token
   * metadata), given the watcher's way to send requests; closed with the watcher. Its faults are
   * the node's: the round fails over.
   */
  readonly enrich?: (requests: {
    /** Sends a request to the endpoint in use. */
    readonly send: (method: string, params: readonly unknown[]) => Promise<unknown>;
    /** The same for a method the node may lack: a refusal saying so is not reported as a fault. */
    readonly probe: (method: string, params: readonly unknown[]) => Promise<unknown>;
  }) => BlockEnricher;
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
  /**
   * The newest block handed over and not retracted: the last block `onBlock` took, or, after a
   * retraction, the parent of the block retracted.
   */
  readonly head: () => BlockRef;
  /** The endpoint in use. */
  readonly currentUrl: () => string;
  readonly close: () => Promise<void>;
}

/**
 * `onBlock` or `onRetract` failed (`cause` is what it threw): the sink's fault, not the node's.
 * `watchChain` rejects with it when the first block is not taken after a few tries.
 */
export class SinkError extends Error {
  override readonly name = 'SinkError';
}

/** A block asked for: by number, by hash, or both (then by hash, and its number is checked too). */
interface BlockRequest {
  readonly number?: number;
  readonly hash?: Hex;
  /** How many transactions the node said the block has, where known. */
  readonly txCount?: number;
}

/** The node's head, with its transaction count when the node listed them, and the header as it came. */
interface HeadHeader extends Header {
  readonly txCount?: number;
  readonly raw?: Readonly<Record<string, unknown>>;
}

const DEFAULT_CHAIN_ID_CHECK_MS = 60_000;
/** Receipts fetched at once where an endpoint has no `eth_getBlockReceipts`. */
const RECEIPT_CONCURRENCY = 8;
/** Tries of handing over the first block at start (`pollIntervalMs` apart) before `watchChain` rejects. */
const START_SINK_TRIES = 3;
/** Block timestamps kept for the expected block time. */
const TIMESTAMPS_KEPT = 33;

/**
 * Follows a chain over JSON-RPC and hands over its canonical blocks in order: never a gap,
 * never a repeat, nothing a node sent that contradicts itself or the chain. It starts from the
 * log's tail (`seed`) or, for a new log, from the node's latest block. Each round checks, when
 * due, that the endpoint serves the chain, then asks for its head, and steps towards it as
 * {@link planChain} decides: a higher head is caught up block by block (fetched
 * `backfillConcurrency` at a time, each checked with its receipts, applied in order); a block
 * whose parent is not the head starts a walk back by parent hash to the common ancestor within
 * the window of recent blocks, the orphaned blocks are retracted newest first, then the new
 * branch is applied. A branch with no ancestor among the blocks held (a reorg deeper than the
 * window, or a node reset) retracts them all and continues on the new branch. A head below ours
 * is waited out for a grace period before it is followed. Faults of a node fail the round
 * (nothing of a faulty block or of a half-fetched branch is applied) and fail over to the next
 * endpoint; a head that stops moving reconnects. A sink that fails (`onBlock`, `onRetract`) fails
 * the round without failover: what it took stays taken, the rest is tried again next round.
 */
export async function watchChain(options: WatchChainOptions): Promise<ChainWatcher> {
  const chainIdCheckIntervalMs = options.chainIdCheckIntervalMs ?? DEFAULT_CHAIN_ID_CHECK_MS;
  const limits: PlanLimits = {
    windowBlocks: options.reorgWindowBlocks,
    backfillConcurrency: options.backfillConcurrency,
  };
  let closed = false;
  let wake: (() => void) | undefined;
  /** A wake that came while a round ran: the next round starts at once, not after the poll interval. */
  let wokenDuringRound = false;
  /** The newest header a `newHeads` notification announced, not yet used. */
  let notified: HeadHeader | undefined;
  /** The sink's call with the header of the block being fetched ({@link WatchChainOptions.onHead}). */
  let announcing: Promise<void> | undefined;
  /** The hash of the last header handed to the sink (not handed over twice). */
  let announcedHash: Hex | undefined;
  const pool = new RpcPool({
    urls: options.urls,
    requestTimeoutMs: options.requestTimeoutMs,
    ...(options.maxResponseBytes === undefined ? {} : { maxResponseBytes: options.maxResponseBytes }),
    ...(options.capabilityRetryMs === undefined ? {} : { capabilityRetryMs: options.capabilityRetryMs }),
    onFault: options.onFault ?? options.onError,
    onWake: (raw) => {
      // A `newHeads` header: the next round may fetch that block at once instead of asking for
      // `latest` first (it is checked as any answer, and used only if it continues our head).
      if (raw !== undefined) {
        try {
          const header = headHeader(toHeader(raw, 'newHeads'), raw);
          if (header.number > (notified?.number ?? -1)) notified = header;
          // Between rounds (no call of the sink in flight), the header of the next block goes
          // ahead at once, before the round that fetches the block starts.
          if (wake !== undefined && continuesHead(header)) {
            announce(header);
            // The round (and its requests for the block) starts on the next turn of the loop,
            // after the sink's own writes of this turn: the header's append goes out first.
            const woken = wake;
            wake = undefined;
            setImmediate(woken);
            return;
          }
        } catch {
          // A malformed notification only wakes the loop; `latest` is asked for as usual.
        }
      }
      if (wake === undefined) wokenDuringRound = true;
      else wake();
    },
    ...(options.onRequest === undefined ? {} : { onRequest: options.onRequest }),
    ...(options.onEndpoint === undefined ? {} : { onEndpoint: options.onEndpoint }),
  });
  const onSinkError = options.onSinkError ?? ((error: unknown) => options.onError(error, pool.currentUrl()));
  const enricher = options.enrich?.({
    send: (method, params) => pool.send(method, params),
    probe: (method, params) => pool.probe(method, params),
  });

  /**
   * The recent canonical chain, oldest first, contiguous by number and parent hash up to the
   * head; at most `reorgWindowBlocks`. Changes only once the sink took a block or a retraction.
   */
  const held: Header[] = [];
  /** The newest block handed over and not retracted (a placeholder until the start found one). */
  let head: BlockRef = { number: -1, hash: '0x' };
  const numberOf = (hash: Hex): number | undefined => held.find((link) => link.hash === hash)?.number;

  /** Whether the node serves the finality tags: unknown until it answered once. */
  let tagsServed: boolean | undefined = options.finality === false ? false : undefined;
  /** The tags as last read, handed over with the next block. */
  let tags: Finality | undefined;
  /** A read of the tags in flight. */
  let readingTags: Promise<void> | undefined;

  /**
   * Reads the node's `safe` and `finalized` blocks after the requests already sent (they are
   * answered after them, so they never delay a block). A node that answers `null` or an error at
   * its first answer has no tags; later faults keep the last tags (finality never goes back).
   */
  function readTags(): Promise<void> {
    if (tagsServed === false) return Promise.resolve();
    if (readingTags !== undefined) return readingTags;
    // Until the node answered once, a refusal of the tags is what is asked, not a fault.
    const request = tagsServed === undefined ? pool.probe.bind(pool) : pool.send.bind(pool);
    const ask = (tag: 'safe' | 'finalized') =>
      request('eth_getBlockByNumber', [tag, false]).then((raw) =>
        raw === null ? null : toHeader(raw, `eth_getBlockByNumber(${tag})`),
      );
    readingTags = Promise.all([ask('safe'), ask('finalized')])
      .then(([safe, finalized]) => {
        if (safe === null || finalized === null) {
          tagsServed ??= false;
          return;
        }
        tagsServed = true;
        if (finalized.number > safe.number) return; // a node contradicting itself: not used
        tags = { safe: newest(tags?.safe, safe), finalized: newest(tags?.finalized, finalized) };
      })
      .catch((error: unknown) => {
        if (!(error instanceof RpcFaultError)) return;
        // An answer that is no block header is the node's fault (the request's own faults are
        // reported by the pool); a node that refuses the tags outright (pre-merge) has none.
        if (error.fault === 'malformed') pool.report(error, pool.currentUrl());
        if (tagsServed === undefined && error.fault === 'node_error') {
          tagsServed = false;
        }
      })
      .finally(() => {
        readingTags = undefined;
      });
    return readingTags;
  }

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
    // Where the hash is known (the head) and the block may have transactions, its receipts are
    // asked for right after it, before its answer: the two answers then arrive together.
    const asking = pool.send(method, [param, true]);
    const early =
      asked.hash !== undefined && (asked.txCount ?? 1) > 0 && pool.capabilities.has(pool.currentUrl(), 'blockReceipts')
        ? pool.send('eth_getBlockReceipts', [asked.hash])
        : undefined;
    early?.catch(() => undefined); // awaited in fetchReceipts, or dropped with the block
    const raw = await asking;
    const { block, header } = checkBlock(raw, {
      ...(asked.number === undefined ? {} : { number: asked.number }),
      ...(asked.hash === undefined ? {} : { hash: asked.hash }),
      chainId,
      call,
      numberOf,
    });
    const receipts = await fetchReceipts(block, header, early);
    let converted: ChainBlock;
    try {
      converted = toChainBlock(chainId, block, receipts);
    } catch (error) {
      const fault = error instanceof RpcFaultError ? error.fault : 'malformed';
      throw new RpcFaultError(fault, `${call}: ${errorMessage(error)}`, { method, cause: error });
    }
    return enricher === undefined ? converted : enricher.enrich(converted);
  }

  async function latestHeader(): Promise<HeadHeader> {
    const call = 'eth_getBlockByNumber(latest)';
    const raw = await pool.send('eth_getBlockByNumber', ['latest', false]);
    return headHeader(toHeader(raw, call), raw);
  }

  /**
   * Hands over the header of `target`, the next block, while the block is fetched: once the sink
   * took it (or failed to), the next `onBlock` or `onRetract` may go. A header that does not say
   * how many transactions its block has, or whose fields are malformed, is not announced (the
   * block's own answer is checked and reported as usual).
   */
  function announce(target: HeadHeader): void {
    const onHead = options.onHead;
    if (onHead === undefined || target.raw === undefined) return;
    let announced: ChainBlock | undefined;
    try {
      announced = toChainHead(chainId, target.raw);
    } catch {
      return;
    }
    if (announced === undefined || announced.hash !== target.hash) return;
    const header = tags === undefined ? announced : { ...announced, finality: tags };
    announcedHash = header.hash;
    announcing = sink(`onHead(${header.number})`, () => onHead(header)).catch((error: unknown) =>
      onSinkError(error instanceof SinkError ? error.cause : error),
    );
  }

  /** Whether `header` is the child of the head (the next block). */
  function continuesHead(header: Header): boolean {
    return header.number === head.number + 1 && header.parentHash === head.hash;
  }

  /** Waits for the header being handed over, if any, before the next call of the sink. */
  async function announced(): Promise<void> {
    const pending = announcing;
    announcing = undefined;
    await pending;
  }

  /** Asks the endpoint in use for its chain id, when due, and refuses another chain's answers. */
  async function recheckChain(expected: number): Promise<void> {
    if (!pool.chainCheckDue(chainIdCheckIntervalMs)) return;
    const id = await askChainId();
    if (id !== expected) throw wrongChain(id, expected, 'its answers are not used');
    pool.chainChecked();
  }

  /**
   * Reports what failed a request or a round at the endpoint in use (the node's faults as faults,
   * anything else to `onError` unless `quiet`: at start it is in the error `watchChain` rejects
   * with), and fails over.
   */
  function failover(error: unknown, quiet = false): void {
    const url = pool.currentUrl();
    if (error instanceof RpcFaultError) pool.report(error, url);
    else if (!quiet) options.onError(error, url);
    pool.failover();
  }

  // Start: the first endpoint that answers names the chain.
  let found: number | undefined;
  const startErrors: string[] = [];
  for (let attempt = 0; attempt < options.urls.length && found === undefined; attempt++) {
    try {
      const id = await askChainId();
      if (options.expectedChainId !== undefined && id !== options.expectedChainId) {
        const host = URL.canParse(pool.currentUrl()) ? new URL(pool.currentUrl()).host : 'an endpoint';
        throw new GatewayError('BAD_CONFIG', `chains: ${host} serves chain ${id}, not ${options.expectedChainId}`);
      }
      pool.chainChecked();
      found = id;
    } catch (error) {
      if (error instanceof GatewayError && error.code === 'BAD_CONFIG') {
        pool.close();
        throw error;
      }
      startErrors.push(errorMessage(error));
      failover(error, true);
    }
  }
  if (found === undefined) {
    pool.close();
    throw new GatewayError('RPC_FAILED', `no RPC endpoint answered: ${startErrors.join('; ')}`);
  }
  const chainId = found;

  const recentTimestamps: number[] = [];

  /** The median interval between recent blocks, in ms (the poll interval until there are some). */
  function expectedBlockTimeMs(): number {
    const gaps = recentTimestamps.slice(1).map((t, i) => t - (recentTimestamps[i] as number));
    const positive = gaps.filter((g) => g > 0).sort((a, b) => a - b);
    const median = positive[Math.floor(positive.length / 2)];
    return median === undefined ? options.pollIntervalMs : median * 1000;
  }

  /** Awaits one call of the sink; what it throws becomes a {@link SinkError}. */
  async function sink(what: string, call: () => void | Promise<void>): Promise<void> {
    try {
      await call();
    } catch (error) {
      throw new SinkError(`${what}: ${errorMessage(error)}`, { cause: error });
    }
  }

  /**
   * Hands `block` over; once the sink took it, it is the head. With nothing held (a start, or
   * every block retracted past the window) it continues nothing known: `restart` says so.
   */
  async function apply(fetched: ChainBlock): Promise<void> {
    const restart = held.length === 0;
    const block = tags === undefined ? fetched : { ...fetched, finality: tags };
    await announced();
    await sink(`onBlock(${block.number})`, () => options.onBlock(block, restart));
    const link: Header = { number: block.number, hash: block.hash, parentHash: block.parentHash };
    held.push(link);
    if (held.length > options.reorgWindowBlocks) held.shift();
    head = link;
    recentTimestamps.push(block.timestamp);
    if (recentTimestamps.length > TIMESTAMPS_KEPT) recentTimestamps.shift();
  }

  /**
   * Retracts `links` (newest first, each the head when its turn comes), each on its own: a sink
   * that fails half-way leaves a window whose head is the last block it still holds.
   */
  async function retract(links: readonly BlockLink[], pastWindow: boolean): Promise<void> {
    if (links.length === 0) return;
    await announced();
    for (const link of links) {
      if (held.at(-1)?.hash !== link.hash) {
        throw new Error(`watchChain: retraction of block ${link.number}, which is not the head ${head.number}`);
      }
      await sink(`onRetract(${link.number})`, () => options.onRetract(link));
      held.pop();
      head = held.at(-1) ?? { number: link.number - 1, hash: link.parentHash };
    }
    options.onReorg?.(links.length, pastWindow);
  }

  /** Fetches the blocks planned, at once; the head's receipts are asked for with it. */
  async function fetchPlanned(blocks: readonly PlannedBlock[], target: HeadHeader): Promise<ChainBlock[]> {
    const fetches = blocks.map((asked) => fetchBlock(chainId, asked.hash === target.hash ? target : asked));
    for (const fetch of fetches) fetch.catch(() => undefined); // awaited below; the first fault fails the round
    return Promise.all(fetches);
  }

  /**
   * Steps towards the node's head `target` as {@link planChain} decides, until it is ours (`true`)
   * or is to be waited for (`false`). Bounded: every step fetches or applies towards the target.
   */
  async function follow(target: HeadHeader, followBelow: boolean): Promise<boolean> {
    const distance = Math.abs(target.number - head.number);
    const maxSteps = 2 * (distance + options.reorgWindowBlocks + options.backfillConcurrency) + 4;
    let fetched: ChainBlock[] = [];
    for (let step = 0; step < maxSteps; step++) {
      if (closed) return true;
      const plan = planChain(held, { head: target, followBelow }, fetched, limits);
      switch (plan.kind) {
        case 'idle':
          return true;
        case 'behind':
          return false;
        case 'fetch':
          fetched = [...(await fetchPlanned(plan.blocks, target)), ...fetched];
          break;
        case 'revert':
          await retract(plan.retract, false);
          fetched = [];
          break;
        case 'apply':
          await retract(plan.retract, plan.pastWindow);
          for (const block of plan.branch) await apply(block);
          fetched = [];
          break;
      }
    }
    throw new Error(`watchChain: block ${target.number} not reached in ${maxSteps} steps from block ${head.number}`);
  }

  /** The seed's tail, checked to be one chain; the watcher closes if it fails. */
  async function seedOrClose(seed: (chainId: number) => Promise<readonly BlockLink[]>): Promise<readonly BlockLink[]> {
    try {
      return checkTail(await seed(chainId));
    } catch (error) {
      pool.close();
      throw error;
    }
  }

  /**
   * Hands over the node's latest block as the first: a fault of the node fails over (each endpoint
   * once), a sink that does not take it is tried again `pollIntervalMs` later, a few times.
   */
  async function startAtHead(): Promise<void> {
    let sinkTries = 0;
    for (let attempt = 0; attempt < options.urls.length; ) {
      try {
        await recheckChain(chainId);
        // The first block carries the tags too: subscribers learn from it whether finality is served.
        await readTags();
        await follow(await latestHeader(), false);
        return;
      } catch (error) {
        if (!(error instanceof SinkError)) {
          startErrors.push(errorMessage(error));
          failover(error, true);
          attempt++;
          continue;
        }
        onSinkError(error.cause);
        if (++sinkTries >= START_SINK_TRIES) {
          pool.close();
          throw new SinkError(
            `the first block was not taken in ${sinkTries} tries, ${options.pollIntervalMs} ms apart: ${errorMessage(error.cause)}`,
            { cause: error.cause },
          );
        }
        await new Promise((resolve) => setTimeout(resolve, options.pollIntervalMs));
      }
    }
    pool.close();
    throw new GatewayError('RPC_FAILED', `no RPC endpoint answered: ${startErrors.join('; ')}`);
  }

  // The log's tail is the head; for a new log, the node's latest block is the first block.
  const tail = options.seed === undefined ? [] : await seedOrClose(options.seed);
  for (const link of tail.slice(-options.reorgWindowBlocks)) held.push(link);
  const tip = held.at(-1);
  if (tip === undefined) await startAtHead();
  else head = tip;
  void readTags();

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
   * node that went back. Reported once per episode; whether the grace period is over, so that
   * the head is followed down (never below the window: the watchdog fails over instead).
   */
  function behind(target: HeadHeader): boolean {
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
    return now - behindSince >= graceMs;
  }

  async function round(): Promise<void> {
    await recheckChain(chainId);
    const hint = notified;
    notified = undefined;
    // The node announced the child of our head: no need to ask for `latest` first.
    const target =
      hint !== undefined && hint.number === head.number + 1 && hint.parentHash === head.hash
        ? hint
        : await latestHeader();
    if (target.number < head.number) {
      // The episode ends once the head was followed down; below the window it goes on.
      if (await follow(target, behind(target))) behindSince = undefined;
      return;
    }
    behindSince = undefined;
    watchdog(target);
    if (target.number > head.number + 1) options.onBackfill?.(target.number - head.number - 1);
    // The tags are asked for once the new head's requests are on their way (the first step of
    // `follow` sends them before it awaits anything), so their answers come after the block's.
    const following = follow(target, false);
    // The node announced the next block: its header goes ahead while the block is fetched.
    if (continuesHead(target) && target.hash !== announcedHash) announce(target);
    if (target.number > head.number) void readTags();
    await following;
  }

  const loop = (async () => {
    while (!closed) {
      try {
        await round();
      } catch (error) {
        if (closed) break;
        if (error instanceof SinkError) onSinkError(error.cause);
        else {
          behindSince = undefined;
          failover(error);
        }
      }
      if (closed) break;
      if (wokenDuringRound) {
        wokenDuringRound = false;
        continue;
      }
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
    head: () => head,
    currentUrl: () => pool.currentUrl(),
    close: async () => {
      closed = true;
      wake?.();
      await loop;
      enricher?.close();
      pool.close();
    },
  };
}

/** A header with what else its answer tells: its transaction count where listed, and the answer itself. */
function headHeader(header: Header, raw: unknown): HeadHeader {
  const hashes = (raw as { transactions?: unknown }).transactions;
  const fields = raw as Readonly<Record<string, unknown>>;
  return Array.isArray(hashes) ? { ...header, txCount: hashes.length, raw: fields } : { ...header, raw: fields };
}

/** The later of a tag as held and as read again: finality never goes back. */
function newest(held: BlockRef | undefined, read: BlockRef): BlockRef {
  return held !== undefined && held.number >= read.number ? held : { number: read.number, hash: read.hash };
}

/** Checks that the seed's tail is one chain, oldest first: each block the parent of the next. */
function checkTail(tail: readonly BlockLink[]): readonly BlockLink[] {
  for (let i = 1; i < tail.length; i++) {
    const [parent, block] = [tail[i - 1] as BlockLink, tail[i] as BlockLink];
    if (block.number !== parent.number + 1 || block.parentHash !== parent.hash) {
      throw new TypeError(
        `seed: the log's tail is not one chain: block ${block.number} (${block.hash}) does not continue block ${parent.number} (${parent.hash})`,
      );
    }
  }
  return tail;
}
