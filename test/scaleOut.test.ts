import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { TestChain } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';
import { type RedisServer, startRedis } from './helpers/redis.ts';
import { blockNumberOf, ClientView, expectCanonical, resumeAcrossReorg } from './helpers/view.ts';

// Scaled out: one ingest (or a leader and a standby) writes the chain log on a real Redis, and
// gateway processes read it. What subscribers get must be what one process gives: every
// canonical block once, in order, with nothing lost or doubled across gateways, a killed
// leader and a restarted Redis.

const WINDOW = 32;
const INGEST_READY = /ingest of chain \d+ into Redis; metrics: http:\/\/127\.0\.0\.1:(\d+)\/metrics/;

/** The block number of a block-scoped message (`undefined` for others). */
/** What a client was sent on a subscription, as `type:number:hash` lines. */
function sequence(client: TestClient, sub: string): string[] {
  return client.messages
    .filter((m) => m['sub'] === sub && (m.type === 'block' || m.type === 'removed' || m.type === 'activity'))
    .map((m) => {
      const block =
        (m['block'] as { number: number; hash: string } | undefined) ?? (m as { number?: number; hash?: string });
      return `${m.type}:${block.number}:${block.hash}`;
    });
}

/** Every block a `blocks` subscription got, checked: each once, numbers consecutive, each the child of the one before. */
function expectUnbroken(client: TestClient, sub: string): Message[] {
  const blocks = client.of(sub, 'block');
  expect(client.of(sub, 'removed')).toEqual([]);
  for (let i = 1; i < blocks.length; i++) {
    const [before, block] = [blocks[i - 1] as Message, blocks[i] as Message];
    expect(`${block['number']}:${block['parentHash']}`).toBe(`${(before['number'] as number) + 1}:${before['hash']}`);
  }
  return blocks;
}

