import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { rpc, TestChain } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import { FakeChain, FakeNode } from './helpers/fakeNode.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';

/** anvil puts `safe` one epoch and `finalized` two epochs behind its head: 2 and 4 blocks here. */
const SLOTS_IN_AN_EPOCH = 2;

interface Ref {
  readonly number: number;
  readonly hash: string;
}

// Anvil mines only on demand, so the test decides when each block, and each tag, moves.
describe('finality on anvil (safe and finalized tags, 2 slots an epoch)', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let chain: TestChain;
  let client: TestClient;
  let welcome: Message;
  let barrier: string;
  let plain: string;
  let safe: string;
  let finalized: string;
  let finalizedBlocks: string;
  let x: string;

  beforeAll(async () => {
    anvil = await startAnvil({ noMining: true, slotsInAnEpoch: SLOTS_IN_AN_EPOCH });
    gateway = await startGateway(['--rpc', anvil.wsUrl, '--poll-interval-ms', '50']);
    chain = new TestChain(anvil.httpUrl);
    x = chain.address(0);
    // The gateway learns the tags with the blocks it follows: mine until a client is told.
    for (let i = 0; i < 3; i++) await chain.mine();
    client = await TestClient.connect(gateway.url, 'json');
    barrier = await client.subscribe({ channel: 'blocks', full: true });
    for (let i = 0; i < 20; i++) {
      const probe = await TestClient.connect(gateway.url, 'json');
      welcome = probe.messages[0] as Message;
      probe.close();
      if ((welcome['chains'] as Array<{ finality?: boolean }>)[0]?.finality === true) break;
      await mine();
    }
    plain = await client.subscribe({ channel: 'activity', addresses: [x] });
    safe = await client.subscribe({ channel: 'activity', addresses: [x], finality: 'safe' });
    finalized = await client.subscribe({ channel: 'activity', addresses: [x], finality: 'finalized' });
    finalizedBlocks = await client.subscribe({ channel: 'blocks', finality: 'finalized' });
  });

  afterAll(async () => {
    client?.close();
    chain?.close();
    await gateway?.stop();
    await anvil?.close();
  });

  /**
   * Mines a block and waits until the client has everything the gateway sent for it: the
   * head-level `blocks` message with transactions shows the whole block was applied (every depth is sent in that one step,
   * with the tags the gateway read before it), and a ping answered after it shows every earlier
   * frame arrived.
   */
  async function mine(): Promise<number> {
    const number = await chain.mine();
    await client.next((m) => m['sub'] === barrier && m['number'] === number, 15_000);
    await client.request({ op: 'ping' });
    return number;
  }

  const tag = async (name: 'safe' | 'finalized'): Promise<Ref> => {
    const block = await rpc<{ number: string; hash: string }>(anvil.httpUrl, 'eth_getBlockByNumber', [name, false]);
    return { number: Number(block.number), hash: block.hash };
  };
  const activityAt = (sub: string, number: number) =>
    client.of(sub, 'activity').filter((m) => (m['block'] as Ref).number === number);

  it('announces finality for the chain in welcome', () => {
    expect(welcome['chains']).toEqual([expect.objectContaining({ chainId: 31_337, finality: true })]);
  });

  it("delivers a block's activity to safe and finalized subscriptions only once the node's tag has passed it", async () => {
    const hash = await chain.transfer(0, chain.address(5), 1n);
    const block = await mine();
    expect(activityAt(plain, block)).toHaveLength(1);
    const seenBefore = { safe: false, finalized: false };
    // Each further block: a subscription has the block's activity only if the node's tag (read
    // after the gateway sent it) has reached it, and has it for good once the tag is two blocks on.
    for (let i = 0; i < 8; i++) {
      await mine();
      for (const [name, sub] of [
        ['safe', safe],
        ['finalized', finalized],
      ] as const) {
        const got = activityAt(sub, block);
        const at = await tag(name);
        if (got.length > 0) {
          expect(at.number).toBeGreaterThanOrEqual(block);
          seenBefore[name] = true;
        }
        if (at.number >= block + 2) expect(got, `${name} at tag ${at.number}`).toHaveLength(1);
        if (at.number < block) expect(got).toEqual([]);
      }
    }
    expect(seenBefore).toEqual({ safe: true, finalized: true });
    for (const sub of [safe, finalized]) {
      const [message] = activityAt(sub, block);
      expect(message?.['events']).toEqual([expect.objectContaining({ txHash: hash })]);
    }
  });

  it('tells a blocks subscription, once per move, where the finalized block is, with its hash as the node has it', async () => {
    const from = client.messages.length;
    for (let i = 0; i < 4; i++) await mine();
    // The tags are read along with the blocks and reach the gateway with the next one: where the
    // node's finalized block was after the 4th block, the gateway is once two more are mined.
    const reached = await tag('finalized');
    for (let i = 0; i < 2; i++) await mine();
    const told = client.messages.slice(from).filter((m) => m.type === 'finality' && m['sub'] === barrier);
    expect(told.length).toBeGreaterThanOrEqual(2);
    const last = told.at(-1) as Message;
    expect((last['finalized'] as Ref).number).toBeGreaterThanOrEqual(reached.number);
    const numbers = told.map((m) => (m['finalized'] as Ref).number);
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    expect(new Set(numbers).size).toBe(numbers.length);
    for (const m of told) {
      const final = m['finalized'] as Ref;
      const node = await rpc<{ hash: string }>(anvil.httpUrl, 'eth_getBlockByNumber', [
        `0x${final.number.toString(16)}`,
        false,
      ]);
      expect(final.hash).toBe(node.hash);
      expect((m['safe'] as Ref).number).toBeGreaterThanOrEqual(final.number);
      expect(m['chainId']).toBe(31_337);
    }
    // Subscriptions waiting for finality are not told: what they get is final already.
    expect(client.messages.filter((m) => m.type === 'finality' && m['sub'] === finalized)).toEqual([]);
  });

  it('tells an activity subscription once, when a block it was sent activity for became final', async () => {
    const from = client.messages.length;
    await chain.transfer(0, chain.address(5), 3n);
    const block = await mine();
    for (let i = 0; i < 8 && (await tag('finalized')).number < block + 2; i++) await mine();
    await mine();
    const told = client.messages.slice(from).filter((m) => m['sub'] === plain);
    expect(told.map((m) => m.type)).toEqual(['activity', 'finality']);
    const final = told[1]?.['finalized'] as Ref;
    expect(final.number).toBeGreaterThanOrEqual(block);
    // Blocks without its activity became final meanwhile too: nothing about them for it.
    expect(
      client.messages.slice(from).filter((m) => m.type === 'finality' && m['sub'] === barrier).length,
    ).toBeGreaterThan(1);
  });

  it('resumes a finalized subscription from its cursor: what reached the tag since, once, in order', async () => {
    const last = client.of(finalizedBlocks, 'block').at(-1) as Message;
    const away = await TestClient.connect(gateway.url, 'json');
    try {
      for (let i = 0; i < 3; i++) await mine();
      const { reply, before } = await away.resume({ channel: 'blocks', finality: 'finalized', from: last['cursor'] });
      expect(reply).toMatchObject({ type: 'subscribed', recovered: true });
      const numbers = before.map((m) => m['number'] as number);
      expect(numbers[0]).toBe((last['number'] as number) + 1);
      expect(numbers).toEqual(numbers.map((_, i) => (numbers[0] as number) + i));
      // Up to where the live subscription of the same level stands: nothing past the tag.
      const live = client.of(finalizedBlocks, 'block').at(-1) as Message;
      expect(numbers.at(-1)).toBe(live['number']);
      expect(reply['cursor']).toBe(live['cursor']);
    } finally {
      away.close();
    }
  });

  it('never retracts from a finalized subscription, while a plain one gets removed', async () => {
    await chain.transfer(0, chain.address(6), 2n);
    const block = await mine();
    for (let i = 0; i < 5; i++) await mine();
    const finalNow = await tag('finalized');
    expect(finalNow.number).toBeGreaterThanOrEqual(block);
    const from = client.messages.length;
    // A reorg of the newest two blocks: above the finalized block.
    const head = await chain.mine();
    await client.next((m) => m['sub'] === barrier && m['number'] === head, 15_000);
    await rpc(anvil.httpUrl, 'anvil_reorg', [2, []]);
    const next = await chain.mine();
    await client.next((m) => m['sub'] === barrier && m['number'] === next, 15_000);
    await client.request({ op: 'ping' });
    const after = client.messages.slice(from);
    expect(after.some((m) => m.type === 'removed' && m['sub'] === barrier)).toBe(true);
    expect(
      after.filter((m) => m.type === 'removed' && (m['sub'] === finalized || m['sub'] === finalizedBlocks)),
    ).toEqual([]);
    // The finalized blocks subscription got every block up to the tag once, in order, unbroken.
    const blocks = client.of(finalizedBlocks, 'block');
    const numbers = blocks.map((m) => m['number'] as number);
    expect(numbers).toEqual(numbers.map((_, i) => (numbers[0] as number) + i));
    for (let i = 1; i < blocks.length; i++) {
      expect(blocks[i]?.['parentHash']).toBe(blocks[i - 1]?.['hash']);
    }
    expect(numbers.at(-1)).toBeLessThanOrEqual((await tag('finalized')).number);
  });
});

