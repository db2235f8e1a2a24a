import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Message, TestClient } from './helpers/client.ts';
import { FAKE_ACCOUNTS, type FakeBlock, FakeChain, FakeNode } from './helpers/fakeNode.ts';
import { type GatewayProcess, scrapeMetrics, seriesValue, startGateway } from './helpers/gateway.ts';

const CHAIN_ID = 1337;
/** Watched by the activity subscriptions: every block of the fake chain has a transaction from it. */
const WATCHED = FAKE_ACCOUNTS[0] as string;
const quantity = (n: number): string => `0x${n.toString(16)}`;

/** A client of the gateway subscribed to blocks and to the activity (and pending) of {@link WATCHED}. */
class Observer {
  private constructor(
    readonly client: TestClient,
    readonly blocksSub: string,
    readonly activitySub: string,
  ) {}

  /**
   * `full` (the default): blocks with their transactions, so that a block's message comes with
   * everything else of the whole block; without, it comes from the block's header, ahead of it.
   */
  static async start(gateway: GatewayProcess, pending = false, full = true): Promise<Observer> {
    const client = await TestClient.connect(gateway.url, 'json');
    const blocksSub = await client.subscribe({ channel: 'blocks', full });
    const activitySub = await client.subscribe({ channel: 'activity', addresses: [WATCHED], pending });
    return new Observer(client, blocksSub, activitySub);
  }

  /** Waits (bounded) for the block message of `block`. */
  async sees(block: FakeBlock, timeoutMs = 10_000): Promise<Message> {
    return this.client.next(
      (m) => m['sub'] === this.blocksSub && m.type === 'block' && m['hash'] === block.hash,
      timeoutMs,
    );
  }

  blocks(): Message[] {
    return this.client.of(this.blocksSub, 'block');
  }

  removed(): Message[] {
    return this.client.of(this.blocksSub, 'removed');
  }

  /**
   * Asserts that the stream is one the node could have sent honestly: every block is a block the
   * chain made (number, parent, transaction count as made), each follows the one held before it,
   * a `removed` retracts the newest block held (and only `allowedRemoved` of them), and each
   * block's activity is the watched address's transactions of that block, once.
   */
  expectWellFormed(chain: FakeChain, allowedRemoved = 0): void {
    const held: Array<{ number: number; hash: string }> = [];
    let removed = 0;
    for (const m of this.client.messages) {
      if (m['sub'] !== this.blocksSub) continue;
      if (m.type === 'block') {
        const made = chain.byHash.get(m['hash'] as string);
        expect(made, `block ${m['number']} ${m['hash']} is one the chain made`).toBeDefined();
        expect({ number: m['number'], parentHash: m['parentHash'], txCount: m['txCount'] }).toEqual({
          number: made?.number,
          parentHash: made?.parentHash,
          txCount: made?.txs.length,
        });
        const top = held.at(-1);
        if (top !== undefined) {
          expect(m['number']).toBe(top.number + 1);
          expect(m['parentHash']).toBe(top.hash);
        }
        held.push({ number: m['number'] as number, hash: m['hash'] as string });
      } else if (m.type === 'removed') {
        removed++;
        const top = held.pop();
        expect((m['block'] as { hash: string }).hash).toBe(top?.hash);
      }
    }
    expect(removed).toBe(allowedRemoved);
    const blocks = this.blocks();
    // The newest block's activity may still be on its way; every earlier one's is in.
    for (const block of blocks.slice(0, -1)) {
      const made = chain.byHash.get(block['hash'] as string) as FakeBlock;
      const activity = this.client
        .of(this.activitySub, 'activity')
        .filter((m) => (m['block'] as { hash: string }).hash === made.hash);
      const expected = made.txs.filter((tx) => tx.from === WATCHED || tx.to === WATCHED).map((tx) => tx.hash);
      const ids = activity.flatMap((m) => (m['events'] as Array<{ id: string }>).map((e) => e.id));
      expect(ids, `activity of block ${made.number}`).toEqual(expected);
    }
  }

