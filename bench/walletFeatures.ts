/**
 * Wallet features, off against on, in one run: internal transfers (from the node's call traces)
 * and token metadata (symbol, decimals, name) on the events of an `activity` subscription.
 *
 * 1. Fan-out per block on the S2 workload (no sockets): 10,000 subscriptions × 10 addresses
 *    (100,000 watched addresses, Zipf popularity), blocks of 300 transactions + 300 ERC-20
 *    transfers. "on" is the same blocks with metadata on every transfer (one of 50 tokens) and
 *    internal transfers added. Off and on alternate block by block, each block a fresh object (no
 *    cache of a previous block helps it).
 * 2. Ingest against a real anvil: two gateways (`src/main.ts`) follow the same node at once, one
 *    with `--traces off --token-metadata off`, one with the defaults (traces `auto`, metadata
 *    `on`). Blocks with token transfers, splitter calls (internal transfers) and plain ETH
 *    transfers, then blocks of plain ETH transfers only (never traced). Per block: from just
 *    before `evm_mine` to the `activity` frame on a client of each gateway (one clock); per phase,
 *    the gateways' RPC requests by method, trace time, CPU, from `/metrics` and /proc.
 *
 *   npm run bench:wallet
 *   npm run bench:wallet -- --quick        (fewer blocks: a check that it runs)
 *
 * Writes bench/results/wallet-features.md and .json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RawData, WebSocket } from 'ws';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { EVENT_KINDS } from '../src/domain/types.ts';
import { DeliveryLedger } from '../src/fanout/DeliveryLedger.ts';
import type { EncodedValue } from '../src/fanout/encode.ts';
import { Fanout, type Peer } from '../src/fanout/Fanout.ts';
import { encodedActivity, encodedValues, matchActivity } from '../src/fanout/matchActivity.ts';
import { SubscriptionIndex } from '../src/index/SubscriptionIndex.ts';
import { rpc } from '../test/helpers/chain.ts';
import { artifact } from '../test/helpers/contracts.ts';
import { type GatewayProcess, startGateway } from '../test/helpers/gateway.ts';
import { Arrivals } from './lib/arrivals.ts';
import { type Cleanups, cleanupOnExit } from './lib/cleanups.ts';
import { type CpuTime, cpuDelta, cpuTime, describeMachine } from './lib/proc.ts';
import { type Distribution, distribution } from './lib/report.ts';
import {
  BENCH_CHAIN_ID,
  createBlockSource,
  createRandom,
  SYNTHETIC_TOKENS,
  type Workload,
  watchLists,
} from './lib/synthetic.ts';
import { ACTIVITY_WORKLOAD } from './micro.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS_DIR = join(ROOT, 'bench', 'results');
const QUICK = process.argv.includes('--quick');

/** What one run does; every loop below is bounded by these counts and by `maxRunMs`. */
const PLAN = {
  quick: QUICK,
  fanout: {
    subscriptions: 10_000,
    internalPerBlock: 100,
    /** Blocks of each variant timed (after `warmupBlocks` untimed ones). */
    blocks: QUICK ? 40 : 300,
    warmupBlocks: QUICK ? 10 : 30,
    /** The fan-out part stops after this, in ms, with what it has. */
    maxMs: 120_000,
  },
  ingest: {
    /** Blocks with code mined before measuring: tokens looked up, trace method found out, JIT warm. */
    warmupBlocks: 10,
    codeBlocks: QUICK ? 20 : 100,
    plainBlocks: QUICK ? 20 : 100,
    tokens: 5,
    /** Per block with code: ERC-20 transfers, `Splitter.split` calls, plain ETH transfers. */
    tokenTransfersPerBlock: 20,
    splitterCallsPerBlock: 5,
    plainTransfersPerBlock: 10,
    /** Payees of one `split` call: the three watched ones and one nobody watches. */
    payeesPerSplit: 4,
    pollIntervalMs: 50,
    /** Pause after both clients have a block, before the next is mined: `gapMs` plus up to `jitterMs`. */
    gapMs: 20,
    jitterMs: 10,
    /** How long a frame may take before its block counts as lost, in ms. */
    arrivalTimeoutMs: 10_000,
    seed: 0x3a11e7,
  },
  /** The whole run stops (with an error) after this, in ms. */
  maxRunMs: 900_000,
};

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

// ---- figures ----

function fixed(n: number, digits = 2): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

function signed(n: number, digits = 2): string {
  return Number.isFinite(n) ? `${n >= 0 ? '+' : ''}${n.toFixed(digits)}` : '-';
}

/** The two gateways, or the two kinds of synthetic block: features off and on. */
const VARIANTS = ['off', 'on'] as const;
type Variant = (typeof VARIANTS)[number];

// ---- 1. fan-out per block ----

/** One variant's fan-out figures, per block. */
interface FanoutFigures {
  /** matchActivity + each matched event encoded once (MessagePack), in µs. */
  readonly matchEncodeUs: Distribution;
  /** The whole `Fanout.publishBlock` with a no-op delivery, in µs. */
  readonly publishBlockUs: Distribution;
  readonly eventsPerBlock: number;
  readonly internalEventsPerBlock: number;
  /** (subscription, event) pairs matched. */
  readonly matchedEventsPerBlock: number;
  readonly matchedInternalPerBlock: number;
  /** Distinct events encoded. */
  readonly encodedEventsPerBlock: number;
  readonly framesPerBlock: number;
  readonly bytesPerBlock: number;
  readonly bytesPerFrame: number;
}

interface FanoutTally {
  matchEncodeUs: number[];
  publishBlockUs: number[];
  events: number;
  internalEvents: number;
  matched: number;
  matchedInternal: number;
  encoded: number;
  frames: number;
  bytes: number;
}

/** What matching and encoding one block gives, as bench/micro.ts's match + encode case measures it. */
function matchAndEncode(
  index: SubscriptionIndex<Peer>,
  block: ReturnType<ReturnType<typeof createBlockSource>['block']>,
): { matched: number; matchedInternal: number; encoded: number } {
  const encoded = new Set<EncodedValue>();
  const values = encodedValues(block);
  const entries = encodedActivity(block);
  let matched = 0;
  let matchedInternal = 0;
  for (const list of matchActivity(index, block, 0).values()) {
    matched += list.length;
    for (const i of list) {
      if (entries[i]?.kind === 'internal') matchedInternal++;
      const value = values[i] as EncodedValue;
      if (encoded.has(value)) continue;
      encoded.add(value);
      void value.msgpack;
    }
  }
  return { matched, matchedInternal, encoded: encoded.size };
}

