/**
 * Ingest latency: a block mined on anvil, to the frame of a `blocks` subscriber of the gateway
 * (`/v1?encoding=json`), against a client subscribed straight to the node (`eth_subscribe`
 * `newHeads` on anvil's WebSocket), in the same run and for the same blocks, for three targets
 * following anvil (a fresh one per phase, below):
 *
 * - in-process: `src/main.ts --rpc ws://anvil` (the chain log in the process);
 * - Redis, one process: `src/main.ts --rpc ws://anvil --redis URL` (ingest and gateway in one
 *   process, the log going through Redis);
 * - Redis, two processes: `--role ingest --rpc ws://anvil --redis URL` and `--role gateway --redis
 *   URL` (ingest writes the log, the gateway reads it).
 *
 * Each Redis target has its own redis-server (so each has its own log and lease, and neither waits
 * on the other's writes). anvil mines only on `evm_mine`; this process mines each block itself and
 * stamps `performance.now()` just before sending the request; every client stamps the arrival of
 * its frame for that block with the same clock. Some blocks carry ETH transfers (sent through
 * anvil's unlocked accounts before mining), the others are empty; an `activity` subscriber per
 * target watches their sender.
 *
 * Two layouts (`--layout`); a phase deploys targets, runs every spacing's rounds on them, and stops
 * them:
 *
 * - alone: each target deployed and measured on its own, one after the other (anvil, its processes
 *   and redis-server, and its clients only), against the node client of its own phase;
 * - together: the three targets running and measured at once, so each block is measured on every
 *   target at the same instant (they contend for the CPU while each block arrives).
 *
 *   npm run bench:ingest                         both layouts, 3 rounds of 200 blocks per spacing
 *   npm run bench:ingest -- --rounds 1 --blocks 50
 *   npm run bench:ingest -- --layout alone       (alone, together, or both: the default)
 *   npm run bench:ingest -- --gateway-dir /path/to/other/tree   (measure another copy of the gateway)
 *   npm run bench:ingest -- --redis-fsync always                (Redis fsyncs every write)
 *
 * Writes bench/results/ingest-latency.md and .json.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RawData, WebSocket } from 'ws';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { rpc } from '../test/helpers/chain.ts';
import { type RedisServer, startRedis } from '../test/helpers/redis.ts';
import { Arrivals } from './lib/arrivals.ts';
import { type Cleanups, cleanupOnExit, runCleanups } from './lib/cleanups.ts';
import { describeMachine } from './lib/proc.ts';
import { type Distribution, distribution } from './lib/report.ts';
import { createRandom } from './lib/synthetic.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS_DIR = join(ROOT, 'bench', 'results');

function textOption(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at < 0 ? fallback : (process.argv[at + 1] ?? fallback);
}

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const value = at < 0 ? undefined : Number(process.argv[at + 1]);
  return value !== undefined && Number.isSafeInteger(value) && value > 0 ? value : fallback;
}

function fsyncOption(): 'always' | 'everysec' {
  const value = textOption('redis-fsync', 'everysec');
  if (value === 'always' || value === 'everysec') return value;
  throw new Error(`--redis-fsync must be always or everysec, not ${JSON.stringify(value)}`);
}

/** How the targets run while they are measured (see the file's comment). */
type Layout = 'alone' | 'together';

/** What each layout is, as the report says it. */
const LAYOUTS = {
  alone: 'each target alone',
  together: 'the targets together',
} as const satisfies Record<Layout, string>;

/** The layouts of `--layout alone|together|both` (default both), in the order they run. */
function layoutOption(): readonly Layout[] {
  const value = textOption('layout', 'both');
  if (value === 'both') return ['alone', 'together'];
  if (value === 'alone' || value === 'together') return [value];
  throw new Error(`--layout must be alone, together or both, not ${JSON.stringify(value)}`);
}

/** What one run does; every loop below is bounded by these counts and by `maxRunMs`. */
const PLAN = {
  rounds: option('rounds', 3),
  blocks: option('blocks', 200),
  /**
   * `--layout alone|together|both`: alone is one phase per target, together one phase of all
   * three; every phase runs every spacing's rounds, with the same random draws (transfers, gaps)
   * per round.
   */
  layouts: layoutOption(),
  /** Blocks mined after the clients connect, not measured (JIT, connections). */
  warmupBlocks: 10,
  /** Share of blocks that carry transfers. */
  txBlockShare: 0.5,
  /** Transfers in a block that has some: 1 to this many. */
  maxTransfersPerBlock: 4,
  /**
   * Pause after every client has a block, before the next is mined: `gapMs` plus up to
   * `jitterMs` at random. Each spacing runs every round: a few ms (blocks close together), and
   * past the 40 ms delayed-ACK timer of Linux (a node that leaves Nagle's algorithm on holds a
   * notification until its previous message is acknowledged, so the spacing matters).
   */
  spacings: [
    { label: 'close', gapMs: option('gap-ms', 3), jitterMs: 7 },
    { label: 'apart', gapMs: 60, jitterMs: 10 },
  ],
  /** How long a frame may take before its block counts as lost, in ms. */
  arrivalTimeoutMs: 5000,
  /** The whole run stops (with an error) after this, in ms. */
  maxRunMs: 900_000,
  seed: 0x1a7e,
  /** The goal: each target's `blocks` p50 at most this many times the node's. */
  goalRatioP50: 1.3,
  /**
   * Redis's `appendfsync` (the servers run with the append-only file on): `everysec` is Redis's
   * default and what README.md's "Scale out" starts; `always` fsyncs every write of the log.
   */
  redisFsync: fsyncOption(),
  /** The tree whose `src/main.ts` runs as the gateways. */
  gatewayDir: resolve(textOption('gateway-dir', ROOT)),
};

