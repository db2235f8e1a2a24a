/**
 * One fuzz session against the real gateway, shared by test/fuzz.test.ts and bench/fuzz.ts:
 * anvil with 1 s blocks, the gateway following it, the fuzzer (test/helpers/fuzzer.ts) in its
 * own process, and in this process an observer that subscribes to `blocks` and pings every
 * 50 ms, while the gateway's RSS and CPU are sampled from /proc.
 */
import { spawn } from 'node:child_process';
import { setPriority } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { cpuDelta, cpuTime, memory } from '../../bench/lib/proc.ts';
import { startAnvil } from '../../src/devnet/startAnvil.ts';
import { rpc } from './chain.ts';
import { TestClient } from './client.ts';
import type { FuzzerResult } from './fuzzer.ts';
import { type GatewayProcess, startGateway } from './gateway.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FUZZER = fileURLToPath(new URL('./fuzzer.ts', import.meta.url));

/** Options of {@link runFuzzSession}. */
export interface FuzzSessionOptions {
  readonly frames: number;
  readonly seed: number;
  /** Fuzzer connections (half MessagePack, half JSON). @default 6 */
  readonly connections?: number;
  /** Frames a fuzzer connection sends between two pings (each waits for its pong). @default 100 */
  readonly batch?: number;
  /** Bound of the fuzzer's run, in seconds. */
  readonly maxSeconds: number;
  /** Frames after which the RSS baseline is taken. @default 5000 */
  readonly warmupFrames?: number;
  /** Called with each progress line of the fuzzer. */
  readonly onProgress?: (frames: number, elapsedMs: number) => void;
}

/** What one session measured. */
export interface FuzzSessionFigures {
  readonly fuzzer: FuzzerResult;
  /** Fuzzer stderr, when it printed anything (its last 2,000 characters). */
  readonly fuzzerErrors: string;
  readonly durationMs: number;
  readonly observer: {
    /** Block numbers received by the observer while the fuzzer ran (and one block after). */
    readonly blocksReceived: number;
    /** Blocks the chain made over the same span (last - first + 1 of the observer's numbers). */
    readonly blocksExpected: number;
    /** Numbers missing between the first and the last. */
    readonly missing: number;
    readonly duplicates: number;
    /** Largest time between two blocks arriving, in ms. */
    readonly largestGapMs: number;
    /** The chain's head when the session ended, and the last block the observer got. */
    readonly chainHead: number;
    readonly lastReceived: number;
    readonly pings: number;
    readonly pingP50Ms: number;
    readonly pingP99Ms: number;
    readonly pingMaxMs: number;
    /** Pings without a pong within 5 s. */
    readonly pingsLost: number;
    readonly closed: boolean;
  };
  readonly rss: {
    readonly startMB: number;
    /** After `warmupFrames` frames: the baseline of the bound. */
    readonly warmMB: number;
    readonly peakMB: number;
    readonly endMB: number;
    readonly samples: number;
  };
  /** Gateway CPU over the fuzzer's run: seconds of user and system time, and percent of one core. */
  readonly cpu: { readonly userSec: number; readonly systemSec: number; readonly percent: number };
  /** Series (name and labels) of `blockcast_transport_*` and `blockcast_index_*` that differ. */
  readonly seriesAdded: readonly string[];
  readonly seriesRemoved: readonly string[];
  readonly seriesCount: number;
  readonly gatewayAlive: boolean;
}

/** Resident memory of `pid`, in MB (VmRSS of /proc/<pid>/status). */
export function rssMB(pid: number): number {
  return memory(pid).rssBytes / 1_048_576;
}

/** The value at percentile `p` (0–100) of `values`. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** The series keys (`name{labels}`) of the metrics whose name starts with one of `prefixes`. */
async function seriesOf(httpUrl: string, prefixes: readonly string[]): Promise<Set<string>> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text();
  const keys = new Set<string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const key = line.slice(0, line.lastIndexOf(' '));
    if (prefixes.some((prefix) => key.startsWith(prefix))) keys.add(key);
  }
  return keys;
}

const CLIENT_SERIES = ['blockcast_transport_', 'blockcast_index_'];