  close(): void {
    this.client.close();
  }
}

/** The value of `blockcast_ingest_rpc_faults_total` for an endpoint and a reason. */
async function faults(gateway: GatewayProcess, node: FakeNode, reason: string): Promise<number> {
  const series = `blockcast_ingest_rpc_faults_total{chain="${CHAIN_ID}",endpoint="${node.endpoint}",reason="${reason}"}`;
  return seriesValue(await scrapeMetrics(gateway), series) ?? Number.NaN;
}

/** Waits (bounded: polls /metrics every 100 ms) until the fault count of `reason` passes `above`. */
async function faultCountPasses(
  gateway: GatewayProcess,
  node: FakeNode,
  reason: string,
  above: number,
  timeoutMs = 10_000,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const count = await faults(gateway, node, reason);
    if (count > above) return count;
    if (Date.now() > deadline) throw new Error(`${reason} faults stayed at ${count} for ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Waits for the gateway's log line of a fault of `reason` at `node` matching `detail`. */
function faultLogged(gateway: GatewayProcess, node: FakeNode, reason: string, detail = ''): Promise<void> {
  const escaped = `${node.endpoint}: ${reason} (`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return gateway.waitForOutput(new RegExp(`chain ${CHAIN_ID}: rpc ${escaped}.*${detail}`), 10_000);
}

const COMMON_ARGS = ['--poll-interval-ms', '50', '--rpc-timeout-ms', '1000'];

/** A fake node at `height`, the gateway following it over `transport`, and an observer that saw a first block. */
async function startAgainst(
  height: number,
  transport: 'http' | 'ws',
): Promise<{ chain: FakeChain; node: FakeNode; gateway: GatewayProcess; observer: Observer }> {
  const chain = new FakeChain({ chainId: CHAIN_ID, height });
  const node = await FakeNode.start(chain);
  const url = transport === 'http' ? node.url : node.wsUrl;
  const gateway = await startGateway(['--rpc', url, ...COMMON_ARGS, '--rpc-max-response-bytes', '65536']);
  const observer = await Observer.start(gateway, true);
  await observer.sees(chain.mine());
  return { chain, node, gateway, observer };
}

describe('a hostile or broken node over http', () => {
  let chain: FakeChain;
  let node: FakeNode;
  let gateway: GatewayProcess;
  let observer: Observer;

  beforeAll(async () => {
    ({ chain, node, gateway, observer } = await startAgainst(40, 'http'));
  });

  afterAll(async () => {
    observer?.close();
    await gateway?.stop();
    await node?.close();
  });

  /** Mines a block once the fault was seen, clears it and waits for the block. */
  async function recovers(): Promise<void> {
    node.clear();
    await observer.sees(chain.mine());
  }

  it('creates every fault series at zero from the start', async () => {
    for (const reason of ['timeout', 'too_large', 'wrong_chain', 'behind']) {
      expect(await faults(gateway, node, reason)).toBe(0);
    }
    const text = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    expect(text).not.toContain('chain="unknown"');
  });

  it('times out a 10 s answer, retries, and says so', async () => {
    node.inject({
      method: 'eth_getBlockByNumber',
      match: (p) => p[0] === 'latest',
      fault: { kind: 'delay', ms: 10_000 },
    });
    await faultLogged(gateway, node, 'timeout', 'no whole answer within 1000 ms');
    expect(await faults(gateway, node, 'timeout')).toBeGreaterThan(0);
    await recovers();
  });

  it('retries after HTTP 500', async () => {
    node.inject({ method: 'eth_getBlockByNumber', times: 3, fault: { kind: 'status', status: 500 } });
    chain.mine();
    await faultLogged(gateway, node, 'http_status', 'HTTP 500');
    expect(await faults(gateway, node, 'http_status')).toBeGreaterThanOrEqual(1);
    await recovers();
  });

  it('retries after an answer that is not JSON', async () => {
    // The new head is fetched by its hash (with its receipts at the same time).
    const mined = chain.mine();
    node.inject({ method: 'eth_getBlockByHash', match: (p) => p[0] === mined.hash, fault: { kind: 'invalidJson' } });
    await faultLogged(gateway, node, 'invalid_json', '502 Bad Gateway');
    expect(await faults(gateway, node, 'invalid_json')).toBeGreaterThan(0);
    await recovers();
  });

  it('refuses an answer past the size cap', async () => {
    node.inject({ method: 'eth_getBlockReceipts', fault: { kind: 'oversize', bytes: 200_000 } });
    chain.mine();
    await faultLogged(gateway, node, 'too_large', 'over the cap of 65536');
    expect(await faults(gateway, node, 'too_large')).toBeGreaterThan(0);
    await recovers();
  });

  it('refuses an answer that is not a JSON-RPC envelope, and an error object of the node', async () => {
    node.inject({ method: 'eth_getBlockByNumber', match: (p) => p[0] === 'latest', fault: { kind: 'badEnvelope' } });
    await faultLogged(gateway, node, 'bad_response', 'has id not-the-id');
    node.inject({
      method: 'eth_getBlockReceipts',
      fault: { kind: 'error', code: -32000, message: 'resource not found' },
    });
    const receiptsBefore = node.calls('eth_getBlockReceipts');
    chain.mine();
    await faultLogged(gateway, node, 'node_error', 'resource not found');
    await recovers();
    // An error that does not say the method is missing switches nothing off.
    expect(node.calls('eth_getBlockReceipts')).toBeGreaterThanOrEqual(receiptsBefore + 2);
    expect(node.calls('eth_getTransactionReceipt')).toBe(0);
  });

  it('refuses malformed hex in the head and in a transaction, and delivers neither', async () => {
    const before = await faults(gateway, node, 'malformed');
    node.inject({
      method: 'eth_getBlockByNumber',
      match: (p) => p[0] === 'latest',
      times: 3,
      fault: { kind: 'mutate', mutate: (head) => ({ ...(head as object), number: '0x3g' }) },
    });
    await faultLogged(gateway, node, 'malformed', 'number is 0x3g');
    node.clear();
    const afterHead = await faults(gateway, node, 'malformed');
    expect(afterHead).toBeGreaterThan(before);
    const mined = chain.mine();
    node.inject({
      method: 'eth_getBlockByHash',
      match: (p) => p[0] === mined.hash,
      fault: {
        kind: 'mutate',
        mutate: (block) => {
          const b = block as { transactions: Array<Record<string, unknown>> };
          (b.transactions[0] as Record<string, unknown>)['value'] = '0xnothex';
          return b;
        },
      },
    });
    await faultCountPasses(gateway, node, 'malformed', afterHead);
    await recovers();
  });

  it('never lets in a block whose number disagrees with its parent', async () => {
    const before = await faults(gateway, node, 'inconsistent');
    // Two blocks at once: the first is caught up by number, the head by hash.
    const next = chain.head.number + 1;
    chain.mine(2);
    node.inject({
      method: 'eth_getBlockByNumber',
      match: (p) => p[0] === quantity(next),
      fault: { kind: 'mutate', mutate: (block) => ({ ...(block as object), number: quantity(next + 5) }) },
    });
    await faultLogged(
      gateway,
      node,
      'inconsistent',
      `eth_getBlockByNumber\\(${quantity(next)}\\) answered block ${quantity(next + 5)} whose parent is block ${next - 1}'s hash`,
    );
    await observer.sees(chain.head);
    // Receipts of another block, then a transaction at the wrong position: refused the same way.
    const withReceipts = chain.mine();
    node.inject({
      method: 'eth_getBlockReceipts',
      match: (p) => p[0] === withReceipts.hash,
      fault: {
        kind: 'mutate',
        mutate: (receipts) =>
          (receipts as Array<Record<string, unknown>>).map((r) => ({ ...r, blockHash: chain.blocks[1]?.hash })),
      },
    });
    await faultCountPasses(gateway, node, 'inconsistent', before + 1);
    await observer.sees(withReceipts);
    const head = chain.mine();
    node.inject({
      method: 'eth_getBlockByHash',
      match: (p) => p[0] === head.hash,
      fault: {
        kind: 'mutate',
        mutate: (block) => {
          const b = block as { transactions: Array<Record<string, unknown>> };
          (b.transactions[1] as Record<string, unknown>)['transactionIndex'] = '0x7';
          return b;
        },
      },
    });
    await faultCountPasses(gateway, node, 'inconsistent', before + 2);
    await recovers();
    expect(observer.blocks().map((b) => b['number'])).not.toContain(next + 5);
  });

  it('waits out a head that goes back and forth, without retracting anything', async () => {
    node.options.flapBlocks = 3;
    // A lagging backend behind a load balancer: the time it lasts is what is under test.
    for (let i = 0; i < 3; i++) {
      chain.mine();
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    await faultLogged(gateway, node, 'behind', 'below our head');
    expect(await faults(gateway, node, 'behind')).toBeGreaterThan(0);
    await recovers();
    expect(observer.removed()).toEqual([]);
  });

  it('uses no answer of a node that says it serves another chain, until it serves this one again', async () => {
    node.options.chainId = 4242;
    // The chain id is asked again after every reconnect: one failed round makes one.
    node.inject({
      method: 'eth_getBlockByNumber',
      match: (p) => p[0] === 'latest',
      fault: { kind: 'status', status: 502 },
    });
    await faultLogged(gateway, node, 'wrong_chain', 'eth_chainId answered 4242, not 1337');
    const during = chain.mine();
    // While the node claims another chain, nothing of it is used: the time it lasts is the test.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(observer.blocks().map((b) => b['hash'])).not.toContain(during.hash);
    expect(await faults(gateway, node, 'wrong_chain')).toBeGreaterThan(1);
    node.clear();
    await observer.sees(during);
  });

  it('delivers pending transactions again after an answer to the filter that is not JSON', async () => {
    const first = chain.addPending(0, 1, 101n);
    await observer.client.next(
      (m) => m.type === 'pending' && (m['events'] as Array<{ id: string }>).some((e) => e.id === first.hash),
      10_000,
    );
    const filters = node.calls('eth_newPendingTransactionFilter');
    node.inject({ method: 'eth_getFilterChanges', fault: { kind: 'invalidJson' } });
    await node.waitForCalls('eth_newPendingTransactionFilter', filters + 1);
    const second = chain.addPending(0, 2, 202n);
    const pending = await observer.client.next(
      (m) => m.type === 'pending' && (m['events'] as Array<{ id: string }>).some((e) => e.id === second.hash),
      10_000,
    );
    expect(pending['events']).toEqual([
      {
        kind: 'tx',
        id: second.hash,
        txHash: second.hash,
        txIndex: null,
        from: WATCHED,
        to: FAKE_ACCOUNTS[2],
        value: '0xca',
        nonce: second.nonce,
      },
    ]);
    await observer.sees(chain.mine());
  });

  it('falls back to receipts one by one on an endpoint without eth_getBlockReceipts', async () => {
    node.options.blockReceipts = false;
    const mined = chain.mine();
    await observer.sees(mined);
    expect(node.calls('eth_getTransactionReceipt')).toBe(mined.txs.length);
    node.options.blockReceipts = true;
    await gateway.waitForOutput(/eth_getBlockReceipts is not offered .*asked again in 10 min/);
  });

  it('follows a node that went back for good, after the grace period', async () => {
    const held = chain.head;
    const back = chain.blocks[held.number - 2] as FakeBlock;
    chain.rewind(back.number);
    // The grace period (two block times) passing is what is under test.
    await gateway.waitForOutput(/reorg of 2 blocks/, 10_000);
    expect(observer.removed().map((m) => (m['block'] as { number: number }).number)).toEqual([
      held.number,
      held.number - 1,
    ]);
    await observer.sees(chain.mine(3));
  });

  it('delivered a stream the node could have sent honestly', () => {
    observer.expectWellFormed(chain, 2);
    expect(observer.blocks().length).toBeGreaterThan(15);
  });
});

