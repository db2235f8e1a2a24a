import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Message, TestClient } from './helpers/client.ts';
import { ROOT, runBlock, shellBlocks } from './helpers/readme.ts';

// README, "Scale out": its shell blocks run as they are written (Redis, one ingest, two
// gateways; then ingest with two workers on one port), in a directory that holds the clone's
// package.json, sources and node_modules, so that Redis's files land there.

/** A block that keeps running (`npm start …`), in its own process group, with its output kept. */
class Running {
  readonly child: ChildProcess;
  output = '';

  constructor(block: string, cwd: string) {
    this.child = spawn('bash', ['-c', block], { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (chunk: Buffer): void => {
      this.output += chunk.toString();
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
  }

  /** Resolves once the output matches `pattern` (bounded); fails if the block ends first. */
  printed(pattern: RegExp, timeoutMs = 60_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const check = (): void => {
        if (pattern.test(this.output)) resolve();
        else if (this.child.exitCode !== null) reject(new Error(`ended before printing ${pattern}:\n${this.output}`));
        else if (performance.now() - started > timeoutMs)
          reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${this.output}`));
        else setTimeout(check, 50);
      };
      check();
    });
  }

  /** SIGTERM to the whole group (npm, its shell, the gateway and its workers); SIGKILL after 15 s. */
  async stop(): Promise<void> {
    const pid = this.child.pid;
    if (pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    process.kill(-pid, 'SIGTERM');
    const timer = setTimeout(() => process.kill(-pid, 'SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Subscribes to `blocks` at `url` and resolves with the first `count` blocks' `number:hash`. */
async function blocksAt(
  url: string,
  count: number,
): Promise<{ client: TestClient; sub: string; lines: () => string[] }> {
  const client = await TestClient.connect(url, 'json');
  const sub = await client.subscribe({ channel: 'blocks' });
  const lines = (): string[] => client.of(sub, 'block').map((m: Message) => `${m['number']}:${m['hash']}`);
  await client.next((m) => m['sub'] === sub && client.of(sub, 'block').length >= count, 30_000);
  return { client, sub, lines };
}

describe('README: Scale out', () => {
  const blocks = shellBlocks('Scale out');
  let dir: string;
  const running: Running[] = [];
  const clients: TestClient[] = [];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'blockcast-scale-'));
    for (const entry of ['package.json', 'src', 'node_modules', 'tsconfig.json', 'packages']) {
      symlinkSync(join(ROOT, entry), join(dir, entry));
    }
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    for (const process of running.reverse()) await process.stop();
    // The last block stops Redis; run it again in case a test failed before it.
    await runBlock(blocks.at(-1) as string, dir).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('has the blocks this test runs: redis, ingest, two gateways, workers, stop', () => {
    expect(blocks).toHaveLength(6);
    for (const block of blocks.slice(1, 5))
      expect(block).toMatch(/^npm start -- .*--redis redis:\/\/127\.0\.0\.1:6390/);
  });

  it('runs as written: two gateways behind one ingest, then two workers on one port, send the same chain', async () => {
    const [redis, ingest, gatewayA, gatewayB, workers, stop] = blocks as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    await runBlock(redis, dir);

    const ingesting = new Running(ingest, dir);
    running.push(ingesting);
    await ingesting.printed(/ingest of chain 31337 into Redis/);
    const a = new Running(gatewayA, dir);
    const b = new Running(gatewayB, dir);
    running.push(a, b);
    await a.printed(/listening on ws:\/\/127\.0\.0\.1:8081\/v1/);
    await b.printed(/listening on ws:\/\/127\.0\.0\.1:8082\/v1/);
    const fromA = await blocksAt('ws://127.0.0.1:8081/v1', 1);
    const fromB = await blocksAt('ws://127.0.0.1:8082/v1', 1);
    clients.push(fromA.client, fromB.client);
    // Both gateways send the devnet's blocks from the one log: the same ones, in the same order.
    const next = Number((fromA.lines()[0] as string).split(':')[0]) + 2;
    for (const view of [fromA, fromB]) {
      await view.client.next((m) => m['sub'] === view.sub && (m['number'] as number) >= next, 30_000);
    }
    const common = fromA.lines().filter((line) => fromB.lines().includes(line));
    expect(common.length).toBeGreaterThanOrEqual(2);
    expect(
      fromA
        .lines()
        .slice(fromA.lines().indexOf(common[0] as string))
        .slice(0, common.length),
    ).toEqual(common);

    for (const process of running.splice(0).reverse()) await process.stop();
    const pool = new Running(workers, dir);
    running.push(pool);
    await pool.printed(/2 gateway workers on port 8080/);
    await pool.printed(/listening on ws:\/\/127\.0\.0\.1:8080\/v1[\s\S]*listening on ws:\/\/127\.0\.0\.1:8080\/v1/);
    const views: Array<Awaited<ReturnType<typeof blocksAt>>> = [];
    for (let i = 0; i < 6; i++) views.push(await blocksAt('ws://127.0.0.1:8080/v1', 1));
    clients.push(...views.map((v) => v.client));
    // Whichever worker the kernel gave a connection to, it sends the same blocks from the log.
    const target = Math.max(...views.map((v) => Number((v.lines()[0] as string).split(':')[0]))) + 1;
    for (const view of views) {
      await view.client.next((m) => m['sub'] === view.sub && (m['number'] as number) >= target, 30_000);
    }
    const at = (view: (typeof views)[number]): string | undefined =>
      view.lines().find((line) => line.startsWith(`${target}:`));
    expect(new Set(views.map(at)).size).toBe(1);
    await runBlock(stop, dir);
  });
});