/** Runs one fuzz session from start to end (every wait bounded) and returns its figures. */
export async function runFuzzSession(options: FuzzSessionOptions): Promise<FuzzSessionFigures> {
  const anvil = await startAnvil({ blockTimeSec: 1 });
  let gateway: GatewayProcess | undefined;
  let observer: TestClient | undefined;
  const timers: NodeJS.Timeout[] = [];
  try {
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--max-requests-per-second', '100000']);
    const pid = gateway.process.pid as number;
    const watcher = await TestClient.connect(gateway.url, 'msgpack');
    observer = watcher;
    const sub = await watcher.subscribe({ channel: 'blocks' });
    const arrivals: Array<{ number: number; at: number }> = [];
    let seen = watcher.messages.length;
    const collectBlocks = (): void => {
      for (; seen < watcher.messages.length; seen++) {
        const m = watcher.messages[seen];
        if (m?.type === 'block' && m['sub'] === sub)
          arrivals.push({ number: m['number'] as number, at: performance.now() });
      }
    };
    watcher.ws.on('message', () => collectBlocks());
    // The first block after subscribing, so that the span starts on a block.
    await watcher.next((m) => m.type === 'block' && m['sub'] === sub, 10_000);
    collectBlocks();

    const rttMs: number[] = [];
    let pingsLost = 0;
    let pinging = true;
    const pingLoop = (async () => {
      while (pinging) {
        const sent = performance.now();
        try {
          await watcher.request({ op: 'ping' }, 5_000);
          rttMs.push(performance.now() - sent);
        } catch {
          pingsLost++;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    const rss: number[] = [];
    const sample = (): void => {
      try {
        rss.push(rssMB(pid));
      } catch {
        // The process is gone: the session reports it.
      }
    };
    sample();
    const startMB = rss[0] as number;
    timers.push(setInterval(sample, 250));
    let warmMB: number | undefined;
    const seriesBefore = await seriesOf(gateway.httpUrl, CLIENT_SERIES);
    const cpuBefore = cpuTime(pid);
    const started = performance.now();

    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        FUZZER,
        '--url',
        gateway.url,
        '--frames',
        String(options.frames),
        '--seed',
        String(options.seed),
        '--connections',
        String(options.connections ?? 6),
        '--batch',
        String(options.batch ?? 100),
        '--max-seconds',
        String(options.maxSeconds),
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    // The load generator yields to the gateway and the observer when the cores are short, so that
    // what the observer sees is the gateway's latency, not a queue behind the fuzzer.
    if (child.pid !== undefined) setPriority(child.pid, 10);
    let errors = '';
    child.stderr.on('data', (chunk: Buffer) => {
      errors = (errors + chunk.toString()).slice(-2_000);
    });
    let result: FuzzerResult | undefined;
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const parsed = JSON.parse(line) as {
        progress?: { frames: number; elapsedMs: number };
        result?: FuzzerResult;
      };
      if (parsed.progress !== undefined) {
        if (warmMB === undefined && parsed.progress.frames >= (options.warmupFrames ?? 5_000)) {
          sample();
          warmMB = rss[rss.length - 1];
        }
        options.onProgress?.(parsed.progress.frames, parsed.progress.elapsedMs);
      }
      if (parsed.result !== undefined) result = parsed.result;
    });
    const exitCode = await new Promise<number | null>((resolve) => {
      const kill = setTimeout(() => child.kill('SIGKILL'), (options.maxSeconds + 60) * 1000);
      child.once('exit', (code) => {
        clearTimeout(kill);
        resolve(code);
      });
    });
    const durationMs = performance.now() - started;
    const cpuAfter = cpuTime(pid);
    sample();
    const endMB = rss[rss.length - 1] as number;

    // One more block, so that a block stuck in the gateway during the run would show as a gap.
    const from = watcher.messages.length;
    await watcher.next((m) => m.type === 'block' && m['sub'] === sub, 10_000, from);
    collectBlocks();
    pinging = false;
    await pingLoop;
    const head = Number(await rpc<string>(anvil.httpUrl, 'eth_blockNumber'));
    const seriesAfter = await seriesOf(gateway.httpUrl, CLIENT_SERIES);
    const gatewayAlive = gateway.process.exitCode === null && (await fetch(`${gateway.httpUrl}/healthz`)).ok;

    if (result === undefined) throw new Error(`fuzzer exited with ${exitCode} without a result:\n${errors}`);
    const numbers = arrivals.map((a) => a.number);
    const first = numbers[0] ?? 0;
    const last = numbers[numbers.length - 1] ?? 0;
    const unique = new Set(numbers);
    let largestGapMs = 0;
    for (let i = 1; i < arrivals.length; i++) {
      largestGapMs = Math.max(largestGapMs, (arrivals[i]?.at ?? 0) - (arrivals[i - 1]?.at ?? 0));
    }
    const used = cpuDelta(cpuBefore, cpuAfter);
    return {
      fuzzer: result,
      fuzzerErrors: errors,
      durationMs: Math.round(durationMs),
      observer: {
        blocksReceived: numbers.length,
        blocksExpected: last - first + 1,
        missing: last - first + 1 - unique.size,
        duplicates: numbers.length - unique.size,
        largestGapMs: Math.round(largestGapMs),
        chainHead: head,
        lastReceived: last,
        pings: rttMs.length,
        pingP50Ms: percentile(rttMs, 50),
        pingP99Ms: percentile(rttMs, 99),
        pingMaxMs: Math.max(...rttMs),
        pingsLost,
        closed: watcher.closed !== undefined,
      },
      rss: {
        startMB,
        warmMB: warmMB ?? startMB,
        peakMB: Math.max(...rss),
        endMB,
        samples: rss.length,
      },
      cpu: {
        userSec: used.userUs / 1e6,
        systemSec: used.systemUs / 1e6,
        percent: ((used.userUs + used.systemUs) / 1e6 / (durationMs / 1000)) * 100,
      },
      seriesAdded: [...seriesAfter].filter((key) => !seriesBefore.has(key)),
      seriesRemoved: [...seriesBefore].filter((key) => !seriesAfter.has(key)),
      seriesCount: seriesAfter.size,
      gatewayAlive,
    };
  } finally {
    for (const timer of timers) clearInterval(timer);
    observer?.close();
    await gateway?.stop();
    await anvil.close();
  }
}
