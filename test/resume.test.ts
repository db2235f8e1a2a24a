import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { TestChain } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';
import { blockNumberOf, resumeAcrossReorg } from './helpers/view.ts';

const WINDOW = 16;

/** The block number of a block-scoped message (`undefined` for others). */
// Raw protocol resume (PROTOCOL.md, Resume); the SDK's reconnect is tested in client tests.
describe('resume from a cursor', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let chain: TestChain;

  beforeAll(async () => {
    anvil = await startAnvil({ noMining: true });
    gateway = await startGateway([
      '--rpc',
      anvil.httpUrl,
      '--poll-interval-ms',
      '50',
      '--history-window-blocks',
      String(WINDOW),
      '--max-confirmations',
      '4',
    ]);
    chain = new TestChain(anvil.httpUrl);
  });

  afterAll(async () => {
    chain?.close();
    await gateway?.stop();
    await anvil?.close();
  });

  /** Mines a block (with a transfer 0 → 1 when `active`) and waits until `probe` has it. */
  async function mine(probe: TestClient, probeSub: string, active = true): Promise<number> {
    if (active) await chain.transfer(0, chain.address(1), 1n);
    const number = await chain.mine();
    await probe.next((m) => m['sub'] === probeSub && m['number'] === number, 15_000);
    return number;
  }

  async function probe(): Promise<{ client: TestClient; sub: string }> {
    const client = await TestClient.connect(gateway.url, 'json');
    return { client, sub: await client.subscribe({ channel: 'blocks', full: true }) };
  }

  it('replays the blocks and activity missed while away, then goes live', async () => {
    const p = await probe();
    const first = await TestClient.connect(gateway.url, 'msgpack');
    const blocks = await first.subscribe({ channel: 'blocks' });
    const activity = await first.subscribe({ channel: 'activity', addresses: [chain.address(1)] });
    const last = await mine(p.client, p.sub);
    await first.next((m) => m['sub'] === activity && blockNumberOf(m) === last, 15_000);
    const blockCursor = first.of(blocks, 'block').at(-1)?.['cursor'];
    const activityCursor = first.of(activity, 'activity').at(-1)?.['cursor'];
    first.close();
    const missed = [await mine(p.client, p.sub), await mine(p.client, p.sub, false), await mine(p.client, p.sub)];

    const second = await TestClient.connect(gateway.url, 'msgpack');
    const resumedBlocks = await second.resume({ channel: 'blocks', from: blockCursor });
    expect(resumedBlocks.reply).toMatchObject({ type: 'subscribed', recovered: true });
    expect(resumedBlocks.before.map((m) => m['number'])).toEqual(missed);
    const resumedActivity = await second.resume({
      channel: 'activity',
      addresses: [chain.address(1)],
      from: activityCursor,
    });
    expect(resumedActivity.reply).toMatchObject({ type: 'subscribed', recovered: true });
    // The middle block had no transfer: only the two active ones are replayed.
    expect(resumedActivity.before.map((m) => blockNumberOf(m))).toEqual([missed[0], missed[2]]);
    const live = await mine(p.client, p.sub);
    await second.next((m) => m['sub'] === resumedBlocks.reply['sub'] && m['number'] === live, 15_000);
    second.close();
    p.client.close();
  });

  it('gives a quiet subscription a position in subscribed and pongs, and resumes from it', async () => {
    const p = await probe();
    const quiet = await TestClient.connect(gateway.url, 'msgpack');
    const reply = await quiet.request({ op: 'subscribe', channel: 'activity', addresses: [chain.address(1)] });
    expect(reply['cursor']).toMatch(/^31337:\d+:0x[0-9a-f]{64}$/);
    await mine(p.client, p.sub, false);
    const last = await mine(p.client, p.sub, false);
    const pong = await quiet.request({ op: 'ping' });
    const cursor = (pong['cursors'] as Record<string, string>)[reply['sub'] as string];
    expect(cursor).toBe(`31337:${last}:${(await chain.block(last)).hash}`);
    expect(cursor).not.toBe(reply['cursor']);
    quiet.close();
    const missed = await mine(p.client, p.sub);
    const back = await TestClient.connect(gateway.url, 'msgpack');
    const resumed = await back.resume({ channel: 'activity', addresses: [chain.address(1)], from: cursor });
    expect(resumed.reply).toMatchObject({ recovered: true });
    expect(resumed.before.map((m) => blockNumberOf(m))).toEqual([missed]);
    back.close();
    p.client.close();
  });

  it('answers recovered:true and replays nothing for a cursor at the head', async () => {
    const p = await probe();
    const head = await mine(p.client, p.sub, false);
    const cursor = p.client.of(p.sub, 'block').at(-1)?.['cursor'];
    const client = await TestClient.connect(gateway.url, 'json');
    const { reply, before } = await client.resume({ channel: 'blocks', from: cursor });
    expect(reply).toMatchObject({ type: 'subscribed', recovered: true, head: { number: head } });
    expect(before).toEqual([]);
    client.close();
    p.client.close();
  });

  it('retracts what was reorged out while away, then replays the canonical blocks', async () => {
    const p = await probe();
    await resumeAcrossReorg({
      anvilUrl: anvil.httpUrl,
      chain,
      before: await TestClient.connect(gateway.url, 'json'),
      after: () => TestClient.connect(gateway.url, 'json'),
      mine: (transfer) => mine(p.client, p.sub, transfer),
    });
    p.client.close();
  });

  it('answers a cursor older than the window with recovered:false and goes live', async () => {
    const p = await probe();
    await mine(p.client, p.sub, false);
    const old = p.client.of(p.sub, 'block').at(-1)?.['cursor'];
    for (let i = 0; i <= WINDOW; i++) await mine(p.client, p.sub, false);
    const client = await TestClient.connect(gateway.url, 'json');
    const { reply, before } = await client.resume({ channel: 'blocks', from: old });
    expect(reply).toMatchObject({ type: 'subscribed', recovered: false });
    expect(before).toEqual([]);
    const live = await mine(p.client, p.sub, false);
    await client.next((m) => m['sub'] === reply['sub'] && m['number'] === live, 15_000);
    client.close();
    p.client.close();
  });

  it('answers garbage, truncated and forged cursors with recovered:false, never data', async () => {
    const p = await probe();
    await mine(p.client, p.sub, false);
    const real = p.client.of(p.sub, 'block').at(-1) as Message;
    const cursor = real['cursor'] as string;
    const [chainId, number] = cursor.split(':');
    const forged = [
      'garbage',
      '',
      12,
      { cursor },
      [cursor],
      cursor.slice(0, -5),
      `${cursor}00`,
      `${chainId}:${number}:0x${'ab'.repeat(32)}`,
      `1:${number}:${real['hash']}`,
      `${chainId}:${Number(number) - 1}:${real['hash']}`,
      `${chainId}:99999999:${real['hash']}`,
      `${chainId}:-1:${real['hash']}`,
    ];
    const client = await TestClient.connect(gateway.url, 'msgpack');
    for (const from of forged) {
      const { reply, before } = await client.resume({ channel: 'activity', addresses: [chain.address(1)], from });
      expect(reply, JSON.stringify(from)).toMatchObject({ type: 'subscribed', recovered: false });
      expect(before).toEqual([]);
    }
    expect(client.closed).toBeUndefined();
    client.close();
    p.client.close();
  });

  it("replays a subscription's own matches only, whatever cursor it brings", async () => {
    const p = await probe();
    const watcher = await TestClient.connect(gateway.url, 'json');
    const sub = await watcher.subscribe({ channel: 'activity', addresses: [chain.address(0)] });
    const n = await mine(p.client, p.sub);
    const message = await watcher.next((m) => m['sub'] === sub && blockNumberOf(m) === n, 15_000);
    const cursor = message['cursor'] as string;
    await mine(p.client, p.sub);
    const other = await TestClient.connect(gateway.url, 'json');
    // Same cursor, another address: the replay holds only that address's activity (none).
    const { reply, before } = await other.resume({ channel: 'activity', addresses: [chain.address(7)], from: cursor });
    expect(reply).toMatchObject({ recovered: true });
    expect(before).toEqual([]);
    watcher.close();
    other.close();
    p.client.close();
  });
});
