/**
 * The wiring of one chain, from its RPC endpoints to fan-out: the chain watcher (canonical
 * blocks, retractions), its feed and history, the mempool watcher, and their metrics. Part of
 * the composition root: `src/main.ts` calls it once per configured chain.
 */
import type { Config } from './config.ts';
import { errorMessage, RPC_FAULTS, type RpcFaultError } from './domain/errors.ts';
import type { ChainBlock, TxEvent } from './domain/types.ts';
import { ChainFeed } from './fanout/ChainFeed.ts';
import type { Fanout, FanoutResult, Peer } from './fanout/Fanout.ts';
import { ChainHistory } from './history/ChainHistory.ts';
import type { SubscriptionIndex } from './index/SubscriptionIndex.ts';
import { createForwarder, type ForwardOutcome } from './ingest/createForwarder.ts';
import { ThrottledLog } from './ingest/ThrottledLog.ts';
import { watchChain } from './ingest/watchChain.ts';
import { watchPending } from './ingest/watchPending.ts';
import type { LogFields, Logger } from './log.ts';
import type { Metrics } from './metrics/metrics.ts';

/** Where a chain is followed: its endpoints, and the id they must serve (if configured). */
export interface ChainSource {
  readonly urls: readonly string[];
  readonly chainId?: number;
}

/** What {@link followChain} needs from the composition root. */
export interface FollowChainDeps<O extends Peer> {
  readonly config: Config;
  readonly fanout: Fanout<O>;
  readonly index: SubscriptionIndex<O>;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

/** Another consumer of a chain's blocks, retractions and mempool (the `/rpc` subscriptions). */
export interface ChainListener {
  /** A canonical block, after the feed has it. */
  readonly block: (block: ChainBlock) => void;
  /** A block undone by a reorg (newest first), after the feed retracted it. */
  readonly retract: (block: ChainBlock) => void;
  readonly pending: (events: readonly TxEvent[]) => void;
  /** Whether it wants the mempool watched. */
  readonly wantsPending: () => boolean;
}

/** A followed chain: its feed (history, fan-out per depth), its other listeners, calls sent on to its node, and a `close()`. */
export interface FollowedChain<O extends Peer> {
  readonly feed: ChainFeed<O>;
  /** Adds a listener of blocks, retractions and the mempool. */
  readonly listen: (listener: ChainListener) => void;
  /** Sends a client's call to the chain's node (the endpoint ingest follows), on a connection of its own. */
  readonly forward: (method: string, params: readonly unknown[]) => Promise<ForwardOutcome>;
  readonly close: () => Promise<void>;
}

/** Calls waiting for a chain's node at once for clients (`/rpc`), over every connection. */
const MAX_FORWARDS_IN_FLIGHT = 256;

/** Host label of an RPC URL for metrics and logs: never its path or credentials (API keys). */
export function endpointLabel(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'invalid';
  }
}

/**
 * The log line of a reorg: `depth` blocks retracted; `pastWindow` when none of the blocks held
 * (the last `windowBlocks`, fewer after a start or a revert) is an ancestor of the node's branch.
 */
function reorgMessage(depth: number, pastWindow: boolean, windowBlocks: number): string {
  const reorg = `reorg of ${depth === 1 ? '1 block' : `${depth} blocks`}`;
  if (!pastWindow) return reorg;
  if (depth >= windowBlocks) {
    return `${reorg}, deeper than the reorg window (${windowBlocks} blocks): no common ancestor in it; all retracted, following the node's branch`;
  }
  return `${reorg}: no common ancestor with the node among them, all the blocks held (fewer than the reorg window of ${windowBlocks}): the node was reset or is on another branch; all retracted, following it`;
}