/** Fan-out of the S2 workload, off and on alternating block by block. */
function runFanoutCost(): { workloads: Record<Variant, Workload>; figures: Record<Variant, FanoutFigures> } {
  const plan = PLAN.fanout;
  const workloads: Record<Variant, Workload> = {
    off: ACTIVITY_WORKLOAD,
    on: { ...ACTIVITY_WORKLOAD, internalPerBlock: plan.internalPerBlock, tokenMetadata: true },
  };
  const index = new SubscriptionIndex<Peer>();
  const kinds = new Set(EVENT_KINDS);
  // Both variants have the same seed, so the same watch lists: one index serves both.
  for (const addresses of watchLists(ACTIVITY_WORKLOAD, plan.subscriptions)) {
    index.add({ encoding: 'msgpack' }, 's1', BENCH_CHAIN_ID, { channel: 'activity', kinds }, addresses);
  }
  const sources = { off: createBlockSource(workloads.off), on: createBlockSource(workloads.on) };
  const fanout = new Fanout<Peer>(index, () => {});
  const tallies: Record<Variant, FanoutTally> = {
    off: emptyTally(),
    on: emptyTally(),
  };
  const stopAt = performance.now() + plan.maxMs;
  for (let i = 0; i < plan.warmupBlocks + plan.blocks && performance.now() < stopAt; i++) {
    const order: readonly Variant[] = i % 2 === 0 ? ['off', 'on'] : ['on', 'off'];
    for (const variant of order) {
      const number = 100_000 + i;
      // Two objects of the same block: nothing one case encodes is cached for the other.
      const forMatch = sources[variant].block(number);
      const forPublish = sources[variant].block(number);
      const t0 = performance.now();
      const matched = matchAndEncode(index, forMatch);
      const t1 = performance.now();
      const published = fanout.publishBlock(forPublish, 0, new DeliveryLedger());
      const t2 = performance.now();
      if (i < plan.warmupBlocks) continue;
      const tally = tallies[variant];
      tally.matchEncodeUs.push((t1 - t0) * 1000);
      tally.publishBlockUs.push((t2 - t1) * 1000);
      const entries = encodedActivity(forMatch);
      tally.events += entries.length;
      tally.internalEvents += entries.filter((e) => e.kind === 'internal').length;
      tally.matched += matched.matched;
      tally.matchedInternal += matched.matchedInternal;
      tally.encoded += matched.encoded;
      tally.frames += published.activityMessages;
      tally.bytes += published.activityBytes;
    }
  }
  return {
    workloads,
    figures: { off: fanoutFigures(tallies.off), on: fanoutFigures(tallies.on) },
  };
}

function emptyTally(): FanoutTally {
  return {
    matchEncodeUs: [],
    publishBlockUs: [],
    events: 0,
    internalEvents: 0,
    matched: 0,
    matchedInternal: 0,
    encoded: 0,
    frames: 0,
    bytes: 0,
  };
}

function fanoutFigures(tally: FanoutTally): FanoutFigures {
  const blocks = Math.max(1, tally.matchEncodeUs.length);
  return {
    matchEncodeUs: distribution(tally.matchEncodeUs),
    publishBlockUs: distribution(tally.publishBlockUs),
    eventsPerBlock: tally.events / blocks,
    internalEventsPerBlock: tally.internalEvents / blocks,
    matchedEventsPerBlock: tally.matched / blocks,
    matchedInternalPerBlock: tally.matchedInternal / blocks,
    encodedEventsPerBlock: tally.encoded / blocks,
    framesPerBlock: tally.frames / blocks,
    bytesPerBlock: tally.bytes / blocks,
    bytesPerFrame: tally.bytes / Math.max(1, tally.frames),
  };
}

// ---- 2. ingest against anvil ----

/** A transaction request for anvil's unlocked accounts (`eth_sendTransaction`). */
interface TxRequest {
  readonly from: string;
  readonly to: string;
  readonly data?: string;
  readonly value?: string;
  readonly gas: string;
}

function hex(n: bigint | number): string {
  return `0x${n.toString(16)}`;
}

/** A fresh address (no code) from `random`: lowercase, 42 characters. */
function randomAddress(random: () => number): string {
  let out = '0x';
  for (let i = 0; i < 5; i++) {
    out += Math.floor(random() * 4_294_967_296)
      .toString(16)
      .padStart(8, '0');
  }
  return out;
}

/** Sends `requests` to the pool, one sender's in order and senders side by side. */
async function sendAll(anvil: Anvil, requests: readonly TxRequest[]): Promise<void> {
  const bySender = new Map<string, TxRequest[]>();
  for (const request of requests) bySender.set(request.from, [...(bySender.get(request.from) ?? []), request]);
  await Promise.all(
    [...bySender.values()].map(async (list) => {
      for (const request of list) await rpc<string>(anvil.httpUrl, 'eth_sendTransaction', [request]);
    }),
  );
}

/** Mines one block, not measured. */
async function mineUnmeasured(anvil: Anvil): Promise<void> {
  await rpc(anvil.httpUrl, 'evm_mine');
}

/** The contracts deployed for the run and who does what. */
interface Scene {
  readonly accounts: readonly string[];
  readonly tokens: readonly string[];
  readonly splitter: string;
  /** Watched: gets one plain ETH transfer in every block. */
  readonly plainPayee: string;
  /** Watched: paid by every `split` call. */
  readonly splitPayees: readonly string[];
  /** Watched: get half of the token transfers. */
  readonly tokenPayees: readonly string[];
}

