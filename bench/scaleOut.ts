/**
 * The scale-out benchmark: `--workers 2` against one gateway process, both reading the chain log
 * on a real Redis, with 10,000 `blocks` subscribers, in the same run, interleaved round by round;
 * and, for reference, the in-process gateway as `npm run bench` S1 measures it.
 *
 *   npm run bench:scale               every block rate, 2 rounds each (at most 10 minutes)
 *   npm run bench:scale -- --quick    one block rate, 1 round (at most 3 minutes)
 *   npm run bench:scale -- --conns 5000 --rounds 3 --intervals 250,125
 *
 * The driver starts a redis-server (free port, temporary folder, no persistence) and is the
 * chain's writer: it appends the synthetic blocks of S1 (one ~600-byte block message to every
 * subscriber) at a fixed interval through `lead(...).acquired` → `writer.append`, stamping each
 * with CLOCK_MONOTONIC just before the append. Gateway processes (bench/servers/logGatewayServer.ts)
 * read the log and fan out; C load generators (bench/loadgen/wsload.c, 5,000 connections each)
 * stamp arrivals with the same clock. CPU comes from /proc/<pid>/stat.
 *
 * Writes bench/results/scale-out.md and bench/results/scale-out.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChainLogWriter } from '../src/chainlog/ChainLog.ts';
import { createRedisLog } from '../src/chainlog/RedisLog.ts';
import type { ChainBlock } from '../src/domain/types.ts';
import { freePort } from '../test/helpers/ports.ts';
import { type RedisServer, startRedis } from '../test/helpers/redis.ts';
import { LineProcess, type Message } from './lib/lineProcess.ts';
import { type CpuTime, cpuDelta, cpuTime, describeMachine, type MachineDescription } from './lib/proc.ts';
import { percentile, sum } from './lib/report.ts';
import {
  CLIENT_CPU,
  CONNS_PER_CLIENT_PROCESS,
  type Point,
  type RoundContext,
  type RoundResult,
  runRound,
  SERVER_CPU,
} from './lib/round.ts';
import { BENCH_CHAIN_ID, createBlockSource, subscribeLines, type Workload } from './lib/synthetic.ts';
import { BUILD_DIR, buildLoadgen, ROOT, requireTools, rotate } from './lib/tools.ts';
import type { LogRead } from './servers/logGatewayServer.ts';

const RESULTS_DIR = join(ROOT, 'bench', 'results');

/** The targets compared, in the order of the first round. */
const TARGETS = ['one process', 'two workers', 'in-process (S1)'] as const;

/** One of {@link TARGETS}. */
type Target = (typeof TARGETS)[number];

/** Sizes and durations of a run. */
interface Plan {
  readonly mode: 'full' | 'quick';
  readonly conns: number;
  /** Rounds per block rate and target, interleaved. */
  readonly rounds: number;
  readonly warmupBlocks: number;
  readonly blocks: number;
  /** The block intervals to run, in ms (one point each). */
  readonly intervalsMs: readonly number[];
  /** Rounds run again, at most, because other work disturbed them (see {@link DISTURBED_PERCENT}). */
  readonly maxReruns: number;
}

const FULL: Plan = {
  mode: 'full',
  conns: 10_000,
  rounds: 3,
  warmupBlocks: 4,
  blocks: 32,
  intervalsMs: [250, 167, 125, 100],
  maxReruns: 6,
};

const QUICK: Plan = {
  mode: 'quick',
  conns: 10_000,
  rounds: 1,
  warmupBlocks: 2,
  blocks: 12,
  intervalsMs: [250],
  maxReruns: 2,
};

/** S1's blocks: 150 transactions, subscribers take the header message (about 600 bytes). */
const BLOCKS_WORKLOAD: Workload = {
  channel: 'blocks',
  seed: 7,
  txPerBlock: 150,
  transfersPerBlock: 0,
  universe: 1_000_000,
  zipfExponent: 0.63,
  addressesPerSubscriber: 10,
};

/** Send buffer per connection, as S1 has it. */
const MAX_BACKPRESSURE_BYTES = 4_194_304;
/** Entries the Redis stream keeps: enough for a gateway's start, small enough that starting is quick. */
const LOG_ENTRIES = 64;
/** Longest a run of appends may take, whatever it was asked: a bound on the append loop. */
const MAX_APPEND_RUN_MS = 120_000;
/**
 * A round of a log target is run again (up to 2 more times, within {@link Plan.maxReruns}) when
 * CPU that no measured process accounts for, plus steal, reached this share of one core: other
 * work on this shared machine (tests, builds) or on its host.
 */
const DISTURBED_PERCENT = 30;
/** Attempts of one round at most. */
const MAX_ATTEMPTS = 3;
/** Longest wait for a gateway process to read the log and listen. */
const LISTEN_TIMEOUT_MS = 60_000;

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function cpuUs(time: CpuTime): number {
  return time.userUs + time.systemUs;
}

function sumCpu(times: readonly CpuTime[]): CpuTime {
  return times.reduce((a, b) => ({ userUs: a.userUs + b.userUs, systemUs: a.systemUs + b.systemUs }), {
    userUs: 0,
    systemUs: 0,
  });
}

/** The whole machine's CPU (all cores), in µs. */
interface MachineCpu {
  /** user + nice + system + irq + softirq: what ran, processes and the kernel's interrupt work. */
  readonly busyUs: number;
  /** irq + softirq: interrupt work (loopback delivery among it) that no process is charged for. */
  readonly interruptUs: number;
  /** Time the hypervisor ran something else while this machine wanted its CPU. */
  readonly stealUs: number;
}

