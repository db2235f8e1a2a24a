import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestChain } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import type { GatewayProcess } from './helpers/gateway.ts';
import { type Stack, startStack } from './helpers/stack.ts';
import { Watcher } from './helpers/watcher.ts';

// Anvil mines only on evm_mine, so every block's content is chosen by the test.
describe.each([
  ['json', 'http'],
  ['msgpack', 'ws'],
] as const)('address activity end to end (%s frames, %s RPC)', (encoding, transport) => {
  let stack: Stack;
  let gateway: GatewayProcess;
  let chain: TestChain;
  let x: string;
  let y: string;
  let z: string;

  beforeAll(async () => {
    stack = await startStack({ node: { noMining: true }, transport });
    ({ gateway, chain } = stack);
    [x, y, z] = [chain.address(0), chain.address(1), chain.address(2)];
  });

  afterAll(async () => {
    await stack?.close();
  });

  async function mineWith(sends: Array<() => Promise<string>>): Promise<{ number: number; hashes: string[] }> {
    const hashes: string[] = [];
    for (const send of sends) hashes.push(await send());
    return { number: await chain.mine(), hashes };
  }

  it('delivers one activity message per block to watchers of the sender and receiver only', async () => {
    const a = await Watcher.start(gateway.url, encoding, [x.toUpperCase().replace('0X', '0x')]);
    const b = await Watcher.start(gateway.url, encoding, [y]);
    const c = await Watcher.start(gateway.url, encoding, [z]);
    const { number, hashes } = await mineWith([() => chain.transfer(0, y, 12_345n), () => chain.transfer(0, y, 777n)]);
    const receipts = await Promise.all(hashes.map((h) => chain.receipt(h)));
    const next = await chain.mine();
    await Promise.all([a, b, c].map((watcher) => watcher.through(next)));

    const block = await chain.block(number);
    for (const watcher of [a, b]) {
      const messages = watcher.activityAt(number);
      expect(messages).toHaveLength(1);
      const message = messages[0] as Message;
      expect(message['chainId']).toBe(31_337);
      expect(message['block']).toMatchObject({ number, hash: block.hash });
      expect(message['cursor']).toBeTypeOf('string');
      expect(message['events']).toEqual(
        receipts.map((r, i) => ({
          kind: 'tx',
          id: r.hash,
          txHash: r.hash,
          txIndex: r.index,
          from: r.from.toLowerCase(),
          to: r.to?.toLowerCase(),
          value: `0x${(i === 0 ? 12_345n : 777n).toString(16)}`,
          nonce: Number(block.transactions.find((t) => t.hash === r.hash)?.nonce),
          status: r.status,
          // The fee, equal to the receipt's.
          gasUsed: `0x${r.gasUsed.toString(16)}`,
          effectiveGasPrice: `0x${r.gasPrice.toString(16)}`,
          fee: `0x${r.fee.toString(16)}`,
        })),
      );
      expect(receipts.every((r) => r.blockNumber === number && r.blockHash === block.hash)).toBe(true);
    }
    expect(c.client.of(c.activitySub, 'activity')).toEqual([]);
    // Nothing for the empty barrier block either.
    expect(a.activityAt(next)).toEqual([]);
    for (const watcher of [a, b, c]) watcher.client.close();
  });

  it('applies update add/remove and unsubscribe from the next block on', async () => {
    const a = await Watcher.start(gateway.url, encoding, [x]);

    // Stop watching x, start watching z: a transfer x → y is no longer A's, one from account 3 → z is.
    const updated = await a.client.request({ op: 'update', sub: a.activitySub, add: [z], remove: [x] });
    expect(updated).toMatchObject({ type: 'updated', sub: a.activitySub, addresses: 1 });
    const first = await mineWith([() => chain.transfer(0, y, 1n), () => chain.transfer(3, z, 2n)]);
    await a.through(first.number);
    const afterUpdate = a.activityAt(first.number);
    expect(afterUpdate).toHaveLength(1);
    const events = (afterUpdate[0] as Message)['events'] as Message[];
    expect(events.map((e) => e['txHash'])).toEqual([first.hashes[1]]);

    const unsubscribed = await a.client.request({ op: 'unsubscribe', sub: a.activitySub });
    expect(unsubscribed).toMatchObject({ type: 'unsubscribed', sub: a.activitySub });
    const second = await mineWith([() => chain.transfer(3, z, 3n)]);
    await a.through(second.number);
    expect(a.activityAt(second.number)).toEqual([]);

    // Unsubscribing the blocks channel ends the block stream too.
    await a.client.request({ op: 'unsubscribe', sub: a.blocksSub });
    const probe = await TestClient.connect(gateway.url, encoding);
    const probeSub = await probe.subscribe({ channel: 'blocks' });
    const third = await chain.mine();
    await probe.next((m) => m['sub'] === probeSub && m['number'] === third, 15_000);
    expect(a.client.of(a.blocksSub, 'block').some((m) => m['number'] === third)).toBe(false);
    a.client.close();
    probe.close();
  });

  it('carries the transactions in full blocks', async () => {
    const client = await TestClient.connect(gateway.url, encoding);
    const full = await client.subscribe({ channel: 'blocks', full: true });
    const plain = await client.subscribe({ channel: 'blocks' });
    const { number, hashes } = await mineWith([() => chain.transfer(1, z, 5n), () => chain.transfer(2, x, 6n)]);
    const message = await client.next((m) => m['sub'] === full && m['number'] === number, 15_000);
    const plainMessage = await client.next((m) => m['sub'] === plain && m['number'] === number, 15_000);
    const block = await chain.block(number);
    expect(message['txCount']).toBe(2);
    expect(plainMessage['transactions']).toBeUndefined();
    const txs = message['transactions'] as Message[];
    expect(txs.map((t) => t['txHash'])).toEqual(hashes);
    expect(txs.map((t) => ({ from: t['from'], to: t['to'], value: t['value'], input: t['input'] }))).toEqual(
      block.transactions.map((t) => ({ from: t.from, to: t.to, value: t.value, input: t.input })),
    );
    expect(txs.every((t) => t['status'] === 1 && typeof t['gas'] === 'string')).toBe(true);
    client.close();
  });
});
