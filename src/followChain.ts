/**
 * The wiring of one chain, in two halves joined only by the chain log. {@link leadChain} is
 * ingest: it competes for the chain's lease and, while it leads, follows the node and appends
 * what the canonical chain did to the log. {@link serveChain} is a gateway's: it reads the log
 * into the chain's feed (history, fan-out per depth, the ledger of what was sent), watches the
 * mempool and forwards `/rpc` calls where it has the chain's node. Part of the composition root.
 */
import { hostname } from 'node:os';
import { ChainHistory } from './chainlog/ChainHistory.ts';
import type { ChainLogBackend, ChainLogWriter, LogEntry } from './chainlog/ChainLog.ts';
import type { Config } from './config.ts';
import { errorMessage, GatewayError, RPC_FAULTS, type RpcFaultError } from './domain/errors.ts';
import type { ChainBlock, TxEvent } from './domain/types.ts';
import { ChainFeed, type FanoutObserver } from './fanout/ChainFeed.ts';
import type { Fanout, FanoutResult, Peer } from './fanout/Fanout.ts';
import { type TxFate, TxLifecycle } from './fanout/TxLifecycle.ts';
import type { SubscriptionIndex } from './index/SubscriptionIndex.ts';
import { createForwarder, type ForwardOutcome } from './ingest/createForwarder.ts';
import { createBlockEnricher } from './ingest/enrichBlock.ts';
import { ThrottledLog } from './ingest/ThrottledLog.ts';
import { type ChainWatcher, type WatchChainOptions, watchChain } from './ingest/watchChain.ts';
import { watchPending } from './ingest/watchPending.ts';
import type { LogFields, Logger } from './log.ts';
import type { Metrics } from './metrics/metrics.ts';

/** Where a chain is followed: its endpoints, and the id they must serve (if configured). */
export interface ChainSource {
  readonly urls: readonly string[];
  readonly chainId?: number;
}

/** Calls waiting for a chain's node at once for clients (`/rpc`), over every connection. */
const MAX_FORWARDS_IN_FLIGHT = 256;
/** Longest wait between two tries of ingest after a failure (doubling from the poll interval). */
const MAX_RETRY_MS = 10_000;

/** Host label of an RPC URL for metrics and logs: never its path or credentials (API keys). */
export function endpointLabel(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'invalid';
  }
}

