/**
 * The resume attack of issue 10, repeated against the real gateway on loopback: cycles of
 * connect, subscribe (100 addresses, busy ones among them, `from` a valid cursor about 200
 * blocks back), disconnect, from worker processes at a fixed rate; meanwhile an honest
 * subscriber pings every 100 ms and follows blocks. Reports the gateway's RSS (start, peak,
 * 30 s after the last cycle), the honest ping→pong p50/p99/max, the longest wait between two
 * blocks, and what the attackers were answered. Writes bench/results/resume-attack.md and .json.
 *
 *   node --import tsx bench/resumeAttack.ts [--cycles 60000] [--rate 290] [--workers 2]
 *
 * Every loop is bounded in count and time; everything talks to 127.0.0.1 only.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { startAnvil } from '../src/devnet/startAnvil.ts';
import { rpc } from '../test/helpers/chain.ts';
import { startGateway } from '../test/helpers/gateway.ts';
import { describeMachine, memory } from './lib/proc.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BLOCK_TIME_MS = 1000;
/** Blocks of history made before the attack: the cursor is about 200 blocks back. */
const HISTORY_BLOCKS = 230;
const CURSOR_DEPTH = 200;
const DEV_ACCOUNTS = 10;

const { values } = parseArgs({
  options: {
    cycles: { type: 'string', default: '60000' },
    rate: { type: 'string', default: '290' },
    workers: { type: 'string', default: '2' },
    worker: { type: 'boolean', default: false },
    url: { type: 'string' },
    rpc: { type: 'string' },
    addresses: { type: 'string' },
  },
});

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** The gateway's V8 heap (used and total) and external memory, from its /metrics, in MB. */
async function heapOf(httpUrl: string): Promise<{ usedMB: number; totalMB: number; externalMB: number }> {
  const text = await (await fetch(`${httpUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const mb = (name: string): number =>
    Math.round(Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0) / 1e5) / 10;
  return {
    usedMB: mb('nodejs_heap_size_used_bytes'),
    totalMB: mb('nodejs_heap_size_total_bytes'),
    externalMB: mb('nodejs_external_memory_bytes'),
  };
}

/** A valid cursor of the block `CURSOR_DEPTH` below the node's head. */
async function cursorBack(rpcUrl: string): Promise<string> {
  const head = Number(await rpc<string>(rpcUrl, 'eth_blockNumber'));
  const back = await rpc<{ hash: string; number: string }>(rpcUrl, 'eth_getBlockByNumber', [
    `0x${(head - CURSOR_DEPTH).toString(16)}`,
    false,
  ]);
  return `31337:${Number(back.number)}:${back.hash}`;
}

/**
 * One attacking process: `cycles` connect-subscribe-disconnect cycles at `rate` a second, each
 * with a cursor about `CURSOR_DEPTH` blocks back (renewed every 5 s, so it stays in the window).
 */
async function attack(url: string, rpcUrl: string, cycles: number, rate: number, addresses: string[]): Promise<void> {
  let cursor = await cursorBack(rpcUrl);
  let cursorAt = performance.now();
  const answers = new Map<string, number>();
  let inFlight = 0;
  let done = 0;
  const count = (what: string): void => {
    answers.set(what, (answers.get(what) ?? 0) + 1);
  };
  const cycle = (): Promise<void> =>
    new Promise((resolve) => {
      inFlight++;
      const ws = new WebSocket(`${url}?encoding=json`);
      let finished = false;
      const finish = (what: string): void => {
        if (finished) return;
        finished = true;
        count(what);
        clearTimeout(timer);
        ws.terminate();
        inFlight--;
        done++;
        resolve();
      };
      // A cycle ends at the answer to its subscribe, or after a second whatever happened.
      const timer = setTimeout(() => finish('no answer within 1 s'), 1000);
      ws.on('message', (data: Buffer) => {
        const message = JSON.parse(data.toString()) as { type: string; code?: string; recovered?: boolean };
        if (message.type === 'welcome') {
          ws.send(JSON.stringify({ op: 'subscribe', id: 1, channel: 'activity', addresses, from: cursor }));
        } else if (message.type === 'subscribed') finish(`subscribed recovered:${message.recovered}`);
        else if (message.type === 'error') finish(`error ${message.code}`);
      });
      ws.on('unexpected-response', (_req, res) => finish(`HTTP ${res.statusCode}`));
      ws.on('error', () => finish('socket error'));
    });
  const startedAt = performance.now();
  const pending: Array<Promise<void>> = [];
  for (let i = 0; i < cycles; i++) {
    if (performance.now() - cursorAt > 5000) {
      cursor = await cursorBack(rpcUrl);
      cursorAt = performance.now();
    }
    // Paced: cycle i starts at i / rate seconds; at most 2,000 in flight.
    const due = startedAt + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    for (let spins = 0; inFlight >= 2000 && spins < 10_000; spins++) await new Promise((r) => setTimeout(r, 1));
    pending.push(cycle());
    if (pending.length >= 1000) await Promise.all(pending.splice(0, pending.length - 500));
  }
  await Promise.all(pending);
  const seconds = (performance.now() - startedAt) / 1000;
  process.stdout.write(`${JSON.stringify({ done, seconds, answers: Object.fromEntries(answers) })}\n`);
}

async function main(): Promise<void> {
  const cycles = Number(values.cycles);
  const rate = Number(values.rate);
  const workers = Number(values.workers);
  const anvil = await startAnvil({ noMining: true });
  const gateway = await startGateway([
    '--rpc',
    anvil.httpUrl,
    '--poll-interval-ms',
    '100',
    // Every attacker comes from 127.0.0.1; the per-address limit would refuse most of them first.
    '--max-connections-per-ip',
    '0',
  ]);
  const pid = gateway.process.pid as number;
  const accounts = await rpc<string[]>(anvil.httpUrl, 'eth_accounts');
  const busy = accounts.slice(0, DEV_ACCOUNTS).map((a) => a.toLowerCase());
  let sent = 0;
  /** A few transfers among the busy accounts. */
  const traffic = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) {
      const from = busy[sent % busy.length] as string;
      const to = busy[(sent * 7 + 3) % busy.length] as string;
      sent++;
      await rpc(anvil.httpUrl, 'eth_sendTransaction', [{ from, to, value: '0x1' }]);
    }
  };
  console.error(`history: mining ${HISTORY_BLOCKS} blocks with transfers among ${DEV_ACCOUNTS} accounts`);
  for (let n = 0; n < HISTORY_BLOCKS; n++) {
    await traffic(5);
    await rpc(anvil.httpUrl, 'evm_mine');
  }
  // From now on a block a second, each with transfers.
  await rpc(anvil.httpUrl, 'evm_setIntervalMining', [BLOCK_TIME_MS / 1000]);
  let trafficOn = true;
  const trafficLoop = (async () => {
    for (let i = 0; i < 100_000 && trafficOn; i++) {
      await traffic(3);
      await new Promise((resolve) => setTimeout(resolve, BLOCK_TIME_MS / 2));
    }
  })();

  // The honest subscriber: blocks and the activity of two busy accounts; a ping every 100 ms.
  const honest = new WebSocket(`${gateway.url}?encoding=json`);
  const pings = new Map<number, number>();
  const rtts: number[] = [];
  const blockTimes: number[] = [];
  let pingId = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('honest subscriber: no welcome')), 10_000);
    honest.on('message', (data: Buffer) => {
      const m = JSON.parse(data.toString()) as { type: string; id?: number; sub?: string };
      if (m.type === 'welcome') {
        clearTimeout(timer);
        honest.send(JSON.stringify({ op: 'subscribe', channel: 'blocks' }));
        honest.send(JSON.stringify({ op: 'subscribe', channel: 'activity', addresses: busy.slice(0, 2) }));
        resolve();
      } else if (m.type === 'pong' && typeof m.id === 'number') {
        const at = pings.get(m.id);
        if (at !== undefined) rtts.push(performance.now() - at);
        pings.delete(m.id);
      } else if (m.type === 'block') blockTimes.push(performance.now());
    });
  });
  const pinger = setInterval(() => {
    pings.set(++pingId, performance.now());
    honest.send(JSON.stringify({ op: 'ping', id: pingId }));
  }, 100);

  const addresses = [
    ...busy,
    ...Array.from({ length: 100 - busy.length }, (_, i) => `0x${(0xabc000 + i).toString(16).padStart(40, '0')}`),
  ];

  // Warm: what the gateway holds with its history and the honest subscriber, settled.
  await new Promise((resolve) => setTimeout(resolve, 5000));
  const startRss = memory(pid).rssBytes;
  const startHeap = await heapOf(gateway.httpUrl);
  let peakRss = startRss;
  let peakHeap = startHeap;
  let sampling = false;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, memory(pid).rssBytes);
    if (sampling) return;
    sampling = true;
    heapOf(gateway.httpUrl)
      .then((heap) => {
        if (heap.totalMB > peakHeap.totalMB) peakHeap = heap;
      })
      .catch(() => undefined)
      .finally(() => {
        sampling = false;
      });
  }, 250);
  const measureFrom = blockTimes.length;
  const rttFrom = rtts.length;

  console.error(`attack: ${cycles} cycles at ${rate}/s from ${workers} processes, cursor ${CURSOR_DEPTH} blocks back`);
  const results = await Promise.all(
    Array.from({ length: workers }, (_, w) => {
      const share = Math.floor(cycles / workers) + (w < cycles % workers ? 1 : 0);
      return new Promise<{ done: number; seconds: number; answers: Record<string, number> }>((resolve, reject) => {
        const child = spawn(
          process.execPath,
          [
            '--import',
            'tsx',
            'bench/resumeAttack.ts',
            '--worker',
            '--url',
            gateway.url,
            '--cycles',
            String(share),
            '--rate',
            String(rate / workers),
            '--rpc',
            anvil.httpUrl,
            '--addresses',
            addresses.join(','),
          ],
          { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
        );
        let result: { done: number; seconds: number; answers: Record<string, number> } | undefined;
        createInterface({ input: child.stdout }).on('line', (line) => {
          result = JSON.parse(line);
        });
        child.once('exit', (code) =>
          result === undefined ? reject(new Error(`worker exited ${code}`)) : resolve(result),
        );
      });
    }),
  );
  const duringRtts = rtts.slice(rttFrom).sort((a, b) => a - b);
  const duringBlocks = blockTimes.slice(measureFrom);
  let longestGapMs = 0;
  for (let i = 1; i < duringBlocks.length; i++) {
    longestGapMs = Math.max(longestGapMs, (duringBlocks[i] as number) - (duringBlocks[i - 1] as number));
  }
  const peakDuring = peakRss;
  console.error('attack over: waiting 30 s');
  await new Promise((resolve) => setTimeout(resolve, 30_000));
  clearInterval(sampler);
  const afterRss = memory(pid).rssBytes;
  const afterHeap = await heapOf(gateway.httpUrl);
  const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
  clearInterval(pinger);
  trafficOn = false;
  await trafficLoop;
  honest.close();
  await gateway.stop();
  await anvil.close();

  const answers: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.answers)) answers[k] = (answers[k] ?? 0) + v;
  const done = results.reduce((sum, r) => sum + r.done, 0);
  const seconds = Math.max(...results.map((r) => r.seconds));
  const mb = (bytes: number): number => Math.round(bytes / 1e5) / 10;
  const figures = {
    cycles: done,
    seconds: Math.round(seconds),
    cyclesPerSecond: Math.round(done / seconds),
    answers,
    rssStartMB: mb(startRss),
    rssPeakMB: mb(peakDuring),
    rssAfter30sMB: mb(afterRss),
    rssGrowthPeakMB: mb(peakDuring - startRss),
    rssGrowthAfterMB: mb(afterRss - startRss),
    heapStart: startHeap,
    heapPeak: peakHeap,
    heapAfter30s: afterHeap,
    honestPings: duringRtts.length,
    honestPingP50Ms: Math.round(percentile(duringRtts, 50) * 10) / 10,
    honestPingP99Ms: Math.round(percentile(duringRtts, 99) * 10) / 10,
    honestPingMaxMs: Math.round((duringRtts.at(-1) ?? 0) * 10) / 10,
    honestBlocks: duringBlocks.length,
    longestBlockGapMs: Math.round(longestGapMs),
    blockTimeMs: BLOCK_TIME_MS,
    replaySeconds: Number(/^blockcast_fanout_replay_seconds_total (\S+)$/m.exec(metrics)?.[1] ?? 0),
    machine: describeMachine(),
  };
  const targets = [
    ['RSS growth during the attack', `${figures.rssGrowthPeakMB} MB`, '≤ 100 MB', figures.rssGrowthPeakMB <= 100],
    [
      'RSS 30 s after the last cycle, over the start',
      `${figures.rssGrowthAfterMB} MB`,
      '≤ 20 MB',
      figures.rssGrowthAfterMB <= 20,
    ],
    ['honest ping→pong p99', `${figures.honestPingP99Ms} ms`, '< 100 ms', figures.honestPingP99Ms < 100],
    [
      'longest wait between two blocks',
      `${figures.longestBlockGapMs} ms`,
      `≤ ${2 * BLOCK_TIME_MS} ms`,
      figures.longestBlockGapMs <= 2 * BLOCK_TIME_MS,
    ],
  ] as const;
  const md = [
    '# Resume attack (issue 10)',
    '',
    `${figures.cycles.toLocaleString('en-US')} cycles of connect, subscribe (100 addresses, ${DEV_ACCOUNTS} busy, \`from\` a cursor ${CURSOR_DEPTH} blocks back, renewed every 5 s), disconnect, at ${figures.cyclesPerSecond}/s over ${figures.seconds} s from ${workers} processes, against \`src/main.ts\` on anvil (1 s blocks with transfers among the busy accounts). An honest subscriber pinged every 100 ms and followed blocks throughout.`,
    '',
    '| target | measured | limit | met |',
    '|---|---|---|---|',
    ...targets.map(([what, got, limit, met]) => `| ${what} | ${got} | ${limit} | ${met ? 'yes' : '**no**'} |`),
    '',
    `RSS: ${figures.rssStartMB} MB at the start, ${figures.rssPeakMB} MB at the peak, ${figures.rssAfter30sMB} MB 30 s after the last cycle (V8 heap used/total: ${startHeap.usedMB}/${startHeap.totalMB}, ${peakHeap.usedMB}/${peakHeap.totalMB}, ${afterHeap.usedMB}/${afterHeap.totalMB} MB; external ${startHeap.externalMB}, ${peakHeap.externalMB}, ${afterHeap.externalMB} MB). Honest pings: ${figures.honestPings}, p50 ${figures.honestPingP50Ms} ms, p99 ${figures.honestPingP99Ms} ms, max ${figures.honestPingMaxMs} ms; ${figures.honestBlocks} blocks. Replay work: ${figures.replaySeconds.toFixed(1)} s of the gateway's time.`,
    '',
    'What the attackers were answered:',
    '',
    '| answer | cycles |',
    '|---|---:|',
    ...Object.entries(answers)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `| ${k} | ${v.toLocaleString('en-US')} |`),
    '',
    `Machine: ${figures.machine.cpuModel}, ${figures.machine.cores} cores, Node.js ${figures.machine.node}, Linux ${figures.machine.kernel}.`,
    '',
  ].join('\n');
  writeFileSync(`${ROOT}bench/results/resume-attack.md`, md);
  writeFileSync(`${ROOT}bench/results/resume-attack.json`, `${JSON.stringify(figures, null, 2)}\n`);
  console.log(md);
}

if (values.worker) {
  await attack(
    values.url as string,
    values.rpc as string,
    Number(values.cycles),
    Number(values.rate),
    (values.addresses as string).split(','),
  );
} else {
  await main();
}