/** The gateways measured against the node, in the order of the report. */
const TARGETS = [
  { name: 'inProcess', label: 'in-process' },
  { name: 'redisOne', label: 'Redis, one process' },
  { name: 'redisTwo', label: 'Redis, two processes' },
] as const;

type TargetName = (typeof TARGETS)[number]['name'];

/** One stream of frames a client stamps: the node's heads, or a target's `blocks` or `activity`. */
type Stream = 'node' | `${TargetName}:blocks` | `${TargetName}:activity`;

/** A target's frames for one block: ms from just before `evm_mine` was sent; `null` when none came. */
interface TargetTimes {
  readonly blocksMs: number | null;
  /** Only for blocks with transfers (`null` for the others). */
  readonly activityMs: number | null;
}

/** One mined block as measured. */
interface BlockSample {
  readonly layout: Layout;
  readonly spacing: string;
  readonly round: number;
  readonly number: number;
  readonly transfers: number;
  /** When `evm_mine` was sent, in ms since the epoch (to match other processes' logs). */
  readonly minedAtEpochMs: number;
  /** From just before `evm_mine` was sent to the node's frame, in ms; `null` when it never came. */
  readonly nodeMs: number | null;
  /** The targets of the block's phase only (one when alone). */
  readonly targets: Readonly<Partial<Record<TargetName, TargetTimes>>>;
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** `a − b` when both are known. */
function difference(a: number | null, b: number | null): number | null {
  return a === null || b === null ? null : a - b;
}

/** One process of the gateway (`src/main.ts` of `PLAN.gatewayDir`), started by this benchmark. */
interface GatewayChild {
  readonly name: string;
  /** The ready line's match (see {@link startChild}). */
  readonly ready: RegExpExecArray;
  /** Why it stopped by itself (`exited with 1`), or `undefined` while it runs. */
  readonly exited: () => string | undefined;
  /** SIGTERM, SIGKILL after 10 s; resolves once it exited. */
  readonly stop: () => Promise<void>;
}

/** The line a gateway prints once it serves: its URL. */
const LISTENING = /listening on ws:\/\/127\.0\.0\.1:(\d+)\/v1/;
/** The line an ingest process (`--role ingest`) prints once it writes the log. */
const INGESTING = /ingest of chain \d+ into Redis; metrics: (http:\/\/127\.0\.0\.1:\d+\/metrics)/;

/**
 * Runs `src/main.ts` of `PLAN.gatewayDir` with `args` (on 127.0.0.1) and waits, at most 30 s, for
 * a line matching `ready` on its output. On failure the process is stopped.
 */
function startChild(name: string, args: readonly string[], ready: RegExp): Promise<GatewayChild> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx/esm', 'src/main.ts', ...args, '--host', '127.0.0.1'],
    { cwd: PLAN.gatewayDir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  let exitedWith: string | undefined;
  let stopping = false;
  const stop = async (): Promise<void> => {
    stopping = true;
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  let output = '';
  let started = false;
  return new Promise((resolveStart, reject) => {
    const fail = (why: string): void => {
      void stop();
      reject(new Error(`${name} (${PLAN.gatewayDir}, ${args.join(' ')}) ${why}:\n${output.slice(-4000)}`));
    };
    const timer = setTimeout(() => fail('printed no ready line within 30 s'), 30_000);
    const onData = (chunk: Buffer): void => {
      if (started) return;
      if (output.length < 65_536) output += chunk.toString();
      const match = ready.exec(output);
      if (match === null) return;
      started = true;
      clearTimeout(timer);
      child.once('exit', (code, signal) => {
        if (stopping) return;
        exitedWith = `exited with ${code ?? signal}`;
        log(`${name} ${exitedWith}`);
      });
      resolveStart({ name, ready: match, exited: () => exitedWith, stop });
    };
    // Both pipes are read to the end, so the gateway never stalls on a full pipe.
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (!started) fail(`exited with ${code} before it was ready`);
    });
  });
}

/** A target as running: the URL of its gateway and its processes. */
interface Deployment {
  readonly target: TargetName;
  /** `ws://127.0.0.1:PORT/v1` */
  readonly url: string;
  readonly processes: readonly GatewayChild[];
}

