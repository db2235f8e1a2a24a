/**
 * `newHeads` to many JSON-RPC subscribers: the gateway's `/rpc` against the node's own
 * `eth_subscribe`, in the same run, interleaved. A block is mined on anvil (`evm_mine`); the
 * figure is the time from that request to the last of N subscribers receiving the block's head
 * (and to the first). anvil and the gateway share one core; the load generator (wsload, in C) has
 * the other.
 *
 *   npm run bench:rpc                      10,000 subscribers, 2 rounds of 40 blocks per target
 *   npm run bench:rpc -- --conns 2000 --blocks 20 --rounds 1
 *
 * Writes bench/results/rpc-heads.md and bench/results/rpc-heads.json.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAnvil } from '../src/devnet/startAnvil.ts';
import { rpc } from '../test/helpers/chain.ts';
import { LineProcess } from './lib/lineProcess.ts';
import { cpuDelta, cpuTime, describeMachine } from './lib/proc.ts';
import { CLIENT_CPU, SERVER_CPU } from './lib/round.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BUILD_DIR = join(ROOT, 'bench', '.build');
const RESULTS_DIR = join(ROOT, 'bench', 'results');

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const value = at < 0 ? undefined : Number(process.argv[at + 1]);
  return value !== undefined && Number.isSafeInteger(value) && value > 0 ? value : fallback;
}

const PLAN = {
  conns: option('conns', 10_000),
  blocks: option('blocks', 40),
  warmupBlocks: 3,
  rounds: option('rounds', 2),
  intervalMs: 400,
};

type Target = 'node' | 'gateway';

interface Phase {
  readonly target: Target;
  readonly round: number;
  /** ms from evm_mine to the last and to the first subscriber, per measured block. */
  readonly lastMs: number[];
  readonly firstMs: number[];
  /** Blocks whose head did not reach every subscriber. */
  readonly incomplete: number;
  readonly duplicates: number;
  /** CPU of the serving side (anvil and, for the gateway, the gateway too) per delivery, µs. */
  readonly cpuPerDeliveryUs: number;
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

/** Pins every thread of a running process to one core. */
function pin(pid: number, cpu: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpu, String(pid)], { stdio: 'ignore' });
}

