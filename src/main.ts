/**
 * The composition root: reads the configuration, builds the stages (ingest → index → fanout →
 * transport), wires them and handles shutdown. Nothing else reads `process.env`.
 */
import { type Config, loadConfig, usage } from './config.ts';
import { type Anvil, startAnvil } from './devnet/startAnvil.ts';
import { startTraffic } from './devnet/startTraffic.ts';
import { GatewayError, PROTOCOL_ERROR_CODES } from './domain/errors.ts';
import { ChainFeed } from './fanout/ChainFeed.ts';
import { Fanout, type FanoutResult } from './fanout/Fanout.ts';
import { ChainHistory } from './history/ChainHistory.ts';
import { SubscriptionIndex } from './index/SubscriptionIndex.ts';
import { watchChain } from './ingest/watchChain.ts';
import { watchPending } from './ingest/watchPending.ts';
import { createMetrics, zeroSeries } from './metrics/metrics.ts';
import { assertNativeUws, type Connection, createServer, type Server } from './transport/createServer.ts';

function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} ${message}\n`);
}

/** Host label of an RPC URL for metrics and logs: never its path or credentials (API keys). */
function endpointLabel(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'invalid';
  }
}

async function run(config: Config): Promise<void> {
  // Before anything starts: never serve on uWebSockets.js's slow JavaScript fallback.
  assertNativeUws();
  const cleanups: Array<() => Promise<void> | void> = [];
  const sources: Array<{ urls: readonly string[]; chainId?: number }> = [
    ...(config.rpc.length > 0 ? [{ urls: config.rpc }] : []),
    ...config.chains.map((c) => ({ urls: c.rpc, chainId: c.chainId })),
  ];
  if (sources.length === 0) {
    const anvil: Anvil = await startAnvil({ blockTimeSec: config.devnetBlockTimeSec });
    cleanups.push(() => anvil.close());
    const stopTraffic = startTraffic({ rpcUrl: anvil.httpUrl, onError: (e) => log(`devnet traffic: ${String(e)}`) });
    cleanups.unshift(stopTraffic);
    sources.push({ urls: [anvil.httpUrl] });
    console.log(`devnet: anvil at ${anvil.httpUrl} (block time ${config.devnetBlockTimeSec} s), sending test traffic`);
  }

  const metrics = createMetrics();
  const index = new SubscriptionIndex<Connection>();
  let server: Server | undefined;
  const fanout = new Fanout<Connection>(
    index,
    (conn, frames) => server?.deliver(conn, frames),
    config.historyWindowBlocks,
  );
  const feeds = new Map<number, ChainFeed<Connection>>();

  const observe = (chain: string, receivedAt: number) => (sent: FanoutResult, seconds: number, kind: string) => {
    metrics.fanoutDuration.observe(seconds);
    // Delivery is synchronous: when fan-out returns, the last frame is in a socket.
    if (kind === 'publish' && sent.connections > 0) {
      metrics.blockToWrite.observe({ chain }, (performance.now() - receivedAt) / 1000);
    }
    metrics.messagesSent.inc({ channel: 'blocks' }, sent.blockMessages);
    metrics.messagesSent.inc({ channel: 'activity' }, sent.activityMessages);
    metrics.bytesSent.inc({ channel: 'blocks' }, sent.blockBytes);
    metrics.bytesSent.inc({ channel: 'activity' }, sent.activityBytes);
  };

  const follow = async (source: { urls: readonly string[]; chainId?: number }): Promise<void> => {
    let feed: ChainFeed<Connection> | undefined;
    let receivedAt = 0;
    const onRequest = (method: string, url: string, seconds: number, ok: boolean): void => {
      const labels = { endpoint: endpointLabel(url), method };
      metrics.rpcDuration.observe(labels, seconds);
      // Adding 0 on success creates the series, so an error rate reads 0 rather than nothing.
      metrics.rpcErrors.inc(labels, ok ? 0 : 1);
    };
    const watcher = await watchChain({
      urls: source.urls,
      ...(source.chainId === undefined ? {} : { expectedChainId: source.chainId }),
      pollIntervalMs: config.pollIntervalMs,
      requestTimeoutMs: config.rpcTimeoutMs,
      reorgWindowBlocks: config.reorgWindowBlocks,
      backfillConcurrency: config.backfillConcurrency,
      headTimeoutBlocks: config.headTimeoutBlocks,
      headTimeoutMinMs: config.headTimeoutMinSec * 1000,
      onBlock: (block) => {
        // Ingest calls back as soon as it has the whole block: the start of block-to-write latency.
        receivedAt = performance.now();
        const chain = String(block.chainId);
        metrics.blocksIngested.inc({ chain });
        metrics.headNumber.set({ chain }, block.number);
        metrics.headTimestamp.set({ chain }, block.timestamp);
        feed?.apply(block);
      },
      onRetract: (block) => feed?.retract(block),
      onReorg: (depth, pastWindow) => {
        const chain = String(feed?.chainId);
        metrics.reorgs.inc({ chain });
        metrics.reorgDepth.observe({ chain }, depth);
        if (pastWindow) metrics.deepReorgs.inc({ chain });
        log(
          `chain ${chain}: reorg of ${depth} blocks${pastWindow ? ', deeper than the reorg window: the whole window was retracted' : ''}`,
        );
      },
      onBackfill: (blocks) => metrics.backfilled.inc({ chain: String(feed?.chainId) }, blocks),
      onError: (error, url) =>
        log(`rpc ${endpointLabel(url)}: ${error instanceof Error ? error.message : String(error)}`),
      onRequest,
      onEndpoint: (url, up) =>
        metrics.endpointUp.set(
          { chain: String(feed?.chainId ?? source.chainId), endpoint: endpointLabel(url) },
          up ? 1 : 0,
        ),
    });
    cleanups.unshift(() => watcher.close());
    if (feeds.has(watcher.chainId))
      throw new GatewayError('BAD_CONFIG', `chains: chain ${watcher.chainId} is configured twice`);
    const chain = String(watcher.chainId);
    feed = new ChainFeed(
      watcher.chainId,
      new ChainHistory(config.historyWindowBlocks),
      fanout,
      index,
      (sent, seconds, kind) => observe(chain, receivedAt)(sent, seconds, kind),
    );
    feed.history.apply(watcher.head());
    feeds.set(watcher.chainId, feed);
    metrics.headNumber.set({ chain }, watcher.head().number);
    metrics.headTimestamp.set({ chain }, watcher.head().timestamp);
    for (const url of source.urls)
      metrics.endpointUp.set({ chain, endpoint: endpointLabel(url) }, url === source.urls[0] ? 1 : 0);

    // Mempool → `pending` messages, for activity subscriptions that asked for them (fetches only then).
    const chainId = watcher.chainId;
    const mempool = await watchPending({
      urls: source.urls,
      pollIntervalMs: config.pollIntervalMs,
      requestTimeoutMs: config.rpcTimeoutMs,
      wanted: () => index.pendingSubscriptions(chainId) > 0,
      onPending: (events) => {
        const sent = fanout.publishPending(chainId, events);
        metrics.messagesSent.inc({ channel: 'pending' }, sent.messages);
        metrics.bytesSent.inc({ channel: 'pending' }, sent.bytes);
      },
      onError: (error, url) =>
        log(`mempool ${endpointLabel(url)}: ${error instanceof Error ? error.message : String(error)}`),
    });
    cleanups.unshift(() => mempool.close());
  };
  // Sequentially, so the configuration order is the order of chains (the first is the default).
  for (const source of sources) await follow(source);
  const chainIds = [...feeds.keys()];
  zeroSeries(metrics, { chains: chainIds, errorCodes: PROTOCOL_ERROR_CODES });
  const lagTimer = setInterval(() => {
    for (const feed of feeds.values()) {
      const head = feed.history.head;
      if (head !== undefined) metrics.headLag.set({ chain: String(feed.chainId) }, Date.now() / 1000 - head.timestamp);
    }
  }, 1000);
  lagTimer.unref();
  cleanups.push(() => clearInterval(lagTimer));

  server = await createServer({
    host: config.host,
    port: config.port,
    idleTimeoutSec: config.idleTimeoutSec,
    maxConfirmations: config.maxConfirmations,
    limits: {
      maxAddresses: config.maxAddresses,
      maxSubscriptions: config.maxSubscriptions,
      maxMessageBytes: config.maxMessageBytes,
      maxBackpressureBytes: config.maxBackpressureBytes,
      maxRequestsPerSecond: config.maxRequestsPerSecond,
    },
    index,
    metrics,
    chains: {
      chainIds: () => chainIds,
      head: (chainId) => feeds.get(chainId)?.history.head,
      resume: (sub, cursor, maxBytes) => feeds.get(sub.chainId)?.resume(sub, cursor, maxBytes) ?? false,
      ready: () =>
        [...feeds.values()].every(
          (feed) => Date.now() / 1000 - (feed.history.head?.timestamp ?? 0) <= config.maxHeadAgeSec,
        ),
    },
  });
  const listening = server;
  cleanups.unshift(() => listening.close());

  const shown = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `ws://${shown}:${listening.port}/v1`;
  const example = `node --experimental-websocket -e "const w=new WebSocket('${url}?encoding=json');w.onopen=()=>w.send(JSON.stringify({op:'subscribe',channel:'blocks'}));w.onmessage=(e)=>console.log(e.data)"`;
  // One write, so a reader that sees the URL sees the whole banner.
  console.log(
    [
      `blockcast: ${chainIds.map((id) => `chain ${id} at block ${feeds.get(id)?.history.head?.number}`).join(', ')}; listening on ${url}`,
      `  JSON frames: ${url}?encoding=json   metrics: http://${shown}:${listening.port}/metrics`,
      '  watch blocks:',
      `  ${example}`,
    ].join('\n'),
  );

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: closing connections and stopping`);
    void (async () => {
      for (const cleanup of cleanups) {
        try {
          await cleanup();
        } catch (error) {
          log(`shutdown: ${String(error)}`);
        }
      }
      process.exit(0);
    })();
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
}

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(usage());
  process.exit(0);
}
try {
  await run(loadConfig(argv, process.env));
} catch (error) {
  const message = error instanceof GatewayError ? `${error.code}: ${error.message}` : String(error);
  console.error(`blockcast: ${message}`);
  process.exit(1);
}
