/**
 * One benchmark round: one server under test (pinned to core 0) and its load generators (pinned
 * to core 1), a warm-up, then a measured run of blocks at a fixed interval. Also the idle-cost
 * measurement of scenario S4. Every wait is bounded.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LineProcess, type Message } from './lineProcess.ts';
import { type CpuTime, cpuDelta, cpuTime, memory } from './proc.ts';
import type { Workload } from './synthetic.ts';

/** The servers compared in every scenario. */
export const SERVER_KINDS = ['gateway', 'ceiling', 'common'] as const;

/** One of {@link SERVER_KINDS}. */
export type ServerKind = (typeof SERVER_KINDS)[number];

/** Connections per load-generator process (the per-process limit is 20,000 open files). */
export const CONNS_PER_CLIENT_PROCESS = 5000;

/** Where the server and the load generator run. */
export const SERVER_CPU = '0';
/** The core of the load generators. */
export const CLIENT_CPU = '1';

/** What the orchestrator needs to run rounds. */
export interface RoundContext {
  readonly root: string;
  readonly loadgen: string;
  readonly buildDir: string;
  /** Distinct source addresses per round, so no two rounds share a TCP 4-tuple. */
  roundCounter: number;
  readonly log: (line: string) => void;
}

/** One measured point of a scenario. */
export interface Point {
  readonly scenario: 'S1' | 'S2' | 'S3' | 'S1-ref';
  readonly label: string;
  readonly conns: number;
  readonly workload: Workload;
  /**
   * Of `conns`, how many stop reading: they connect after the warm-up, subscribe with
   * `slowSubsFile` and read nothing more, so they stall during the measured run.
   */
  readonly slowConns: number;
  readonly slowSubsFile?: string;
  readonly maxBackpressureBytes: number;
  readonly warmupBlocks: number;
  readonly blocks: number;
  readonly intervalMs: number;
  /** The subscribe lines file (one line per connection, or one for all). */
  readonly subsFile: string;
}

/** What one round measured. */
export interface RoundResult {
  readonly kind: ServerKind;
  readonly round: number;
  readonly subscribed: number;
  readonly slowConns: number;
  readonly blocks: number;
  /** Frames received by the reading subscribers in the measured run. */
  readonly deliveries: number;
  /** Frames the server handed to its sockets in the measured run. */
  readonly framesHanded: number;
  readonly bytesHanded: number;
  readonly serverCpu: CpuTime;
  readonly clientCpu: CpuTime;
  /** From the first publish to the last arrival, in ms. */
  readonly spanMs: number;
  /** Block-to-last-reading-subscriber latency of each measured block, in ms (complete blocks only). */
  readonly latenciesMs: readonly number[];
  /** Time each publish call took in the server (match, encode, writes), in ms. */
  readonly syncMs: readonly number[];
  /** Deliveries missing from blocks that reading subscribers should all have had. */
  readonly missing: number;
  readonly duplicates: number;
  readonly serverRssBytes: number;
  readonly serverPeakRssBytes: number;
  /** Slow-consumer closes the server counted (gateway only). */
  readonly serverSlowCloses: number;
  /** Close frames with code 4008 the slow readers found once they read again. */
  readonly clientCloses4008: number;
  /** Slow readers whose connection ended without a close frame. */
  readonly clientClosesWithoutFrame: number;
}

type ClientReport = Message & {
  subscribed: number;
  frames: number;
  duplicates: number;
  closes: { '4008': number; '1001': number; other: number; eof: number };
  blocks: Array<[number, number, string, string]>;
};

interface PublishRecord {
  number: number;
  publishedNs: string;
  syncUs: number;
  frames: number;
  bytes: number;
}

function serverProcess(ctx: RoundContext, kind: ServerKind, workload: Workload, maxBackpressureBytes: number) {
  const args = JSON.stringify({ workload, maxBackpressureBytes });
  return new LineProcess(
    `${kind} server`,
    'taskset',
    [
      '-c',
      SERVER_CPU,
      process.execPath,
      '--expose-gc',
      '--import',
      'tsx/esm',
      join(ctx.root, 'bench', 'servers', `${kind}Server.ts`),
      args,
    ],
    ctx.root,
  );
}