describe('finality from the first block', () => {
  it('is in welcome as soon as a fresh gateway serves: its first block carries the tags', async () => {
    const anvil = await startAnvil({ noMining: true, slotsInAnEpoch: SLOTS_IN_AN_EPOCH });
    try {
      for (let i = 0; i < 6; i++) await rpc(anvil.httpUrl, 'evm_mine');
      const gateway = await startGateway(['--rpc', anvil.wsUrl, '--poll-interval-ms', '60000']);
      try {
        const client = await TestClient.connect(gateway.url, 'json');
        const welcome = client.messages[0] as Message;
        client.close();
        expect((welcome['chains'] as unknown[])[0]).toMatchObject({
          chainId: 31_337,
          head: { number: 6 },
          finality: true,
        });
      } finally {
        await gateway.stop();
      }
    } finally {
      await anvil.close();
    }
  });
});

describe('finality on a node without the tags', () => {
  let node: FakeNode;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    const chain = new FakeChain({ chainId: 31_337, height: 4 });
    node = await FakeNode.start(chain);
    node.options.finalityTags = false;
    gateway = await startGateway(['--rpc', node.url, '--poll-interval-ms', '50']);
  });

  afterAll(async () => {
    await gateway?.stop();
    await node?.close();
  });

  it('says so in welcome and refuses a finality subscription with a clear error, the connection staying open', async () => {
    const client = await TestClient.connect(gateway.url, 'json');
    try {
      expect(client.messages[0]?.['chains']).toEqual([expect.objectContaining({ chainId: 31_337, finality: false })]);
      const reply = await client.request({ op: 'subscribe', channel: 'blocks', finality: 'safe' });
      expect(reply).toMatchObject({
        type: 'error',
        code: 'UNSUPPORTED',
        message: 'finality is off on chain 31337: its node serves no safe and finalized blocks',
      });
      expect(await client.subscribe({ channel: 'blocks' })).toBe('s1');
    } finally {
      client.close();
    }
  });
});