/** Deploys the tokens (each minted to its own sender) and the splitter, in one mined block. */
async function deployScene(anvil: Anvil, random: () => number): Promise<Scene> {
  const accounts = (await rpc<string[]>(anvil.httpUrl, 'eth_accounts')).map((a) => a.toLowerCase());
  const plan = PLAN.ingest;
  if (accounts.length < 10) throw new Error(`anvil has ${accounts.length} unlocked accounts, 10 needed`);
  const erc20 = artifact('TestERC20');
  const splitter = artifact('Splitter');
  const deployments: string[] = [];
  for (let k = 0; k < plan.tokens; k++) {
    const data = `${erc20.bytecode}${erc20.iface.encodeDeploy([10n ** 30n]).slice(2)}`;
    deployments.push(
      await rpc<string>(anvil.httpUrl, 'eth_sendTransaction', [{ from: accounts[k], data, gas: hex(3_000_000) }]),
    );
  }
  deployments.push(
    await rpc<string>(anvil.httpUrl, 'eth_sendTransaction', [
      { from: accounts[5], data: splitter.bytecode, gas: hex(3_000_000) },
    ]),
  );
  await mineUnmeasured(anvil);
  const created: string[] = [];
  for (const hash of deployments) {
    const receipt = await rpc<{ status: string; contractAddress: string | null } | null>(
      anvil.httpUrl,
      'eth_getTransactionReceipt',
      [hash],
    );
    if (receipt?.status !== '0x1' || receipt.contractAddress === null) {
      throw new Error(`deployment ${hash} failed: ${JSON.stringify(receipt)}`);
    }
    created.push(receipt.contractAddress.toLowerCase());
  }
  return {
    accounts,
    tokens: created.slice(0, plan.tokens),
    splitter: created[plan.tokens] as string,
    plainPayee: randomAddress(random),
    splitPayees: [randomAddress(random), randomAddress(random), randomAddress(random)],
    tokenPayees: [randomAddress(random), randomAddress(random), randomAddress(random), randomAddress(random)],
  };
}

function watchedAddresses(scene: Scene): string[] {
  return [scene.plainPayee, ...scene.splitPayees, ...scene.tokenPayees];
}

/** The plain ETH transfers of a block: one to the watched plain payee, the others to fresh addresses. */
function plainTransfers(scene: Scene, random: () => number): TxRequest[] {
  return Array.from({ length: PLAN.ingest.plainTransfersPerBlock }, (_, j) => ({
    from: scene.accounts[7 + (j % 3)] as string,
    to: j === 0 ? scene.plainPayee : randomAddress(random),
    value: hex(1_000_000 + j),
    gas: hex(21_000),
  }));
}

/** A block with code: token transfers, splitter calls (internal transfers) and plain transfers. */
function codeTransactions(scene: Scene, random: () => number): TxRequest[] {
  const plan = PLAN.ingest;
  const erc20 = artifact('TestERC20').iface;
  const splitter = artifact('Splitter').iface;
  const requests: TxRequest[] = [];
  for (let j = 0; j < plan.tokenTransfersPerBlock; j++) {
    const k = j % plan.tokens;
    const to = j % 2 === 0 ? (scene.tokenPayees[(j / 2) % scene.tokenPayees.length] as string) : randomAddress(random);
    requests.push({
      from: scene.accounts[k] as string,
      to: scene.tokens[k] as string,
      data: erc20.encodeFunctionData('transfer', [to, 1000n + BigInt(j)]),
      gas: hex(100_000),
    });
  }
  for (let j = 0; j < plan.splitterCallsPerBlock; j++) {
    const payees = [...scene.splitPayees, randomAddress(random)].slice(0, plan.payeesPerSplit);
    const amounts = payees.map((_, p) => 1_000n + BigInt(p));
    requests.push({
      from: scene.accounts[5 + (j % 2)] as string,
      to: scene.splitter,
      data: splitter.encodeFunctionData('split', [payees, amounts]),
      value: hex(amounts.reduce((a, b) => a + b, 0n)),
      gas: hex(500_000),
    });
  }
  requests.push(...plainTransfers(scene, random));
  return requests;
}

/** What a client saw of one block's `activity` frame. */
interface Frame {
  readonly at: number;
  readonly events: number;
  readonly internal: number;
  readonly erc20: number;
  readonly erc20WithMetadata: number;
}

function text(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
}

/** What one `activity` message carries, read on arrival (stamped before it is parsed). */
function frameOf(message: Record<string, unknown>, at: number): Frame {
  const events = Array.isArray(message['events']) ? (message['events'] as Array<Record<string, unknown>>) : [];
  const erc20 = events.filter((e) => e['kind'] === 'erc20');
  return {
    at,
    events: events.length,
    internal: events.filter((e) => e['kind'] === 'internal').length,
    erc20: erc20.length,
    erc20WithMetadata: erc20.filter((e) => typeof e['symbol'] === 'string' && typeof e['decimals'] === 'number').length,
  };
}

/** Connects to a gateway (`?encoding=json`) and subscribes to the `activity` of `addresses` (bounded). */
function openClient(
  gateway: GatewayProcess,
  variant: Variant,
  addresses: readonly string[],
  arrivals: Arrivals<Variant, Frame>,
): Promise<WebSocket> {
  const socket = new WebSocket(`${gateway.url}?encoding=json`, { perMessageDeflate: false, handshakeTimeout: 10_000 });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`the ${variant} gateway did not answer subscribe within 10 s`));
    }, 10_000);
    socket.on('message', (data: RawData) => {
      const at = performance.now();
      const message = JSON.parse(text(data)) as Record<string, unknown>;
      if (message['type'] === 'activity') {
        const number = (message['block'] as { number?: unknown } | undefined)?.number;
        if (typeof number === 'number') arrivals.record(variant, number, frameOf(message, at));
      } else if (message['id'] === 1) {
        clearTimeout(timer);
        if (message['type'] === 'subscribed') resolve(socket);
        else reject(new Error(`subscribe on the ${variant} gateway failed: ${JSON.stringify(message)}`));
      }
    });
    socket.once('open', () => socket.send(JSON.stringify({ op: 'subscribe', id: 1, channel: 'activity', addresses })));
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot connect to the ${variant} gateway at ${gateway.url}: ${error.message}`));
    });
  });
}

/** One series of a Prometheus scrape. */
interface Series {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const SERIES_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Every sample of a scrape (comments skipped). */
function parseMetrics(scrape: string): Series[] {
  const out: Series[] = [];
  for (const line of scrape.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = SERIES_LINE.exec(line);
    if (match === null) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(LABEL)) labels[key as string] = value as string;
    out.push({ name: match[1] as string, labels, value: Number(match[3]) });
  }
  return out;
}

/** A gateway's metrics and CPU time at one instant. */
interface Snapshot {
  readonly series: readonly Series[];
  readonly cpu: CpuTime;
  readonly at: number;
}

async function snapshot(gateway: GatewayProcess): Promise<Snapshot> {
  const response = await fetch(`${gateway.httpUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
  const series = parseMetrics(await response.text());
  return { series, cpu: cpuTime(gateway.process.pid as number), at: performance.now() };
}

