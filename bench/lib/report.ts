/**
 * Turns rounds into figures (pooled over the rounds of each point and server), checks them
 * against the targets of issue 3, and writes `bench/results/latest.md` and `latest.json`.
 */
import { writeFileSync } from 'node:fs';
import type { MicroResult } from '../micro.ts';
import type { MachineDescription } from './proc.ts';
import type { IdleResult, Point, RoundResult, ServerKind } from './round.ts';

/** The figures of one point for one server, over all its rounds. */
export interface Figures {
  readonly scenario: string;
  readonly label: string;
  readonly kind: ServerKind;
  readonly rounds: number;
  readonly conns: number;
  readonly subscribed: number;
  readonly slowConns: number;
  readonly blocks: number;
  readonly framesPerBlock: number;
  readonly bytesPerFrame: number;
  readonly deliveries: number;
  readonly deliveriesPerSec: number;
  readonly cpuUsPerDelivery: number;
  readonly userUsPerDelivery: number;
  readonly systemUsPerDelivery: number;
  /** Deliveries one core could make at this CPU cost: 1e6 / cpuUsPerDelivery. */
  readonly capacityPerCoreSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly syncP50Ms: number;
  readonly serverCpuPercent: number;
  readonly clientCpuPercent: number;
  readonly serverRssMB: number;
  readonly serverPeakRssMB: number;
  readonly missing: number;
  readonly duplicates: number;
  readonly serverSlowCloses: number;
  readonly clientCloses4008: number;
  readonly clientClosesWithoutFrame: number;
}

/** One target of issue 3 and how the run did against it. */
export interface TargetCheck {
  readonly target: string;
  readonly measured: string;
  readonly ratio: number | undefined;
  readonly limit: string;
  readonly met: boolean;
}

/** Everything a run produced. */
export interface RunResults {
  readonly startedAt: string;
  readonly mode: 'full' | 'quick';
  readonly durationSec: number;
  readonly machine: MachineDescription;
  readonly figures: readonly Figures[];
  readonly idle: readonly IdleResult[];
  readonly micro: readonly MicroResult[];
  readonly targets: readonly TargetCheck[];
  readonly notes: readonly string[];
  readonly rounds: readonly (RoundResult & { readonly label: string })[];
}

