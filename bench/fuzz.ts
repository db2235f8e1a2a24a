/**
 * The fuzz benchmark of issue 10: the gateway following anvil (1 s blocks) takes a stream of
 * generated client frames (test/helpers/fuzzFrames.ts: malformed, hostile and valid, both
 * encodings) from a fuzzer process, while an observer subscribed to `blocks` pings every 50 ms.
 *
 *   npm run bench:fuzz                        1,000,000 frames (bounded to 15 minutes)
 *   npm run bench:fuzz -- --frames 200000 --seed 7 --connections 6 --batch 100
 *
 * Writes bench/results/fuzz.md and bench/results/fuzz.json. Loopback only.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type FuzzSessionFigures, runFuzzSession } from '../test/helpers/fuzzSession.ts';
import { describeMachine, type MachineDescription } from './lib/proc.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS_DIR = join(ROOT, 'bench', 'results');

const { values } = parseArgs({
  options: {
    frames: { type: 'string', default: '1000000' },
    seed: { type: 'string', default: '1' },
    connections: { type: 'string', default: '6' },
    batch: { type: 'string', default: '100' },
    'max-seconds': { type: 'string', default: '900' },
  },
});
const frames = Number(values.frames);
const seed = Number(values.seed);
const connections = Number(values.connections);
const batch = Number(values.batch);
const maxSeconds = Number(values['max-seconds']);
if (!Number.isSafeInteger(frames) || frames < 1) throw new TypeError(`--frames must be a positive integer`);

/** Everything one run produced. */
interface FuzzResults {
  readonly startedAt: string;
  readonly machine: MachineDescription;
  readonly options: { frames: number; seed: number; connections: number; batch: number; maxSeconds: number };
  readonly figures: FuzzSessionFigures;
}

function fixed(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '–';
}

function thousands(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : '–';
}

function countsTable(title: string, counts: Record<string, number>): string {
  const rows = [`| ${title} | count |`, '|---|---:|'];
  for (const [key, count] of Object.entries(counts).sort((a, b) => b[1] - a[1])) {
    rows.push(`| ${key} | ${thousands(count)} |`);
  }
  return rows.join('\n');
}

function markdown(results: FuzzResults): string {
  const { figures, machine, options } = results;
  const { fuzzer, observer, rss, cpu } = figures;
  const cpuUsPerFrame = ((cpu.userSec + cpu.systemSec) * 1e6) / fuzzer.framesSent;
  return `# blockcast fuzz benchmark

Run ${results.startedAt} with \`npm run bench:fuzz -- --frames ${options.frames} --seed ${options.seed} --connections ${options.connections} --batch ${options.batch}\`.

Machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node.js ${machine.node}, Linux ${machine.kernel}.
The gateway follows anvil (1 s blocks) with \`--max-requests-per-second 100000\` (the most the config
takes) and its other limits at their defaults (\`maxMessageBytes\` 1 MiB, 500 connections per IP). The
fuzzer (test/helpers/fuzzer.ts) runs in its own process at a lower CPU priority (nice 10) on
${fuzzer.connections} connections (half MessagePack, half JSON; frames of both encodings on each), sends a
ping after every ${options.batch} frames and waits for its pong, and opens a connection again when the
server closed it. One connection never resets its count of malformed frames and is closed with 1008
now and then; the others send a ping before they would be. The observer runs in the benchmark's
process: subscribed to \`blocks\`, one ping every 50 ms. Loopback only.

## Summary

| figure | value |
|---|---:|
| frames sent | ${thousands(fuzzer.framesSent)} (${fixed(fuzzer.bytesSent / 2 ** 20)} MB) |
| fuzzer run | ${fixed(fuzzer.durationMs / 1000)} s |
| frames per second | ${thousands(fuzzer.framesPerSecond)} |
| gateway CPU over the run (user + system) | ${fixed(cpu.userSec)} + ${fixed(cpu.systemSec)} s, ${fixed(cpu.percent, 0)} % of one core |
| gateway CPU per frame | ${fixed(cpuUsPerFrame)} µs |
| gateway RSS at start / after ${thousands(5000)} frames / peak / end | ${fixed(rss.startMB)} / ${fixed(rss.warmMB)} / ${fixed(rss.peakMB)} / ${fixed(rss.endMB)} MB |
| RSS peak − after warm-up (bound of the test: 50 MB) | ${fixed(rss.peakMB - rss.warmMB)} MB |
| observer pings (p50 / p99 / max) | ${fixed(observer.pingP50Ms)} / ${fixed(observer.pingP99Ms)} / ${fixed(observer.pingMaxMs)} ms over ${thousands(observer.pings)} pings, ${observer.pingsLost} lost |
| observer blocks received / expected | ${observer.blocksReceived} / ${observer.blocksExpected} (missing ${observer.missing}, duplicates ${observer.duplicates}; chain head ${observer.chainHead}, last received ${observer.lastReceived}) |
| largest gap between two blocks at the observer | ${thousands(observer.largestGapMs)} ms |
| fuzzer pings without a pong in 10 s | ${fuzzer.pingTimeouts} of ${thousands(fuzzer.pings)} |
| reconnects (upgrades refused and tried again) | ${thousands(fuzzer.reconnects)} (${fuzzer.refusedUpgrades}) |
| closes nothing sent explains | ${fuzzer.unexpectedCloses.length === 0 ? 'none' : fuzzer.unexpectedCloses.join('; ')} |
| transport and index series added / removed | ${figures.seriesAdded.length} / ${figures.seriesRemoved.length} (of ${figures.seriesCount}) |
| gateway up at the end | ${figures.gatewayAlive ? 'yes' : '**no**'} |

## Server messages by type (errors by code)

${countsTable('message', fuzzer.replies)}

## Closes by code

${countsTable('close code', fuzzer.closes)}

1008: 16 malformed frames in a row; 1009: a frame past \`maxMessageBytes\`; 1006: a text frame that
is not UTF-8 (uWebSockets.js drops the connection without a close frame).

## Frames by generator

${countsTable('generator', fuzzer.framesByKind)}
`;
}

const startedAt = new Date().toISOString();
process.stderr.write(`fuzzing with ${thousands(frames)} frames (seed ${seed}, ${connections} connections)\n`);
let lastReport = 0;
const figures = await runFuzzSession({
  frames,
  seed,
  connections,
  batch,
  maxSeconds,
  onProgress: (sent, elapsedMs) => {
    if (elapsedMs - lastReport < 10_000) return;
    lastReport = elapsedMs;
    process.stderr.write(`  ${thousands(sent)} frames in ${fixed(elapsedMs / 1000)} s\n`);
  },
});
const results: FuzzResults = {
  startedAt,
  machine: describeMachine(),
  options: { frames, seed, connections, batch, maxSeconds },
  figures,
};
mkdirSync(RESULTS_DIR, { recursive: true });
writeFileSync(join(RESULTS_DIR, 'fuzz.json'), `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(join(RESULTS_DIR, 'fuzz.md'), markdown(results));
process.stderr.write(`wrote bench/results/fuzz.md and fuzz.json\n`);
process.stdout.write(markdown(results));
