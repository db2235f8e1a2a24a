import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestChain } from './helpers/chain.ts';
import { type Encoding, type Message, TestClient } from './helpers/client.ts';
import type { GatewayProcess } from './helpers/gateway.ts';
import { type Stack, startStack } from './helpers/stack.ts';

// Anvil mines on an interval here, so a transaction waits in its mempool until the next block.
// Each transaction is sent right after a block arrived, which leaves it most of a block time
// in the pool: time enough for the gateway to see it there.
describe.each([
  ['json', 'http'],
  ['msgpack', 'ws'],
] as const)('pending transactions end to end (%s frames, %s RPC)', (encoding: Encoding, transport) => {
  const BLOCK_TIME_SEC = 2;
  let stack: Stack;
  let gateway: GatewayProcess;
  let chain: TestChain;

  beforeAll(async () => {
    stack = await startStack({ node: { blockTimeSec: BLOCK_TIME_SEC }, transport });
    ({ gateway, chain } = stack);
  });

  afterAll(async () => {
    await stack?.close();
  });

  /** Waits for the next block message on `sub` after what `client` has so far. */
  async function nextBlock(client: TestClient, sub: string): Promise<number> {
    const from = client.messages.length;
    const m = await client.next((msg) => msg['sub'] === sub && msg.type === 'block', 15_000, from);
    return m['number'] as number;
  }

  it('delivers a transaction to a watched address as pending before its block, then as activity with the same id', async () => {
    const [x, y, z] = [chain.address(0), chain.address(1), chain.address(2)];
    const client = await TestClient.connect(gateway.url, encoding);
    const blocks = await client.subscribe({ channel: 'blocks' });
    const toY = await client.subscribe({ channel: 'activity', addresses: [y], pending: true });
    const fromX = await client.subscribe({ channel: 'activity', addresses: [x, y], pending: true });
    const minedOnly = await client.subscribe({ channel: 'activity', addresses: [y] });
    const tokensOnly = await client.subscribe({ channel: 'activity', addresses: [y], pending: true, kinds: ['erc20'] });
    const other = await client.subscribe({ channel: 'activity', addresses: [z], pending: true });

    await nextBlock(client, blocks);
    const hash = await chain.transfer(0, y, 4242n);
    const pending = await client.next((m) => m.type === 'pending' && m['sub'] === toY, 15_000);
    const activity = await client.next((m) => m.type === 'activity' && m['sub'] === toY, 15_000);

    const tx = (await chain.provider.getTransaction(hash)) ?? undefined;
    expect(tx).toBeDefined();
    const expected = {
      kind: 'tx',
      id: hash,
      txHash: hash,
      txIndex: null,
      from: x,
      to: y,
      value: '0x1092',
      nonce: tx?.nonce,
    };
    expect(pending).toEqual({ type: 'pending', sub: toY, chainId: 31_337, events: [expected] });
    const mined = (activity['events'] as Message[])[0];
    expect(mined).toMatchObject({ ...expected, txIndex: 0, status: 1 });
    expect(client.messages.indexOf(pending)).toBeLessThan(client.messages.indexOf(activity));
    // The block it was mined in came after the pending message.
    const minedIn = (activity['block'] as { number: number }).number;
    const blockMessage = client.messages.find((m) => m['sub'] === blocks && m['number'] === minedIn);
    expect(client.messages.indexOf(pending)).toBeLessThan(client.messages.indexOf(blockMessage as Message));

    // Watching both sender and receiver gives the transaction once.
    const both = await client.next((m) => m.type === 'pending' && m['sub'] === fromX, 15_000);
    expect(both['events']).toEqual([expected]);
    // Without pending:true, without the tx kind, or watching someone else: no pending message.
    await client.next((m) => m.type === 'activity' && m['sub'] === minedOnly, 15_000);
    for (const sub of [minedOnly, tokensOnly, other]) expect(client.of(sub, 'pending')).toEqual([]);
    expect(client.of(tokensOnly, 'activity')).toEqual([]);
    client.close();
  });

  it('sends each subscription one pending message per transaction seen, never a mined one again', async () => {
    const w = chain.address(4);
    const client = await TestClient.connect(gateway.url, encoding);
    const blocks = await client.subscribe({ channel: 'blocks' });
    const sub = await client.subscribe({ channel: 'activity', addresses: [w], pending: true });
    await nextBlock(client, blocks);
    const sent = [await chain.transfer(3, w, 1n), await chain.transfer(1, w, 2n)];
    const minedIn = (id: string): Promise<Message> =>
      client.next(
        (m) => m.type === 'activity' && m['sub'] === sub && (m['events'] as Message[]).some((e) => e['id'] === id),
        15_000,
      );
    const activities = await Promise.all(sent.map(minedIn));
    const pendingIds = client.of(sub, 'pending').flatMap((m) => (m['events'] as Message[]).map((e) => e['id']));
    expect(pendingIds.sort()).toEqual([...sent].sort());
    const firstActivity = Math.min(...activities.map((m) => client.messages.indexOf(m)));
    expect(client.of(sub, 'pending').every((m) => client.messages.indexOf(m) < firstActivity)).toBe(true);

    // The next block passes without those transactions coming back as pending.
    await nextBlock(client, blocks);
    expect(client.of(sub, 'pending').flatMap((m) => m['events'] as Message[])).toHaveLength(2);
    client.close();
  });
});