async function startClients(
  ctx: RoundContext,
  kind: ServerKind,
  port: number,
  conns: number,
  subsFile: string,
  slow = false,
): Promise<LineProcess[]> {
  const round = ++ctx.roundCounter;
  const clients: LineProcess[] = [];
  for (let first = 0, i = 0; first < conns; first += CONNS_PER_CLIENT_PROCESS, i++) {
    const count = Math.min(CONNS_PER_CLIENT_PROCESS, conns - first);
    const args = [
      '-c',
      CLIENT_CPU,
      ctx.loadgen,
      '--port',
      String(port),
      '--path',
      kind === 'common' ? '/v1?encoding=json' : '/v1',
      '--conns',
      String(count),
      '--subs',
      subsFile,
      '--first-line',
      String(first),
      '--src',
      `127.0.${1 + (round % 250)}.${1 + i}`,
      // Readers that stop: every connection of this process, as soon as it is subscribed.
      '--slow-every',
      slow ? '1' : '0',
      '--max-seconds',
      '900',
      '--connect-timeout-sec',
      '60',
    ];
    clients.push(new LineProcess(`${slow ? 'slow ' : ''}load generator ${i}`, 'taskset', args, ctx.root));
  }
  const ready = await Promise.all(clients.map((c) => c.next((m) => m.event === 'ready', 90_000)));
  const subscribed = ready.reduce((sum, m) => sum + Number(m['subscribed']), 0);
  if (subscribed < conns) {
    ctx.log(`  warning: ${subscribed} of ${conns} connections subscribed (${JSON.stringify(ready)})`);
  }
  return clients;
}