/** A name for this process as a chain's leader: host, pid and a random suffix (unique per start). */
export function processOwner(): string {
  return `${hostname()}:${process.pid}:${crypto.randomUUID().slice(0, 8)}`;
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

/** What {@link leadChain} needs from the composition root. */
export interface LeadChainDeps {
  readonly config: Config;
  readonly log: ChainLogBackend;
  /** This process's name as a leader ({@link processOwner}). */
  readonly owner: string;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

/** Ingest of one chain: leading it, or standing by to. */
export interface LedChain {
  readonly chainId: number;
  /** The chain's endpoints, in failover order. */
  readonly urls: readonly string[];
  /** The endpoint ingest uses now (the first while it stands by). */
  readonly currentUrl: () => string;
  readonly close: () => Promise<void>;
}

/** What ingest reports of a chain while it follows it: its faults, requests, endpoints, reorgs and backfills. */
interface IngestReports {
  readonly callbacks: Pick<
    WatchChainOptions,
    'onReorg' | 'onBackfill' | 'onError' | 'onFault' | 'onRequest' | 'onEndpoint'
  >;
  /** The chain is known: its series start at zero, and what came before it is counted under it. */
  readonly known: (chainId: number) => void;
}

/**
 * The metrics and log lines of ingest for one chain. Until the first endpoint names the chain,
 * nothing is set under a made-up label: faults wait, endpoint states are kept from the first
 * request on and applied once it is known (the pool reports changes only).
 */
function ingestReports(
  source: ChainSource,
  deps: LeadChainDeps,
  chainOf: () => string | undefined,
  logger: (component: string, fields?: LogFields) => Logger,
): IngestReports {
  const { config, metrics } = deps;
  const earlyFaults: Array<{ endpoint: string; reason: string }> = [];
  const endpointStates = new Map<string, boolean>();
  const showEndpoint = (endpoint: string): void => {
    const chain = chainOf();
    if (chain === undefined) return;
    // URLs on one host share a label (their paths may hold keys): it is up while any of them is.
    const up = source.urls.some((url) => endpointLabel(url) === endpoint && endpointStates.get(url) === true);
    metrics.endpointUp.set({ chain, endpoint }, up ? 1 : 0);
  };
  // One line per endpoint and reason every 10 s at most: a node failing each poll must not flood the log.
  const faultLog = new ThrottledLog<LogFields>((line, fields) => logger('ingest', fields).warn({}, line), 10_000);
  const callbacks: IngestReports['callbacks'] = {
    onFault: (fault: RpcFaultError, url: string): void => {
      const endpoint = endpointLabel(url);
      const chain = chainOf();
      if (chain === undefined) earlyFaults.push({ endpoint, reason: fault.fault });
      else metrics.rpcFaults.inc({ chain, endpoint, reason: fault.fault });
      faultLog.write(
        `${endpoint} ${fault.fault}`,
        `chain ${chain ?? '?'}: rpc ${endpoint}: ${fault.fault} (${fault.method ?? 'no request'}): ${fault.message}`,
        { endpoint, reason: fault.fault, method: fault.method },
      );
    },
    onReorg: (depth, pastWindow) => {
      const chain = chainOf();
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
      const chain = chainOf();
      if (chain !== undefined) metrics.backfilled.inc({ chain }, blocks);
    },
    onError: (error, url) =>
      logger('ingest', { endpoint: endpointLabel(url) }).warn(
        { err: error },
        `chain ${chainOf() ?? '?'}: rpc ${endpointLabel(url)}: ${errorMessage(error)}`,
      ),
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
  };
  return {
    callbacks,
    known: (chainId) => {
      const chain = String(chainId);
      for (const endpoint of new Set(source.urls.map(endpointLabel))) {
        // 0 for an endpoint not asked yet: up means its last request succeeded.
        showEndpoint(endpoint);
        // Every reason at zero from the start, so that dashboards show a zero rather than no series.
        for (const reason of RPC_FAULTS) metrics.rpcFaults.inc({ chain, endpoint, reason }, 0);
      }
      for (const { endpoint, reason } of earlyFaults.splice(0)) metrics.rpcFaults.inc({ chain, endpoint, reason });
      for (const kind of ['add', 'head', 'retract']) metrics.logAppends.inc({ chain, kind }, 0);
    },
  };
}

/**
 * Starts ingest of one chain: resolves once the chain's id is known and this process either
 * leads the chain (the log has the node's head) or stands by. While leading, every canonical
 * block and retraction goes to the log, fenced by the lease; a lost lease (another process took
 * over) stops the watcher and competes again; a failure after start is retried with backoff,
 * from the log's tip, so nothing is skipped or written twice. A failure before the first start
 * (no endpoint answers, the wrong chain) rejects.
 */
export async function leadChain(source: ChainSource, deps: LeadChainDeps): Promise<LedChain> {
  const { config, metrics, owner } = deps;
  let chain: string | undefined = source.chainId === undefined ? undefined : String(source.chainId);
  const logger = (component: string, fields: LogFields = {}): Logger =>
    deps.logger.child({ ...(chain === undefined ? {} : { chain: Number(chain) }), component, ...fields });
  const reports = ingestReports(source, deps, () => chain, logger);
  const sinkLog = new ThrottledLog<LogFields>((line) => logger('log').warn({}, line), 10_000);

  let closed = false;
  let stop: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });
  let watcher: ChainWatcher | undefined;
  let hasStarted = false;
  let resolveStart: (chainId: number) => void = () => undefined;
  let rejectStart: (error: unknown) => void = () => undefined;
  const startedOnce = new Promise<number>((resolve, reject) => {
    resolveStart = resolve;
    rejectStart = reject;
  });
  const started = (chainId: number): void => {
    hasStarted = true;
    resolveStart(chainId);
  };

  /** One term: waits for the lease, follows the chain while it holds it; resolves when it ends. */
  async function term(): Promise<void> {
    let writer: ChainLogWriter | undefined;
    let release: (() => Promise<void>) | undefined;
    let lost: Promise<void> = stopped;
    try {
      watcher = await watchChain({
        urls: source.urls,
        ...(source.chainId === undefined ? {} : { expectedChainId: source.chainId }),
        pollIntervalMs: config.pollIntervalMs,
        requestTimeoutMs: config.rpcTimeoutMs,
        maxResponseBytes: config.rpcMaxResponseBytes,
        reorgWindowBlocks: config.reorgWindowBlocks,
        backfillConcurrency: config.backfillConcurrency,
        headTimeoutBlocks: config.headTimeoutBlocks,
        headTimeoutMinMs: config.headTimeoutMinSec * 1000,
        seed: async (chainId) => {
          chain = String(chainId);
          const lease = deps.log.lead(chainId, owner);
          release = lease.release;
          metrics.logLeading.set({ chain: String(chainId) }, 0);
          // Not leading within a second: another process leads; the start does not wait for it.
          const standingBy = setTimeout(() => {
            logger('log').info({}, `chain ${chainId}: another process leads it: standing by`);
            started(chainId);
          }, 1000);
          writer = await Promise.race([lease.acquired, stopped.then(() => undefined)]);
          clearTimeout(standingBy);
          if (writer === undefined) throw new GatewayError('RPC_FAILED', 'stopping');
          lost = lease.lost;
          metrics.logLeading.set({ chain: String(chainId) }, 1);
          logger('log', { fence: writer.fence }).info(
            {},
            `chain ${chainId}: leading (fence ${writer.fence}) in the ${deps.log.kind === 'redis' ? 'Redis' : 'in-process'} log`,
          );
          return writer.tail(config.reorgWindowBlocks);
        },
        enrich: ({ send, probe }) =>
          createBlockEnricher({
            send,
            probe,
            traces: config.traces === 'auto',
            tokenMetadata: config.tokenMetadata === 'on',
            maxTokens: config.maxTokens,
            onTrace: (method, seconds, ok) => {
              const labels = { chain: chain ?? '?', method, outcome: ok ? 'ok' : 'error' };
              metrics.traceDuration.observe(labels, seconds);
            },
            onTraced: (outcome) => metrics.tracedBlocks.inc({ chain: chain ?? '?', outcome }),
            onTokenLookup: (_seconds, outcome) => metrics.tokenLookups.inc({ chain: chain ?? '?', outcome }),
            onTraceRefused: (number, error) =>
              sinkLog.write(
                'trace',
                `chain ${chain ?? '?'}: the node refused the call traces of block ${number} (${errorMessage(error)}): its internal transfers are not sent`,
                {},
              ),
          }),
        onBlock: async (block, restart) => {
          await (writer as ChainLogWriter).append({ kind: 'add', block, ...(restart ? { restart } : {}) });
          const labels = { chain: String(block.chainId) };
          metrics.logAppends.inc({ ...labels, kind: 'add' });
          metrics.blocksIngested.inc(labels);
        },
        onHead: async (head) => {
          await (writer as ChainLogWriter).append({ kind: 'head', block: head });
          metrics.logAppends.inc({ chain: String(head.chainId), kind: 'head' });
        },
        onRetract: async (link) => {
          await (writer as ChainLogWriter).append({ kind: 'retract', link });
          metrics.logAppends.inc({ chain: chain as string, kind: 'retract' });
        },
        onSinkError: (error) =>
          sinkLog.write(
            'append',
            `chain ${chain ?? '?'}: cannot append to the chain log (${errorMessage(error)}): trying again`,
            {},
          ),
        ...reports.callbacks,
      });
      const chainId = watcher.chainId;
      reports.known(chainId);
      started(chainId);
      await Promise.race([lost, stopped]);
      if (!closed) {
        metrics.logLeading.set({ chain: String(chainId) }, 0);
        logger('log').warn(
          {},
          `chain ${chainId}: lost the lead of its log (another process took over, or the log is unreachable): competing again`,
        );
      }
    } finally {
      const ending = watcher;
      watcher = undefined;
      await ending?.close();
      await release?.();
    }
  }

  // A failure before the first start rejects (a wrong configuration must not retry forever);
  // after it, each term that ends is followed by another, with backoff.
  const loop = (async () => {
    let waitMs = config.pollIntervalMs;
    while (!closed) {
      const begun = performance.now();
      try {
        await term();
      } catch (error) {
        if (!hasStarted) {
          rejectStart(error);
          return;
        }
        if (closed) break;
        logger('ingest').warn(
          { err: error },
          `chain ${chain ?? '?'}: ingest stopped: ${errorMessage(error)}: starting again`,
        );
      }
      if (closed) break;
      waitMs = performance.now() - begun > 30_000 ? config.pollIntervalMs : Math.min(MAX_RETRY_MS, waitMs * 2);
      await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, waitMs).unref())]);
    }
  })();
  const chainId = await startedOnce;
  return {
    chainId,
    urls: source.urls,
    currentUrl: () => watcher?.currentUrl() ?? (source.urls[0] as string),
    close: async () => {
      closed = true;
      stop();
      await loop;
    },
  };
}