/** Starts following one chain and resolves once its id and head are known. */
export async function followChain<O extends Peer>(
  source: ChainSource,
  deps: FollowChainDeps<O>,
): Promise<FollowedChain<O>> {
  const { config, fanout, index, metrics } = deps;
  /** Lines about this chain carry its id (once known) and what they are about. */
  const logger = (component: string, fields: LogFields = {}): Logger =>
    deps.logger.child({ ...(chain === undefined ? {} : { chain: Number(chain) }), component, ...fields });
  let feed: ChainFeed<O> | undefined;
  // The chain label of every series; until the first endpoint names the chain, nothing is set
  // under a made-up one: faults wait in `earlyFaults`, endpoint states in `endpointStates`.
  let chain: string | undefined = source.chainId === undefined ? undefined : String(source.chainId);
  const earlyFaults: Array<{ endpoint: string; reason: string }> = [];
  // The last state the pool reported of each URL, kept from the first request on: states seen
  // before the chain is known are applied once it is, never guessed (the pool reports changes only).
  const endpointStates = new Map<string, boolean>();
  const showEndpoint = (endpoint: string): void => {
    if (chain === undefined) return;
    // URLs on one host share a label (their paths may hold keys): it is up while any of them is.
    const up = source.urls.some((url) => endpointLabel(url) === endpoint && endpointStates.get(url) === true);
    metrics.endpointUp.set({ chain, endpoint }, up ? 1 : 0);
  };
  // One line per endpoint and reason every 10 s at most: a node failing each poll must not flood the log.
  const faultLog = new ThrottledLog<LogFields>((line, fields) => logger('ingest', fields).warn({}, line), 10_000);

  const onFault = (fault: RpcFaultError, url: string): void => {
    const endpoint = endpointLabel(url);
    if (chain === undefined) earlyFaults.push({ endpoint, reason: fault.fault });
    else metrics.rpcFaults.inc({ chain, endpoint, reason: fault.fault });
    faultLog.write(
      `${endpoint} ${fault.fault}`,
      `chain ${chain ?? '?'}: rpc ${endpoint}: ${fault.fault} (${fault.method ?? 'no request'}): ${fault.message}`,
      { endpoint, reason: fault.fault, method: fault.method },
    );
  };
  // When ingest handed over the block being fanned out: the start of block-to-write latency.
  let receivedAt = 0;
  const listeners: ChainListener[] = [];

  const observe = (sent: FanoutResult, seconds: number, kind: 'publish' | 'retract'): void => {
    metrics.fanoutDuration.observe(seconds);
    // Delivery is synchronous: when fan-out returns, the last frame is in a socket.
    if (kind === 'publish' && sent.connections > 0 && chain !== undefined) {
      metrics.blockToWrite.observe({ chain }, (performance.now() - receivedAt) / 1000);
    }
    metrics.messagesSent.inc({ channel: 'blocks' }, sent.blockMessages);
    metrics.messagesSent.inc({ channel: 'activity' }, sent.activityMessages);
    metrics.bytesSent.inc({ channel: 'blocks' }, sent.blockBytes);
    metrics.bytesSent.inc({ channel: 'activity' }, sent.activityBytes);
  };

  const watcher = await watchChain({
    urls: source.urls,
    ...(source.chainId === undefined ? {} : { expectedChainId: source.chainId }),
    pollIntervalMs: config.pollIntervalMs,
    requestTimeoutMs: config.rpcTimeoutMs,
    maxResponseBytes: config.rpcMaxResponseBytes,
    reorgWindowBlocks: config.reorgWindowBlocks,
    backfillConcurrency: config.backfillConcurrency,
    headTimeoutBlocks: config.headTimeoutBlocks,
    headTimeoutMinMs: config.headTimeoutMinSec * 1000,
    // Blocks, retractions and reorgs come only once the chain is known (after start).
    onBlock: (block) => {
      receivedAt = performance.now();
      const labels = { chain: String(block.chainId) };
      metrics.blocksIngested.inc(labels);
      metrics.headNumber.set(labels, block.number);
      metrics.headTimestamp.set(labels, block.timestamp);
      feed?.apply(block);
      for (const listener of listeners) listener.block(block);
    },
    onRetract: (header) => {
      feed?.retract(header);
      const block = feed?.history.byHash(header.hash)?.block;
      if (block !== undefined) for (const listener of listeners) listener.retract(block);
    },
    onReorg: (depth, pastWindow) => {
      if (chain === undefined) return;
      const labels = { chain };
      metrics.reorgs.inc(labels);
      metrics.reorgDepth.observe(labels, depth);
      if (pastWindow) metrics.deepReorgs.inc(labels);
      logger('ingest', { depth }).info(
        {},
        `chain ${chain}: ${reorgMessage(depth, pastWindow, config.reorgWindowBlocks)}`,
      );
    },
    onBackfill: (blocks) => {
      if (chain !== undefined) metrics.backfilled.inc({ chain }, blocks);
    },
    onError: (error, url) =>
      logger('ingest', { endpoint: endpointLabel(url) }).warn(
        { err: error },
        `chain ${chain ?? '?'}: rpc ${endpointLabel(url)}: ${errorMessage(error)}`,
      ),
    onFault,
    onRequest: (method, url, seconds, ok) => {
      const labels = { endpoint: endpointLabel(url), method };
      metrics.rpcDuration.observe(labels, seconds);
      // Adding 0 on success creates the series, so an error rate reads 0 rather than nothing.
      metrics.rpcErrors.inc(labels, ok ? 0 : 1);
    },
    onEndpoint: (url, up) => {
      endpointStates.set(url, up);
      showEndpoint(endpointLabel(url));
    },
  });
  const chainId = watcher.chainId;
  chain = String(chainId);
  feed = new ChainFeed(chainId, new ChainHistory(config.historyWindowBlocks), fanout, index, observe);
  const head = watcher.startBlock;
  feed.history.apply(head);
  metrics.headNumber.set({ chain }, head.number);
  metrics.headTimestamp.set({ chain }, head.timestamp);
  for (const endpoint of new Set(source.urls.map(endpointLabel))) {
    // 0 for an endpoint not asked yet: up means its last request succeeded.
    showEndpoint(endpoint);
    // Every reason at zero from the start, so that dashboards show a zero rather than no series.
    for (const reason of RPC_FAULTS) metrics.rpcFaults.inc({ chain, endpoint, reason }, 0);
  }
  for (const { endpoint, reason } of earlyFaults.splice(0)) metrics.rpcFaults.inc({ chain, endpoint, reason });

  // Mempool → `pending` messages, for activity subscriptions that asked for them (fetches only then).
  let mempool: { close: () => Promise<void> } | undefined;
  try {
    mempool = await watchPending({
      urls: source.urls,
      chainId,
      pollIntervalMs: config.pollIntervalMs,
      requestTimeoutMs: config.rpcTimeoutMs,
      maxResponseBytes: config.rpcMaxResponseBytes,
      wanted: () => index.pendingSubscriptions(chainId) > 0 || listeners.some((l) => l.wantsPending()),
      onPending: (events) => {
        const sent = fanout.publishPending(chainId, events);
        metrics.messagesSent.inc({ channel: 'pending' }, sent.messages);
        metrics.bytesSent.inc({ channel: 'pending' }, sent.bytes);
        for (const listener of listeners) listener.pending(events);
      },
      onError: (error, url) =>
        logger('mempool', { endpoint: endpointLabel(url) }).warn(
          { err: error },
          `chain ${chainId}: mempool ${endpointLabel(url)}: ${errorMessage(error)}`,
        ),
      onFault,
    });
  } catch (error) {
    await watcher.close();
    throw error;
  }
  const followed = feed;
  const forwarder = createForwarder({
    currentUrl: watcher.currentUrl,
    timeoutMs: config.rpcTimeoutMs,
    maxResponseBytes: config.rpcMaxResponseBytes,
    maxInFlight: MAX_FORWARDS_IN_FLIGHT,
    onRequest: (method, url, seconds, ok) => {
      const labels = { endpoint: endpointLabel(url), method: `forward:${method}` };
      metrics.rpcDuration.observe(labels, seconds);
      metrics.rpcErrors.inc(labels, ok ? 0 : 1);
    },
  });
  return {
    feed: followed,
    listen: (listener) => {
      listeners.push(listener);
    },
    forward: forwarder.forward,
    close: async () => {
      forwarder.close();
      await mempool?.close();
      await watcher.close();
    },
  };
}