async function clientStats(clients: readonly LineProcess[]): Promise<Message[]> {
  return Promise.all(clients.map((c) => c.request('stats', 'stats', 10_000)));
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
    const frames = (await clientStats(clients)).reduce((sum, m) => sum + Number(m['frames']), 0) - base;
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

function sumCpu(times: readonly CpuTime[]): CpuTime {
  return times.reduce((a, b) => ({ userUs: a.userUs + b.userUs, systemUs: a.systemUs + b.systemUs }), {
    userUs: 0,
    systemUs: 0,
  });
}

/** Runs one round of `point` against server `kind`. */
export async function runRound(ctx: RoundContext, point: Point, kind: ServerKind, round: number): Promise<RoundResult> {
  const server = serverProcess(ctx, kind, point.workload, point.maxBackpressureBytes);
  let clients: LineProcess[] = [];
  let slowClients: LineProcess[] = [];
  try {
    const listening = await server.next((m) => m.event === 'listening', 60_000);
    const port = Number(listening['port']);
    clients = await startClients(ctx, kind, port, point.conns - point.slowConns, point.subsFile);
    const publishTimeoutMs = 60_000 + (point.warmupBlocks + point.blocks) * point.intervalMs * 4;

    // Warm-up: JIT, buffers and connections settle; not measured.
    let next = 1;
    await server.request({ cmd: 'prepare', first: next, count: point.warmupBlocks }, 'prepared', 120_000);
    next += point.warmupBlocks;
    const base0 = (await clientStats(clients)).reduce((sum, m) => sum + Number(m['frames']), 0);
    const warm = await server.request({ cmd: 'publish', intervalMs: point.intervalMs }, 'published', publishTimeoutMs);
    const warmFrames = (warm['records'] as PublishRecord[]).reduce((sum, r) => sum + r.frames, 0);
    await converge(clients, base0, warmFrames, 500, 30_000);

    // Readers that will stop: connected and subscribed now, so they stall during the measured run.
    if (point.slowConns > 0) {
      slowClients = await startClients(ctx, kind, port, point.slowConns, point.slowSubsFile ?? point.subsFile, true);
    }

    // Measured run.
    await server.request({ cmd: 'prepare', first: next, count: point.blocks }, 'prepared', 120_000);
    const base = (await clientStats(clients)).reduce((sum, m) => sum + Number(m['frames']), 0);
    const serverCpu0 = cpuTime(server.pid);
    const clientCpu0 = clients.map((c) => cpuTime(c.pid));
    const published = await server.request(
      { cmd: 'publish', intervalMs: point.intervalMs },
      'published',
      publishTimeoutMs,
    );
    const records = published['records'] as PublishRecord[];
    const framesHanded = records.reduce((sum, r) => sum + r.frames, 0);
    const bytesHanded = records.reduce((sum, r) => sum + r.bytes, 0);
    await converge(clients, base, framesHanded, 1000, 60_000);
    const serverCpu = cpuDelta(serverCpu0, cpuTime(server.pid));
    const clientCpu = sumCpu(clients.map((c, i) => cpuDelta(clientCpu0[i] as CpuTime, cpuTime(c.pid))));
    const mem = memory(server.pid);
    const serverStats = await server.request({ cmd: 'stats' }, 'stats');

    // Readers that stopped read again: each should find the server's close frame after what it was sent.
    let closes4008 = 0;
    let closesWithoutFrame = 0;
    let slowSubscribed = 0;
    if (slowClients.length > 0) {
      await Promise.all(slowClients.map((c) => c.request('drain', 'draining', 10_000)));
      for (let i = 0; i < 50; i++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        const stats = await clientStats(slowClients);
        if (stats.every((m) => Number(m['open']) === 0)) break;
      }
      for (const m of await clientStats(slowClients)) {
        const closes = m['closes'] as ClientReport['closes'];
        closes4008 += closes['4008'];
        closesWithoutFrame += closes.eof + closes.other + closes['1001'];
        slowSubscribed += Number(m['subscribed']);
      }
    }
    const reports = (await Promise.all(clients.map((c) => c.request('report', 'report', 30_000)))) as ClientReport[];
    const readers = reports.reduce((sum, r) => sum + r.subscribed, 0);
    const subscribed = readers + slowSubscribed;
    const slowConns = slowSubscribed;

    // Per block: frames and the last arrival over every load generator.
    const arrivals = new Map<number, { count: number; last: bigint }>();
    for (const r of reports) {
      for (const [number, count, , last] of r.blocks) {
        const entry = arrivals.get(number);
        const lastNs = BigInt(last);
        if (entry === undefined) arrivals.set(number, { count, last: lastNs });
        else {
          entry.count += count;
          if (lastNs > entry.last) entry.last = lastNs;
        }
      }
    }
    const latenciesMs: number[] = [];
    let missing = 0;
    let lastArrival = 0n;
    for (const record of records) {
      const arrival = arrivals.get(record.number);
      // Every reading subscriber gets every block in S1 and S3; in S2 the server knows who matched.
      const expected = point.workload.channel === 'blocks' ? readers : record.frames;
      const count = arrival?.count ?? 0;
      missing += Math.max(0, expected - count);
      if (arrival === undefined || count < expected) continue;
      latenciesMs.push(Number(arrival.last - BigInt(record.publishedNs)) / 1e6);
      if (arrival.last > lastArrival) lastArrival = arrival.last;
    }
    const first = records[0];
    const spanMs =
      first === undefined || lastArrival === 0n ? 0 : Number(lastArrival - BigInt(first.publishedNs)) / 1e6;
    const deliveries = reports.reduce((sum, r) => sum + r.frames, 0) - base;
    return {
      kind,
      round,
      subscribed,
      slowConns,
      blocks: records.length,
      deliveries,
      framesHanded,
      bytesHanded,
      serverCpu,
      clientCpu,
      spanMs,
      latenciesMs,
      syncMs: records.map((r) => r.syncUs / 1000),
      missing,
      duplicates: reports.reduce((sum, r) => sum + r.duplicates, 0),
      serverRssBytes: mem.rssBytes,
      serverPeakRssBytes: mem.peakRssBytes,
      serverSlowCloses: Number(serverStats['slowConsumerCloses'] ?? 0),
      clientCloses4008: closes4008,
      clientClosesWithoutFrame: closesWithoutFrame,
    };
  } finally {
    await Promise.all([...clients, ...slowClients].map((c) => c.stop()));
    await server.stop();
  }
}

/** Resident memory of an idle server before and after `conns` subscribed connections. */
export interface IdleResult {
  readonly kind: ServerKind;
  readonly label: string;
  readonly conns: number;
  readonly subscribed: number;
  /** Watched (subscription, address) pairs the server holds. */
  readonly watchedAddresses: number;
  readonly rssBeforeBytes: number;
  readonly rssAfterBytes: number;
}

/** Scenario S4: connects `conns` idle subscribers and measures the server's RSS after GC. */
export async function runIdle(
  ctx: RoundContext,
  kind: ServerKind,
  label: string,
  conns: number,
  workload: Workload,
  lines: readonly string[],
): Promise<IdleResult> {
  const subsFile = join(ctx.buildDir, `idle-${label.replace(/\W+/g, '-')}.txt`);
  writeFileSync(subsFile, `${lines.join('\n')}\n`);
  const server = serverProcess(ctx, kind, workload, 4_194_304);
  let clients: LineProcess[] = [];
  try {
    const listening = await server.next((m) => m.event === 'listening', 60_000);
    const before = await server.request({ cmd: 'rss' }, 'rss');
    clients = await startClients(ctx, kind, Number(listening['port']), conns, subsFile);
    const stats = await clientStats(clients);
    const after = await server.request({ cmd: 'rss' }, 'rss');
    const serverStats = await server.request({ cmd: 'stats' }, 'stats');
    return {
      kind,
      label,
      conns,
      subscribed: stats.reduce((sum, m) => sum + Number(m['subscribed']), 0),
      watchedAddresses: Number(serverStats['watchedAddresses'] ?? 0),
      rssBeforeBytes: Number(before['rssBytes']),
      rssAfterBytes: Number(after['rssBytes']),
    };
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    await server.stop();
  }
}