/** The sum of `name`'s samples whose labels match `where`, grouped by label `by` (`''` when not grouped). */
function sums(
  s: Snapshot,
  name: string,
  by: string | undefined,
  where: Readonly<Record<string, string>> = {},
): Map<string, number> {
  const out = new Map<string, number>();
  for (const series of s.series) {
    if (series.name !== name) continue;
    if (Object.entries(where).some(([k, v]) => series.labels[k] !== v)) continue;
    const key = by === undefined ? '' : (series.labels[by] ?? '');
    out.set(key, (out.get(key) ?? 0) + series.value);
  }
  return out;
}

/** `after − before` of each group of {@link sums}. */
function deltas(
  before: Snapshot,
  after: Snapshot,
  name: string,
  by: string | undefined,
  where: Readonly<Record<string, string>> = {},
): Record<string, number> {
  const a = sums(after, name, by, where);
  const b = sums(before, name, by, where);
  const out: Record<string, number> = {};
  for (const key of [...a.keys()].sort()) out[key] = (a.get(key) ?? 0) - (b.get(key) ?? 0);
  return out;
}

/** The p50 of a histogram's samples between two scrapes, interpolated within its bucket (Prometheus's way). */
function histogramQuantile(before: Snapshot, after: Snapshot, name: string, q: number): number {
  const buckets = Object.entries(deltas(before, after, `${name}_bucket`, 'le'))
    .map(([le, count]) => ({ le: le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le), count }))
    .sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.count ?? 0;
  if (total === 0) return Number.NaN;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const { le, count } of buckets) {
    if (count >= rank) {
      if (!Number.isFinite(le)) return lower;
      return lower + ((le - lower) * (rank - below)) / Math.max(1, count - below);
    }
    lower = le;
    below = count;
  }
  return Number.NaN;
}

/** One gateway's figures over one phase. */
interface PhaseGateway {
  readonly blocksIngested: number;
  /** RPC requests per block, by method. */
  readonly rpcPerBlock: Record<string, number>;
  readonly rpcTotalPerBlock: number;
  /** Requests per block without {@link POLLED_METHODS}: what each block costs. */
  readonly blockRpcPerBlock: number;
  /** Time in RPC requests per block, by method, in ms (from the histogram's sums). */
  readonly rpcMsPerBlock: Record<string, number>;
  readonly tracedBlocks: Record<string, number>;
  readonly traces: number;
  readonly traceMeanMs: number;
  readonly traceP50Ms: number;
  /** CPU of the gateway process per block, user + system, in ms. */
  readonly cpuMsPerBlock: number;
  readonly latencyMs: Distribution;
  readonly lost: number;
  /** Per frame, averaged over the blocks whose frame came. */
  readonly eventsPerFrame: number;
  readonly internalPerFrame: number;
  readonly erc20PerFrame: number;
  readonly erc20WithMetadataPerFrame: number;
}

const RPC = 'blockcast_ingest_rpc_request_duration_seconds';
/**
 * Methods a gateway sends on a clock rather than per block: head polls (every `--poll-interval-ms`
 * while it waits) and the finality tags. A gateway that spends longer on a block polls less.
 */
const POLLED_METHODS: ReadonlySet<string> = new Set(['eth_getBlockByNumber', 'eth_blockNumber']);
const TRACE = 'blockcast_ingest_trace_duration_seconds';

function phaseGateway(
  before: Snapshot,
  after: Snapshot,
  blocks: number,
  frames: readonly (Frame | null)[],
  minedAt: readonly number[],
): PhaseGateway {
  const perBlock = (record: Record<string, number>, scale = 1): Record<string, number> =>
    Object.fromEntries(Object.entries(record).map(([k, v]) => [k, (v * scale) / blocks]));
  const rpcPerBlock = perBlock(deltas(before, after, `${RPC}_count`, 'method'));
  const traces = Object.values(deltas(before, after, `${TRACE}_count`, undefined))[0] ?? 0;
  const traceSum = Object.values(deltas(before, after, `${TRACE}_sum`, undefined))[0] ?? 0;
  const cpu = cpuDelta(before.cpu, after.cpu);
  const came = frames.filter((f): f is Frame => f !== null);
  const mean = (pick: (f: Frame) => number): number => came.reduce((a, f) => a + pick(f), 0) / Math.max(1, came.length);
  return {
    blocksIngested: Object.values(deltas(before, after, 'blockcast_ingest_blocks_total', undefined))[0] ?? 0,
    rpcPerBlock,
    rpcTotalPerBlock: Object.values(rpcPerBlock).reduce((a, b) => a + b, 0),
    blockRpcPerBlock: Object.entries(rpcPerBlock)
      .filter(([method]) => !POLLED_METHODS.has(method))
      .reduce((a, [, n]) => a + n, 0),
    rpcMsPerBlock: perBlock(deltas(before, after, `${RPC}_sum`, 'method'), 1000),
    tracedBlocks: deltas(before, after, 'blockcast_ingest_traced_blocks_total', 'outcome'),
    traces,
    traceMeanMs: traces === 0 ? Number.NaN : (traceSum / traces) * 1000,
    traceP50Ms: histogramQuantile(before, after, TRACE, 0.5) * 1000,
    cpuMsPerBlock: (cpu.userUs + cpu.systemUs) / 1000 / blocks,
    latencyMs: distribution(frames.map((f, i) => (f === null ? null : f.at - (minedAt[i] as number)))),
    lost: frames.length - came.length,
    eventsPerFrame: mean((f) => f.events),
    internalPerFrame: mean((f) => f.internal),
    erc20PerFrame: mean((f) => f.erc20),
    erc20WithMetadataPerFrame: mean((f) => f.erc20WithMetadata),
  };
}

/** The figures of one phase (blocks with code, or plain blocks only). */
interface PhaseReport {
  readonly phase: 'code' | 'plain';
  readonly blocks: number;
  readonly transactionsPerBlock: number;
  readonly gateways: Record<Variant, PhaseGateway>;
  /** `on − off` latency of the same block, in ms. */
  readonly addedLatencyMs: Distribution;
  /**
   * Each block traced again by this benchmark, after both frames came (not in the measured
   * window), with each method anvil serves, in ms: what the choice of method costs on this node.
   */
  readonly directTraceMs: Record<'debug_traceBlockByNumber' | 'trace_block', Distribution>;
}