describe('a hostile or broken node over ws', () => {
  let chain: FakeChain;
  let node: FakeNode;
  let gateway: GatewayProcess;
  let observer: Observer;

  beforeAll(async () => {
    ({ chain, node, gateway, observer } = await startAgainst(10, 'ws'));
  });

  afterAll(async () => {
    observer?.close();
    await gateway?.stop();
    await node?.close();
  });

  it('counts a message that is not JSON and keeps serving', async () => {
    node.broadcast('{"jsonrpc":"2.0","id":');
    await faultLogged(gateway, node, 'invalid_json', 'not JSON');
    expect(await faults(gateway, node, 'invalid_json')).toBeGreaterThan(0);
    await observer.sees(chain.mine());
    expect(gateway.process.exitCode).toBeNull();
  });

  it('drops notifications of subscriptions it never made', async () => {
    for (let i = 0; i < 20_000; i++) {
      node.broadcast(
        `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x${i.toString(16)}","result":"0x${'ab'.repeat(32)}"}}`,
      );
    }
    await observer.sees(chain.mine());
    expect(observer.client.of(observer.activitySub, 'pending')).toEqual([]);
  });

  it('refuses a message past the size cap (close 1009) and reconnects', async () => {
    node.inject({
      method: 'eth_getBlockByNumber',
      match: (p) => p[0] === 'latest',
      fault: { kind: 'oversize', bytes: 200_000 },
    });
    await faultLogged(gateway, node, 'too_large', 'cap of 65536 bytes');
    expect(await faults(gateway, node, 'too_large')).toBeGreaterThan(0);
    await observer.sees(chain.mine());
  });

  it('delivers pending transactions again after an answer to the subscription that is not JSON', async () => {
    const first = chain.addPending(0, 1, 303n);
    await observer.client.next(
      (m) => m.type === 'pending' && (m['events'] as Array<{ id: string }>).some((e) => e.id === first.hash),
      10_000,
    );
    const isMempool = (p: readonly unknown[]): boolean => p[0] === 'newPendingTransactions';
    const subscribed = node.calls('eth_subscribe', isMempool);
    node.inject({ method: 'eth_subscribe', match: isMempool, fault: { kind: 'invalidJson' } });
    node.dropConnections();
    // The answer that is not JSON, then a new subscription after the request timed out.
    await node.waitForCalls('eth_subscribe', subscribed + 2, { match: isMempool });
    const hashes = node.calls('eth_getTransactionByHash');
    await observer.sees(chain.mine());
    const second = chain.addPending(0, 2, 404n);
    await observer.client.next(
      (m) => m.type === 'pending' && (m['events'] as Array<{ id: string }>).some((e) => e.id === second.hash),
      10_000,
    );
    // Full transactions come with the notification: nothing is fetched by hash.
    expect(node.calls('eth_getTransactionByHash')).toBe(hashes);
    await observer.sees(chain.mine());
  });

  it('delivered a stream the node could have sent honestly', () => {
    observer.expectWellFormed(chain);
  });
});

