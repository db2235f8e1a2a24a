/**
 * The benchmark suite of issue 3: fan-out of the real gateway against two baselines in the same
 * run, interleaved: the ceiling (raw uWebSockets.js publish of pre-encoded frames) and the common
 * approach (`ws` and `JSON.stringify` per client).
 *
 *   npm run bench                 every scenario (at most 10 minutes)
 *   npm run bench -- --quick      smaller sizes (at most 2 minutes)
 *   npm run bench -- --only S1,S4 some scenarios (S1, S2, S3, S4, micro)
 *   npm run bench -- --s1 10000 --rounds 3   other S1 sizes, other number of rounds
 *
 * Writes bench/results/latest.md and bench/results/latest.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LineProcess } from './lib/lineProcess.ts';
import { describeMachine } from './lib/proc.ts';
import { type Figures, figuresOf, markdown, type RunResults, type TargetCheck, writeResults } from './lib/report.ts';
import {
  type IdleResult,
  type Point,
  type RoundContext,
  type RoundResult,
  runIdle,
  runRound,
  SERVER_CPU,
  SERVER_KINDS,
  type ServerKind,
} from './lib/round.ts';
import { subscribeLines, type Workload, watchLists } from './lib/synthetic.ts';
import { BUILD_DIR, buildLoadgen, ROOT, requireTools, rotate } from './lib/tools.ts';
import type { MicroResult } from './micro.ts';
import { ACTIVITY_WORKLOAD } from './micro.ts';

const RESULTS_DIR = join(ROOT, 'bench', 'results');

/** Sizes and durations of a run. */
interface Plan {
  readonly mode: 'full' | 'quick';
  readonly s1Sizes: readonly number[];
  readonly s2Conns: number;
  readonly s3Conns: number;
  readonly s4Conns: number;
  /** Rounds per point and server, interleaved. */
  readonly rounds: number;
  readonly warmupBlocks: number;
  readonly blocks: number;
  readonly s3Blocks: number;
  readonly intervalMs: number;
}

const FULL: Plan = {
  mode: 'full',
  s1Sizes: [1000, 5000, 10_000],
  s2Conns: 10_000,
  s3Conns: 10_000,
  s4Conns: 10_000,
  rounds: 2,
  warmupBlocks: 4,
  blocks: 32,
  s3Blocks: 48,
  intervalMs: 250,
};

const QUICK: Plan = {
  mode: 'quick',
  s1Sizes: [1000, 5000],
  s2Conns: 5000,
  s3Conns: 2000,
  s4Conns: 2000,
  rounds: 1,
  warmupBlocks: 2,
  blocks: 12,
  s3Blocks: 20,
  intervalMs: 250,
};

/** Send-buffer limit of scenario S3 (the smallest the configuration allows), so readers that stop are closed within the run. */
const S3_MAX_BACKPRESSURE_BYTES = 65_536;
/** One connection in this many stops reading in S3 (1%). */
const S3_SLOW_SHARE = 100;
/** Addresses per connection of the S4 measurement of the per-address cost. */
const S4_ADDRESSES = 20;

const BLOCKS_WORKLOAD: Workload = {
  ...ACTIVITY_WORKLOAD,
  channel: 'blocks',
  txPerBlock: 150,
  transfersPerBlock: 0,
};

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function runMicroChild(quick: boolean): Promise<MicroResult[]> {
  const child = new LineProcess(
    'micro',
    'taskset',
    [
      '-c',
      SERVER_CPU,
      process.execPath,
      '--expose-gc',
      '--import',
      'tsx/esm',
      join(ROOT, 'bench', 'micro.ts'),
      '--json',
      ...(quick ? ['--quick'] : []),
    ],
    ROOT,
  );
  try {
    const message = await child.next((m) => m.event === 'micro', 120_000);
    return message['results'] as MicroResult[];
  } finally {
    await child.stop();
  }
}

function find(figures: readonly Figures[], label: string, kind: ServerKind): Figures | undefined {
  return figures.find((f) => f.label === label && f.kind === kind);
}