/** Mines one block of `requests` and waits (bounded) for both clients' frames for it. */
async function mineMeasured(
  anvil: Anvil,
  arrivals: Arrivals<Variant, Frame>,
  number: number,
  requests: readonly TxRequest[],
): Promise<{ minedAt: number; frames: Record<Variant, Frame | null> }> {
  await sendAll(anvil, requests);
  const minedAt = performance.now();
  await rpc(anvil.httpUrl, 'evm_mine');
  const [off, on] = await Promise.all(
    VARIANTS.map(async (variant) => (await arrivals.until(variant, number, PLAN.ingest.arrivalTimeoutMs)) ?? null),
  );
  return { minedAt, frames: { off: off ?? null, on: on ?? null } };
}

/** Times one request of `method` for block `number`, straight to anvil, in ms. */
async function timeTrace(
  anvil: Anvil,
  method: 'debug_traceBlockByNumber' | 'trace_block',
  number: number,
): Promise<number> {
  const params = method === 'debug_traceBlockByNumber' ? [hex(number), { tracer: 'callTracer' }] : [hex(number)];
  const started = performance.now();
  await rpc(anvil.httpUrl, method, params);
  return performance.now() - started;
}

/** Checks that block `number` holds `count` transactions, all successful (else the workload is not what it says). */
async function checkBlock(anvil: Anvil, number: number, count: number, plain: boolean): Promise<void> {
  const receipts = await rpc<Array<{ status: string; gasUsed: string }>>(anvil.httpUrl, 'eth_getBlockReceipts', [
    hex(number),
  ]);
  if (receipts.length !== count || receipts.some((r) => r.status !== '0x1')) {
    throw new Error(
      `block ${number} has ${receipts.length} transactions (${count} sent), ${receipts.filter((r) => r.status !== '0x1').length} failed`,
    );
  }
  if (plain && receipts.some((r) => BigInt(r.gasUsed) !== 21_000n)) {
    throw new Error(`block ${number} of plain transfers has one that used more than 21,000 gas`);
  }
}