/** The whole machine's CPU so far, from the first line of /proc/stat. */
function machineCpu(): MachineCpu {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  // user nice system idle iowait irq softirq steal (guest time is already counted in user).
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = line
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const usPerTick = 1e6 / clockTicksPerSecond();
  return {
    busyUs: (user + nice + system + irq + softirq) * usPerTick,
    interruptUs: (irq + softirq) * usPerTick,
    stealUs: steal * usPerTick,
  };
}

function machineDelta(before: MachineCpu, after: MachineCpu): MachineCpu {
  return {
    busyUs: after.busyUs - before.busyUs,
    interruptUs: after.interruptUs - before.interruptUs,
    stealUs: after.stealUs - before.stealUs,
  };
}

/** The redis-server of the run: the test helper's, made a cache (no snapshots, no append-only file). */
async function startBenchRedis(): Promise<{ server: RedisServer; pid: number }> {
  const server = await startRedis();
  try {
    await server.command('CONFIG', 'SET', 'appendonly', 'no');
    await server.command('CONFIG', 'SET', 'save', '');
    const info = String(await server.command('INFO', 'server'));
    const pid = Number(/^process_id:(\d+)/m.exec(info)?.[1]);
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new Error(`bench:scale: no process_id in INFO server:\n${info}`);
    return { server, pid };
  } catch (error) {
    await server.close();
    throw error;
  }
}

/** What the driver needs to run the rounds of the log targets. */
interface ScaleContext {
  readonly round: RoundContext;
  readonly redisUrl: string;
  readonly redisPid: number;
  readonly writer: ChainLogWriter;
  readonly blocks: ReturnType<typeof createBlockSource>;
  readonly subsFile: string;
  /** The number of the next block to append (the log continues across rounds). */
  nextBlock: number;
}

/** One block the driver appended. */
interface AppendRecord {
  readonly number: number;
  /** `process.hrtime.bigint()` just before `append`, in ns. */
  readonly publishedNs: bigint;
  /** How long `append` took to resolve (the round trip to Redis), in ms. */
  readonly appendMs: number;
}

/** Appends `count` new blocks, one every `intervalMs`; blocks are built before the first append. */
async function appendBlocks(ctx: ScaleContext, count: number, intervalMs: number): Promise<AppendRecord[]> {
  const blocks: ChainBlock[] = [];
  for (let i = 0; i < count; i++) blocks.push(ctx.blocks.block(ctx.nextBlock++));
  const records: AppendRecord[] = [];
  const started = performance.now();
  for (let i = 0; i < blocks.length && performance.now() - started < MAX_APPEND_RUN_MS; i++) {
    const block = blocks[i] as ChainBlock;
    const waitMs = started + i * intervalMs - performance.now();
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    const publishedNs = process.hrtime.bigint();
    await ctx.writer.append({ kind: 'add', block });
    records.push({ number: block.number, publishedNs, appendMs: Number(process.hrtime.bigint() - publishedNs) / 1e6 });
  }
  return records;
}

/** Starts `count` gateway processes on `port` (shared when more than one); pinned to core 0 when `pin`. */
async function startGateways(ctx: ScaleContext, count: number, port: number, pin: boolean): Promise<LineProcess[]> {
  const servers: LineProcess[] = [];
  for (let i = 0; i < count; i++) {
    const args = JSON.stringify({
      redisUrl: ctx.redisUrl,
      port,
      sharedPort: count > 1,
      maxBackpressureBytes: MAX_BACKPRESSURE_BYTES,
    });
    const node = [
      process.execPath,
      '--import',
      'tsx/esm',
      join(ctx.round.root, 'bench', 'servers', 'logGatewayServer.ts'),
      args,
    ];
    const name = count > 1 ? `gateway worker ${i + 1}` : 'gateway';
    servers.push(
      pin
        ? new LineProcess(name, 'taskset', ['-c', SERVER_CPU, ...node], ctx.round.root)
        : new LineProcess(name, node[0] as string, node.slice(1), ctx.round.root),
    );
  }
  try {
    await Promise.all(servers.map((s) => s.next((m) => m.event === 'listening', LISTEN_TIMEOUT_MS)));
  } catch (error) {
    await Promise.all(servers.map((s) => s.stop()));
    throw error;
  }
  return servers;
}

/** Starts load generators for `conns` connections, 5,000 per process; pinned to core 1 when `pin`. */
async function startClients(ctx: ScaleContext, port: number, conns: number, pin: boolean): Promise<LineProcess[]> {
  const round = ++ctx.round.roundCounter;
  const clients: LineProcess[] = [];
  for (let first = 0, i = 0; first < conns; first += CONNS_PER_CLIENT_PROCESS, i++) {
    const count = Math.min(CONNS_PER_CLIENT_PROCESS, conns - first);
    const args = [
      ctx.round.loadgen,
      '--port',
      String(port),
      '--path',
      '/v1',
      '--conns',
      String(count),
      '--subs',
      ctx.subsFile,
      '--first-line',
      String(first),
      // Distinct source addresses per round (no shared TCP 4-tuples) and per process.
      '--src',
      `127.0.${1 + (round % 250)}.${1 + i}`,
      '--max-seconds',
      '900',
      '--connect-timeout-sec',
      '60',
    ];
    const name = `load generator ${i}`;
    clients.push(
      pin
        ? new LineProcess(name, 'taskset', ['-c', CLIENT_CPU, ...args], ctx.round.root)
        : new LineProcess(name, args[0] as string, args.slice(1), ctx.round.root),
    );
  }
  try {
    const ready = await Promise.all(clients.map((c) => c.next((m) => m.event === 'ready', 90_000)));
    const subscribed = sum(ready.map((m) => Number(m['subscribed'])));
    if (subscribed < conns) log(`  warning: ${subscribed} of ${conns} connections subscribed`);
  } catch (error) {
    await Promise.all(clients.map((c) => c.stop()));
    throw error;
  }
  return clients;
}