function gatewayUrl(child: GatewayChild): string {
  return `ws://127.0.0.1:${child.ready[1]}/v1`;
}

/** A redis-server for one target, with `appendfsync` as planned (see `PLAN.redisFsync`). */
async function startTargetRedis(cleanups: Cleanups): Promise<RedisServer> {
  const redis = await startRedis();
  cleanups.unshift(redis.close);
  await redis.command('CONFIG', 'SET', 'appendfsync', PLAN.redisFsync);
  return redis;
}

/** Starts one target following `anvil`; what it starts is added to `cleanups`. */
async function deployTarget(target: TargetName, anvil: Anvil, cleanups: Cleanups): Promise<Deployment> {
  const started = async (name: string, args: readonly string[], ready: RegExp): Promise<GatewayChild> => {
    const child = await startChild(name, args, ready);
    cleanups.unshift(child.stop);
    return child;
  };
  const rpcArgs = ['--rpc', anvil.wsUrl];
  switch (target) {
    case 'inProcess': {
      const gateway = await started('in-process gateway', [...rpcArgs, '--port', '0'], LISTENING);
      return { target, url: gatewayUrl(gateway), processes: [gateway] };
    }
    case 'redisOne': {
      const redis = await startTargetRedis(cleanups);
      const gateway = await started(
        'Redis one-process gateway',
        [...rpcArgs, '--redis', redis.url, '--port', '0'],
        LISTENING,
      );
      return { target, url: gatewayUrl(gateway), processes: [gateway] };
    }
    case 'redisTwo': {
      const redis = await startTargetRedis(cleanups);
      const ingest = await started(
        'Redis ingest',
        ['--role', 'ingest', ...rpcArgs, '--redis', redis.url, '--port', '0'],
        INGESTING,
      );
      log(`Redis ingest: metrics at ${ingest.ready[1]}`);
      const gateway = await started(
        'Redis gateway',
        ['--role', 'gateway', '--redis', redis.url, '--port', '0'],
        LISTENING,
      );
      return { target, url: gatewayUrl(gateway), processes: [ingest, gateway] };
    }
  }
}

/** Starts `targets` (in that order), each following `anvil`; what it starts is added to `cleanups`. */
async function deployTargets(anvil: Anvil, targets: readonly TargetName[], cleanups: Cleanups): Promise<Deployment[]> {
  const deployments: Deployment[] = [];
  for (const target of targets) deployments.push(await deployTarget(target, anvil, cleanups));
  return deployments;
}

function text(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
}

/**
 * Opens a WebSocket (bounded) and hands every message, stamped on arrival, to `onMessage`. Up to
 * seven clients share this process: a handler only stamps, parses and records, so that one
 * client's frame never holds another's stamp back by more than microseconds.
 */
function connect(url: string, onMessage: (message: Record<string, unknown>, at: number) => void): Promise<WebSocket> {
  const socket = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 10_000 });
  socket.on('message', (data: RawData) => {
    // Stamped before anything else is done with the frame.
    const at = performance.now();
    onMessage(JSON.parse(text(data)) as Record<string, unknown>, at);
  });
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(socket));
    socket.once('error', (error) => reject(new Error(`cannot connect to ${url}: ${error.message}`)));
  });
}

/** Sends one request on `socket` and waits (bounded) for the message that answers it. */
function request(
  socket: WebSocket,
  payload: Record<string, unknown>,
  isAnswer: (message: Record<string, unknown>) => boolean,
  what: string,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off('message', onMessage);
      reject(new Error(`${what}: no answer within 10 s`));
    }, 10_000);
    const onMessage = (data: RawData): void => {
      const message = JSON.parse(text(data)) as Record<string, unknown>;
      if (!isAnswer(message)) return;
      clearTimeout(timer);
      socket.off('message', onMessage);
      resolve(message);
    };
    socket.on('message', onMessage);
    socket.send(JSON.stringify(payload));
  });
}

/** Subscribes to `newHeads` on the node. */
async function openNodeClient(anvil: Anvil, arrivals: Arrivals<Stream, number>): Promise<WebSocket> {
  const socket = await connect(anvil.wsUrl, (message, at) => {
    const head = (message['params'] as { result?: { number?: string } } | undefined)?.result;
    if (message['method'] === 'eth_subscription' && typeof head?.number === 'string') {
      arrivals.record('node', Number(head.number), at);
      // anvil leaves Nagle's algorithm on: its next notification waits until this one is
      // acknowledged, and a reader that never writes gets delayed ACKs (up to 40 ms). An
      // unsolicited pong acknowledges at once, as the gateway's ingest does, so that this
      // baseline is the node's own delivery rather than the TCP timer.
      socket.pong();
    }
  });
  const answer = await request(
    socket,
    { jsonrpc: '2.0', id: 1, method: 'eth_subscribe', params: ['newHeads'] },
    (m) => m['id'] === 1,
    'eth_subscribe newHeads on anvil',
  );
  if (typeof answer['result'] !== 'string') throw new Error(`eth_subscribe failed: ${JSON.stringify(answer)}`);
  return socket;
}