async function startGatewayProcess(anvilWs: string): Promise<{ port: number; pid: number; stop: () => void }> {
  const child = spawn(
    'taskset',
    [
      '-c',
      SERVER_CPU,
      process.execPath,
      '--import',
      'tsx/esm',
      join(ROOT, 'src', 'main.ts'),
      '--rpc',
      anvilWs,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--max-connections-per-ip',
      '0',
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${output}`)), 30_000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const m = /listening on ws:\/\/127\.0\.0\.1:(\d+)\/v1/.exec(output);
      if (m === null) return;
      clearTimeout(timer);
      resolve(Number(m[1]));
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('exit', (code) => reject(new Error(`gateway exited with ${code}:\n${output}`)));
  });
  return { port, pid: child.pid as number, stop: () => child.kill('SIGTERM') };
}

async function runPhase(
  target: Target,
  round: number,
  loadgen: string,
  subsFile: string,
  port: number,
  path: string,
  anvil: { httpUrl: string; pid: number },
  gatewayPid: number,
): Promise<Phase> {
  const client = new LineProcess(
    `load generator (${target})`,
    'taskset',
    [
      '-c',
      CLIENT_CPU,
      loadgen,
      '--port',
      String(port),
      '--path',
      path,
      '--conns',
      String(PLAN.conns),
      '--subs',
      subsFile,
      '--rpc',
      '1',
      '--src',
      `127.0.${10 + round}.${target === 'node' ? 1 : 2}`,
      '--max-seconds',
      '600',
      '--connect-timeout-sec',
      '60',
    ],
    ROOT,
  );
  try {
    const ready = await client.next((m) => m.event === 'ready', 120_000);
    if (ready['subscribed'] !== PLAN.conns) {
      throw new Error(`${target}: ${ready['subscribed']} of ${PLAN.conns} subscribed: ${JSON.stringify(ready)}`);
    }
    const mined = new Map<number, bigint>();
    const mine = async (): Promise<void> => {
      const sentAt = process.hrtime.bigint();
      await rpc(anvil.httpUrl, 'evm_mine');
      const number = Number(await rpc(anvil.httpUrl, 'eth_blockNumber'));
      mined.set(number, sentAt);
    };
    const pause = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, PLAN.intervalMs));
    for (let i = 0; i < PLAN.warmupBlocks; i++) {
      await mine();
      await pause();
    }
    mined.clear();
    const pids = target === 'node' ? [anvil.pid] : [anvil.pid, gatewayPid];
    const before = pids.map(cpuTime);
    for (let i = 0; i < PLAN.blocks; i++) {
      await mine();
      await pause();
    }
    const last = Math.max(...mined.keys());
    // The last block's head is on its way: ask until every subscriber has it (bounded).
    let report = await client.request('report', 'report');
    for (let tries = 0; tries < 50; tries++) {
      const entry = (report['blocks'] as Array<[number, number, string, string]>).find((b) => b[0] === last);
      if (entry !== undefined && entry[1] >= PLAN.conns) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
      report = await client.request('report', 'report');
    }
    const after = pids.map(cpuTime);
    const cpuUs = before.reduce((sum, b, i) => {
      const d = cpuDelta(b, after[i] as typeof b);
      return sum + d.userUs + d.systemUs;
    }, 0);
    const lastMs: number[] = [];
    const firstMs: number[] = [];
    let incomplete = 0;
    const blocks = new Map((report['blocks'] as Array<[number, number, string, string]>).map((b) => [b[0], b]));
    for (const [number, sentAt] of mined) {
      const entry = blocks.get(number);
      if (entry === undefined || entry[1] < PLAN.conns) {
        incomplete++;
        continue;
      }
      firstMs.push(Number(BigInt(entry[2]) - sentAt) / 1e6);
      lastMs.push(Number(BigInt(entry[3]) - sentAt) / 1e6);
    }
    return {
      target,
      round,
      lastMs,
      firstMs,
      incomplete,
      duplicates: Number(report['duplicates'] ?? 0),
      cpuPerDeliveryUs: cpuUs / (mined.size * PLAN.conns),
    };
  } finally {
    await client.stop();
  }
}

async function main(): Promise<void> {
  mkdirSync(BUILD_DIR, { recursive: true });
  const loadgen = join(BUILD_DIR, 'wsload');
  execFileSync('cc', ['-O2', '-Wall', '-o', loadgen, join(ROOT, 'bench', 'loadgen', 'wsload.c')], { stdio: 'inherit' });
  const subsFile = join(BUILD_DIR, 'rpc-heads.subs');
  writeFileSync(subsFile, '{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}\n');

  const anvil = await startAnvil({ noMining: true });
  pin(anvil.process.pid as number, SERVER_CPU);
  const gateway = await startGatewayProcess(anvil.wsUrl);
  const phases: Phase[] = [];
  try {
    const anvilPort = Number(new URL(anvil.wsUrl).port);
    for (let round = 0; round < PLAN.rounds; round++) {
      const order: Target[] = round % 2 === 0 ? ['node', 'gateway'] : ['gateway', 'node'];
      for (const target of order) {
        log(`round ${round + 1}: ${PLAN.conns} newHeads subscribers on the ${target}`);
        const phase =
          target === 'node'
            ? await runPhase(
                target,
                round,
                loadgen,
                subsFile,
                anvilPort,
                '/',
                { httpUrl: anvil.httpUrl, pid: anvil.process.pid as number },
                gateway.pid,
              )
            : await runPhase(
                target,
                round,
                loadgen,
                subsFile,
                gateway.port,
                '/rpc',
                { httpUrl: anvil.httpUrl, pid: anvil.process.pid as number },
                gateway.pid,
              );
        log(
          `  last subscriber p50 ${percentile(phase.lastMs, 50).toFixed(1)} ms, p99 ${percentile(phase.lastMs, 99).toFixed(1)} ms; incomplete ${phase.incomplete}`,
        );
        phases.push(phase);
      }
    }
  } finally {
    gateway.stop();
    await anvil.close();
  }

  const summary = (target: Target) => {
    const of = phases.filter((p) => p.target === target);
    const last = of.flatMap((p) => p.lastMs);
    const first = of.flatMap((p) => p.firstMs);
    return {
      blocks: last.length,
      lastP50: percentile(last, 50),
      lastP99: percentile(last, 99),
      firstP50: percentile(first, 50),
      incomplete: of.reduce((s, p) => s + p.incomplete, 0),
      duplicates: of.reduce((s, p) => s + p.duplicates, 0),
      cpuPerDeliveryUs: of.reduce((s, p) => s + p.cpuPerDeliveryUs, 0) / of.length,
    };
  };
  const node = summary('node');
  const gw = summary('gateway');
  const ratio = gw.lastP50 / node.lastP50;
  const machine = describeMachine();
  const results = { plan: PLAN, machine, node, gateway: gw, ratioP50: ratio, phases, at: new Date().toISOString() };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'rpc-heads.json'), `${JSON.stringify(results, null, 2)}\n`);
  const f = (n: number): string => n.toFixed(1);
  const md = [
    '# newHeads to many JSON-RPC subscribers: the gateway against the node',
    '',
    `Run ${results.at} on ${machine.cpuModel} (${machine.cores} cores), Node ${machine.node}. ${PLAN.conns.toLocaleString('en')} subscribers,`,
    `${PLAN.rounds} rounds of ${PLAN.blocks} blocks per target (after ${PLAN.warmupBlocks} warm-up blocks), interleaved; a block every`,
    `${PLAN.intervalMs} ms by \`evm_mine\`. anvil and the gateway on core ${SERVER_CPU}, the load generator (wsload) on core ${CLIENT_CPU}.`,
    'Latency: from the `evm_mine` request to the head reaching the last (and the first) subscriber.',
    '',
    '| target | blocks | last subscriber p50 | p99 | first subscriber p50 | blocks not complete | duplicates | serving CPU per delivery |',
    '|---|---|---|---|---|---|---|---|',
    `| anvil \`eth_subscribe\` | ${node.blocks} | ${f(node.lastP50)} ms | ${f(node.lastP99)} ms | ${f(node.firstP50)} ms | ${node.incomplete} | ${node.duplicates} | ${f(node.cpuPerDeliveryUs)} µs |`,
    `| gateway \`/rpc\` | ${gw.blocks} | ${f(gw.lastP50)} ms | ${f(gw.lastP99)} ms | ${f(gw.firstP50)} ms | ${gw.incomplete} | ${gw.duplicates} | ${f(gw.cpuPerDeliveryUs)} µs (anvil and gateway) |`,
    '',
    `Gateway p50 / node p50: **${ratio.toFixed(2)}** (goal ≤ 0.5).`,
    '',
  ].join('\n');
  writeFileSync(join(RESULTS_DIR, 'rpc-heads.md'), md);
  process.stdout.write(md);
}

await main();