async function framesSoFar(clients: readonly LineProcess[]): Promise<number> {
  const stats = await Promise.all(clients.map((c) => c.request('stats', 'stats', 10_000)));
  return sum(stats.map((m) => Number(m['frames'])));
}

/** Waits until the clients have `expected` more frames than `base`, or nothing arrives for `quietMs`. */
async function converge(
  clients: readonly LineProcess[],
  base: number,
  expected: number,
  quietMs: number,
  maxMs: number,
) {
  const started = performance.now();
  let last = -1;
  let lastChange = performance.now();
  for (let i = 0; i < 100_000 && performance.now() - started < maxMs; i++) {
    const frames = (await framesSoFar(clients)) - base;
    if (frames >= expected) return;
    if (frames !== last) {
      last = frames;
      lastChange = performance.now();
    } else if (performance.now() - lastChange > quietMs) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

type ClientReport = Message & {
  subscribed: number;
  frames: number;
  duplicates: number;
  blocks: Array<[number, number, string, string]>;
};

/** What one round of one target measured. */
interface ScaleRound {
  readonly target: Target;
  readonly intervalMs: number;
  readonly round: number;
  readonly subscribed: number;
  /** Connections each gateway process held (one entry for one process). */
  readonly split: readonly number[];
  readonly blocks: number;
  readonly deliveries: number;
  /** From the first publish to the last arrival, in ms. */
  readonly spanMs: number;
  /** Block-to-last-subscriber latency of each complete block, from the append (or publish), in ms. */
  readonly latenciesMs: readonly number[];
  readonly missing: number;
  readonly duplicates: number;
  readonly gatewayCpu: CpuTime;
  /** Redis' CPU over the round (0 for the in-process gateway, which has none). */
  readonly redisCpuUs: number;
  readonly loadgenCpuUs: number;
  /** The driver's CPU (the writer: building and appending blocks, and the orchestration). */
  readonly writerCpuUs: number;
  /** The whole machine's CPU over the round (all cores); NaN where not measured. */
  readonly machine: MachineCpu;
  /**
   * CPU over the round that neither a measured process nor interrupt work accounts for, plus
   * steal, in % of one core over the span: other work on the machine (or its host). NaN where not
   * measured.
   */
  readonly disturbancePercent: number;
  /** Append → the log handed the entry to a gateway, per block and gateway process, in ms. */
  readonly logDelaysMs: readonly number[];
  /** Read → fan-out returned, per block and gateway process, in ms. */
  readonly fanoutMs: readonly number[];
  /** `writer.append` round trips, in ms. */
  readonly appendMs: readonly number[];
  /** `blockcast_log_delay_seconds` of the gateways over the round: mean, in ms (writer's wall clock). */
  readonly logDelayHistogramMeanMs: number;
}

async function takeReads(servers: readonly LineProcess[]): Promise<LogRead[][]> {
  const taken = await Promise.all(servers.map((s) => s.request({ cmd: 'take' }, 'taken', 10_000)));
  return taken.map((m) => m['reads'] as LogRead[]);
}

async function histogramOf(servers: readonly LineProcess[]): Promise<{ count: number; sumSeconds: number }> {
  const stats = await Promise.all(servers.map((s) => s.request({ cmd: 'stats' }, 'stats', 10_000)));
  const delays = stats.map((m) => m['logDelay'] as { count: number; sumSeconds: number });
  return { count: sum(delays.map((d) => d.count)), sumSeconds: sum(delays.map((d) => d.sumSeconds)) };
}

/** One round of `target` (one process or two workers) reading the chain log on Redis. */
async function runLogRound(
  ctx: ScaleContext,
  target: Exclude<Target, 'in-process (S1)'>,
  intervalMs: number,
  round: number,
  plan: Plan,
): Promise<ScaleRound> {
  const workers = target === 'two workers' ? 2 : 1;
  // One process: server on core 0, load generators on core 1. Two workers: nothing pinned.
  const pin = workers === 1;
  const port = await freePort();
  const servers = await startGateways(ctx, workers, port, pin);
  let clients: LineProcess[] = [];
  try {
    clients = await startClients(ctx, port, plan.conns, pin);
    const split = (await Promise.all(servers.map((s) => s.request({ cmd: 'stats' }, 'stats', 10_000)))).map((m) =>
      Number(m['connections']),
    );

    // Warm-up: JIT, buffers and connections settle; not measured.
    const base0 = await framesSoFar(clients);
    const warm = await appendBlocks(ctx, plan.warmupBlocks, intervalMs);
    await converge(clients, base0, warm.length * plan.conns, 500, 30_000);
    await takeReads(servers);
    const histogram0 = await histogramOf(servers);

    // Measured run.
    const base = await framesSoFar(clients);
    const gatewayCpu0 = servers.map((s) => cpuTime(s.pid));
    const redisCpu0 = cpuTime(ctx.redisPid);
    const clientCpu0 = clients.map((c) => cpuTime(c.pid));
    const writerCpu0 = process.cpuUsage();
    const machine0 = machineCpu();
    const records = await appendBlocks(ctx, plan.blocks, intervalMs);
    await converge(clients, base, records.length * plan.conns, 1000, 60_000);
    const machine = machineDelta(machine0, machineCpu());
    const writerCpu = process.cpuUsage(writerCpu0);
    const gatewayCpu = sumCpu(servers.map((s, i) => cpuDelta(gatewayCpu0[i] as CpuTime, cpuTime(s.pid))));
    const redisCpu = cpuDelta(redisCpu0, cpuTime(ctx.redisPid));
    const clientCpu = sumCpu(clients.map((c, i) => cpuDelta(clientCpu0[i] as CpuTime, cpuTime(c.pid))));
    const histogram1 = await histogramOf(servers);
    const reads = (await takeReads(servers)).flat();

    const reports = (await Promise.all(clients.map((c) => c.request('report', 'report', 30_000)))) as ClientReport[];
    const readers = sum(reports.map((r) => r.subscribed));
    const arrivals = lastArrivals(reports);
    const latenciesMs: number[] = [];
    let missing = 0;
    let lastArrival = 0n;
    for (const record of records) {
      const arrival = arrivals.get(record.number);
      const count = arrival?.count ?? 0;
      missing += Math.max(0, readers - count);
      if (arrival === undefined || count < readers) continue;
      latenciesMs.push(Number(arrival.last - record.publishedNs) / 1e6);
      if (arrival.last > lastArrival) lastArrival = arrival.last;
    }
    const published = new Map(records.map((r) => [r.number, r.publishedNs]));
    const logDelaysMs: number[] = [];
    const fanoutMs: number[] = [];
    for (const read of reads) {
      const publishedNs = published.get(read.number);
      if (publishedNs === undefined) continue;
      logDelaysMs.push(Number(BigInt(read.readNs) - publishedNs) / 1e6);
      fanoutMs.push(Number(BigInt(read.fannedOutNs) - BigInt(read.readNs)) / 1e6);
    }
    const first = records[0];
    const spanMs = first === undefined || lastArrival === 0n ? 0 : Number(lastArrival - first.publishedNs) / 1e6;
    const deliveries = sum(reports.map((r) => r.frames)) - base;
    const writerCpuUs = writerCpu.user + writerCpu.system;
    const measuredUs = cpuUs(gatewayCpu) + cpuUs(redisCpu) + cpuUs(clientCpu) + writerCpuUs;
    const histogramCount = histogram1.count - histogram0.count;
    return {
      target,
      intervalMs,
      round,
      subscribed: readers,
      split,
      blocks: records.length,
      deliveries,
      spanMs,
      latenciesMs,
      missing,
      duplicates: sum(reports.map((r) => r.duplicates)),
      gatewayCpu,
      redisCpuUs: cpuUs(redisCpu),
      loadgenCpuUs: cpuUs(clientCpu),
      writerCpuUs,
      machine,
      disturbancePercent:
        spanMs > 0
          ? ((Math.max(0, machine.busyUs - machine.interruptUs - measuredUs) + machine.stealUs) / (spanMs * 1000)) * 100
          : Number.NaN,
      logDelaysMs,
      fanoutMs,
      appendMs: records.map((r) => r.appendMs),
      logDelayHistogramMeanMs:
        histogramCount > 0 ? ((histogram1.sumSeconds - histogram0.sumSeconds) / histogramCount) * 1000 : Number.NaN,
    };
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all(servers.map((s) => s.stop()));
  }
}

let ticksPerSecond: number | undefined;
function clockTicksPerSecond(): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  return ticksPerSecond;
}

/** Per block: frames over every load generator and the last arrival (CLOCK_MONOTONIC ns). */
function lastArrivals(reports: readonly ClientReport[]): Map<number, { count: number; last: bigint }> {
  const arrivals = new Map<number, { count: number; last: bigint }>();
  for (const report of reports) {
    for (const [number, count, , last] of report.blocks) {
      const entry = arrivals.get(number);
      const lastNs = BigInt(last);
      if (entry === undefined) arrivals.set(number, { count, last: lastNs });
      else {
        entry.count += count;
        if (lastNs > entry.last) entry.last = lastNs;
      }
    }
  }
  return arrivals;
}

/** One round of the in-process gateway through S1's machinery (bench/lib/round.ts). */
async function runInProcessRound(
  ctx: ScaleContext,
  intervalMs: number,
  round: number,
  plan: Plan,
): Promise<ScaleRound> {
  const point: Point = {
    scenario: 'S1',
    label: `S1 ${plan.conns.toLocaleString('en-US')}`,
    conns: plan.conns,
    workload: BLOCKS_WORKLOAD,
    slowConns: 0,
    maxBackpressureBytes: MAX_BACKPRESSURE_BYTES,
    warmupBlocks: plan.warmupBlocks,
    blocks: plan.blocks,
    intervalMs,
    subsFile: ctx.subsFile,
  };
  const result: RoundResult = await runRound(ctx.round, point, 'gateway', round);
  return {
    target: 'in-process (S1)',
    intervalMs,
    round,
    subscribed: result.subscribed,
    split: [result.subscribed],
    blocks: result.blocks,
    deliveries: result.deliveries,
    spanMs: result.spanMs,
    latenciesMs: result.latenciesMs,
    missing: result.missing,
    duplicates: result.duplicates,
    gatewayCpu: result.serverCpu,
    redisCpuUs: 0,
    loadgenCpuUs: cpuUs(result.clientCpu),
    writerCpuUs: Number.NaN,
    machine: { busyUs: Number.NaN, interruptUs: Number.NaN, stealUs: Number.NaN },
    disturbancePercent: Number.NaN,
    logDelaysMs: [],
    fanoutMs: result.syncMs,
    appendMs: [],
    logDelayHistogramMeanMs: Number.NaN,
  };
}

/** The figures of one target at one block rate, pooled over its rounds. */
interface ScaleFigures {
  readonly target: Target;
  readonly intervalMs: number;
  readonly rounds: number;
  readonly subscribed: number;
  /** Connections per gateway process, per round. */
  readonly splits: readonly (readonly number[])[];
  readonly blocks: number;
  readonly deliveries: number;
  readonly deliveriesPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly gatewayUsPerDelivery: number;
  readonly gatewayUserUsPerDelivery: number;
  readonly gatewaySystemUsPerDelivery: number;
  readonly redisUsPerDelivery: number;
  /** Gateway processes plus Redis. */
  readonly totalUsPerDelivery: number;
  /** CPU over the span, in % of one core. */
  readonly gatewayCpuPercent: number;
  readonly redisCpuPercent: number;
  readonly loadgenCpuPercent: number;
  readonly writerCpuPercent: number;
  /** The whole machine's busy CPU over the span, in % of all its cores. */
  readonly machineBusyPercent: number;
  /** The load generators' share of the machine's busy CPU, in %. */
  readonly loadgenShareOfBusyPercent: number;
  /** Interrupt work (irq + softirq: loopback delivery among it), charged to no process, in % of one core. */
  readonly interruptCpuPercent: number;
  /**
   * Busy CPU of the machine that no measured process (gateways, Redis, load generators, driver)
   * and no interrupt work accounts for, in % of one core: other work on the machine.
   */
  readonly otherCpuPercent: number;
  /** CPU the hypervisor took (steal), in % of one core. */
  readonly stealCpuPercent: number;
  readonly logDelayP50Ms: number;
  readonly logDelayP99Ms: number;
  readonly logDelayMaxMs: number;
  readonly logDelayHistogramMeanMs: number;
  readonly fanoutP50Ms: number;
  readonly appendP50Ms: number;
  readonly missing: number;
  readonly duplicates: number;
}

function figuresOf(target: Target, intervalMs: number, rounds: readonly ScaleRound[], cores: number): ScaleFigures {
  const deliveries = sum(rounds.map((r) => r.deliveries));
  const spanUs = sum(rounds.map((r) => r.spanMs)) * 1000;
  const user = sum(rounds.map((r) => r.gatewayCpu.userUs));
  const system = sum(rounds.map((r) => r.gatewayCpu.systemUs));
  const redis = sum(rounds.map((r) => r.redisCpuUs));
  const loadgen = sum(rounds.map((r) => r.loadgenCpuUs));
  const writer = sum(rounds.map((r) => r.writerCpuUs));
  const busy = sum(rounds.map((r) => r.machine.busyUs));
  const interrupt = sum(rounds.map((r) => r.machine.interruptUs));
  const per = (us: number): number => (deliveries > 0 ? us / deliveries : Number.NaN);
  const percent = (us: number): number => (spanUs > 0 ? (us / spanUs) * 100 : Number.NaN);
  const latencies = rounds.flatMap((r) => r.latenciesMs);
  const delays = rounds.flatMap((r) => r.logDelaysMs);
  const histogramMeans = rounds.map((r) => r.logDelayHistogramMeanMs).filter(Number.isFinite);
  return {
    target,
    intervalMs,
    rounds: rounds.length,
    subscribed: Math.min(...rounds.map((r) => r.subscribed)),
    splits: rounds.map((r) => r.split),
    blocks: sum(rounds.map((r) => r.blocks)),
    deliveries,
    deliveriesPerSec: spanUs > 0 ? deliveries / (spanUs / 1e6) : Number.NaN,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.length > 0 ? Math.max(...latencies) : Number.NaN,
    gatewayUsPerDelivery: per(user + system),
    gatewayUserUsPerDelivery: per(user),
    gatewaySystemUsPerDelivery: per(system),
    redisUsPerDelivery: per(redis),
    totalUsPerDelivery: per(user + system + redis),
    gatewayCpuPercent: percent(user + system),
    redisCpuPercent: percent(redis),
    loadgenCpuPercent: percent(loadgen),
    writerCpuPercent: percent(writer),
    machineBusyPercent: percent(busy) / cores,
    loadgenShareOfBusyPercent: busy > 0 ? (loadgen / busy) * 100 : Number.NaN,
    interruptCpuPercent: percent(interrupt),
    otherCpuPercent: percent(Math.max(0, busy - interrupt - user - system - redis - loadgen - writer)),
    stealCpuPercent: percent(sum(rounds.map((r) => r.machine.stealUs))),
    logDelayP50Ms: percentile(delays, 50),
    logDelayP99Ms: percentile(delays, 99),
    logDelayMaxMs: delays.length > 0 ? Math.max(...delays) : Number.NaN,
    logDelayHistogramMeanMs: histogramMeans.length > 0 ? sum(histogramMeans) / histogramMeans.length : Number.NaN,
    fanoutP50Ms: percentile(
      rounds.flatMap((r) => r.fanoutMs),
      50,
    ),
    appendP50Ms: percentile(
      rounds.flatMap((r) => r.appendMs),
      50,
    ),
    missing: sum(rounds.map((r) => r.missing)),
    duplicates: sum(rounds.map((r) => r.duplicates)),
  };
}

/** Everything a run produced. */
interface ScaleResults {
  readonly startedAt: string;
  readonly mode: Plan['mode'];
  readonly durationSec: number;
  readonly machine: MachineDescription;
  readonly plan: Plan;
  readonly figures: readonly ScaleFigures[];
  /** Attempts left out of the figures because other work disturbed them. */
  readonly disturbedRounds: readonly ScaleRound[];
  readonly comparisons: readonly string[];
  readonly notes: readonly string[];
  readonly rounds: readonly ScaleRound[];
}

function fixed(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '–';
}

function thousands(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : '–';
}

function splitText(f: ScaleFigures): string {
  if (f.target !== 'two workers') return '–';
  return f.splits.map((split) => split.map(thousands).join(' / ')).join('; ');
}

function figuresTable(figures: readonly ScaleFigures[]): string {
  const rows = [
    '| block interval | target | subscribers | split (per worker, per round) | deliveries/s | p50 ms | p99 ms | max ms | gateway CPU µs/delivery (user+sys) | Redis CPU µs/delivery | gateway + Redis µs/delivery | gateway CPU % | Redis CPU % | load gen CPU % | load gen share of busy CPU | machine busy % (of all cores) | interrupts CPU % | other CPU % | steal % | missing |',
    '|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const f of figures) {
    rows.push(
      `| ${f.intervalMs} ms | ${f.target} | ${thousands(f.subscribed)} | ${splitText(f)} | ${thousands(f.deliveriesPerSec)} | ${fixed(f.p50Ms)} | ${fixed(f.p99Ms)} | ${fixed(f.maxMs)} | ${fixed(f.gatewayUsPerDelivery, 2)} (${fixed(f.gatewayUserUsPerDelivery, 2)}+${fixed(f.gatewaySystemUsPerDelivery, 2)}) | ${fixed(f.redisUsPerDelivery, 3)} | ${fixed(f.totalUsPerDelivery, 2)} | ${fixed(f.gatewayCpuPercent, 0)} | ${fixed(f.redisCpuPercent, 1)} | ${fixed(f.loadgenCpuPercent, 0)} | ${fixed(f.loadgenShareOfBusyPercent, 0)}% | ${fixed(f.machineBusyPercent, 0)} | ${fixed(f.interruptCpuPercent, 0)} | ${fixed(f.otherCpuPercent, 0)} | ${fixed(f.stealCpuPercent, 0)} | ${thousands(f.missing)} |`,
    );
  }
  return rows.join('\n');
}

function logTable(figures: readonly ScaleFigures[]): string {
  const rows = [
    '| block interval | target | append → gateway read p50 ms | p99 ms | max ms | `blockcast_log_delay_seconds` mean ms | read → fan-out returned p50 ms | `append` round trip p50 ms | writer CPU % |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const f of figures.filter((x) => x.target !== 'in-process (S1)')) {
    rows.push(
      `| ${f.intervalMs} ms | ${f.target} | ${fixed(f.logDelayP50Ms, 2)} | ${fixed(f.logDelayP99Ms, 2)} | ${fixed(f.logDelayMaxMs, 2)} | ${fixed(f.logDelayHistogramMeanMs, 2)} | ${fixed(f.fanoutP50Ms, 1)} | ${fixed(f.appendP50Ms, 2)} | ${fixed(f.writerCpuPercent, 1)} |`,
    );
  }
  return rows.join('\n');
}

function markdown(results: ScaleResults): string {
  const m = results.machine;
  return [
    '# Scale-out: two workers against one process, chain log on Redis',
    '',
    `Run ${results.startedAt} (${results.mode}, ${Math.round(results.durationSec)} s) with \`npm run bench:scale${results.mode === 'quick' ? ' -- --quick' : ''}\`.`,
    '',
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Node.js ${m.node}, Linux ${m.kernel}, ${m.cc}, ${m.maxOpenFiles} open files per process.`,
    `${thousands(results.plan.conns)} \`blocks\` subscribers (C load generators, epoll, 5,000 connections per process), S1's block message (~600 bytes of MessagePack) to every subscriber; loopback only.`,
    'One process: the gateway pinned to core 0, the load generators to core 1 (`taskset`), as `npm run bench` does. Two workers: two gateway processes on one port (`sharedPort`, SO_REUSEPORT), nothing pinned: the workers and the load generators share both cores.',
    'Redis, and the driver that appends the blocks, run unpinned in both. CPU from /proc/<pid>/stat (utime + stime) over the measured run for every gateway process and the redis-server; latency from the driver stamping',
    "each block (process.hrtime.bigint, CLOCK_MONOTONIC) just before `writer.append` to the arrival of its last frame at the load generators. The in-process reference is S1's gateway (bench/servers/gatewayServer.ts through bench/lib/round.ts), stamped just before its in-process append.",
    '',
    '## Comparison',
    '',
    ...results.comparisons.map((c) => `- ${c}`),
    '',
    '## Fan-out',
    '',
    figuresTable(results.figures),
    '',
    '## The time the log adds',
    '',
    logTable(results.figures),
    '',
    '## Notes',
    '',
    ...results.notes.map((n) => `- ${n}`),
    '',
  ].join('\n');
}

/** A target keeps up with a block rate when it delivers at least this share of what is offered. */
const KEEP_UP_SHARE = 0.97;

/** Deliveries per second a point offers: subscribers × blocks per second. */
function offeredPerSec(f: ScaleFigures): number {
  return (1000 / f.intervalMs) * f.subscribed;
}

function compare(figures: readonly ScaleFigures[]): string[] {
  const lines: string[] = [];
  for (const intervalMs of new Set(figures.map((f) => f.intervalMs))) {
    const at = (target: Target): ScaleFigures | undefined =>
      figures.find((f) => f.intervalMs === intervalMs && f.target === target);
    const one = at('one process');
    const two = at('two workers');
    const inProcess = at('in-process (S1)');
    if (one === undefined || two === undefined) continue;
    const offered = offeredPerSec(one);
    lines.push(
      `Blocks every ${intervalMs} ms (${thousands(offered)} deliveries/s offered): one process delivered ${thousands(one.deliveriesPerSec)}/s at p99 ${fixed(one.p99Ms)} ms, two workers (connections split ${splitText(two)}) ${thousands(two.deliveriesPerSec)}/s at p99 ${fixed(two.p99Ms)} ms (two / one: p99 ${fixed(two.p99Ms / one.p99Ms, 2)}, p50 ${fixed(two.p50Ms / one.p50Ms, 2)}); CPU per delivery with Redis ${fixed(one.totalUsPerDelivery, 2)} µs against ${fixed(two.totalUsPerDelivery, 2)} µs${inProcess === undefined ? '' : `; the in-process gateway ${thousands(inProcess.deliveriesPerSec)}/s at p99 ${fixed(inProcess.p99Ms)} ms, ${fixed(inProcess.gatewayUsPerDelivery, 2)} µs`}. The load generators used ${fixed(two.loadgenCpuPercent, 0)}% of a core beside the two workers (${fixed(two.loadgenShareOfBusyPercent, 0)}% of the machine's busy CPU; the machine was ${fixed(two.machineBusyPercent, 0)}% busy).`,
    );
  }
  for (const target of TARGETS) {
    // Keeping up: delivering what was offered (no backlog growing over the run), nothing missing.
    const kept = figures.filter(
      (f) =>
        f.target === target &&
        f.deliveriesPerSec >= KEEP_UP_SHARE * offeredPerSec(f) &&
        f.missing === 0 &&
        f.subscribed > 0,
    );
    const best = kept.sort((a, b) => b.deliveriesPerSec - a.deliveriesPerSec)[0];
    const tried = figures.filter((f) => f.target === target).length;
    if (tried === 0) continue;
    lines.push(
      best === undefined
        ? `${target}: kept up at none of the block rates run.`
        : `${target}: highest block rate kept up: every ${best.intervalMs} ms, ${thousands(best.deliveriesPerSec)} deliveries/s at p99 ${fixed(best.p99Ms)} ms (p50 ${fixed(best.p50Ms)} ms).`,
    );
  }
  return lines;
}

function parsePlan(argv: readonly string[]): Plan {
  const base = argv.includes('--quick') ? QUICK : FULL;
  const option = (name: string): string | undefined => {
    const at = argv.indexOf(name);
    return at >= 0 ? argv[at + 1] : undefined;
  };
  const positive = (name: string, raw: string | undefined, fallback: number, max: number): number => {
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isSafeInteger(value) || value < 1 || value > max) {
      throw new TypeError(`bench:scale: ${name} must be an integer from 1 to ${max}, not ${JSON.stringify(raw)}`);
    }
    return value;
  };
  const intervals = option('--intervals');
  return {
    ...base,
    conns: positive('--conns', option('--conns'), base.conns, 15_000),
    rounds: positive('--rounds', option('--rounds'), base.rounds, 10),
    blocks: positive('--blocks', option('--blocks'), base.blocks, 1000),
    intervalsMs:
      intervals === undefined
        ? base.intervalsMs
        : intervals.split(',').map((raw) => positive('--intervals', raw, 250, 10_000)),
  };
}

