/**
 * The gateway under test: the real gateway of `createGateway()` (the composition `src/main.ts`
 * uses), with the synthetic block source of the benchmark in place of ingest, at the same seam:
 * appends to the in-process chain log.
 */
import { createMemoryLog } from '../../src/chainlog/MemoryLog.ts';
import { createGateway } from '../../src/createGateway.ts';
import type { FanoutResult } from '../../src/fanout/Fanout.ts';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { createAuth } from '../../src/transport/createAuth.ts';
import { loadAuth } from '../../src/transport/loadAuth.ts';
import { benchGatewayConfig, serveBenchControl, serverArgs } from '../lib/benchServer.ts';
import { BENCH_CHAIN_ID } from '../lib/synthetic.ts';

const args = serverArgs();
const metrics = createMetrics();
const config = benchGatewayConfig(0, args.maxBackpressureBytes);
let last: FanoutResult | undefined;
// The same composition as src/main.ts, fed through the in-process chain log as ingest feeds it.
const log = createMemoryLog();
const writer = await log.lead(BENCH_CHAIN_ID, 'bench').acquired;
const gateway = await createGateway({
  config,
  log,
  chains: [{ chainId: BENCH_CHAIN_ID }],
  auth: createAuth(loadAuth(config)),
  metrics,
  logger: createLogger({ level: 'warn', format: 'json' }),
  observe: (sent) => {
    last = sent;
  },
});
const server = gateway.server;
const index = gateway.index;
const listening = server;

serveBenchControl(
  {
    port: listening.port,
    publish: (block) => {
      last = undefined;
      // What ingest does with a block: append it to the log (in-process: read and fanned out at once).
      void writer.append({ kind: 'add', block });
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
    close: () => gateway.close(),
  },
  args.workload,
);