describe('failover while catching up', () => {
  it('keeps eth_getBlockReceipts on every endpoint after in-flight requests are cut', async () => {
    const chain = new FakeChain({ chainId: CHAIN_ID, height: 10 });
    const first = await FakeNode.start(chain);
    const second = await FakeNode.start(chain);
    const gateway = await startGateway(['--rpc', first.url, '--rpc', second.url, ...COMMON_ARGS]);
    const observer = await Observer.start(gateway);
    try {
      await observer.sees(chain.mine());
      // Eight blocks at once: caught up four at a time, while the first endpoint stops answering.
      first.inject({
        method: 'eth_getBlockReceipts',
        times: Number.POSITIVE_INFINITY,
        fault: { kind: 'delay', ms: 10_000 },
      });
      await observer.sees(chain.mine(8), 15_000);
      await faultLogged(gateway, first, 'timeout', 'eth_getBlockReceipts');
      expect(await faults(gateway, first, 'timeout')).toBeGreaterThan(0);
      expect(second.calls('eth_getBlockReceipts')).toBeGreaterThan(0);
      expect(second.calls('eth_getTransactionReceipt')).toBe(0);

      // And back: the second fails, the first answers again, still with block receipts.
      first.clear();
      const before = first.calls('eth_getBlockReceipts');
      second.inject({
        method: 'eth_getBlockByNumber',
        times: Number.POSITIVE_INFINITY,
        fault: { kind: 'status', status: 503 },
      });
      await observer.sees(chain.mine(3), 15_000);
      expect(first.calls('eth_getBlockReceipts')).toBeGreaterThanOrEqual(before + 3);
      expect(first.calls('eth_getTransactionReceipt') + second.calls('eth_getTransactionReceipt')).toBe(0);
      observer.expectWellFormed(chain);
      const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
      expect(metrics).toContain(`blockcast_ingest_endpoint_up{chain="${CHAIN_ID}",endpoint="${first.endpoint}"} 1`);
      expect(metrics).toContain(`blockcast_ingest_endpoint_up{chain="${CHAIN_ID}",endpoint="${second.endpoint}"} 0`);
    } finally {
      observer.close();
      await gateway.stop();
      await first.close();
      await second.close();
    }
  });
});

