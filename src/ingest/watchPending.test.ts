import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { JsonRpcProvider, type Wallet } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { FAKE_ACCOUNTS, FakeChain, FakeNode } from '../../test/helpers/fakeNode.ts';
import { type Anvil, startAnvil } from '../devnet/startAnvil.ts';
import { devWallets } from '../devnet/startTraffic.ts';
import type { RpcFaultError } from '../domain/errors.ts';
import type { TxEvent } from '../domain/types.ts';
import { type PendingWatcher, watchPending } from './watchPending.ts';

/** Collects batches and lets a test wait (bounded) for a transaction to arrive. */
class Batches {
  readonly batches: TxEvent[][] = [];
  #waiters: Array<() => void> = [];

  readonly onPending = (events: readonly TxEvent[]): void => {
    this.batches.push([...events]);
    for (const wake of this.#waiters) wake();
  };

  get ids(): string[] {
    return this.batches.flat().map((e) => e.id);
  }

  async waitFor(id: string, timeoutMs = 10_000): Promise<TxEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.batches.flat().find((e) => e.id === id);
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${id} not delivered within ${timeoutMs} ms; got ${this.ids.join(', ')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}

/**
 * A WebSocket JSON-RPC relay in front of anvil: it can refuse the full-transactions flag of
 * `newPendingTransactions` (as nodes that only announce hashes do), counts requests by method,
 * and can drop its connections.
 */
class Relay {
  readonly methods: string[] = [];
  readonly #server: WebSocketServer;
  readonly #listeners: Array<() => void> = [];

  private constructor(server: WebSocketServer, upstreamUrl: string, hashesOnly: boolean) {
    this.#server = server;
    server.on('connection', (client) => {
      const upstream = new WebSocket(upstreamUrl);
      const queued: string[] = [];
      upstream.on('open', () => {
        for (const m of queued.splice(0)) upstream.send(m);
      });
      upstream.on('message', (data) => client.send(data.toString()));
      upstream.on('close', () => client.close());
      upstream.on('error', () => client.close());
      client.on('close', () => upstream.close());
      client.on('message', (data) => {
        const text = data.toString();
        const request = JSON.parse(text) as { id: number; method: string; params: unknown[] };
        this.methods.push(request.method);
        for (const listener of this.#listeners) listener();
        if (hashesOnly && request.method === 'eth_subscribe' && request.params[1] === true) {
          client.send(
            JSON.stringify({ jsonrpc: '2.0', id: request.id, error: { code: -32602, message: 'invalid params' } }),
          );
          return;
        }
        if (upstream.readyState === WebSocket.OPEN) upstream.send(text);
        else queued.push(text);
      });
    });
  }

  static async start(upstreamUrl: string, hashesOnly: boolean): Promise<Relay> {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    return new Relay(server, upstreamUrl, hashesOnly);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  count(method: string): number {
    return this.methods.filter((m) => m === method).length;
  }

  /** Resolves once `method` was requested `times` times (bounded). */
  async waitForCount(method: string, times: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.count(method) < times) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${method} requested ${this.count(method)} times, not ${times}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#listeners.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  dropConnections(): void {
    for (const client of this.#server.clients) client.terminate();
  }

  close(): Promise<void> {
    for (const client of this.#server.clients) client.terminate();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

describe('watchPending', () => {
  let anvil: Anvil;
  let provider: JsonRpcProvider;
  let wallets: Wallet[];
  const nonces = new Map<number, number>();
  const watchers: PendingWatcher[] = [];
  const errors: string[] = [];

  beforeAll(async () => {
    anvil = await startAnvil({ noMining: true });
    provider = new JsonRpcProvider(anvil.httpUrl, undefined, { staticNetwork: true, batchMaxCount: 1 });
    wallets = devWallets(provider, 4);
  });

  afterAll(async () => {
    for (const watcher of watchers) await watcher.close();
    provider?.destroy();
    await anvil?.close();
  });

  async function send(from: number, wei: bigint): Promise<string> {
    const nonce = nonces.get(from) ?? 0;
    nonces.set(from, nonce + 1);
    const tx = await (wallets[from] as Wallet).sendTransaction({
      to: (wallets[3] as Wallet).address,
      value: wei,
      nonce,
    });
    return tx.hash;
  }

  async function start(url: string, batches: Batches, wanted: () => boolean = () => true): Promise<PendingWatcher> {
    const watcher = await watchPending({
      urls: [url],
      pollIntervalMs: 50,
      requestTimeoutMs: 5000,
      wanted,
      onPending: batches.onPending,
      onError: (error) => errors.push(String(error)),
    });
    watchers.push(watcher);
    return watcher;
  }

  it.each([
    ['http (filter polling)', 'http'],
    ['ws (full transactions)', 'ws'],
  ] as const)('follows the mempool over %s as tx events without a block position', async (_, kind) => {
    const batches = new Batches();
    const watcher = await start(kind === 'ws' ? anvil.wsUrl : anvil.httpUrl, batches);
    expect(watcher.following()).toBe(true);
    const hash = await send(kind === 'ws' ? 0 : 1, 1000n);
    const event = await batches.waitFor(hash);
    expect(event).toEqual({
      kind: 'tx',
      id: hash,
      txHash: hash,
      txIndex: null,
      from: (wallets[kind === 'ws' ? 0 : 1] as Wallet).address.toLowerCase(),
      to: (wallets[3] as Wallet).address.toLowerCase(),
      value: '0x3e8',
      nonce: (nonces.get(kind === 'ws' ? 0 : 1) ?? Number.NaN) - 1,
    });
    await provider.send('evm_mine', []);
    // A transaction sent later is delivered, and the first is never delivered again.
    const later = await send(kind === 'ws' ? 0 : 1, 1n);
    await batches.waitFor(later);
    expect(batches.ids.filter((id) => id === hash)).toHaveLength(1);
  });

  it('fetches announced hashes by hash where the node gives no full transactions', async () => {
    const relay = await Relay.start(anvil.wsUrl, true);
    const batches = new Batches();
    const watcher = await start(relay.url, batches);
    const hash = await send(2, 5n);
    expect(await batches.waitFor(hash)).toMatchObject({ id: hash, value: '0x5', txIndex: null });
    expect(relay.count('eth_getTransactionByHash')).toBe(1);
    await watcher.close();
    await relay.close();
  });

  it('fetches nothing while nobody wants pending transactions', async () => {
    const relay = await Relay.start(anvil.wsUrl, true);
    const batches = new Batches();
    let wanted = false;
    let asked: () => void = () => undefined;
    const firstAsk = new Promise<void>((resolve) => {
      asked = resolve;
    });
    const watcher = await start(relay.url, batches, () => {
      asked();
      return wanted;
    });
    const unwanted = await send(2, 6n);
    // The watcher asks on each announcement: once asked, the unwanted one was dropped.
    await Promise.race([
      firstAsk,
      new Promise((_, reject) => setTimeout(() => reject(new Error('never asked')), 10_000).unref()),
    ]);
    wanted = true;
    const barrier = await send(2, 7n);
    await batches.waitFor(barrier);
    expect(batches.ids).not.toContain(unwanted);
    expect(relay.count('eth_getTransactionByHash')).toBe(1);
    await watcher.close();
    await relay.close();
  });

  it('resubscribes after the connection drops', async () => {
    const relay = await Relay.start(anvil.wsUrl, false);
    const batches = new Batches();
    const watcher = await start(relay.url, batches);
    expect(relay.count('eth_subscribe')).toBe(1);
    relay.dropConnections();
    await relay.waitForCount('eth_subscribe', 2);
    const hash = await send(0, 9n);
    await batches.waitFor(hash);
    expect(watcher.following()).toBe(true);
    expect(errors.some((e) => e.includes('socket closed'))).toBe(true);
    await watcher.close();
    await relay.close();
  });

  it('gives up, and says so, when no endpoint offers its mempool', async () => {
    const server: HttpServer = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        const { id } = JSON.parse(body) as { id: number };
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ jsonrpc: '2.0', id, error: { code: -32601, message: 'Method not found' } }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const batches = new Batches();
    const before = errors.length;
    const watcher = await start(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, batches);
    expect(watcher.following()).toBe(false);
    expect(errors.slice(before).join('\n')).toMatch(/pending is off/);
    await watcher.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  describe('against a node that fails', () => {
    let chain: FakeChain;
    let node: FakeNode;

    beforeAll(async () => {
      chain = new FakeChain({ chainId: 1337 });
      node = await FakeNode.start(chain);
    });

    afterAll(async () => {
      await node?.close();
    });

    async function watchFake(
      url: string,
      batches: Batches,
      faults: RpcFaultError[],
      more: Partial<Parameters<typeof watchPending>[0]> = {},
    ): Promise<PendingWatcher> {
      const watcher = await watchPending({
        urls: [url],
        chainId: 1337,
        pollIntervalMs: 20,
        requestTimeoutMs: 500,
        wanted: () => true,
        onPending: batches.onPending,
        onError: (error) => errors.push(String(error)),
        onFault: (fault) => faults.push(fault),
        ...more,
      });
      watchers.push(watcher);
      return watcher;
    }

    it.each(['http', 'ws'] as const)(
      'follows the mempool again after an answer that is not JSON (%s)',
      async (kind) => {
        const batches = new Batches();
        const faults: RpcFaultError[] = [];
        const isMempool = (p: readonly unknown[]): boolean => p[0] === 'newPendingTransactions';
        const watcher = await watchFake(kind === 'http' ? node.url : node.wsUrl, batches, faults);
        const first = chain.addPending(0, 1, 1n);
        await batches.waitFor(first.hash);
        if (kind === 'http') {
          const filters = node.calls('eth_newPendingTransactionFilter');
          node.inject({ method: 'eth_getFilterChanges', fault: { kind: 'invalidJson' } });
          await node.waitForCalls('eth_newPendingTransactionFilter', filters + 1);
        } else {
          const subscriptions = node.calls('eth_subscribe', isMempool);
          node.inject({ method: 'eth_subscribe', match: isMempool, fault: { kind: 'invalidJson' } });
          node.dropConnections();
          await node.waitForCalls('eth_subscribe', subscriptions + 2, { match: isMempool });
        }
        expect(faults.map((f) => f.fault)).toContain('invalid_json');
        const second = chain.addPending(0, 1, 2n);
        expect(await batches.waitFor(second.hash)).toMatchObject({ from: FAKE_ACCOUNTS[0], value: '0x2' });
        expect(watcher.following()).toBe(true);
        await watcher.close();
      },
    );

    it('asks again, after capabilityRetryMs, an endpoint that said it has no mempool', async () => {
      const batches = new Batches();
      const faults: RpcFaultError[] = [];
      node.inject({
        method: 'eth_newPendingTransactionFilter',
        fault: { kind: 'error', code: -32601, message: 'the method eth_newPendingTransactionFilter does not exist' },
      });
      const before = errors.length;
      const filters = node.calls('eth_newPendingTransactionFilter');
      const watcher = await watchFake(node.url, batches, faults, { capabilityRetryMs: 300 });
      expect(watcher.following()).toBe(false);
      expect(errors.slice(before).join('\n')).toMatch(/pending is off/);
      await node.waitForCalls('eth_newPendingTransactionFilter', filters + 2);
      const tx = chain.addPending(0, 1, 3n);
      await batches.waitFor(tx.hash);
      expect(watcher.following()).toBe(true);
      await watcher.close();
    });

    it('drops a pending transaction that names another chain', async () => {
      const batches = new Batches();
      const faults: RpcFaultError[] = [];
      const watcher = await watchFake(node.url, batches, faults);
      const foreign = chain.addPending(0, 1, 4n);
      node.inject({
        method: 'eth_getTransactionByHash',
        match: (p) => p[0] === foreign.hash,
        fault: { kind: 'mutate', mutate: (tx) => ({ ...(tx as object), chainId: '0x1' }) },
      });
      const barrier = chain.addPending(0, 1, 5n);
      await batches.waitFor(barrier.hash);
      expect(batches.ids).not.toContain(foreign.hash);
      expect(faults.map((f) => f.message)).toContain(
        `eth_getTransactionByHash: transaction ${foreign.hash} is of chain 1, not 1337`,
      );
      await watcher.close();
    });
  });
});
