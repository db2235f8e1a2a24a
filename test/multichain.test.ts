import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { rpc, TestChain } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import { type GatewayProcess, runGatewayToExit, startGateway } from './helpers/gateway.ts';

describe('two chains behind one gateway', () => {
  let first: Anvil;
  let second: Anvil;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    [first, second] = await Promise.all([
      startAnvil({ noMining: true, chainId: 31_337 }),
      startAnvil({ noMining: true, chainId: 424_242 }),
    ]);
    gateway = await startGateway([
      '--chain',
      `424242=${second.httpUrl}`,
      '--chain',
      `31337=${first.wsUrl}`,
      '--poll-interval-ms',
      '50',
    ]);
  });

  afterAll(async () => {
    await gateway?.stop();
    await Promise.all([first?.close(), second?.close()]);
  });

  it('lists both chains in welcome, the first configured as the default', async () => {
    const client = await TestClient.connect(gateway.url, 'json');
    const welcome = client.messages[0] as Message;
    expect((welcome['chains'] as Array<{ chainId: number }>).map((c) => c.chainId)).toEqual([424_242, 31_337]);
    const reply = await client.request({ op: 'subscribe', channel: 'blocks' });
    expect(reply).toMatchObject({ type: 'subscribed', chainId: 424_242 });
    client.close();
  });

  it("gives each subscription only its chain's blocks", async () => {
    const client = await TestClient.connect(gateway.url, 'msgpack');
    const onFirst = await client.subscribe({ channel: 'blocks', chainId: 31_337 });
    const onSecond = await client.subscribe({ channel: 'blocks', chainId: 424_242 });
    for (let i = 0; i < 3; i++) {
      await rpc(first.httpUrl, 'evm_mine');
      await rpc(second.httpUrl, 'evm_mine');
      await rpc(second.httpUrl, 'evm_mine');
    }
    const [firstHead, secondHead] = await Promise.all(
      [first, second].map((a) => rpc<{ hash: string }>(a.httpUrl, 'eth_getBlockByNumber', ['latest', false])),
    );
    await client.next((m) => m['sub'] === onFirst && m['hash'] === firstHead?.hash, 15_000);
    await client.next((m) => m['sub'] === onSecond && m['hash'] === secondHead?.hash, 15_000);
    const firstBlocks = client.of(onFirst, 'block');
    const secondBlocks = client.of(onSecond, 'block');
    expect(firstBlocks.map((b) => b['chainId'])).toEqual([31_337, 31_337, 31_337]);
    expect(secondBlocks.map((b) => b['chainId'])).toEqual(Array(6).fill(424_242));
    for (const [blocks, anvil] of [
      [firstBlocks, first],
      [secondBlocks, second],
    ] as const) {
      for (const block of blocks) {
        const node = await rpc<{ hash: string }>(anvil.httpUrl, 'eth_getBlockByNumber', [
          `0x${(block['number'] as number).toString(16)}`,
          false,
        ]);
        expect(block['hash']).toBe(node.hash);
        expect(block['cursor']).toMatch(new RegExp(`^${block['chainId']}:`));
      }
    }
    const unknown = await client.request({ op: 'subscribe', channel: 'blocks', chainId: 1 });
    expect(unknown).toMatchObject({ type: 'error', code: 'UNKNOWN_CHAIN' });
    client.close();
  });

  it('refuses to start when a node serves another chain than configured', async () => {
    const { code, output } = await runGatewayToExit([
      '--chain',
      `1=${first.httpUrl}`,
      '--port',
      '0',
      '--host',
      '127.0.0.1',
    ]);
    expect(code).toBe(1);
    expect(output).toContain('serves chain 31337, not 1');
  });
});

// What a subscription was sent is kept per chain: block numbers of different chains say nothing
// about each other (mainnet beside an L2), so one chain's progress must not drop another's record.
describe('delivery records per chain', () => {
  it('retracts activity on the chain with the lower numbers after the other chain moved on', async () => {
    const [low, high] = await Promise.all([
      startAnvil({ noMining: true, chainId: 31_337 }),
      startAnvil({ noMining: true, chainId: 424_242 }),
    ]);
    // Thousands of blocks ahead of the first chain, as an L2 beside mainnet.
    await rpc(high.httpUrl, 'anvil_mine', ['0x7d0']);
    const gateway = await startGateway([
      '--chain',
      `31337=${low.httpUrl}`,
      '--chain',
      `424242=${high.httpUrl}`,
      '--poll-interval-ms',
      '50',
    ]);
    const chain = new TestChain(low.httpUrl);
    const highChain = new TestChain(high.httpUrl);
    try {
      const client = await TestClient.connect(gateway.url, 'json');
      const watched = chain.address(1);
      const activity = await client.subscribe({ channel: 'activity', chainId: 31_337, addresses: [watched] });
      const highActivity = await client.subscribe({ channel: 'activity', chainId: 424_242, addresses: [watched] });
      const txHash = await chain.transfer(0, watched, 1000n);
      const minedAt = await chain.mine();
      await client.next((m) => m['sub'] === activity && m.type === 'activity', 15_000);
      // Activity on the other chain, at numbers past the first chain's by far more than the window.
      await highChain.transfer(0, watched, 1000n);
      await highChain.mine();
      await client.next((m) => m['sub'] === highActivity && m.type === 'activity', 15_000);
      // The first chain's block with the transfer is replaced by an empty one.
      await rpc(low.httpUrl, 'anvil_reorg', [1, []]);
      await rpc(low.httpUrl, 'evm_mine');
      const removed = await client.next((m) => m['sub'] === activity && m.type === 'removed', 15_000);
      expect(removed['block']).toMatchObject({ number: minedAt });
      expect((removed['events'] as Array<{ id: string }>).map((e) => e.id)).toEqual([txHash.toLowerCase()]);
      client.close();
    } finally {
      chain.close();
      highChain.close();
      await gateway.stop();
      await Promise.all([low.close(), high.close()]);
    }
  });
});