describe('scaled out on Redis: one ingest, several gateways', () => {
  let redis: RedisServer;
  let anvil: Anvil;
  let chain: TestChain;
  const started: GatewayProcess[] = [];
  const clients: TestClient[] = [];

  const start = async (args: readonly string[], ingest = false): Promise<GatewayProcess> => {
    const process = await startGateway(
      [
        '--redis',
        redis.url,
        '--poll-interval-ms',
        '50',
        '--history-window-blocks',
        String(WINDOW),
        '--max-confirmations',
        '4',
        ...args,
      ],
      ingest ? { ready: INGEST_READY } : {},
    );
    started.push(process);
    return process;
  };
  const ingest = (args: readonly string[] = []): Promise<GatewayProcess> =>
    start(['--role', 'ingest', '--rpc', anvil.httpUrl, '--lease-ms', '1000', ...args], true);
  const gateway = (): Promise<GatewayProcess> => start(['--role', 'gateway']);
  const connect = async (url: string): Promise<TestClient> => {
    const client = await TestClient.connect(url, 'json');
    clients.push(client);
    return client;
  };
  /** Mines a block and waits until every `blocks` subscription of `probes` has it. */
  const mine = async (probes: ReadonlyArray<readonly [TestClient, string]>, transfer = true): Promise<number> => {
    if (transfer) await chain.transfer(0, chain.address(1), 1n);
    const number = await chain.mine();
    for (const [client, sub] of probes) await client.next((m) => m['sub'] === sub && m['number'] === number, 20_000);
    return number;
  };

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    for (const process of started.splice(0)) await process.stop();
    chain?.close();
    await anvil?.close();
    await redis.flush();
  });
  afterAll(async () => {
    await redis?.close();
  });

  const newChain = async (): Promise<void> => {
    anvil = await startAnvil({ noMining: true });
    chain = new TestChain(anvil.httpUrl);
  };

  it('two gateways behind one ingest send the same blocks and activity as one process does', async () => {
    await newChain();
    await ingest();
    const [a, b] = [await gateway(), await gateway()];
    const single = await startGateway(['--rpc', anvil.httpUrl, '--poll-interval-ms', '50']);
    started.push(single);
    const watched = [chain.address(1)];
    const views = [];
    for (const g of [a, b, single]) {
      const client = await connect(g.url);
      const blocks = await client.subscribe({ channel: 'blocks' });
      const activity = await client.subscribe({ channel: 'activity', addresses: watched });
      views.push({ client, blocks, activity });
    }
    const probes = views.map((v) => [v.client, v.blocks] as const);
    const first = await mine(probes);
    let last = first;
    for (let i = 0; i < 6; i++) last = await mine(probes, i % 2 === 0);
    for (const v of views) await v.client.next((m) => m['sub'] === v.activity && blockNumberOf(m) === last - 1, 20_000);
    const [fromA, fromB, fromSingle] = views.map((v) => [
      ...sequence(v.client, v.blocks).filter((line) => Number(line.split(':')[1]) >= first),
      ...sequence(v.client, v.activity).filter((line) => Number(line.split(':')[1]) >= first),
    ]);
    expect(fromA).toEqual(fromSingle);
    expect(fromB).toEqual(fromSingle);
    expect(fromSingle?.length).toBeGreaterThanOrEqual(7 + 3);
  });

  it('resumes a cursor of gateway A on gateway B, across a reorg while away, with nothing lost or doubled', async () => {
    await newChain();
    await ingest();
    const [a, b] = [await gateway(), await gateway()];
    const probeA = await connect(a.url);
    const probeASub = await probeA.subscribe({ channel: 'blocks' });
    const probeB = await connect(b.url);
    const probeBSub = await probeB.subscribe({ channel: 'blocks' });
    const probes = [
      [probeA, probeASub],
      [probeB, probeBSub],
    ] as const;

    await resumeAcrossReorg({
      anvilUrl: anvil.httpUrl,
      chain,
      before: await connect(a.url),
      after: () => connect(b.url),
      mine: (transfer) => mine(probes, transfer),
    });
  });

  it('kill -9 of the ingest leader under traffic: the standby takes over, every block once, unbroken', async () => {
    await newChain();
    const leader = await ingest();
    const standby = await ingest();
    await standby.waitForOutput(/standing by/, 10_000);
    const g = await gateway();
    const client = await connect(g.url);
    const sub = await client.subscribe({ channel: 'blocks' });
    const first = await mine([[client, sub]]);
    // Blocks keep coming (mined by the test, 5 a second) while the leader dies and the standby takes over.
    const mining = (async () => {
      for (let i = 0; i < 25; i++) {
        await chain.mine();
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })();
    await client.next((m) => m['sub'] === sub && (m['number'] as number) >= first + 3, 20_000);
    leader.process.kill('SIGKILL');
    await standby.waitForOutput(/leading \(fence \d+\)/, 15_000);
    await mining;
    const last = await mine([[client, sub]]);
    const blocks = expectUnbroken(client, sub);
    const numbers = blocks.map((m) => m['number'] as number).filter((n) => n >= first);
    expect(numbers).toEqual(Array.from({ length: last - first + 1 }, (_, i) => first + i));
    const view = ClientView.of(client.messages, [sub]);
    await expectCanonical(view, anvil.httpUrl, { from: first, to: last });
  });

  it('Redis stopped for 5 s and started again: every block once, unbroken, after it returns', async () => {
    await newChain();
    await ingest();
    const g = await gateway();
    const client = await connect(g.url);
    const sub = await client.subscribe({ channel: 'blocks' });
    const first = await mine([[client, sub]]);
    await redis.stop();
    const downAt = performance.now();
    // Blocks keep coming on the node while Redis is down.
    for (let i = 0; i < 5; i++) await chain.mine();
    // The gateway says so at /readyz (bounded wait for it to notice), and keeps its connections.
    let readyz = await fetch(`${g.httpUrl}/readyz`);
    for (let i = 0; i < 40 && readyz.status === 200; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      readyz = await fetch(`${g.httpUrl}/readyz`);
    }
    expect(readyz.status).toBe(503);
    expect(await readyz.text()).toMatch(/chain 31337: the chain log is unreachable/);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 5000 - (performance.now() - downAt))));
    await redis.start();
    const last = await mine([[client, sub]]);
    const blocks = expectUnbroken(client, sub);
    const numbers = blocks.map((m) => m['number'] as number).filter((n) => n >= first);
    expect(numbers).toEqual(Array.from({ length: last - first + 1 }, (_, i) => first + i));
    await expectCanonical(ClientView.of(client.messages, [sub]), anvil.httpUrl, { from: first, to: last });
    // The gateway kept its connection, and says it reads the log.
    const metrics = await (await fetch(`${g.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/blockcast_log_connected\{chain="31337"\} 1/);
    expect(await (await fetch(`${g.httpUrl}/readyz`)).text()).toBe('ready\n');
  });
});