/** Pending transactions asked of the node at once, at most, each round of {@link checkMempool}. */
const MEMPOOL_CHECKS_PER_ROUND = 100;

/**
 * Asks the node, on `lifecycle`'s schedule, whether each watched pending transaction is still
 * known (`eth_getTransactionByHash`): unknown for long enough, it is dropped; mined in a block seen
 * before the transaction was, it is forgotten. A failed request leaves it as it was.
 */
function checkMempool(
  lifecycle: TxLifecycle,
  forward: (method: string, params: readonly unknown[]) => Promise<ForwardOutcome>,
  tell: (fates: readonly TxFate[]) => void,
  onTracked: (tracked: number) => void,
): { stop: () => Promise<void> } {
  let stopped = false;
  let round: Promise<void> | undefined;
  const check = async (): Promise<void> => {
    const due = lifecycle.due(MEMPOOL_CHECKS_PER_ROUND);
    const answers = await Promise.all(due.map((hash) => forward('eth_getTransactionByHash', [hash])));
    const fates: TxFate[] = [];
    due.forEach((hash, i) => {
      const answer = answers[i] as ForwardOutcome;
      if (!('result' in answer)) return;
      const tx = answer.result;
      if (tx === null) {
        const fate = lifecycle.checked(hash, false);
        if (fate !== undefined) fates.push(fate);
      } else if (typeof tx === 'object' && (tx as { blockNumber?: unknown }).blockNumber != null) {
        lifecycle.forget(hash);
      } else lifecycle.checked(hash, true);
    });
    if (!stopped) tell(fates);
    onTracked(lifecycle.size);
  };
  // One round at a time: a slow node delays the next round, never stacks them.
  const timer = setInterval(() => {
    round ??= check()
      .catch(() => undefined)
      .finally(() => {
        round = undefined;
      });
  }, 250);
  timer.unref();
  return {
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await round;
    },
  };
}

