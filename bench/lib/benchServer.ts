/**
 * The control loop every benchmark server runs (the gateway and its baselines alike): JSON
 * commands on stdin, JSON answers on stdout, one per line. The controller prepares blocks (made
 * before the measured window, as ingest would hand them over), then has them published at a
 * fixed interval; the server stamps each block with `process.hrtime.bigint()` (CLOCK_MONOTONIC)
 * just before handing it over, so the load generator's arrival times compare with it.
 */

import { createInterface } from 'node:readline';
import { type Config, DEFAULTS } from '../../src/config.ts';
import type { ChainBlock } from '../../src/domain/types.ts';
import { createBlockSource, type Workload } from './synthetic.ts';

/** The arguments every benchmark server gets, as JSON in `argv[2]`. */
export interface ServerArgs {
  readonly workload: Workload;
  /** Send buffer per connection before a slow reader is dropped, in bytes. */
  readonly maxBackpressureBytes: number;
}

/** What a server under test does with a block. */
export interface BenchTarget {
  readonly port: number;
  /** Hands one block to the server; returns how many frames it handed to its sockets and their bytes. */
  readonly publish: (block: ChainBlock) => { frames: number; bytes: number };
  /** Work done with a block before its publish time (a baseline pre-encoding its frames). */
  readonly prepare?: (block: ChainBlock) => void;
  /** Figures the server knows of itself (connections, closes of slow readers). */
  readonly stats: () => Record<string, number> | Promise<Record<string, number>>;
  readonly close: () => void;
}

/** One published block, as the server saw it. */
export interface PublishRecord {
  readonly number: number;
  /** `process.hrtime.bigint()` just before the block was handed over, in ns, as a string. */
  readonly publishedNs: string;
  /** Time the publish call took (synchronous match, encode and writes), in µs. */
  readonly syncUs: number;
  readonly frames: number;
  readonly bytes: number;
}

type Command =
  | { readonly cmd: 'prepare'; readonly first: number; readonly count: number }
  | { readonly cmd: 'publish'; readonly intervalMs: number }
  | { readonly cmd: 'stats' }
  | { readonly cmd: 'rss' }
  | { readonly cmd: 'quit' };

/** Longest a publish run may take, whatever it was asked: a bound on every loop below. */
const MAX_RUN_MS = 300_000;

function reply(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** Parses `argv[2]`. */
export function serverArgs(): ServerArgs {
  const raw = process.argv[2];
  if (raw === undefined) throw new Error('benchmark server: pass its arguments as JSON');
  return JSON.parse(raw) as ServerArgs;
}

function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return;
  for (let i = 0; i < 3; i++) gc();
}

/** Runs the control loop of a benchmark server until `quit` or the end of stdin. */
export function serveBenchControl(target: BenchTarget, workload: Workload): void {
  const source = createBlockSource(workload);
  let prepared: ChainBlock[] = [];
  const publish = async (intervalMs: number): Promise<void> => {
    const blocks = prepared;
    prepared = [];
    const records: PublishRecord[] = [];
    const started = performance.now();
    for (let i = 0; i < blocks.length && performance.now() - started < MAX_RUN_MS; i++) {
      const block = blocks[i] as ChainBlock;
      const waitMs = started + i * intervalMs - performance.now();
      if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
      const publishedNs = process.hrtime.bigint();
      const { frames, bytes } = target.publish(block);
      const syncUs = Number(process.hrtime.bigint() - publishedNs) / 1000;
      records.push({ number: block.number, publishedNs: publishedNs.toString(), syncUs, frames, bytes });
    }
    reply({ event: 'published', records });
  };
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const command = JSON.parse(line) as Command;
    switch (command.cmd) {
      case 'prepare': {
        prepared = [];
        for (let i = 0; i < command.count; i++) {
          const block = source.block(command.first + i);
          target.prepare?.(block);
          prepared.push(block);
        }
        collectGarbage();
        reply({ event: 'prepared', count: prepared.length });
        return;
      }
      case 'publish':
        void publish(command.intervalMs);
        return;
      case 'stats':
        void Promise.resolve(target.stats()).then((stats) =>
          reply({ event: 'stats', ...stats, rssBytes: process.memoryUsage().rss }),
        );
        return;
      case 'rss':
        collectGarbage();
        reply({ event: 'rss', rssBytes: process.memoryUsage().rss, heapUsedBytes: process.memoryUsage().heapUsed });
        return;
      case 'quit':
        target.close();
        lines.close();
        process.exit(0);
    }
  });
  lines.on('close', () => {
    target.close();
    process.exit(0);
  });
  reply({ event: 'listening', port: target.port });
}

/**
 * The configuration of a benchmark gateway: the defaults, on loopback at `port`, with no
 * per-address or total connection limit, connections that never idle out (uWS still pings), the
 * run's send buffer, and never unready (the synthetic blocks are from long ago).
 */
export function benchGatewayConfig(port: number, maxBackpressureBytes: number): Config {
  return {
    ...DEFAULTS,
    host: '127.0.0.1',
    port,
    idleTimeoutSec: 960,
    maxBackpressureBytes,
    maxConnectionsPerIp: 0,
    maxConnections: 1_000_000,
    maxHeadAgeSec: 1e12,
  };
}