/** Subscribes to `blocks`, or to the `activity` of `sender`, on one target's gateway. */
async function openGatewayClient(
  deployment: Deployment,
  channel: 'blocks' | 'activity',
  sender: string,
  arrivals: Arrivals<Stream, number>,
): Promise<WebSocket> {
  const stream: Stream = `${deployment.target}:${channel}`;
  const socket = await connect(`${deployment.url}?encoding=json`, (message, at) => {
    if (message['type'] === 'block' && typeof message['number'] === 'number') {
      arrivals.record(stream, message['number'], at);
    } else if (message['type'] === 'activity') {
      const number = (message['block'] as { number?: unknown } | undefined)?.number;
      if (typeof number === 'number') arrivals.record(stream, number, at);
    }
  });
  const subscribe =
    channel === 'blocks'
      ? { op: 'subscribe', id: 1, channel }
      : { op: 'subscribe', id: 1, channel, addresses: [sender] };
  const what = `subscribe ${channel} on the ${deployment.target} gateway`;
  const answer = await request(socket, subscribe, (m) => m['id'] === 1, what);
  if (answer['type'] !== 'subscribed') throw new Error(`${what} failed: ${JSON.stringify(answer)}`);
  return socket;
}

/**
 * Connects the node client and each target's `blocks` and `activity` clients, one after the
 * other, starting with a different one each round (the order sockets are served in when frames
 * arrive together may favour the first). Every socket opened is pushed to `sockets`, also when a
 * later one fails.
 */
async function connectClients(
  anvil: Anvil,
  deployments: readonly Deployment[],
  sender: string,
  arrivals: Arrivals<Stream, number>,
  round: number,
  sockets: WebSocket[],
): Promise<void> {
  const openers: Array<() => Promise<void>> = [
    async () => {
      sockets.push(await openNodeClient(anvil, arrivals));
    },
    ...deployments.map((deployment) => async () => {
      sockets.push(await openGatewayClient(deployment, 'blocks', sender, arrivals));
      sockets.push(await openGatewayClient(deployment, 'activity', sender, arrivals));
    }),
  ];
  for (let i = 0; i < openers.length; i++) await (openers[(round + i) % openers.length] as () => Promise<void>)();
}

/** anvil's unlocked accounts: the sender of every transfer and three receivers. */
async function accounts(anvil: Anvil): Promise<{ sender: string; receivers: string[] }> {
  const all = await rpc<string[]>(anvil.httpUrl, 'eth_accounts');
  const [sender, ...rest] = all.map((a) => a.toLowerCase());
  if (sender === undefined || rest.length < 3) throw new Error(`anvil has ${all.length} unlocked accounts, 4 needed`);
  return { sender, receivers: rest.slice(0, 3) };
}

/**
 * Mines one block (after `transfers` transfers from `sender`), and waits (bounded) for every
 * client's frame for it: the node's and those of the `targets` deployed. The mining time is
 * stamped just before `evm_mine` is sent.
 */
async function mineOne(
  anvil: Anvil,
  targets: readonly TargetName[],
  arrivals: Arrivals<Stream, number>,
  number: number,
  transfers: number,
  from: { sender: string; receivers: string[] },
): Promise<Pick<BlockSample, 'minedAtEpochMs' | 'nodeMs' | 'targets'>> {
  for (let i = 0; i < transfers; i++) {
    const to = from.receivers[i % from.receivers.length] as string;
    await rpc(anvil.httpUrl, 'eth_sendTransaction', [{ from: from.sender, to, value: `0x${(1000 + i).toString(16)}` }]);
  }
  const minedAt = performance.now();
  await rpc(anvil.httpUrl, 'evm_mine');
  const since = (at: number | undefined): number | null => (at === undefined ? null : at - minedAt);
  const wait = async (stream: Stream): Promise<number | null> =>
    since(await arrivals.until(stream, number, PLAN.arrivalTimeoutMs));
  const targetTimes = async (target: TargetName): Promise<[TargetName, TargetTimes]> => {
    const [blocksMs, activityMs] = await Promise.all([
      wait(`${target}:blocks`),
      transfers > 0 ? wait(`${target}:activity`) : Promise.resolve(null),
    ]);
    return [target, { blocksMs, activityMs }];
  };
  const [nodeMs, times] = await Promise.all([wait('node'), Promise.all(targets.map(targetTimes))]);
  return {
    minedAtEpochMs: performance.timeOrigin + minedAt,
    nodeMs,
    targets: Object.fromEntries(times) as Partial<Record<TargetName, TargetTimes>>,
  };
}

/** How far apart blocks are mined (see `PLAN.spacings`). */
type Spacing = (typeof PLAN.spacings)[number];

/** Throws when a gateway or ingest process stopped by itself: its frames would only time out. */
function assertRunning(deployments: readonly Deployment[]): void {
  for (const child of deployments.flatMap((d) => d.processes)) {
    const why = child.exited();
    if (why !== undefined) throw new Error(`${child.name} ${why} during the run: stopped`);
  }
}

