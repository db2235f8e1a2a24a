import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { rpc, TestChain } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';
import { ClientView, expectCanonical } from './helpers/view.ts';

// Anvil mines only on demand; the gateway polls every 50 ms.
describe('reorgs', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let chain: TestChain;
  let blocksClient: TestClient;
  let activityClient: TestClient;
  let blocksSub: string;
  let fullSub: string;
  let activitySub: string;
  let barrierSub: string;
  let watched: string[];
  let firstHeight: number;

  beforeAll(async () => {
    anvil = await startAnvil({ noMining: true });
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--poll-interval-ms', '50']);
    chain = new TestChain(anvil.httpUrl);
    watched = [chain.address(0), chain.address(1)];
    blocksClient = await TestClient.connect(gateway.url, 'json');
    blocksSub = await blocksClient.subscribe({ channel: 'blocks' });
    fullSub = await blocksClient.subscribe({ channel: 'blocks', full: true });
    activityClient = await TestClient.connect(gateway.url, 'msgpack');
    activitySub = await activityClient.subscribe({ channel: 'activity', addresses: watched });
    barrierSub = await activityClient.subscribe({ channel: 'blocks', full: true });
    firstHeight = Number(await rpc<string>(anvil.httpUrl, 'eth_blockNumber')) + 1;
  });

  afterAll(async () => {
    blocksClient?.close();
    activityClient?.close();
    chain?.close();
    await gateway?.stop();
    await anvil?.close();
  });

  /** Mines `count` blocks, each with a transfer between the watched accounts. */
  async function mineActive(count: number): Promise<number> {
    let head = 0;
    for (let i = 0; i < count; i++) {
      await chain.transfer(i % 2, watched[(i + 1) % 2] as string, BigInt(1000 + i));
      head = await chain.mine();
    }
    return head;
  }

  /** Waits until both clients hold the node's head block. */
  async function settle(): Promise<number> {
    const head = await rpc<{ number: string; hash: string }>(anvil.httpUrl, 'eth_getBlockByNumber', ['latest', false]);
    const isHead = (sub: string) => (m: Message) => m['sub'] === sub && m.type === 'block' && m['hash'] === head.hash;
    await blocksClient.next(isHead(blocksSub), 15_000);
    await blocksClient.next(isHead(fullSub), 15_000);
    await activityClient.next(isHead(barrierSub), 15_000);
    return Number(head.number);
  }

  async function expectConsistent(): Promise<void> {
    const to = await settle();
    const range = { from: firstHeight, to };
    await expectCanonical(ClientView.of(blocksClient.messages, [blocksSub]), anvil.httpUrl, range);
    await expectCanonical(ClientView.of(blocksClient.messages, [fullSub]), anvil.httpUrl, range);
    await expectCanonical(ClientView.of(activityClient.messages, [activitySub]), anvil.httpUrl, range, watched);
  }

  it.each([1, 3, 10])('retracts a reorg of depth %i (anvil_reorg) before the new blocks', async (depth) => {
    await mineActive(depth + 2);
    await expectConsistent();
    const removedBefore = activityClient.of(activitySub, 'removed').length;
    const blockRemovedBefore = blocksClient.of(blocksSub, 'removed').length;
    // The replacement blocks carry other transfers between the same accounts.
    const txs = Array.from({ length: depth }, (_, i) => [
      { from: watched[1], to: watched[0], value: `0x${(50_000 + i).toString(16)}` },
      i,
    ]);
    await rpc(anvil.httpUrl, 'anvil_reorg', [depth, txs]);
    chain.resetNonces();
    await mineActive(1);
    await expectConsistent();
    expect(blocksClient.of(blocksSub, 'removed').length - blockRemovedBefore).toBe(depth);
    // Every orphaned block had activity of the watched pair, so each is retracted.
    expect(activityClient.of(activitySub, 'removed').length - removedBefore).toBe(depth);
  });

  it('retracts blocks replaced after evm_snapshot / evm_revert', async () => {
    await mineActive(1);
    const snapshot = await rpc<string>(anvil.httpUrl, 'evm_snapshot');
    await mineActive(3);
    await expectConsistent();
    const removedBefore = blocksClient.of(blocksSub, 'removed').length;
    await rpc(anvil.httpUrl, 'evm_revert', [snapshot]);
    chain.resetNonces();
    // A longer branch with different transactions (other values, other direction).
    for (let i = 0; i < 4; i++) {
      await chain.transfer(1, watched[0] as string, BigInt(90_000 + i));
      await chain.mine();
    }
    await expectConsistent();
    expect(blocksClient.of(blocksSub, 'removed').length - removedBefore).toBe(3);
  });

  it('delivers removed before any block of the new branch', () => {
    for (const [client, sub] of [
      [blocksClient, blocksSub],
      [activityClient, barrierSub],
    ] as const) {
      const stream = client.messages.filter((m) => m['sub'] === sub && (m.type === 'block' || m.type === 'removed'));
      // Within the stream, block numbers only go back right after removals reached below them.
      let held = 0;
      for (const m of stream) {
        const number = (m.type === 'block' ? m['number'] : (m['block'] as { number: number }).number) as number;
        if (m.type === 'block') {
          expect(number).toBe(held === 0 ? number : held + 1);
          held = number;
        } else {
          expect(number).toBe(held);
          held = number - 1;
        }
      }
    }
  });
});

describe('a reorg deeper than the reorg window', () => {
  it('retracts the whole window, then follows the new branch', async () => {
    const anvil = await startAnvil({ noMining: true });
    const gateway = await startGateway([
      '--rpc',
      anvil.httpUrl,
      '--poll-interval-ms',
      '50',
      '--reorg-window-blocks',
      '4',
    ]);
    try {
      const client = await TestClient.connect(gateway.url, 'json');
      const sub = await client.subscribe({ channel: 'blocks' });
      // Block 8 whole in the window (a plain block may come from its header, before that).
      const whole = await client.subscribe({ channel: 'blocks', full: true });
      for (let i = 0; i < 8; i++) await rpc(anvil.httpUrl, 'evm_mine');
      await client.next((m) => m['sub'] === whole && m['number'] === 8, 15_000);
      await rpc(anvil.httpUrl, 'anvil_reorg', [6, []]);
      await rpc(anvil.httpUrl, 'evm_mine');
      const head = await rpc<{ hash: string }>(anvil.httpUrl, 'eth_getBlockByNumber', ['latest', false]);
      await client.next((m) => m['sub'] === sub && m['hash'] === head.hash, 15_000);
      const view = ClientView.of(client.messages, [sub]);
      expect(view.violations).toEqual([]);
      // The window (4 blocks) was retracted whole; what is held from there on is canonical.
      expect(client.of(sub, 'removed').map((m) => (m['block'] as { number: number }).number)).toEqual([8, 7, 6, 5]);
      await expectCanonical(view, anvil.httpUrl, { from: 5, to: 9 });
      const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
      expect(metrics).toMatch(/^blockcast_ingest_deep_reorgs_total\{chain="31337"\} 1$/m);
      client.close();
    } finally {
      await gateway.stop();
      await anvil.close();
    }
  });
});