describe('a block of 100,000 transactions', () => {
  it('is ingested within the request timeout while other subscribers keep being served', {
    timeout: 90_000,
  }, async () => {
    const chain = new FakeChain({ chainId: CHAIN_ID, height: 3 });
    const node = await FakeNode.start(chain);
    // Default timeout (10 s) and size cap (128 MiB).
    const gateway = await startGateway(['--rpc', node.url, '--poll-interval-ms', '100']);
    // Plain blocks: the huge one's header comes at once; the next block only once it was ingested.
    const observer = await Observer.start(gateway, false, false);
    const other = await Observer.start(gateway, false, false);
    try {
      await observer.sees(chain.mine());
      // Between accounts 2 and 3: the watched address has no activity in it.
      const huge = chain.mine(1, { txCount: 100_000, accounts: [2, 3] });
      // Rendered before the clock starts: the node's own JSON encoding is not under test.
      chain.headerBytes(huge);
      const bytes = chain.fullBlockBytes(huge).length + chain.receiptsBytes(huge).length;
      const started = performance.now();
      const message = await observer.sees(huge, 30_000);
      expect(message['txCount']).toBe(100_000);
      // The next block is announced only once the huge one is in: its arrival times the ingest.
      const next = chain.mine();
      await Promise.all([observer.sees(next, 30_000), other.sees(next, 30_000)]);
      const seconds = (performance.now() - started) / 1000;
      const ready = await fetch(`${gateway.httpUrl}/readyz`);
      expect(ready.status).toBe(200);
      const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
      const rss = Number(/^process_resident_memory_bytes (\d+)/m.exec(metrics)?.[1]);
      console.log(
        `100,000-transaction block: ${(chain.fullBlockBytes(huge).length / 1e6).toFixed(1)} MB with transactions + ${(chain.receiptsBytes(huge).length / 1e6).toFixed(1)} MB of receipts (${(bytes / 1e6).toFixed(1)} MB) ingested, and the next block delivered, ${seconds.toFixed(2)} s after it was mined; gateway RSS ${(rss / 1e6).toFixed(0)} MB`,
      );
      // Each request of it was answered and read within the 10 s timeout: none timed out, none was sent again.
      expect(await faults(gateway, node, 'timeout')).toBe(0);
      expect(node.calls('eth_getBlockByHash', (p) => p[0] === huge.hash)).toBe(1);
      expect(node.calls('eth_getBlockReceipts', (p) => p[0] === huge.hash)).toBe(1);
      expect(await faults(gateway, node, 'too_large')).toBe(0);
      observer.expectWellFormed(chain);
      other.expectWellFormed(chain);
      expect([observer.client.closed, other.client.closed]).toEqual([undefined, undefined]);
    } finally {
      observer.close();
      other.close();
      await gateway.stop();
      await node.close();
    }
  });
});
