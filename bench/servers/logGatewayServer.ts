/**
 * A gateway process of the scale-out benchmark (`npm run bench:scale`): the real gateway of
 * `createGateway()` reading one chain from the chain log on Redis, as a `--redis` gateway or one
 * of its `--workers` does. The writer is elsewhere (the benchmark driver appends to the log), so
 * what this process spends is what a gateway process spends: reading the log and fanning out.
 *
 * Arguments: JSON in `argv[2]` ({@link LogServerArgs}). Control: JSON commands on stdin, JSON
 * answers on stdout, one per line:
 *   {"cmd":"stats"}  {"event":"stats", connections, subscriptions, rssBytes, logDelay}
 *   {"cmd":"take"}   {"event":"taken", reads: [...]}: the blocks read since the last take
 *   {"cmd":"quit"}   closes the gateway and exits (so does the end of stdin)
 * Each read block is stamped with `process.hrtime.bigint()` (CLOCK_MONOTONIC, the clock of the
 * driver's append stamps and of the load generator) when the log handed it over and when its
 * fan-out returned, so the driver can tell the time the log adds from the time fan-out takes.
 */
import { createInterface } from 'node:readline';
import type { ChainLogBackend, LogEntry } from '../../src/chainlog/ChainLog.ts';
import { createRedisLog } from '../../src/chainlog/RedisLog.ts';
import { createGateway } from '../../src/createGateway.ts';
import type { FanoutResult } from '../../src/fanout/Fanout.ts';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { createAuth } from '../../src/transport/createAuth.ts';
import { loadAuth } from '../../src/transport/loadAuth.ts';
import { benchGatewayConfig } from '../lib/benchServer.ts';
import { BENCH_CHAIN_ID } from '../lib/synthetic.ts';

/** The arguments of a log gateway server, as JSON in `argv[2]`. */
export interface LogServerArgs {
  /** `redis://127.0.0.1:PORT` of the chain log. */
  readonly redisUrl: string;
  /** The port to listen on (a fixed one: workers share it). */
  readonly port: number;
  /** Share the port with the other workers (SO_REUSEPORT); exclusive otherwise. */
  readonly sharedPort: boolean;
  /** Send buffer per connection before a slow reader is dropped, in bytes. */
  readonly maxBackpressureBytes: number;
}

/** One block as this gateway read it from the log and fanned it out. */
export interface LogRead {
  readonly number: number;
  /** `process.hrtime.bigint()` when the log handed the entry over, in ns, as a string. */
  readonly readNs: string;
  /** `process.hrtime.bigint()` when its fan-out returned (the last frame is in a socket), in ns. */
  readonly fannedOutNs: string;
  /** Frames handed to sockets for it, and their bytes. */
  readonly frames: number;
  readonly bytes: number;
}

/** Reads kept between two `take` commands at most: a bound on memory whatever the driver does. */
const MAX_KEPT_READS = 100_000;

type Command = { readonly cmd: 'stats' } | { readonly cmd: 'take' } | { readonly cmd: 'quit' };

function parseArgs(): LogServerArgs {
  const raw = process.argv[2];
  if (raw === undefined) throw new Error('log gateway server: pass its arguments as JSON in argv[2]');
  return JSON.parse(raw) as LogServerArgs;
}

function reply(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/**
 * The backend with every read entry timed: `onRead` is told of each `add` with the time the log
 * handed it over and the time the gateway's handler (the fan-out, synchronous) returned.
 */
function timedReads(
  backend: ChainLogBackend,
  onRead: (entry: LogEntry, readNs: bigint, fannedOutNs: bigint) => void,
): ChainLogBackend {
  return {
    ...backend,
    read: (chainId, windowBlocks, handlers) =>
      backend.read(chainId, windowBlocks, {
        ...handlers,
        onEntry: (entry) => {
          const readNs = process.hrtime.bigint();
          handlers.onEntry(entry);
          onRead(entry, readNs, process.hrtime.bigint());
        },
      }),
  };
}

const args = parseArgs();
const metrics = createMetrics();
const logger = createLogger({ level: 'warn', format: 'json' });
const config = benchGatewayConfig(args.port, args.maxBackpressureBytes);

let reads: LogRead[] = [];
let framesOfEntry = 0;
let bytesOfEntry = 0;
const redis = await createRedisLog({
  url: args.redisUrl,
  onError: (error) => logger.warn({ component: 'log' }, `redis: ${String(error)}`),
});
const log = timedReads(redis, (entry, readNs, fannedOutNs) => {
  if (entry.kind === 'add' && reads.length < MAX_KEPT_READS) {
    reads.push({
      number: entry.block.number,
      readNs: readNs.toString(),
      fannedOutNs: fannedOutNs.toString(),
      frames: framesOfEntry,
      bytes: bytesOfEntry,
    });
  }
  framesOfEntry = 0;
  bytesOfEntry = 0;
});
const gateway = await createGateway({
  config,
  log,
  chains: [{ chainId: BENCH_CHAIN_ID }],
  auth: createAuth(loadAuth(config)),
  metrics,
  logger,
  sharedPort: args.sharedPort,
  observe: (sent: FanoutResult) => {
    framesOfEntry += sent.blockMessages + sent.activityMessages;
    bytesOfEntry += sent.blockBytes + sent.activityBytes;
  },
});

/** `blockcast_log_delay_seconds` of this process so far: count and sum (writer's wall clock, ms resolution). */
async function logDelay(): Promise<{ count: number; sumSeconds: number }> {
  const { values } = await metrics.logDelay.get();
  const of = (suffix: string): number =>
    values.filter((v) => v.metricName === `blockcast_log_delay_seconds_${suffix}`).reduce((s, v) => s + v.value, 0);
  return { count: of('count'), sumSeconds: of('sum') };
}

let closing = false;
async function quit(): Promise<void> {
  if (closing) return;
  closing = true;
  await gateway.close();
  await redis.close();
  process.exit(0);
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const command = JSON.parse(line) as Command;
  switch (command.cmd) {
    case 'stats':
      void logDelay().then((delay) =>
        reply({
          event: 'stats',
          connections: gateway.server.connections(),
          subscriptions: gateway.index.size,
          rssBytes: process.memoryUsage().rss,
          logDelay: delay,
        }),
      );
      return;
    case 'take': {
      const taken = reads;
      reads = [];
      reply({ event: 'taken', reads: taken });
      return;
    }
    case 'quit':
      void quit();
      return;
  }
});
lines.on('close', () => void quit());
reply({ event: 'listening', port: gateway.server.port, pid: process.pid });