function assertRunning(gateways: Record<Variant, GatewayProcess>): void {
  for (const variant of VARIANTS) {
    const child = gateways[variant].process;
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the ${variant} gateway exited (${child.exitCode ?? child.signalCode}) during the run`);
    }
  }
}

/** Mines `count` blocks of one phase, measuring each; returns the phase's figures. */
async function runPhase(
  phase: 'code' | 'plain' | 'warmup',
  count: number,
  anvil: Anvil,
  scene: Scene,
  gateways: Record<Variant, GatewayProcess>,
  arrivals: Arrivals<Variant, Frame>,
  random: () => number,
  deadline: number,
): Promise<PhaseReport | undefined> {
  const before = { off: await snapshot(gateways.off), on: await snapshot(gateways.on) };
  const frames: Record<Variant, Array<Frame | null>> = { off: [], on: [] };
  const minedAt: number[] = [];
  let number = Number(await rpc<string>(anvil.httpUrl, 'eth_blockNumber'));
  let transactions = 0;
  const direct = { debug_traceBlockByNumber: [] as number[], trace_block: [] as number[] };
  for (let i = 0; i < count; i++) {
    if (performance.now() > deadline) throw new Error(`the run passed ${PLAN.maxRunMs} ms: stopped`);
    assertRunning(gateways);
    const requests = phase === 'plain' ? plainTransfers(scene, random) : codeTransactions(scene, random);
    number++;
    const measured = await mineMeasured(anvil, arrivals, number, requests);
    await checkBlock(anvil, number, requests.length, phase === 'plain');
    if (phase !== 'warmup') {
      direct.debug_traceBlockByNumber.push(await timeTrace(anvil, 'debug_traceBlockByNumber', number));
      direct.trace_block.push(await timeTrace(anvil, 'trace_block', number));
    }
    transactions += requests.length;
    minedAt.push(measured.minedAt);
    for (const variant of VARIANTS) frames[variant].push(measured.frames[variant]);
    await new Promise((resolve) => setTimeout(resolve, PLAN.ingest.gapMs + random() * PLAN.ingest.jitterMs));
  }
  if (phase === 'warmup') return undefined;
  const after = { off: await snapshot(gateways.off), on: await snapshot(gateways.on) };
  const of = (variant: Variant): PhaseGateway =>
    phaseGateway(before[variant], after[variant], count, frames[variant], minedAt);
  return {
    phase,
    blocks: count,
    transactionsPerBlock: transactions / count,
    gateways: { off: of('off'), on: of('on') },
    addedLatencyMs: distribution(
      frames.on.map((on, i) => {
        const off = frames.off[i];
        return on === null || off === null || off === undefined ? null : on.at - off.at;
      }),
    ),
    directTraceMs: {
      debug_traceBlockByNumber: distribution(direct.debug_traceBlockByNumber),
      trace_block: distribution(direct.trace_block),
    },
  };
}

/** The token lookups of the `on` gateway over the whole run, by outcome. */
function tokenLookups(s: Snapshot): Record<string, number> {
  return Object.fromEntries(sums(s, 'blockcast_ingest_token_lookups_total', 'outcome'));
}

interface IngestReport {
  readonly scene: Scene;
  readonly phases: readonly PhaseReport[];
  readonly tokenLookups: Record<string, number>;
  /** eth_call requests of the `on` gateway over the whole run. */
  readonly ethCalls: number;
}

async function runIngest(cleanups: Cleanups, deadline: number): Promise<IngestReport> {
  const plan = PLAN.ingest;
  artifact('Splitter'); // compile every contract before anything runs
  const random = createRandom(plan.seed);
  const anvil = await startAnvil({ noMining: true });
  cleanups.unshift(() => anvil.close());
  const scene = await deployScene(anvil, random);
  const common = ['--rpc', anvil.wsUrl, '--poll-interval-ms', String(plan.pollIntervalMs)];
  const off = await startGateway([...common, '--traces', 'off', '--token-metadata', 'off']);
  cleanups.unshift(async () => {
    await off.stop();
  });
  const on = await startGateway([...common, '--traces', 'auto', '--token-metadata', 'on']);
  cleanups.unshift(async () => {
    await on.stop();
  });
  const gateways = { off, on };
  const arrivals = new Arrivals<Variant, Frame>();
  const addresses = watchedAddresses(scene);
  const sockets = [await openClient(off, 'off', addresses, arrivals), await openClient(on, 'on', addresses, arrivals)];
  cleanups.unshift(async () => {
    for (const socket of sockets) socket.terminate();
  });
  log(`ingest: ${plan.warmupBlocks} warm-up blocks`);
  await runPhase('warmup', plan.warmupBlocks, anvil, scene, gateways, arrivals, random, deadline);
  const phases: PhaseReport[] = [];
  for (const [phase, count] of [
    ['code', plan.codeBlocks],
    ['plain', plan.plainBlocks],
  ] as const) {
    log(`ingest: ${count} ${phase} blocks`);
    const report = await runPhase(phase, count, anvil, scene, gateways, arrivals, random, deadline);
    if (report === undefined) continue;
    phases.push(report);
    log(
      `  ${phase}: off p50 ${fixed(report.gateways.off.latencyMs.p50)} ms, on p50 ${fixed(report.gateways.on.latencyMs.p50)} ms, added p50 ${fixed(report.addedLatencyMs.p50)} p99 ${fixed(report.addedLatencyMs.p99)} ms; RPC/block off ${fixed(report.gateways.off.rpcTotalPerBlock)} on ${fixed(report.gateways.on.rpcTotalPerBlock)}`,
    );
  }
  const end = await snapshot(on);
  return {
    scene,
    phases,
    tokenLookups: tokenLookups(end),
    ethCalls: sums(end, `${RPC}_count`, undefined, { method: 'eth_call' }).get('') ?? 0,
  };
}

// ---- report ----

function fanoutSection(workloads: Record<Variant, Workload>, figures: Record<Variant, FanoutFigures>): string[] {
  const { off, on } = figures;
  const row = (label: string, pick: (f: FanoutFigures) => number, digits = 1): string =>
    `| ${label} | ${fixed(pick(off), digits)} | ${fixed(pick(on), digits)} | ${signed(pick(on) - pick(off), digits)} | ${fixed(pick(on) / pick(off), 2)} |`;
  return [
    '## 1. Fan-out per block, S2 workload (no sockets)',
    '',
    `${PLAN.fanout.subscriptions.toLocaleString('en-US')} \`activity\` subscriptions × ${workloads.off.addressesPerSubscriber} addresses, Zipf ${workloads.off.zipfExponent} over ${workloads.off.universe.toLocaleString('en-US')} addresses;`,
    `blocks of ${workloads.off.txPerBlock} transactions + ${workloads.off.transfersPerBlock} ERC-20 transfers. **on**: the same blocks, each transfer of one of`,
    `${SYNTHETIC_TOKENS} tokens with \`symbol\` (3-5 letters), \`decimals\` and \`name\` (~12 characters), and ${workloads.on.internalPerBlock}`,
    'internal transfers per block (from one of 20 contracts, to an address drawn like the others).',
    `${off.matchEncodeUs.samples} blocks of each, off and on alternating, each a fresh object. "match + encode":`,
    '`matchActivity` then each matched event encoded once (MessagePack), as bench/micro.ts;',
    '"publishBlock": the whole `Fanout.publishBlock` (match, encode, every subscriber\'s frame built)',
    "with a no-op delivery: the gateway's CPU per block without the kernel's send.",
    '',
    '| per block | off | on | on − off | on / off |',
    '|---|---|---|---|---|',
    row('match + encode p50 µs', (f) => f.matchEncodeUs.p50),
    row('match + encode p99 µs', (f) => f.matchEncodeUs.p99),
    row('publishBlock p50 µs', (f) => f.publishBlockUs.p50),
    row('publishBlock p99 µs', (f) => f.publishBlockUs.p99),
    row('publishBlock mean µs', (f) => f.publishBlockUs.mean),
    row('events in the block', (f) => f.eventsPerBlock),
    row('matched (subscription, event) pairs', (f) => f.matchedEventsPerBlock),
    row('… of them internal', (f) => f.matchedInternalPerBlock),
    row('distinct events encoded', (f) => f.encodedEventsPerBlock),
    row('frames (one per matched subscription)', (f) => f.framesPerBlock),
    row('bytes of frames', (f) => f.bytesPerBlock, 0),
    row('bytes per frame', (f) => f.bytesPerFrame),
    '',
  ];
}