/** What {@link serveChain} needs from the composition root. */
export interface ServeChainDeps<O extends Peer> {
  readonly config: Config;
  readonly log: ChainLogBackend;
  readonly fanout: Fanout<O>;
  readonly index: SubscriptionIndex<O>;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Also told of every fan-out pass. */
  readonly observe?: FanoutObserver;
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

/** A chain a gateway serves: its feed (history, fan-out per depth), other listeners, calls to its node. */
export interface ServedChain<O extends Peer> {
  readonly feed: ChainFeed<O>;
  /** Adds a listener of blocks, retractions and the mempool. */
  readonly listen: (listener: ChainListener) => void;
  /** Sends a client's call to the chain's node on a connection of its own (an error where the gateway has none). */
  readonly forward: (method: string, params: readonly unknown[]) => Promise<ForwardOutcome>;
  /** Whether the gateway reads the chain's log now. */
  readonly connected: () => boolean;
  readonly close: () => Promise<void>;
}

/** The chain's node, where this gateway has one: for the mempool and forwarded calls. */
export interface ChainNode {
  readonly urls: readonly string[];
  /** The endpoint to forward to now (ingest's, when it runs in this process). */
  readonly currentUrl: () => string;
}

/**
 * Serves one chain from its log: reads the recent window into the feed, then every entry as it
 * comes, and resolves once the window is read (a resume can be served). Fan-out runs on each
 * entry; an exception in it is logged and counted, never felt by ingest.
 */
export async function serveChain<O extends Peer>(
  chainId: number,
  node: ChainNode | undefined,
  deps: ServeChainDeps<O>,
): Promise<ServedChain<O>> {
  const { config, fanout, index, metrics } = deps;
  const chain = String(chainId);
  const logger = (component: string, fields: LogFields = {}): Logger =>
    deps.logger.child({ chain: chainId, component, ...fields });
  const listeners: ChainListener[] = [];
  // When the log handed over the block being fanned out: the start of block-to-write latency.
  let receivedAt = 0;
  const observe = (sent: FanoutResult, seconds: number, kind: 'publish' | 'retract'): void => {
    metrics.fanoutDuration.observe(seconds);
    // Delivery is synchronous: when fan-out returns, the last frame is in a socket.
    if (kind === 'publish' && sent.connections > 0) {
      metrics.blockToWrite.observe({ chain }, (performance.now() - receivedAt) / 1000);
    }
    metrics.messagesSent.inc({ channel: 'blocks' }, sent.blockMessages);
    metrics.messagesSent.inc({ channel: 'activity' }, sent.activityMessages);
    metrics.bytesSent.inc({ channel: 'blocks' }, sent.blockBytes);
    metrics.bytesSent.inc({ channel: 'activity' }, sent.activityBytes);
    metrics.messagesSent.inc({ channel: 'finality' }, sent.finalityMessages);
    metrics.bytesSent.inc({ channel: 'finality' }, sent.finalityBytes);
    deps.observe?.(sent, seconds, kind);
  };
  const feed = new ChainFeed(chainId, new ChainHistory(config.historyWindowBlocks), fanout, index, observe);
  // The life of watched pending transactions (replaced, dropped): where this gateway sees the mempool.
  const dropAfterMs = config.dropAfterSec * 1000;
  const lifecycle =
    node === undefined
      ? undefined
      : new TxLifecycle({ dropAfterMs, checkEveryMs: Math.min(30_000, Math.max(250, dropAfterMs / 4)) });
  const tell = (fates: readonly TxFate[]): void => {
    if (fates.length === 0) return;
    const sent = fanout.publishFates(chainId, fates);
    for (const fate of fates) metrics.transactionFates.inc({ chain, fate: fate.status });
    metrics.messagesSent.inc({ channel: 'pending' }, sent.messages);
    metrics.bytesSent.inc({ channel: 'pending' }, sent.bytes);
  };
  const faultLog = new ThrottledLog<LogFields>((line) => logger('gateway').warn({}, line), 10_000);
  let connected = true;

  const onEntry = (entry: LogEntry): void => {
    receivedAt = performance.now();
    metrics.logOffset.set({ chain }, entry.offset);
    if (entry.appendedAt !== undefined)
      metrics.logDelay.observe({ chain }, Math.max(0, Date.now() - entry.appendedAt) / 1000);
    try {
      if (entry.kind === 'head') {
        // Only the header: `blocks` subscriptions without transactions get it now, the rest with the block.
        feed.apply(entry.block);
      } else if (entry.kind === 'add') {
        const { block } = entry;
        metrics.headNumber.set({ chain }, block.number);
        metrics.headTimestamp.set({ chain }, block.timestamp);
        feed.apply(block);
        const finality = feed.finality;
        if (finality !== undefined) metrics.finalizedNumber.set({ chain }, finality.finalized.number);
        if (lifecycle !== undefined) tell(lifecycle.mined(block));
        for (const listener of listeners) listener.block(block);
      } else {
        feed.retract(entry.link);
        lifecycle?.retracted(entry.link);
        const block = feed.history.byHash(entry.link.hash)?.block;
        // A header taken back was never handed to the listeners (they get whole blocks).
        if (block !== undefined && block.headerOnly !== true) for (const listener of listeners) listener.retract(block);
      }
    } catch (error) {
      metrics.fanoutErrors.inc({ chain });
      faultLog.write(
        'entry',
        `chain ${chain}: fan-out of log entry ${entry.offset} failed: ${errorMessage(error)}`,
        {},
      );
    }
  };
  const reading = deps.log.read(chainId, config.historyWindowBlocks, {
    onEntry,
    onReset: (epoch) => {
      metrics.logResets.inc({ chain });
      logger('log', { epoch }).warn(
        {},
        `chain ${chain}: the chain log was reset or trimmed past this gateway: starting over from it (resumes from before get recovered: false)`,
      );
      feed.reset();
    },
    onConnected: (up) => {
      connected = up;
      metrics.logConnected.set({ chain }, up ? 1 : 0);
      if (up) logger('log').info({}, `chain ${chain}: reading the chain log again: catching up`);
      else
        logger('log').warn(
          {},
          `chain ${chain}: the chain log is unreachable: keeping connections, catching up when it is back`,
        );
    },
  });
  metrics.logConnected.set({ chain }, 1);
  // Zero from the start, so that dashboards show a zero rather than no series.
  metrics.logResets.inc({ chain }, 0);
  metrics.fanoutErrors.inc({ chain }, 0);
  await reading.ready;

  // Mempool → `pending` messages, for activity subscriptions that asked for them (fetches only then).
  const mempool =
    node === undefined
      ? undefined
      : await watchPending({
          urls: node.urls,
          chainId,
          pollIntervalMs: config.pollIntervalMs,
          requestTimeoutMs: config.rpcTimeoutMs,
          maxResponseBytes: config.rpcMaxResponseBytes,
          wanted: () => index.pendingSubscriptions(chainId) > 0 || listeners.some((l) => l.wantsPending()),
          onPending: (events) => {
            const sent = fanout.publishPending(chainId, events);
            // What a subscription was sent is followed to its fate (replaced, dropped).
            for (const event of sent.watched) {
              lifecycle?.pending({
                hash: event.txHash,
                from: event.from,
                to: event.to,
                value: event.value,
                nonce: event.nonce,
              });
            }
            metrics.messagesSent.inc({ channel: 'pending' }, sent.messages);
            metrics.bytesSent.inc({ channel: 'pending' }, sent.bytes);
            for (const listener of listeners) listener.pending(events);
          },
          onError: (error, url) =>
            logger('mempool', { endpoint: endpointLabel(url) }).warn(
              { err: error },
              `chain ${chainId}: mempool ${endpointLabel(url)}: ${errorMessage(error)}`,
            ),
          onFault: (fault, url) => {
            const endpoint = endpointLabel(url);
            metrics.rpcFaults.inc({ chain, endpoint, reason: fault.fault });
            faultLog.write(
              `${endpoint} ${fault.fault}`,
              `chain ${chain}: mempool ${endpoint}: ${fault.fault} (${fault.method ?? 'no request'}): ${fault.message}`,
              {},
            );
          },
        }).catch(async (error: unknown) => {
          await reading.close();
          throw error;
        });
  const forwarder =
    node === undefined
      ? undefined
      : createForwarder({
          currentUrl: node.currentUrl,
          timeoutMs: config.rpcTimeoutMs,
          maxResponseBytes: config.rpcMaxResponseBytes,
          maxInFlight: MAX_FORWARDS_IN_FLIGHT,
          onRequest: (method, url, seconds, ok) => {
            const labels = { endpoint: endpointLabel(url), method: `forward:${method}` };
            metrics.rpcDuration.observe(labels, seconds);
            metrics.rpcErrors.inc(labels, ok ? 0 : 1);
          },
        });
  const checking =
    lifecycle === undefined || forwarder === undefined
      ? undefined
      : checkMempool(lifecycle, forwarder.forward, tell, (tracked) =>
          metrics.trackedTransactions.set({ chain }, tracked),
        );
  metrics.transactionFates.inc({ chain, fate: 'replaced' }, 0);
  metrics.transactionFates.inc({ chain, fate: 'dropped' }, 0);
  return {
    feed,
    listen: (listener) => {
      listeners.push(listener);
    },
    forward:
      forwarder?.forward ??
      (async () => ({
        error: { code: -32601, message: `this gateway has no node for chain ${chainId} to send calls to` },
      })),
    connected: () => connected,
    close: async () => {
      await checking?.stop();
      forwarder?.close();
      await mempool?.close();
      await reading.close();
    },
  };
}