/** The targets deployed and measured together, and the layout they are part of. */
interface Phase {
  readonly layout: Layout;
  readonly targets: readonly TargetName[];
}

/** The phases of `PLAN.layouts`, in order: alone is one phase per target, together is one. */
function phases(): Phase[] {
  const all = TARGETS.map((t) => t.name);
  return PLAN.layouts.flatMap((layout): Phase[] =>
    layout === 'alone' ? all.map((target) => ({ layout, targets: [target] })) : [{ layout, targets: all }],
  );
}

function targetLabel(target: TargetName): string {
  return TARGETS.find((t) => t.name === target)?.label ?? target;
}

async function runRound(
  phase: Phase,
  spacing: Spacing,
  round: number,
  anvil: Anvil,
  deployments: readonly Deployment[],
  from: { sender: string; receivers: string[] },
  deadline: number,
): Promise<BlockSample[]> {
  const arrivals = new Arrivals<Stream, number>();
  const random = createRandom(PLAN.seed + round);
  const sockets: WebSocket[] = [];
  const samples: BlockSample[] = [];
  try {
    await connectClients(anvil, deployments, from.sender, arrivals, round, sockets);
    let number = Number(await rpc<string>(anvil.httpUrl, 'eth_blockNumber'));
    for (let i = 0; i < PLAN.warmupBlocks + PLAN.blocks; i++) {
      if (performance.now() > deadline) throw new Error(`the run passed ${PLAN.maxRunMs} ms: stopped`);
      assertRunning(deployments);
      const transfers = random() < PLAN.txBlockShare ? 1 + Math.floor(random() * PLAN.maxTransfersPerBlock) : 0;
      number++;
      const measured = await mineOne(anvil, phase.targets, arrivals, number, transfers, from);
      if (i >= PLAN.warmupBlocks) {
        samples.push({ layout: phase.layout, spacing: spacing.label, round, number, transfers, ...measured });
      }
      const gapMs = spacing.gapMs + random() * spacing.jitterMs;
      await new Promise((resolve) => setTimeout(resolve, gapMs));
    }
    return samples;
  } finally {
    for (const socket of sockets) socket.terminate();
  }
}

/** One target's figures over a set of blocks (those of its phase), against the node on the same blocks. */
interface TargetSummary {
  /** The node over the same blocks. */
  readonly node: Distribution;
  /** The node over the same blocks with transfers (the baseline of `activity`). */
  readonly nodeWithTransfers: Distribution;
  readonly blocks: Distribution;
  /** Over the blocks with transfers. */
  readonly activity: Distribution;
  /** `blocks` over node, at p50 and p99. */
  readonly ratioP50: number;
  readonly ratioP99: number;
  /** `activity` over node on the same blocks (those with transfers), at p50 and p99. */
  readonly activityRatioP50: number;
  readonly activityRatioP99: number;
  /** `blocks` minus node on the same block: what the gateway adds, in ms. */
  readonly addedOverNode: Distribution;
  /**
   * `blocks` minus the in-process `blocks` on the same block: what the log on Redis adds, in ms.
   * Only over blocks measured on both (together); no samples when the target ran alone.
   */
  readonly addedOverInProcess: Distribution;
  readonly lost: { readonly node: number; readonly blocks: number; readonly activity: number };
}

/** The figures of a set of blocks, per target measured on them. */
interface Summary {
  readonly targets: Readonly<Partial<Record<TargetName, TargetSummary>>>;
}

/** The figures of `target` over those of `samples` it was measured on. */
function summarizeTarget(samples: readonly BlockSample[], target: TargetName): TargetSummary {
  const measured = samples.filter((s) => s.targets[target] !== undefined);
  const withTransfers = measured.filter((s) => s.transfers > 0);
  // Never the fallback: every sample here has the target.
  const times = (s: BlockSample): TargetTimes => s.targets[target] ?? { blocksMs: null, activityMs: null };
  const node = distribution(measured.map((s) => s.nodeMs));
  const nodeWithTransfers = distribution(withTransfers.map((s) => s.nodeMs));
  const blocks = distribution(measured.map((s) => times(s).blocksMs));
  const activity = distribution(withTransfers.map((s) => times(s).activityMs));
  return {
    node,
    nodeWithTransfers,
    blocks,
    activity,
    ratioP50: blocks.p50 / node.p50,
    ratioP99: blocks.p99 / node.p99,
    activityRatioP50: activity.p50 / nodeWithTransfers.p50,
    activityRatioP99: activity.p99 / nodeWithTransfers.p99,
    addedOverNode: distribution(measured.map((s) => difference(times(s).blocksMs, s.nodeMs))),
    addedOverInProcess: distribution(
      measured.map((s) => difference(times(s).blocksMs, s.targets.inProcess?.blocksMs ?? null)),
    ),
    lost: {
      node: measured.filter((s) => s.nodeMs === null).length,
      blocks: measured.filter((s) => times(s).blocksMs === null).length,
      activity: withTransfers.filter((s) => times(s).activityMs === null).length,
    },
  };
}