function methodRows(phase: PhaseReport): string[] {
  const methods = new Set([
    ...Object.keys(phase.gateways.off.rpcPerBlock),
    ...Object.keys(phase.gateways.on.rpcPerBlock),
  ]);
  const rows: string[] = [];
  for (const method of [...methods].sort()) {
    const off = phase.gateways.off.rpcPerBlock[method] ?? 0;
    const on = phase.gateways.on.rpcPerBlock[method] ?? 0;
    const offMs = phase.gateways.off.rpcMsPerBlock[method] ?? 0;
    const onMs = phase.gateways.on.rpcMsPerBlock[method] ?? 0;
    rows.push(
      `| ${phase.phase} | \`${method}\` | ${fixed(off)} | ${fixed(on)} | ${signed(on - off)} | ${fixed(offMs)} | ${fixed(onMs)} |`,
    );
  }
  const off = phase.gateways.off.blockRpcPerBlock;
  const on = phase.gateways.on.blockRpcPerBlock;
  rows.push(
    `| ${phase.phase} | **per block** (all but ${[...POLLED_METHODS].map((m) => `\`${m}\``).join(', ')}) | ${fixed(off)} | ${fixed(on)} | **${signed(on - off)}** | | |`,
  );
  rows.push(
    `| ${phase.phase} | all | ${fixed(phase.gateways.off.rpcTotalPerBlock)} | ${fixed(phase.gateways.on.rpcTotalPerBlock)} | ${signed(phase.gateways.on.rpcTotalPerBlock - phase.gateways.off.rpcTotalPerBlock)} | | |`,
  );
  return rows;
}

function ingestSection(ingest: IngestReport): string[] {
  const plan = PLAN.ingest;
  const latencyRow = (phase: PhaseReport, variant: Variant): string => {
    const g = phase.gateways[variant];
    const d = g.latencyMs;
    return `| ${phase.phase} | ${variant} | ${d.samples} | ${fixed(d.p50)} | ${fixed(d.p90)} | ${fixed(d.p99)} | ${fixed(d.max)} | ${g.lost} |`;
  };
  const addedRow = (phase: PhaseReport): string => {
    const d = phase.addedLatencyMs;
    return `| ${phase.phase} | ${d.samples} | **${signed(d.p50)}** | ${signed(d.p90)} | **${signed(d.p99)}** | ${signed(d.max)} |`;
  };
  const gatewayRow = (phase: PhaseReport, variant: Variant): string => {
    const g = phase.gateways[variant];
    const traced = Object.entries(g.tracedBlocks)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    return `| ${phase.phase} | ${variant} | ${g.blocksIngested} | ${traced === '' ? '-' : traced} | ${g.traces} | ${fixed(g.traceP50Ms)} | ${fixed(g.traceMeanMs)} | ${fixed(g.cpuMsPerBlock)} | ${fixed(g.eventsPerFrame, 1)} | ${fixed(g.internalPerFrame, 1)} | ${fixed(g.erc20WithMetadataPerFrame, 1)} / ${fixed(g.erc20PerFrame, 1)} |`;
  };
  const lookups = Object.entries(ingest.tokenLookups)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return [
    '## 2. Ingest against anvil: RPC requests and latency per block',
    '',
    `anvil with no automatic mining; ${plan.tokens} TestERC20 tokens and a \`Splitter\` deployed. Two gateways`,
    `(\`src/main.ts --rpc ws://anvil --poll-interval-ms ${plan.pollIntervalMs}\`) follow it at once: **off** with`,
    '`--traces off --token-metadata off`, **on** with `--traces auto --token-metadata on` (the defaults).',
    `A client on each subscribes to the \`activity\` of ${watchedAddresses(ingest.scene).length} addresses (one plain-transfer payee, the three`,
    'splitter payees, four token payees). Blocks with code: ' +
      `${plan.tokenTransfersPerBlock} ERC-20 transfers (half to watched addresses), ${plan.splitterCallsPerBlock} \`Splitter.split\` calls`,
    `(${plan.payeesPerSplit} payees each: ${plan.splitterCallsPerBlock * plan.payeesPerSplit} internal transfers per block, ${plan.splitterCallsPerBlock * 3} of them to watched addresses) and ${plan.plainTransfersPerBlock} plain ETH`,
    `transfers; plain blocks: ${plan.plainTransfersPerBlock} plain ETH transfers only (21,000 gas each: never traced). ${plan.warmupBlocks} blocks`,
    'with code first, not measured (tokens looked up, trace method found out). Every block is checked',
    '(all its transactions mined and successful). Latency: from just before `evm_mine` is sent to',
    'the `activity` frame of that block on each client, one clock; the next block is mined once both',
    `frames came, ${plan.gapMs}-${plan.gapMs + plan.jitterMs} ms later. RPC figures: \`/metrics\` scraped before and after each phase.`,
    'anvil, both gateways and the clients share the machine.',
    '',
    '### Added latency per block (on − off, same block)',
    '',
    '| blocks | samples | p50 ms | p90 ms | p99 ms | max ms |',
    '|---|---|---|---|---|---|',
    ...ingest.phases.map(addedRow),
    '',
    '| blocks | gateway | samples | p50 ms | p90 ms | p99 ms | max ms | lost |',
    '|---|---|---|---|---|---|---|---|',
    ...ingest.phases.flatMap((p) => [latencyRow(p, 'off'), latencyRow(p, 'on')]),
    '',
    '### RPC requests per block, by method',
    '',
    '| blocks | method | off | on | on − off | off ms/block | on ms/block |',
    '|---|---|---|---|---|---|---|',
    ...ingest.phases.flatMap(methodRows),
    '',
    '"ms/block": time spent in requests of that method per block (sum of their durations; requests',
    'overlap, so this is not wall time). `eth_getBlockByNumber` is sent on a clock (head polls every',
    `${plan.pollIntervalMs} ms while a gateway waits, and the \`safe\`/\`finalized\` tags with each head), not per block: a`,
    'gateway busy longer on each block polls less, hence "per block" leaves it out.',
    '',
    '### The trace methods on anvil',
    '',
    'Each measured block traced again by the benchmark itself, with each method, after both frames came',
    '(outside the measured window): what the choice of method costs on this node.',
    '',
    '| blocks | method | p50 ms | p90 ms | p99 ms | max ms |',
    '|---|---|---|---|---|---|',
    ...ingest.phases.flatMap((p) =>
      (['debug_traceBlockByNumber', 'trace_block'] as const).map((method) => {
        const d = p.directTraceMs[method];
        return `| ${p.phase} | \`${method}\` | ${fixed(d.p50)} | ${fixed(d.p90)} | ${fixed(d.p99)} | ${fixed(d.max)} |`;
      }),
    ),
    '',
    '### Traces, CPU and what the frames carried',
    '',
    '| blocks | gateway | blocks ingested | traced blocks | traces | trace p50 ms | trace mean ms | CPU ms/block | events/frame | internal/frame | erc20 with metadata / erc20 per frame |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...ingest.phases.flatMap((p) => [gatewayRow(p, 'off'), gatewayRow(p, 'on')]),
    '',
    `Token lookups of the on gateway over the whole run: ${lookups === '' ? 'none' : lookups} (${ingest.ethCalls} \`eth_call\`s).`,
    'Trace p50 is interpolated within its histogram bucket (buckets … 50, 100, 250 ms …: coarse at these',
    'durations); the mean is exact.',
    '',
  ];
}

function markdown(
  at: string,
  machine: ReturnType<typeof describeMachine>,
  fanout: ReturnType<typeof runFanoutCost>,
  ingest: IngestReport,
  reading: readonly string[],
  runSeconds: number,
): string {
  return [
    '# Wallet features: internal transfers and token metadata, off against on',
    '',
    `Run ${at} on ${machine.cpuModel} (${machine.cores} cores, ${machine.memoryGiB} GiB), Node ${machine.node}, kernel ${machine.kernel};`,
    `\`npm run bench:wallet${PLAN.quick ? ' -- --quick' : ''}\`, ${fixed(runSeconds, 0)} s in all. Both parts compare the features off and on in the`,
    'same run, interleaved (fan-out: block by block; ingest: two gateways on the same blocks).',
    '',
    '## Reading',
    '',
    ...reading,
    '',
    ...fanoutSection(fanout.workloads, fanout.figures),
    ...ingestSection(ingest),
  ].join('\n');
}

