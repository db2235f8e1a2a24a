import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { TestChain } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import { FakeChain, FakeNode } from './helpers/fakeNode.ts';
import { type GatewayProcess, scrapeMetrics, seriesValue, startGateway } from './helpers/gateway.ts';

// A `blocks` subscription without transactions gets each block from its header, as soon as the
// node announced it, before ingest has fetched the block's transactions and receipts; everything
// else waits for the whole block. The header is an announcement: if the node's block turns out to
// be another, the subscriber gets `removed` for it, as after any reorg.

const numberOf = (m: Message): number => Number((m['block'] as { number: number } | undefined)?.number ?? m['number']);

describe('blocks from the header, on anvil', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let chain: TestChain;

  beforeAll(async () => {
    anvil = await startAnvil({ noMining: true });
    gateway = await startGateway(['--rpc', anvil.wsUrl, '--poll-interval-ms', '1000']);
    chain = new TestChain(anvil.httpUrl);
  });

  afterAll(async () => {
    chain?.close();
    await gateway?.stop();
    await anvil?.close();
  });

  it('writes a plain block before the full block and the activity of the same block, though subscribed after them', async () => {
    const client = await TestClient.connect(gateway.url, 'json');
    try {
      const sender = chain.address(0);
      const activity = await client.subscribe({ channel: 'activity', addresses: [sender] });
      const full = await client.subscribe({ channel: 'blocks', full: true });
      const plain = await client.subscribe({ channel: 'blocks' });
      for (let round = 0; round < 3; round++) {
        await chain.transfer(0, chain.address(1), 1000n);
        await chain.transfer(0, chain.address(2), 1000n);
        const number = await chain.mine();
        await client.next((m) => m['sub'] === activity && numberOf(m) === number);
        await client.next((m) => m['sub'] === full && numberOf(m) === number);
        const ofBlock = client.messages.filter((m) => m['type'] !== 'welcome' && numberOf(m) === number);
        expect(ofBlock.map((m) => `${m['type']} ${m['sub']}`)).toEqual([
          `block ${plain}`,
          `block ${full}`,
          `activity ${activity}`,
        ]);
        const [header, whole] = ofBlock as [Message, Message, Message];
        const { transactions, ...wholeHeader } = whole;
        expect(transactions).toHaveLength(2);
        expect({ ...header, sub: full }).toEqual({ ...wholeHeader, sub: full });
        expect(header['txCount']).toBe(2);
      }
      const metrics = await scrapeMetrics(gateway);
      expect(seriesValue(metrics, 'blockcast_log_appends_total{chain="31337",kind="head"}')).toBeGreaterThanOrEqual(3);
    } finally {
      client.close();
    }
  });
});

describe('a header whose block the node replaced', () => {
  let node: FakeNode;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    node = await FakeNode.start(new FakeChain({ chainId: 31_337, height: 4 }));
    gateway = await startGateway(['--rpc', node.wsUrl, '--poll-interval-ms', '50']);
  });

  afterAll(async () => {
    await gateway?.stop();
    await node?.close();
  });

  it('is taken back with removed, then the block that replaced it comes; the full subscription never sees it; a cursor at it resumes on the new block', async () => {
    const client = await TestClient.connect(gateway.url, 'json');
    try {
      const plain = await client.subscribe({ channel: 'blocks' });
      const full = await client.subscribe({ channel: 'blocks', full: true });
      const first = node.chain.mine();
      await client.next((m) => m['sub'] === full && m['hash'] === first.hash);
      // The node announces the next block but never gives it...
      let withheld: string | undefined;
      node.inject({
        method: 'eth_getBlockByHash',
        match: (params) => params[0] === withheld,
        times: Number.POSITIVE_INFINITY,
        fault: { kind: 'error', code: -32000, message: 'header not found' },
      });
      const announced = node.chain.mine();
      withheld = announced.hash;
      const header = await client.next((m) => m['sub'] === plain && m['hash'] === announced.hash);
      await node.waitForCalls('eth_getBlockByHash', 2, { match: (p) => p[0] === announced.hash });
      // ...and then has another block at its height.
      node.chain.rewind(first.number);
      const replacing = node.chain.mine();
      await client.next((m) => m['sub'] === full && m['hash'] === replacing.hash);
      node.clear();
      const after = client.messages.slice(client.messages.indexOf(header));
      expect(
        after
          .filter((m) => m['sub'] === plain && (m.type === 'block' || m.type === 'removed'))
          .map((m) => `${m['type']} ${numberOf(m)} ${m['hash'] ?? (m['block'] as { hash: string })['hash']}`),
      ).toEqual([
        `block ${announced.number} ${announced.hash}`,
        `removed ${announced.number} ${announced.hash}`,
        `block ${replacing.number} ${replacing.hash}`,
      ]);
      expect(client.messages.some((m) => m['sub'] === full && m['hash'] === announced.hash)).toBe(false);
      expect(header['parentHash']).toBe(first.hash);

      // A client that left with the header's cursor resumes on the block that replaced it.
      const resumed = await TestClient.connect(gateway.url, 'json');
      try {
        const { reply, before } = await resumed.resume({ channel: 'blocks', from: header['cursor'] });
        expect(reply).toMatchObject({ recovered: true });
        expect(before.map((m) => `${m['type']} ${numberOf(m)}`)).toEqual([
          `removed ${announced.number}`,
          `block ${replacing.number}`,
        ]);
      } finally {
        resumed.close();
      }
    } finally {
      client.close();
    }
  });
});