/** The figures of every one of `targets` over `samples` (`NaN` where a target has none of them). */
function summarize(samples: readonly BlockSample[], targets: readonly TargetName[]): Summary {
  const entries = targets.map((target) => [target, summarizeTarget(samples, target)] as const);
  return { targets: Object.fromEntries(entries) as Partial<Record<TargetName, TargetSummary>> };
}

/** The figures of `target` in `s`: a report's summaries have every target of the report. */
function figuresOf(s: Summary, target: TargetName): TargetSummary {
  const figures = s.targets[target];
  if (figures === undefined) throw new Error(`no figures of ${target}`);
  return figures;
}

/** The figures of one layout and spacing: all blocks, empty ones, ones with transfers, and per round. */
interface SpacingReport {
  readonly layout: Layout;
  readonly spacing: Spacing;
  /** The targets measured in this layout, in the order of `TARGETS`. */
  readonly targets: readonly TargetName[];
  readonly all: Summary;
  readonly empty: Summary;
  readonly withTransfers: Summary;
  readonly rounds: Summary[];
}

function report(layout: Layout, spacing: Spacing, samples: readonly BlockSample[]): SpacingReport {
  const of = samples.filter((s) => s.layout === layout && s.spacing === spacing.label);
  const targets = TARGETS.map((t) => t.name).filter((name) => of.some((s) => s.targets[name] !== undefined));
  return {
    layout,
    spacing,
    targets,
    all: summarize(of, targets),
    empty: summarize(
      of.filter((s) => s.transfers === 0),
      targets,
    ),
    withTransfers: summarize(
      of.filter((s) => s.transfers > 0),
      targets,
    ),
    rounds: Array.from({ length: PLAN.rounds }, (_, r) =>
      summarize(
        of.filter((s) => s.round === r),
        targets,
      ),
    ),
  };
}

function fixed(n: number): string {
  return Number.isNaN(n) ? '-' : n.toFixed(2);
}

function meetsGoal(s: TargetSummary): string {
  if (Number.isNaN(s.ratioP50)) return '-';
  return s.ratioP50 <= PLAN.goalRatioP50 ? 'yes' : 'no';
}

/** What the log on Redis adds at p50 and p99, as two cells: `-` for in-process, or where it was not measured. */
function logAddsCells(target: TargetName, s: TargetSummary): string {
  if (target === 'inProcess') return '- | -';
  return `${fixed(s.addedOverInProcess.p50)} | ${fixed(s.addedOverInProcess.p99)}`;
}

/** One line of the ratio table: a target's ratios to the node and what the log on Redis adds. */
function ratioRow(target: TargetName, s: TargetSummary): string {
  return `| ${targetLabel(target)} | **${fixed(s.ratioP50)}** | ${fixed(s.ratioP99)} | ${fixed(s.activityRatioP50)} | ${fixed(s.activityRatioP99)} | ${fixed(s.addedOverNode.p50)} | ${fixed(s.addedOverNode.p99)} | ${logAddsCells(target, s)} | ${meetsGoal(s)} |`;
}

const GOAL_HEADER = `p50 ≤ ${PLAN.goalRatioP50} × node`;

const RATIO_HEADER = [
  `| target | \`blocks\` / node p50 | \`blocks\` / node p99 | \`activity\` / node p50 | \`activity\` / node p99 | − node p50 ms | − node p99 ms | log adds p50 ms | log adds p99 ms | ${GOAL_HEADER} |`,
  '|---|---|---|---|---|---|---|---|---|---|',
];