/** Kernel time of one send to a loopback socket, in µs (DESIGN.md, "Performance model"): for the reading. */
const SEND_US = 7;

/** A short reading of the figures, written from them. */
function readFigures(fanout: ReturnType<typeof runFanoutCost>, ingest: IngestReport): string[] {
  const { off, on } = fanout.figures;
  const addedFrames = on.framesPerBlock - off.framesPerBlock;
  const lines = [
    `- **Fan-out** (${fanout.workloads.on.internalPerBlock} internal transfers per block, metadata on every transfer): \`publishBlock\` p50`,
    `  ${fixed(off.publishBlockUs.p50, 0)} → ${fixed(on.publishBlockUs.p50, 0)} µs (×${fixed(on.publishBlockUs.p50 / off.publishBlockUs.p50)}), mean ${fixed(off.publishBlockUs.mean, 0)} → ${fixed(on.publishBlockUs.mean, 0)} µs; match + encode p50`,
    `  ${fixed(off.matchEncodeUs.p50, 0)} → ${fixed(on.matchEncodeUs.p50, 0)} µs. The p99s (${fixed(off.publishBlockUs.p99, 0)} → ${fixed(on.publishBlockUs.p99, 0)} µs) are mostly garbage-collection`,
    '  pauses (blocks are built in this process between the timed runs): they move from run to run. The block grows from',
    `  ${fixed(off.eventsPerBlock, 0)} to ${fixed(on.eventsPerBlock, 0)} events; frames from ${fixed(off.framesPerBlock, 0)} to ${fixed(on.framesPerBlock, 0)} (${signed(addedFrames, 0)}: internal transfers reach watchers`,
    `  that nothing else in the block named) and bytes from ${fixed(off.bytesPerBlock / 1024, 0)} to ${fixed(on.bytesPerBlock / 1024, 0)} KiB (${fixed(off.bytesPerFrame, 0)} → ${fixed(on.bytesPerFrame, 0)} bytes`,
    `  per frame). With sockets, the ${signed(addedFrames, 0)} frames cost about`,
    `  ${fixed(addedFrames * SEND_US, 0)} µs more of kernel sends per block (at ~${SEND_US} µs each): more than the encoding adds.`,
  ];
  const code = ingest.phases.find((p) => p.phase === 'code');
  if (code !== undefined) {
    const { off: g0, on: g1 } = code.gateways;
    const direct = code.directTraceMs;
    lines.push(
      `- **Ingest, blocks with code** (${fixed(code.transactionsPerBlock, 0)} transactions): ${signed(g1.blockRpcPerBlock - g0.blockRpcPerBlock)} requests per block (\`trace_block\``,
      `  ${fixed(g1.rpcPerBlock['trace_block'] ?? 0)} and \`debug_traceBlockByNumber\` ${fixed(g1.rpcPerBlock['debug_traceBlockByNumber'] ?? 0)} per block; \`eth_call\` ${fixed(g1.rpcPerBlock['eth_call'] ?? 0)}: token metadata costs nothing once the tokens are known).`,
      `  Added latency per block: **p50 ${signed(code.addedLatencyMs.p50)} ms, p99 ${signed(code.addedLatencyMs.p99)} ms** (off p50 ${fixed(g0.latencyMs.p50)} ms, on ${fixed(g1.latencyMs.p50)} ms).`,
      `  Nearly all of it is the trace: p50 ${fixed(g1.traceP50Ms)} ms (mean ${fixed(g1.traceMeanMs)} ms), fetched after the receipts and before`,
      '  the block is handed over. On anvil the method matters far more than the one round trip, and the',
      '  gateway uses the one that answered its probe faster:',
      `  \`debug_traceBlockByNumber\` (callTracer) took p50 ${fixed(direct.debug_traceBlockByNumber.p50)} ms on these`,
      `  blocks when asked directly, \`trace_block\` ${fixed(direct.trace_block.p50)} ms. anvil's callTracer re-executes the block, and`,
      '  its time grows faster than the number of transactions; `trace_block` is answered from what',
      '  anvil kept when it mined. Other nodes differ (geth has no `trace_block`; Erigon and Reth serve both).',
    );
  }
  const plain = ingest.phases.find((p) => p.phase === 'plain');
  if (plain !== undefined) {
    const { off: g0, on: g1 } = plain.gateways;
    const traced = Object.entries(g1.tracedBlocks)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    lines.push(
      `- **Ingest, plain blocks**: ${signed(g1.blockRpcPerBlock - g0.blockRpcPerBlock)} requests per block (on gateway's blocks: ${traced}); added latency`,
      `  p50 ${signed(plain.addedLatencyMs.p50)} ms, p99 ${signed(plain.addedLatencyMs.p99)} ms: a block in which no transaction ran code is not traced and`,
      '  costs what it cost before.',
    );
  }
  lines.push(
    "- anvil, both gateways and the clients share the machine's cores, and the on gateway's traces load",
    '  the anvil that also serves the off gateway: the off figures of the code phase include that load.',
    '  Head polls (`eth_getBlockByNumber`) follow the clock, not the blocks (see below).',
  );
  return lines;
}

async function main(): Promise<void> {
  const started = performance.now();
  const deadline = started + PLAN.maxRunMs;
  const { cleanups, stopAll, release } = cleanupOnExit(log);
  let ingest: IngestReport;
  let fanout: ReturnType<typeof runFanoutCost>;
  try {
    log('fan-out: S2 workload, off and on');
    fanout = runFanoutCost();
    log(
      `  publishBlock p50 off ${fixed(fanout.figures.off.publishBlockUs.p50, 0)} µs, on ${fixed(fanout.figures.on.publishBlockUs.p50, 0)} µs`,
    );
    ingest = await runIngest(cleanups, deadline);
  } finally {
    await stopAll();
    release();
  }
  const runSeconds = (performance.now() - started) / 1000;
  const machine = describeMachine();
  const at = new Date().toISOString();
  const reading = readFigures(fanout, ingest);
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(
    join(RESULTS_DIR, 'wallet-features.json'),
    `${JSON.stringify({ plan: PLAN, machine, at, runSeconds, fanout, ingest }, null, 2)}\n`,
  );
  const md = markdown(at, machine, fanout, ingest, reading, runSeconds);
  writeFileSync(join(RESULTS_DIR, 'wallet-features.md'), `${md}\n`);
  process.stdout.write(`${md}\n`);
}

await main();