function checkTargets(
  plan: Plan,
  figures: readonly Figures[],
  idle: readonly IdleResult[],
  micro: readonly MicroResult[],
): TargetCheck[] {
  const targets: TargetCheck[] = [];
  const ratio = (target: string, a: number, b: number, unit: string, limit: number, digits = 2): void => {
    const r = a / b;
    targets.push({
      target,
      measured: `${a.toFixed(digits)} vs ${b.toFixed(digits)} ${unit}`,
      ratio: r,
      limit: `≤ ${limit}`,
      met: Number.isFinite(r) && r <= limit,
    });
  };
  const largest = Math.max(...plan.s1Sizes);
  const s1 = `S1 ${largest.toLocaleString('en-US')}`;
  const g = find(figures, s1, 'gateway');
  const c = find(figures, s1, 'ceiling');
  const w = find(figures, s1, 'common');
  if (g !== undefined && c !== undefined && w !== undefined) {
    ratio(`${s1}: CPU per delivery, gateway / ceiling`, g.cpuUsPerDelivery, c.cpuUsPerDelivery, 'µs', 1.15);
    ratio(`${s1}: CPU per delivery, gateway / common`, g.cpuUsPerDelivery, w.cpuUsPerDelivery, 'µs', 0.6);
    ratio(`${s1}: p99 latency, gateway / ceiling`, g.p99Ms, c.p99Ms, 'ms', 1.2, 1);
    ratio(`${s1}: p99 latency, gateway / common`, g.p99Ms, w.p99Ms, 'ms', 0.5, 1);
  }
  const s2 = figures.find((f) => f.scenario === 'S2' && f.kind === 'gateway');
  const ref = figures.find((f) => f.scenario === 'S1-ref' && f.kind === 'gateway');
  if (s2 !== undefined && ref !== undefined) {
    ratio(
      `S2: whole block (match + encode + send, p50 of the publish call) / S1 with the same frames (${Math.round(ref.framesPerBlock)})`,
      s2.syncP50Ms,
      ref.syncP50Ms,
      'ms',
      1.5,
    );
    ratio('S2: block to last subscriber p50 / S1 with the same frames', s2.p50Ms, ref.p50Ms, 'ms', 1.5, 1);
  }
  const match = micro.find((m) => m.name === 'match + encode 300 tx');
  if (match !== undefined) {
    targets.push({
      target:
        'matching + encoding a 300-tx block against 100k watched addresses (p50; frames built per subscriber not included, see publishBlock)',
      measured: `${(match.p50Us / 1000).toFixed(2)} ms`,
      ratio: undefined,
      limit: '< 2 ms',
      met: match.p50Us < 2000,
    });
  }
  const s3 = figures.find((f) => f.scenario === 'S3' && f.kind === 'gateway');
  if (s3 !== undefined) {
    const slow = s3.slowConns * s3.rounds;
    targets.push({
      target: 'S3: slow readers closed with 4008 (seen by the reader once it reads again)',
      measured: `${s3.clientCloses4008} of ${slow} (server counted ${s3.serverSlowCloses}; ${s3.clientClosesWithoutFrame} without a close frame)`,
      ratio: undefined,
      limit: `${slow}`,
      met: slow > 0 && s3.clientCloses4008 === slow,
    });
    const s1At = find(figures, `S1 ${s3.conns.toLocaleString('en-US')}`, 'gateway');
    if (s1At !== undefined) {
      ratio(
        `S3: the other readers' p99 / S1 ${s3.conns.toLocaleString('en-US')} p99`,
        s3.p99Ms,
        s1At.p99Ms,
        'ms',
        1.1,
        1,
      );
      const bound = s1At.serverPeakRssMB + (s3.slowConns * 2 * S3_MAX_BACKPRESSURE_BYTES) / 2 ** 20 + 32;
      targets.push({
        target: 'S3: server RSS bounded (peak, vs S1 peak + 2 × send-buffer limit per slow reader + 32 MB)',
        measured: `${s3.serverPeakRssMB.toFixed(0)} MB vs S1 ${s1At.serverPeakRssMB.toFixed(0)} MB`,
        ratio: undefined,
        limit: `≤ ${bound.toFixed(0)} MB`,
        met: s3.serverPeakRssMB <= bound,
      });
    }
  }
  const perConn = idle.find((r) => r.kind === 'gateway' && r.label === 'a blocks subscription');
  if (perConn !== undefined) {
    const bytes = (perConn.rssAfterBytes - perConn.rssBeforeBytes) / Math.max(1, perConn.subscribed);
    const raw = idle.find((r) => r.kind === 'ceiling');
    const rawBytes =
      raw === undefined ? undefined : (raw.rssAfterBytes - raw.rssBeforeBytes) / Math.max(1, raw.subscribed);
    targets.push({
      target: 'S4: RSS per idle connection holding a subscription',
      measured: `${Math.round(bytes)} B${rawBytes === undefined ? '' : ` (raw uWS ${Math.round(rawBytes)} B)`}`,
      ratio: undefined,
      limit: '≤ 4,096 B',
      met: bytes <= 4096,
    });
  }
  const one = idle.find((r) => r.kind === 'gateway' && r.label === 'an activity subscription of 1 address');
  const many = idle.find(
    (r) => r.kind === 'gateway' && r.label.startsWith(`an activity subscription of ${S4_ADDRESSES}`),
  );
  if (one !== undefined && many !== undefined) {
    const bytes = (many.rssAfterBytes - one.rssAfterBytes) / Math.max(1, many.watchedAddresses - one.watchedAddresses);
    targets.push({
      target: 'S4: RSS per watched address',
      measured: `${Math.round(bytes)} B`,
      ratio: undefined,
      limit: '≤ 150 B',
      met: bytes <= 150,
    });
  }
  return targets;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const base = argv.includes('--quick') ? QUICK : FULL;
  const option = (name: string): string | undefined => {
    const at = argv.indexOf(name);
    return at >= 0 ? argv[at + 1] : undefined;
  };
  const sizes = option('--s1');
  const roundsArg = option('--rounds');
  const plan: Plan = {
    ...base,
    ...(sizes === undefined ? {} : { s1Sizes: sizes.split(',').map(Number) }),
    ...(roundsArg === undefined ? {} : { rounds: Number(roundsArg) }),
  };
  const onlyArg = option('--only');
  const only = onlyArg === undefined ? undefined : new Set(onlyArg.split(','));
  const wants = (s: string): boolean => only === undefined || only.has(s);
  const started = Date.now();
  requireTools('bench', [
    ['taskset', ['-V']],
    ['cc', ['--version']],
  ]);
  const loadgen = buildLoadgen();
  mkdirSync(RESULTS_DIR, { recursive: true });
  const ctx: RoundContext = { root: ROOT, loadgen, buildDir: BUILD_DIR, roundCounter: 0, log };
  const machine = describeMachine();
  log(`bench (${plan.mode}): ${machine.cpuModel}, ${machine.cores} cores, Node.js ${machine.node}`);

  const micro = wants('micro') ? await runMicroChild(plan.mode === 'quick') : [];
  for (const m of micro) log(`  micro ${m.name}: p50 ${m.p50Us.toFixed(1)} µs`);

  const rounds: Array<RoundResult & { label: string }> = [];
  const figures: Figures[] = [];
  const runPoint = async (points: readonly Point[], kinds: (p: Point) => readonly ServerKind[]): Promise<void> => {
    const results = new Map<string, RoundResult[]>();
    for (let round = 0; round < plan.rounds; round++) {
      for (const point of points) {
        for (const kind of rotate(kinds(point), round)) {
          log(`${point.label} · ${kind} · round ${round + 1}/${plan.rounds}`);
          const result = await runRound(ctx, point, kind, round);
          log(
            `  ${result.deliveries} deliveries, ${((result.serverCpu.userUs + result.serverCpu.systemUs) / Math.max(1, result.deliveries)).toFixed(2)} µs/delivery, p50 ${percentileOf(result.latenciesMs, 50).toFixed(1)} ms, max ${Math.max(0, ...result.latenciesMs).toFixed(1)} ms, missing ${result.missing}`,
          );
          rounds.push({ ...result, label: point.label });
          const key = `${point.label}|${kind}`;
          results.set(key, [...(results.get(key) ?? []), result]);
        }
      }
    }
    for (const point of points) {
      for (const kind of kinds(point)) {
        const list = results.get(`${point.label}|${kind}`);
        if (list !== undefined) figures.push(figuresOf(point, kind, list));
      }
    }
  };

  const blocksSubs = join(BUILD_DIR, 'subs-blocks.txt');
  writeFileSync(blocksSubs, `${subscribeLines(BLOCKS_WORKLOAD, 1).join('\n')}\n`);
  const point = (scenario: Point['scenario'], label: string, conns: number, extra: Partial<Point> = {}): Point => ({
    scenario,
    label,
    conns,
    workload: BLOCKS_WORKLOAD,
    slowConns: 0,
    maxBackpressureBytes: 4_194_304,
    warmupBlocks: plan.warmupBlocks,
    blocks: plan.blocks,
    intervalMs: plan.intervalMs,
    subsFile: blocksSubs,
    ...extra,
  });

  if (wants('S1')) {
    await runPoint(
      plan.s1Sizes.map((n) => point('S1', `S1 ${n.toLocaleString('en-US')}`, n)),
      () => SERVER_KINDS,
    );
  }

  if (wants('S2')) {
    const activitySubs = join(BUILD_DIR, 'subs-activity.txt');
    writeFileSync(activitySubs, `${subscribeLines(ACTIVITY_WORKLOAD, plan.s2Conns).join('\n')}\n`);
    const s2 = point(
      'S2',
      `S2 ${plan.s2Conns.toLocaleString('en-US')} × ${ACTIVITY_WORKLOAD.addressesPerSubscriber}`,
      plan.s2Conns,
      {
        workload: ACTIVITY_WORKLOAD,
        subsFile: activitySubs,
      },
    );
    await runPoint([s2], () => SERVER_KINDS);
    // S1 with as many subscribers as S2 has frames per block, for the "same number of frames" target.
    const frames = figures.find((f) => f.scenario === 'S2' && f.kind === 'gateway')?.framesPerBlock ?? 0;
    if (frames > 0) {
      const n = Math.round(frames);
      await runPoint([point('S1-ref', `S1 ${n.toLocaleString('en-US')} (S2's frames)`, n)], () => ['gateway']);
    }
  }

  if (wants('S3')) {
    // The readers that stop take full blocks (about 45 kB a message), so that the kernel's socket
    // buffers fill within a few blocks; they also ask for a small window and segment size.
    const slowSubs = join(BUILD_DIR, 'subs-full.txt');
    writeFileSync(slowSubs, `${JSON.stringify({ op: 'subscribe', id: 1, channel: 'blocks', full: true })}\n`);
    await runPoint(
      [
        point('S3', `S3 ${plan.s3Conns.toLocaleString('en-US')}, 1% stop reading`, plan.s3Conns, {
          slowConns: plan.s3Conns / S3_SLOW_SHARE,
          slowSubsFile: slowSubs,
          maxBackpressureBytes: S3_MAX_BACKPRESSURE_BYTES,
          blocks: plan.s3Blocks,
        }),
      ],
      () => SERVER_KINDS,
    );
  }

  const idle: IdleResult[] = [];
  if (wants('S4')) {
    const n = plan.s4Conns;
    const uniform: Workload = { ...ACTIVITY_WORKLOAD, universe: 100_000_000, zipfExponent: 0 };
    const blocksLine = subscribeLines(BLOCKS_WORKLOAD, 1);
    const activity = (addresses: number): string[] =>
      watchLists({ ...uniform, addressesPerSubscriber: addresses }, n).map((list) =>
        JSON.stringify({ op: 'subscribe', id: 1, channel: 'activity', addresses: list }),
      );
    const cases: Array<[ServerKind, string, Workload, string[]]> = [
      ['gateway', 'a blocks subscription', BLOCKS_WORKLOAD, blocksLine],
      ['ceiling', 'a blocks subscription', BLOCKS_WORKLOAD, blocksLine],
      ['common', 'a blocks subscription', BLOCKS_WORKLOAD, blocksLine],
      ['gateway', 'an activity subscription of 1 address', uniform, activity(1)],
      ['gateway', `an activity subscription of ${S4_ADDRESSES} addresses`, uniform, activity(S4_ADDRESSES)],
    ];
    for (const [kind, label, workload, lines] of cases) {
      log(`S4 ${n.toLocaleString('en-US')} idle · ${kind} · ${label}`);
      const result = await runIdle(ctx, kind, label, n, workload, lines);
      log(
        `  ${Math.round((result.rssAfterBytes - result.rssBeforeBytes) / Math.max(1, result.subscribed))} B per connection`,
      );
      idle.push(result);
    }
  }

  const targets = checkTargets(plan, figures, idle, micro);
  const results: RunResults = {
    startedAt: new Date(started).toISOString(),
    mode: plan.mode,
    durationSec: (Date.now() - started) / 1000,
    machine,
    figures,
    idle,
    micro,
    targets,
    notes: [
      `Blocks arrive every ${plan.intervalMs} ms; ${plan.warmupBlocks} warm-up blocks, then ${plan.blocks} measured blocks per round (${plan.s3Blocks} in S3); ${plan.rounds} round(s) per point and server, servers interleaved (order rotated per round). Figures pool the rounds.`,
      'deliveries/s is what the run offered and got (subscribers × 4 blocks/s); "deliveries/s per core" is the capacity the CPU cost allows: 1e6 / (server CPU µs per delivery).',
      `The block message is the protocol's \`block\` message of a 150-transaction block (full: false): about ${Math.round(find(figures, `S1 ${Math.max(...plan.s1Sizes).toLocaleString('en-US')}`, 'gateway')?.bytesPerFrame ?? 0)} bytes of MessagePack (the ceiling sends the same bytes; the common approach sends it as JSON, about 1.3 × larger).`,
      `S2: ${plan.s2Conns.toLocaleString('en-US')} connections watch ${ACTIVITY_WORKLOAD.addressesPerSubscriber} addresses each, drawn with Zipf popularity (exponent ${ACTIVITY_WORKLOAD.zipfExponent}) from ${ACTIVITY_WORKLOAD.universe.toLocaleString('en-US')} addresses; blocks hold ${ACTIVITY_WORKLOAD.txPerBlock} transactions and ${ACTIVITY_WORKLOAD.transfersPerBlock} ERC-20 transfers whose from/to are drawn the same way. The ceiling writes frames built before the publish time to exactly the matched sockets; the common approach checks every client's addresses against every event.`,
      `S3: 1% of the connections (a separate load generator, connected after the warm-up) subscribe to full blocks (about 45 kB a message) and read nothing more; they ask for a 4 KB receive buffer and a 536-byte segment size, because on loopback the kernel otherwise buffers over a megabyte per socket (with the ~400-byte header message a reader that stops would be buffered by the kernel alone for many minutes). The send-buffer limit is ${S3_MAX_BACKPRESSURE_BYTES.toLocaleString('en-US')} bytes in the gateway and the ceiling (uWS maxBackpressure + closeOnBackpressureLimit); the common approach has none. After the run those readers read again and count the close frames they find. p50/p99/max are over the readers that keep reading.`,
      `S4: RSS after GC (server's own process.memoryUsage) before and after ${plan.s4Conns.toLocaleString('en-US')} idle subscribed connections; the per-address cost compares ${S4_ADDRESSES} addresses per connection with 1 (distinct random addresses, the costly case).`,
      'Other work on the machine disturbs the figures: run on a quiet machine for numbers to quote.',
    ],
    rounds,
  };
  writeResults(RESULTS_DIR, results);
  log(`\n${markdown(results)}`);
  log(`wrote ${join(RESULTS_DIR, 'latest.md')} and latest.json in ${Math.round(results.durationSec)} s`);
}

function percentileOf(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

await main();