function spacingSection(r: SpacingReport): string[] {
  const row = (label: string, d: Distribution): string =>
    `| ${label} | ${d.samples} | ${fixed(d.p50)} | ${fixed(d.p90)} | ${fixed(d.p99)} | ${fixed(d.max)} |`;
  const kindRow = (label: string, empty: Distribution, withTransfers: Distribution): string =>
    `| ${label} | ${fixed(empty.p50)} | ${fixed(empty.p99)} | ${fixed(withTransfers.p50)} | ${fixed(withTransfers.p99)} |`;
  const { all, empty, withTransfers } = r;
  // Together, the targets were measured on the same blocks and share one node row; alone, each
  // target has the node of its own phase.
  const together = r.layout === 'together';
  const nodeRows = <T>(i: number, label: string, make: (nodeLabel: string) => T): T[] => {
    if (together) return i === 0 ? [make('node `newHeads`')] : [];
    return [make(`node \`newHeads\` (phase of ${label})`)];
  };
  const lost = r.targets
    .map((name) => {
      const t = figuresOf(all, name).lost;
      const ofNode = together ? '' : ` (node ${t.node})`;
      return `${targetLabel(name)} \`blocks\` ${t.blocks}, \`activity\` ${t.activity}${ofNode}`;
    })
    .join('; ');
  const lostNode = together && r.targets[0] !== undefined ? `node ${figuresOf(all, r.targets[0]).lost.node}; ` : '';
  const roundCell = (t: TargetSummary, p: 'p50' | 'p99'): string =>
    `${fixed(t.blocks[p])} (${fixed(p === 'p50' ? t.ratioP50 : t.ratioP99)})`;
  return [
    `## Blocks ${r.spacing.gapMs}-${r.spacing.gapMs + r.spacing.jitterMs} ms after the last frame of the previous one (${r.spacing.label}), ${LAYOUTS[r.layout]}`,
    '',
    '| client | blocks | p50 ms | p90 ms | p99 ms | max ms |',
    '|---|---|---|---|---|---|',
    ...r.targets.flatMap((name, i) => {
      const t = figuresOf(all, name);
      const label = targetLabel(name);
      return [
        ...nodeRows(i, label, (nodeLabel) => row(nodeLabel, t.node)),
        row(`${label}: \`blocks\``, t.blocks),
        row(`${label}: \`activity\` (blocks with transfers)`, t.activity),
      ];
    }),
    '',
    'Ratios to the node on the same blocks (`activity` against the node on those with transfers);',
    '"− node": the target\'s `blocks` minus the node, same block; "log adds": the target\'s `blocks`',
    `minus the in-process \`blocks\`, same block${together ? '' : ' (only together; alone, no block has both: -)'}.`,
    '',
    ...RATIO_HEADER,
    ...r.targets.map((name) => ratioRow(name, figuresOf(all, name))),
    '',
    `Frames lost (none within ${PLAN.arrivalTimeoutMs} ms): ${lostNode}${lost}.`,
    '',
    '| `blocks` of | empty p50 ms | empty p99 ms | with transfers p50 ms | with transfers p99 ms |',
    '|---|---|---|---|---|',
    ...r.targets.flatMap((name, i) => {
      const e = figuresOf(empty, name);
      const w = figuresOf(withTransfers, name);
      const label = targetLabel(name);
      return [
        ...nodeRows(i, label, (nodeLabel) => kindRow(nodeLabel, e.node, w.node)),
        kindRow(label, e.blocks, w.blocks),
      ];
    }),
    '',
    'Per round, `blocks` in ms (its ratio to the node on the same blocks):',
    '',
    '| round | target | node p50 | `blocks` p50 | node p99 | `blocks` p99 |',
    '|---|---|---|---|---|---|',
    ...r.rounds.flatMap((s, i) =>
      r.targets.map((name) => {
        const t = figuresOf(s, name);
        return `| ${i + 1} | ${targetLabel(name)} | ${fixed(t.node.p50)} | ${roundCell(t, 'p50')} | ${fixed(t.node.p99)} | ${roundCell(t, 'p99')} |`;
      }),
    ),
    '',
  ];
}

/** The headline: every target's ratios to the node, per layout and spacing. */
function summarySection(reports: readonly SpacingReport[]): string[] {
  return [
    '## Summary',
    '',
    `| layout | spacing | target | node p50 ms | \`blocks\` p50 ms | \`blocks\` / node p50 | \`blocks\` / node p99 | log adds p50 ms | log adds p99 ms | ${GOAL_HEADER} |`,
    '|---|---|---|---|---|---|---|---|---|---|',
    ...reports.flatMap((r) =>
      r.targets.map((name) => {
        const s = figuresOf(r.all, name);
        return `| ${r.layout} | ${r.spacing.label} | ${targetLabel(name)} | ${fixed(s.node.p50)} | ${fixed(s.blocks.p50)} | **${fixed(s.ratioP50)}** | ${fixed(s.ratioP99)} | ${logAddsCells(name, s)} | ${meetsGoal(s)} |`;
      }),
    ),
    '',
  ];
}

/** What each layout that ran is, for the report. */
function layoutLines(cores: number): string[] {
  const lines: Record<Layout, string[]> = {
    alone: [
      '- **alone**: each target deployed and measured on its own, one phase after the other: anvil,',
      "  that target's processes and its redis-server where it has one, and three clients (node,",
      `  \`blocks\`, \`activity\`) share the machine's ${cores} cores. Its ratios are to the node client of its`,
      '  own phase, on the same blocks; its processes stop before the next target starts.',
    ],
    together: [
      '- **together**: the three targets running and measured at once, so every block is measured on',
      '  every target in the same instant: anvil, two redis-servers, four gateway processes and seven',
      `  clients share the machine's ${cores} cores at each block. "log adds" (a target's \`blocks\``,
      '  minus the in-process `blocks`, same block) only here.',
    ],
  };
  return PLAN.layouts.flatMap((layout) => lines[layout]);
}

