/**
 * The gateway under test: the real stages composed as `src/main.ts` composes them (index, fan-out
 * through the chain feed, uWebSockets.js transport, metrics), with the synthetic block source of
 * the benchmark in place of `watchChain`, at the same seam (`ChainFeed.apply`).
 */
import { DEFAULTS } from '../../src/config.ts';
import { ChainFeed } from '../../src/fanout/ChainFeed.ts';
import { Fanout, type FanoutResult } from '../../src/fanout/Fanout.ts';
import { ChainHistory } from '../../src/history/ChainHistory.ts';
import { SubscriptionIndex } from '../../src/index/SubscriptionIndex.ts';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { type Connection, createServer, type Server } from '../../src/transport/createServer.ts';
import { serveBenchControl, serverArgs } from '../lib/benchServer.ts';
import { BENCH_CHAIN_ID } from '../lib/synthetic.ts';

const args = serverArgs();
const metrics = createMetrics();
const index = new SubscriptionIndex<Connection>();
let server: Server | undefined;
const fanout = new Fanout<Connection>(index, (conn, frames) => server?.deliver(conn, frames));
const chain = String(BENCH_CHAIN_ID);
let last: FanoutResult | undefined;
const feed = new ChainFeed(
  BENCH_CHAIN_ID,
  new ChainHistory(DEFAULTS.historyWindowBlocks),
  fanout,
  index,
  (sent, seconds) => {
    // What src/main.ts records per fan-out pass.
    last = sent;
    metrics.fanoutDuration.observe(seconds);
    metrics.messagesSent.inc({ channel: 'blocks' }, sent.blockMessages);
    metrics.messagesSent.inc({ channel: 'activity' }, sent.activityMessages);
    metrics.bytesSent.inc({ channel: 'blocks' }, sent.blockBytes);
    metrics.bytesSent.inc({ channel: 'activity' }, sent.activityBytes);
  },
);

server = await createServer({
  host: '127.0.0.1',
  port: 0,
  // Long enough that no benchmark connection idles out; uWS still pings.
  idleTimeoutSec: 960,
  maxConfirmations: DEFAULTS.maxConfirmations,
  limits: {
    maxAddresses: DEFAULTS.maxAddresses,
    maxSubscriptions: DEFAULTS.maxSubscriptions,
    maxMessageBytes: DEFAULTS.maxMessageBytes,
    maxBackpressureBytes: args.maxBackpressureBytes,
    maxRequestsPerSecond: DEFAULTS.maxRequestsPerSecond,
    maxConnectionsPerIp: 0,
  },
  capacity: { maxConnections: 1_000_000, maxWatchedAddresses: DEFAULTS.maxWatchedAddresses },
  index,
  metrics,
  chains: {
    chainIds: () => [BENCH_CHAIN_ID],
    head: () => feed.history.head,
    ready: () => true,
    resume: (_sub, _cursor, _maxBytes, onDone) => {
      // The benchmark never resumes.
      onDone(false);
      return { status: 'done', cancel: () => undefined };
    },
    release: (sub) => feed.release(sub),
    retryAfterMs: () => 1000,
    position: (sub) => feed.position(sub),
  },
});
const listening = server;

serveBenchControl(
  {
    port: listening.port,
    publish: (block) => {
      last = undefined;
      // What src/main.ts does when ingest hands over a block.
      metrics.blocksIngested.inc({ chain });
      metrics.headNumber.set({ chain }, block.number);
      metrics.headTimestamp.set({ chain }, block.timestamp);
      feed.apply(block);
      const sent = last as FanoutResult | undefined;
      if (sent === undefined) return { frames: 0, bytes: 0 };
      return {
        frames: sent.blockMessages + sent.activityMessages,
        bytes: sent.blockBytes + sent.activityBytes,
      };
    },
    stats: async () => {
      const closes = await metrics.closes.get();
      const slow = closes.values.find((v) => v.labels['reason'] === 'slow_consumer')?.value ?? 0;
      return {
        connections: listening.connections(),
        subscriptions: index.size,
        watchedAddresses: index.watchedAddresses,
        slowConsumerCloses: slow,
      };
    },
    close: () => listening.close(),
  },
  args.workload,
);