/** The `p`th percentile (nearest rank) of `values`, unsorted; NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

/** A distribution of samples, in the unit they came in. */
export interface Distribution {
  readonly samples: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

/** The distribution of the known values (`null`: a sample that never came, left out). */
export function distribution(values: readonly (number | null)[]): Distribution {
  const known = values.filter((v): v is number => v !== null);
  return {
    samples: known.length,
    p50: percentile(known, 50),
    p90: percentile(known, 90),
    p99: percentile(known, 99),
    max: known.length === 0 ? Number.NaN : Math.max(...known),
    mean: known.length === 0 ? Number.NaN : sum(known) / known.length,
  };
}

export function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** Pools the rounds of one point and server. */
export function figuresOf(point: Point, kind: ServerKind, rounds: readonly RoundResult[]): Figures {
  const deliveries = sum(rounds.map((r) => r.deliveries));
  const user = sum(rounds.map((r) => r.serverCpu.userUs));
  const system = sum(rounds.map((r) => r.serverCpu.systemUs));
  const client = sum(rounds.map((r) => r.clientCpu.userUs + r.clientCpu.systemUs));
  const spanMs = sum(rounds.map((r) => r.spanMs));
  const latencies = rounds.flatMap((r) => r.latenciesMs);
  const frames = sum(rounds.map((r) => r.framesHanded));
  const cpuUsPerDelivery = deliveries > 0 ? (user + system) / deliveries : Number.NaN;
  return {
    scenario: point.scenario,
    label: point.label,
    kind,
    rounds: rounds.length,
    conns: point.conns,
    subscribed: Math.min(...rounds.map((r) => r.subscribed)),
    slowConns: Math.max(...rounds.map((r) => r.slowConns)),
    blocks: sum(rounds.map((r) => r.blocks)),
    framesPerBlock: frames / Math.max(1, sum(rounds.map((r) => r.blocks))),
    bytesPerFrame: sum(rounds.map((r) => r.bytesHanded)) / Math.max(1, frames),
    deliveries,
    deliveriesPerSec: spanMs > 0 ? deliveries / (spanMs / 1000) : Number.NaN,
    cpuUsPerDelivery,
    userUsPerDelivery: deliveries > 0 ? user / deliveries : Number.NaN,
    systemUsPerDelivery: deliveries > 0 ? system / deliveries : Number.NaN,
    capacityPerCoreSec: 1e6 / cpuUsPerDelivery,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.length > 0 ? Math.max(...latencies) : Number.NaN,
    syncP50Ms: percentile(
      rounds.flatMap((r) => r.syncMs),
      50,
    ),
    serverCpuPercent: spanMs > 0 ? ((user + system) / 1000 / spanMs) * 100 : Number.NaN,
    clientCpuPercent: spanMs > 0 ? (client / 1000 / spanMs) * 100 : Number.NaN,
    serverRssMB: Math.max(...rounds.map((r) => r.serverRssBytes)) / 2 ** 20,
    serverPeakRssMB: Math.max(...rounds.map((r) => r.serverPeakRssBytes)) / 2 ** 20,
    missing: sum(rounds.map((r) => r.missing)),
    duplicates: sum(rounds.map((r) => r.duplicates)),
    serverSlowCloses: sum(rounds.map((r) => r.serverSlowCloses)),
    clientCloses4008: sum(rounds.map((r) => r.clientCloses4008)),
    clientClosesWithoutFrame: sum(rounds.map((r) => r.clientClosesWithoutFrame)),
  };
}

function fixed(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '–';
}

function thousands(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : '–';
}

const SERVER_NAMES: Record<ServerKind, string> = {
  gateway: 'blockcast',
  ceiling: 'ceiling: raw uWS',
  common: 'common: ws + JSON',
};

/** The main results table, as Markdown. */
export function figuresTable(figures: readonly Figures[]): string {
  const rows = [
    '| scenario | server | subscribers | frames/block | bytes/frame | deliveries/s | server CPU µs/delivery (user+sys) | deliveries/s per core | p50 ms | p99 ms | max ms | server RSS MB | server CPU % | load gen CPU % |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const f of figures) {
    rows.push(
      `| ${f.label} | ${SERVER_NAMES[f.kind]} | ${thousands(f.subscribed)}${f.slowConns > 0 ? ` (${f.slowConns} slow)` : ''} | ${thousands(f.framesPerBlock)} | ${thousands(f.bytesPerFrame)} | ${thousands(f.deliveriesPerSec)} | ${fixed(f.cpuUsPerDelivery, 2)} (${fixed(f.userUsPerDelivery, 2)}+${fixed(f.systemUsPerDelivery, 2)}) | ${thousands(f.capacityPerCoreSec)} | ${fixed(f.p50Ms)} | ${fixed(f.p99Ms)} | ${fixed(f.maxMs)} | ${fixed(f.serverRssMB, 0)} | ${fixed(f.serverCpuPercent, 0)} | ${fixed(f.clientCpuPercent, 0)} |`,
    );
  }
  return rows.join('\n');
}

function slowTable(figures: readonly Figures[]): string {
  const rows = [
    '| scenario | server | readers that stopped | closed with 4008 | ended without a close frame | still open | server peak RSS MB |',
    '|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const f of figures.filter((x) => x.slowConns > 0)) {
    const stopped = f.slowConns * f.rounds;
    const open = stopped - f.clientCloses4008 - f.clientClosesWithoutFrame;
    rows.push(
      `| ${f.label} | ${SERVER_NAMES[f.kind]} | ${stopped} | ${f.clientCloses4008} | ${f.clientClosesWithoutFrame} | ${open} | ${fixed(f.serverPeakRssMB, 0)} |`,
    );
  }
  return rows.join('\n');
}

function idleTable(idle: readonly IdleResult[]): string {
  const rows = [
    '| server | connections hold | connections | RSS before MB | RSS after MB | per connection | watched addresses |',
    '|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const r of idle) {
    rows.push(
      `| ${SERVER_NAMES[r.kind]} | ${r.label} | ${thousands(r.subscribed)} | ${fixed(r.rssBeforeBytes / 2 ** 20)} | ${fixed(r.rssAfterBytes / 2 ** 20)} | ${thousands((r.rssAfterBytes - r.rssBeforeBytes) / Math.max(1, r.subscribed))} B | ${thousands(r.watchedAddresses)} |`,
    );
  }
  return rows.join('\n');
}

function microTable(micro: readonly MicroResult[]): string {
  const rows = ['| case | what | p50 | p99 | mean | runs | facts |', '|---|---|---:|---:|---:|---:|---|'];
  const time = (us: number): string => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(2)} µs`);
  for (const m of micro) {
    const facts =
      m.facts === undefined
        ? ''
        : Object.entries(m.facts)
            .map(([k, v]) => `${k} ${thousands(v)}`)
            .join(', ');
    rows.push(
      `| ${m.name} | ${m.what} | ${time(m.p50Us)} | ${time(m.p99Us)} | ${time(m.meanUs)} | ${m.iterations} | ${facts} |`,
    );
  }
  return rows.join('\n');
}

function targetsTable(targets: readonly TargetCheck[]): string {
  const rows = ['| target (issue 3) | measured | ratio | limit | met |', '|---|---|---:|---:|---|'];
  for (const t of targets) {
    rows.push(
      `| ${t.target} | ${t.measured} | ${t.ratio === undefined ? '' : fixed(t.ratio, 2)} | ${t.limit} | ${t.met ? 'yes' : '**no**'} |`,
    );
  }
  return rows.join('\n');
}

/** The whole Markdown report. */
export function markdown(results: RunResults): string {
  const m = results.machine;
  return [
    '# blockcast benchmark results',
    '',
    `Run ${results.startedAt} (${results.mode}, ${Math.round(results.durationSec)} s) with \`npm run bench${results.mode === 'quick' ? ' -- --quick' : ''}\`.`,
    '',
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Node.js ${m.node}, Linux ${m.kernel}, ${m.cc}, ${m.maxOpenFiles} open files per process.`,
    'Server under test pinned to core 0, load generators (C, epoll) to core 1 (`taskset`); loopback only.',
    'CPU from /proc/<pid>/stat (utime + stime) over the measured run; latency from the server stamping',
    'each block (process.hrtime.bigint, CLOCK_MONOTONIC) to the arrival of its last frame at the load generator.',
    '',
    '## Targets',
    '',
    targetsTable(results.targets),
    '',
    '## Fan-out',
    '',
    figuresTable(results.figures),
    '',
    '## Readers that stop (S3)',
    '',
    slowTable(results.figures),
    '',
    '## Idle cost (S4)',
    '',
    idleTable(results.idle),
    '',
    '## Micro benchmarks (one core, no sockets)',
    '',
    microTable(results.micro),
    '',
    '## Notes',
    '',
    ...results.notes.map((n) => `- ${n}`),
    '',
  ].join('\n');
}

/** Writes `latest.md` and `latest.json` into `dir`. */
export function writeResults(dir: string, results: RunResults): void {
  writeFileSync(`${dir}/latest.md`, markdown(results));
  writeFileSync(`${dir}/latest.json`, `${JSON.stringify(results, null, 2)}\n`);
}