async function main(): Promise<void> {
  const plan = parsePlan(process.argv.slice(2));
  const started = Date.now();
  requireTools('bench:scale', [
    ['taskset', ['-V']],
    ['cc', ['--version']],
    ['redis-server', ['--version']],
  ]);
  const loadgen = buildLoadgen();
  mkdirSync(RESULTS_DIR, { recursive: true });
  const machine = describeMachine();
  log(`bench:scale (${plan.mode}): ${machine.cpuModel}, ${machine.cores} cores, Node.js ${machine.node}`);
  const subsFile = join(BUILD_DIR, 'subs-blocks-scale.txt');
  writeFileSync(subsFile, `${subscribeLines(BLOCKS_WORKLOAD, 1).join('\n')}\n`);

  const redis = await startBenchRedis();
  const chainLog = await createRedisLog({
    url: redis.server.url,
    maxEntriesPerChain: LOG_ENTRIES,
    onError: (error) => log(`  redis: ${String(error)}`),
  });
  const rounds: ScaleRound[] = [];
  const disturbed: ScaleRound[] = [];
  let reruns = 0;
  const figures: ScaleFigures[] = [];
  try {
    const lease = chainLog.lead(BENCH_CHAIN_ID, 'bench');
    const writer = await lease.acquired;
    const ctx: ScaleContext = {
      round: { root: ROOT, loadgen, buildDir: BUILD_DIR, roundCounter: 0, log },
      redisUrl: redis.server.url,
      redisPid: redis.pid,
      writer,
      blocks: createBlockSource(BLOCKS_WORKLOAD),
      subsFile,
      nextBlock: ((await writer.tail(1))[0]?.number ?? 0) + 1,
    };
    // A log with a few blocks already, as a gateway finds it when it starts.
    await appendBlocks(ctx, 4, 0);

    for (const intervalMs of plan.intervalsMs) {
      const results = new Map<Target, ScaleRound[]>();
      for (let round = 0; round < plan.rounds; round++) {
        for (const target of rotate(TARGETS, round)) {
          log(`blocks every ${intervalMs} ms · ${target} · round ${round + 1}/${plan.rounds}`);
          let result: ScaleRound | undefined;
          for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
            const attempted =
              target === 'in-process (S1)'
                ? await runInProcessRound(ctx, intervalMs, round, plan)
                : await runLogRound(ctx, target, intervalMs, round, plan);
            log(
              `  ${attempted.deliveries} deliveries, split ${attempted.split.join('/')}, ${fixed(cpuUs(attempted.gatewayCpu) / Math.max(1, attempted.deliveries), 2)} µs/delivery (+ Redis ${fixed(attempted.redisCpuUs / Math.max(1, attempted.deliveries), 3)}), p50 ${fixed(percentile(attempted.latenciesMs, 50))} ms, p99 ${fixed(percentile(attempted.latenciesMs, 99))} ms, log p50 ${fixed(percentile(attempted.logDelaysMs, 50), 2)} ms, missing ${attempted.missing}, other CPU + steal ${fixed(attempted.disturbancePercent, 0)}%`,
            );
            // Of the attempts, the least disturbed one counts; the others are kept apart.
            if (result === undefined || attempted.disturbancePercent < result.disturbancePercent) {
              if (result !== undefined) disturbed.push(result);
              result = attempted;
            } else {
              disturbed.push(attempted);
            }
            if (!(result.disturbancePercent >= DISTURBED_PERCENT) || reruns >= plan.maxReruns) break;
            if (attempt === MAX_ATTEMPTS) break;
            reruns++;
            log(`  disturbed by other work on the machine: running it again (${reruns} of ${plan.maxReruns} reruns)`);
          }
          if (result === undefined) continue;
          rounds.push(result);
          results.set(target, [...(results.get(target) ?? []), result]);
        }
      }
      for (const target of TARGETS) {
        const list = results.get(target);
        if (list !== undefined) figures.push(figuresOf(target, intervalMs, list, machine.cores));
      }
    }
    await lease.release();
  } finally {
    await chainLog.close();
    await redis.server.close();
  }

  const two = figures.filter((f) => f.target === 'two workers');
  const unevenSplit = two.flatMap((f) => f.splits).some((split) => split.length < 2 || Math.min(...split) === 0);
  const results: ScaleResults = {
    startedAt: new Date(started).toISOString(),
    mode: plan.mode,
    durationSec: (Date.now() - started) / 1000,
    machine,
    plan,
    figures,
    disturbedRounds: disturbed,
    comparisons: compare(figures),
    notes: [
      `${plan.warmupBlocks} warm-up blocks, then ${plan.blocks} measured blocks per round; ${plan.rounds} round(s) per block rate and target, targets interleaved (order rotated per round). Figures pool the rounds. Gateway processes and load generators are started afresh for every round; the Redis log and its writer live through the run (the stream keeps ${LOG_ENTRIES} entries).`,
      `deliveries/s is what the run offered and got (subscribers × blocks per second, over the span from the first append to the last arrival) while a target keeps up; one that cannot shows it as growing latency and a longer span, hence fewer deliveries/s than offered. The targets run at the same block rates, so compare them rate by rate: deliveries/s and p99 side by side. "Kept up" means at least ${KEEP_UP_SHARE * 100}% of the offered deliveries/s, with no frame missing. "other CPU %" is the machine's busy CPU (/proc/stat) that no measured process accounts for: the kernel's work outside any process, or other work on the machine; where it is large, the round was disturbed.`,
      "On this 2-core machine the two workers cannot have a core each: the load generators (load gen CPU %) and the kernel's loopback delivery (interrupts CPU %) run on the same two cores. Two workers gain by fanning out one block on both cores at once while the load generators leave one idle now and then; once the machine is busy (machine busy % near 100) they can gain no more, and how much more they would deliver with a core each is not measurable here.",
      `The kernel spreads connections over the workers by a hash of each connection's addresses and ports (SO_REUSEPORT): the split column gives each worker's connections per round.${unevenSplit ? ' **A worker got no connections in some round: the figures of two workers are not those of two.**' : ''}`,
      'Redis ran as a cache (CONFIG SET appendonly no, save ""), unpinned. Its CPU is counted with the gateways\' (gateway + Redis µs/delivery): it serves the one append and one XREAD per gateway process per block, so it is small beside the fan-out.',
      "The time the log adds: from the driver's stamp just before `writer.append` to the moment the gateway's reader handed the entry over (both CLOCK_MONOTONIC), per block and gateway process. It includes the time the entry waits for the gateway's event loop: where a gateway falls behind (still fanning out the previous block when the next is appended), that wait dominates it; at the rates it keeps up with, it is the log's own cost (the writer's encoding, the Lua append, the XREAD reply and its decoding). `blockcast_log_delay_seconds` measures the same with the writer's wall clock in ms, as the gateway exports it. read → fan-out returned is the gateway's synchronous fan-out of the block (the in-process row gives S1's publish call).",
      'The in-process gateway has no Redis: its appends reach the fan-out synchronously, so its latency has no log share; it is pinned like the one process (server core 0, load generators core 1). Its blocks are stamped inside the server, by the loop that publishes them: when it falls behind, a block is stamped when the busy loop gets to it, not when it was due, so its latency leaves out the wait and only its deliveries/s shows it falling behind. The log targets are stamped by the driver, a separate process, when each block is due: their latency counts the wait.',
      `Other work on the machine disturbs the figures: run on a quiet machine for numbers to quote. A round of a log target in which CPU that no measured process and no interrupt work accounts for, plus steal, reached ${DISTURBED_PERCENT}% of a core was run again (at most ${MAX_ATTEMPTS} attempts, ${plan.maxReruns} reruns in all) and the least disturbed attempt kept; this run had ${reruns} rerun(s) (the attempts left out are in the JSON, \`disturbedRounds\`). The in-process rounds are not checked (bench/lib/round.ts does not measure the machine).`,
      "CPU per delivery counts the processes (utime + stime). The kernel charges the interrupt work of loopback delivery (softirq) to no process when it accounts interrupt time apart, as here: \"interrupts CPU %\" is the whole machine's irq + softirq over the span, shared by the gateways' sends and the load generators' receives.",
    ],
    rounds,
  };
  writeFileSync(join(RESULTS_DIR, 'scale-out.md'), markdown(results));
  writeFileSync(join(RESULTS_DIR, 'scale-out.json'), `${JSON.stringify(results, null, 2)}\n`);
  log(`\n${markdown(results)}`);
  log(`wrote ${join(RESULTS_DIR, 'scale-out.md')} and scale-out.json in ${Math.round(results.durationSec)} s`);
}

await main();
