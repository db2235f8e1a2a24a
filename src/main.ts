/**
 * The composition root: reads the configuration, builds the stages (ingest → index → fanout →
 * transport), wires them and handles shutdown. Nothing else reads `process.env`.
 */
import { type Config, loadConfig, usage } from './config.ts';
import { type Anvil, startAnvil } from './devnet/startAnvil.ts';
import { startTraffic } from './devnet/startTraffic.ts';
import { GatewayError } from './domain/errors.ts';
import type { ChainBlock } from './domain/types.ts';
import { Fanout } from './fanout/Fanout.ts';
import { SubscriptionIndex } from './index/SubscriptionIndex.ts';
import { watchChain } from './ingest/watchChain.ts';
import { createMetrics } from './metrics/metrics.ts';
import { assertNativeUws, type Connection, createServer } from './transport/createServer.ts';

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
  let rpc = config.rpc;
  if (rpc.length === 0) {
    const anvil: Anvil = await startAnvil({ blockTimeSec: config.devnetBlockTimeSec });
    cleanups.push(() => anvil.close());
    const stopTraffic = startTraffic({ rpcUrl: anvil.httpUrl, onError: (e) => log(`devnet traffic: ${String(e)}`) });
    cleanups.unshift(stopTraffic);
    rpc = [anvil.httpUrl];
    console.log(`devnet: anvil at ${anvil.httpUrl} (block time ${config.devnetBlockTimeSec} s), sending test traffic`);
  }

  const metrics = createMetrics();
  const index = new SubscriptionIndex<Connection>();
  const heads = new Map<number, ChainBlock>();
  let fanout: Fanout<Connection> | undefined;

  const onBlock = (block: ChainBlock): void => {
    heads.set(block.chainId, block);
    const chain = String(block.chainId);
    metrics.blocksIngested.inc({ chain });
    metrics.headNumber.set({ chain }, block.number);
    metrics.headTimestamp.set({ chain }, block.timestamp);
    if (fanout === undefined) return;
    const stop = metrics.fanoutDuration.startTimer();
    const sent = fanout.publishBlock(block);
    stop();
    metrics.messagesSent.inc({ channel: 'blocks' }, sent.blockMessages);
    metrics.messagesSent.inc({ channel: 'activity' }, sent.activityMessages);
    metrics.bytesSent.inc({ channel: 'blocks' }, sent.blockBytes);
    metrics.bytesSent.inc({ channel: 'activity' }, sent.activityBytes);
  };

  const watcher = await watchChain({
    urls: rpc,
    pollIntervalMs: config.pollIntervalMs,
    requestTimeoutMs: config.rpcTimeoutMs,
    onBlock,
    onError: (error, url) =>
      log(`rpc ${endpointLabel(url)}: ${error instanceof Error ? error.message : String(error)}`),
    onRequest: (method, url, seconds, ok) => {
      const labels = { endpoint: endpointLabel(url), method };
      metrics.rpcDuration.observe(labels, seconds);
      if (!ok) metrics.rpcErrors.inc(labels);
    },
  });
  cleanups.unshift(() => watcher.close());
  heads.set(watcher.chainId, watcher.head());

  const server = await createServer({
    host: config.host,
    port: config.port,
    idleTimeoutSec: config.idleTimeoutSec,
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
      chainIds: () => [watcher.chainId],
      head: (chainId) => heads.get(chainId),
      ready: () => [...heads.values()].every((head) => Date.now() / 1000 - head.timestamp <= config.maxHeadAgeSec),
    },
  });
  cleanups.unshift(() => server.close());
  fanout = new Fanout(index, server.deliver);

  const shown = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `ws://${shown}:${server.port}/v1`;
  const example = `node --experimental-websocket -e "const w=new WebSocket('${url}?encoding=json');w.onopen=()=>w.send(JSON.stringify({op:'subscribe',channel:'blocks'}));w.onmessage=(e)=>console.log(e.data)"`;
  // One write, so a reader that sees the URL sees the whole banner.
  console.log(
    [
      `blockcast: chain ${watcher.chainId} at block ${watcher.head().number}, listening on ${url}`,
      `  JSON frames: ${url}?encoding=json   metrics: http://${shown}:${server.port}/metrics`,
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