function markdown(at: string, machine: ReturnType<typeof describeMachine>, reports: readonly SpacingReport[]): string {
  return [
    '# Ingest latency: a mined block to the gateway subscriber, against the node subscriber',
    '',
    `Run ${at} on ${machine.cpuModel} (${machine.cores} cores), Node ${machine.node}. anvil with no automatic`,
    `mining; per phase and spacing, ${PLAN.rounds} rounds of ${PLAN.blocks} blocks (after ${PLAN.warmupBlocks} warm-up blocks each, fresh`,
    `client connections each round). ${PLAN.txBlockShare * 100}% of blocks carry 1-${PLAN.maxTransfersPerBlock} ETH transfers from one sender.`,
    'A block is mined once every client has the previous one, plus the spacing. Latency: from just',
    'before `evm_mine` is sent (HTTP) to the frame of that block on a client in the same process (one',
    "clock). node: `eth_subscribe` `newHeads` on anvil's WebSocket. Three targets, each the real",
    'gateway (`src/main.ts`, default poll interval) following anvil over `ws://`:',
    '',
    '- **in-process**: `--rpc ws://…`, the chain log in the process;',
    '- **Redis, one process**: `--rpc ws://… --redis URL` (ingest and gateway in one process, the log',
    '  going through Redis);',
    '- **Redis, two processes**: `--role ingest --rpc ws://… --redis URL` writes the log, `--role',
    '  gateway --redis URL` reads it and serves the subscribers.',
    '',
    `Each Redis target has its own redis-server on loopback (append-only file, \`appendfsync ${PLAN.redisFsync}\`).`,
    'On each target, `blocks` on `/v1?encoding=json`, and `activity` of the sender on its own',
    'connection. The order in which the clients connect turns each round. The targets run in these',
    'layouts, in this order, each phase on a fresh anvil (anvil answers more slowly as its chain',
    'grows: its own p50 doubles over a few thousand blocks); each phase runs the same spacings and',
    'rounds, with the same transfers and gaps per round:',
    '',
    ...layoutLines(machine.cores),
    '',
    `Goal: each target's \`blocks\` p50 at most ${PLAN.goalRatioP50} × the node's p50.`,
    '',
    ...summarySection(reports),
    ...reports.flatMap(spacingSection),
  ].join('\n');
}

/**
 * Deploys the targets of `phase`, runs every spacing's rounds against them, and stops them (also on
 * error) before it returns. Its processes are one entry of the run's `cleanups` while it runs, so
 * that a signal stops them too.
 */
async function runPhase(phase: Phase, cleanups: Cleanups, deadline: number): Promise<BlockSample[]> {
  // Newest first: gateways before their ingest, processes before Redis, everything before anvil.
  const own: Cleanups = [];
  const stopOwn = (): Promise<void> => runCleanups(own, log);
  cleanups.unshift(stopOwn);
  const samples: BlockSample[] = [];
  try {
    // A fresh anvil per phase: anvil answers more slowly as its chain grows (its own newHeads p50
    // doubles over a few thousand blocks here), so phases on one chain would not be comparable.
    const anvil = await startAnvil({ noMining: true });
    own.unshift(() => anvil.close());
    const from = await accounts(anvil);
    const deployments = await deployTargets(anvil, phase.targets, own);
    for (const spacing of PLAN.spacings) {
      for (let round = 0; round < PLAN.rounds; round++) {
        const of = await runRound(phase, spacing, round, anvil, deployments, from, deadline);
        const s = summarize(of, phase.targets);
        const node = distribution(of.map((b) => b.nodeMs));
        const targets = phase.targets
          .map((name) => {
            const t = figuresOf(s, name);
            return `${targetLabel(name)} p50 ${fixed(t.blocks.p50)} p99 ${fixed(t.blocks.p99)}`;
          })
          .join('; ');
        log(
          `${phase.layout}, ${spacing.label}, round ${round + 1}: node p50 ${fixed(node.p50)} ms p99 ${fixed(node.p99)}; ${targets}`,
        );
        samples.push(...of);
      }
    }
    return samples;
  } finally {
    await stopOwn();
    // Only once stopped: a signal meanwhile still waits on the entry (which runs nothing twice).
    const at = cleanups.indexOf(stopOwn);
    if (at >= 0) cleanups.splice(at, 1);
  }
}

async function main(): Promise<void> {
  const deadline = performance.now() + PLAN.maxRunMs;
  // Newest first: a phase's processes before anvil.
  const { cleanups, stopAll, release } = cleanupOnExit(log);
  const samples: BlockSample[] = [];
  try {
    for (const phase of phases()) samples.push(...(await runPhase(phase, cleanups, deadline)));
  } finally {
    await stopAll();
    release();
  }

  const reports = PLAN.layouts.flatMap((layout) => PLAN.spacings.map((spacing) => report(layout, spacing, samples)));
  const machine = describeMachine();
  const at = new Date().toISOString();
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(
    join(RESULTS_DIR, 'ingest-latency.json'),
    `${JSON.stringify({ plan: PLAN, targets: TARGETS, layouts: LAYOUTS, machine, at, reports, samples }, null, 2)}\n`,
  );
  const md = markdown(at, machine, reports);
  writeFileSync(join(RESULTS_DIR, 'ingest-latency.md'), md);
  process.stdout.write(md);
}

await main();
