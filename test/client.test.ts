import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  type ActivitySubscriptionMessage,
  type BlocksSubscriptionMessage,
  type Client,
  type ClientError,
  createClient,
  type StatusEvent,
} from '../packages/client/src/index.ts';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { rpc, TestChain } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';
import { TcpProxy } from './helpers/proxy.ts';
import { ClientView, expectCanonical } from './helpers/view.ts';

// The SDK end to end: real anvil, the real gateway process, and a loopback proxy between the
// client and the gateway that cuts, stalls or freezes the link.

const HEARTBEAT_MS = 500;
const BACKOFF = { initialMs: 100, maxMs: 1000, factor: 2, jitter: 0.5 };

/** Waits for a condition that events make true: re-checked on every `poke()`, bounded in time. */
class Waiter {
  #waiters: Array<{ check: () => boolean; resolve: () => void }> = [];

  poke(): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.check()) return true;
      w.resolve();
      return false;
    });
  }

  until(check: () => boolean, what: () => string, timeoutMs = 20_000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        check,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }
}

/** A client of the SDK watching blocks and some addresses, and everything it told the app. */
class App {
  readonly client: Client;
  readonly statuses: StatusEvent[] = [];
  readonly errors: ClientError[] = [];
  readonly blocks: BlocksSubscriptionMessage[] = [];
  readonly activity: ActivitySubscriptionMessage[] = [];
  readonly waiter = new Waiter();

  constructor(url: string, watched: readonly string[], encoding: 'msgpack' | 'json') {
    this.client = createClient({
      url,
      encoding,
      WebSocket,
      heartbeatIntervalMs: HEARTBEAT_MS,
      backoff: BACKOFF,
      onStatus: (event) => {
        this.statuses.push(event);
        this.waiter.poke();
      },
      onError: (error) => {
        this.errors.push(error);
        this.waiter.poke();
      },
    });
    this.client.subscribeBlocks({}, (m) => {
      this.blocks.push(m);
      this.waiter.poke();
    });
    this.client.watchAddresses(watched, {}, (m) => {
      this.activity.push(m);
      this.waiter.poke();
    });
  }

  count(status: StatusEvent['status']): number {
    return this.statuses.filter((s) => s.status === status).length;
  }

  /** Waits until the client has told the app `status` `count` times in all. */
  status(status: StatusEvent['status'], count: number, timeoutMs = 30_000): Promise<void> {
    return this.waiter.until(
      () => this.count(status) >= count,
      () => `status ${status} ×${count}; got ${this.statuses.map((s) => s.status).join(' ')}`,
      timeoutMs,
    );
  }

  /**
   * Waits until the `blocks` subscription delivered a block with this hash and the `activity`
   * subscription its activity (a plain block comes from its header, ahead of the activity).
   */
  holds(hash: string, timeoutMs = 20_000): Promise<void> {
    return this.waiter.until(
      () =>
        this.blocks.some((m) => m.type === 'block' && m.hash === hash) &&
        this.activity.some((m) => m.type === 'activity' && m.block.hash === hash),
      () => `block ${hash} and its activity; last: ${JSON.stringify(this.blocks.at(-1))}`,
      timeoutMs,
    );
  }

  /** The first block a subscription can get: one past the highest head its `subscribed` named. */
  firstHeight(): number {
    const heads = [...this.blocks, ...this.activity].flatMap((m) =>
      m.type === 'subscribed' && m.recovered === undefined ? [m.head?.number ?? 0] : [],
    );
    return Math.max(...heads) + 1;
  }

  views(): { blocks: ClientView; activity: ClientView } {
    const asMessages = (list: readonly unknown[]) => list as Message[];
    const blocks = new ClientView();
    for (const m of asMessages(this.blocks)) blocks.apply(m);
    const activity = new ClientView();
    for (const m of asMessages(this.activity)) activity.apply(m);
    return { blocks, activity };
  }
}

interface NodeReceipt {
  transactionHash: string;
  from: string;
  to: string | null;
  contractAddress: string | null;
}

/** What the node's receipts say happened to `addresses` from `from` to `to`: block hash → tx hashes. */
async function receiptActivity(
  url: string,
  addresses: readonly string[],
  from: number,
  to: number,
): Promise<Map<string, { number: number; ids: string[] }>> {
  const out = new Map<string, { number: number; ids: string[] }>();
  for (let n = from; n <= to; n++) {
    const block = await rpc<{ hash: string }>(url, 'eth_getBlockByNumber', [`0x${n.toString(16)}`, false]);
    const receipts = await rpc<NodeReceipt[]>(url, 'eth_getBlockReceipts', [block.hash]);
    const ids = receipts
      .filter((r) => [r.from, r.to, r.contractAddress].some((a) => a !== null && addresses.includes(a.toLowerCase())))
      .map((r) => r.transactionHash);
    if (ids.length > 0) out.set(block.hash, { number: n, ids });
  }
  return out;
}

/** ETH transfers among the dev accounts, some to or from `watched`, until stopped (bounded). */
function startTraffic(
  chain: TestChain,
  options: { txPerSecond: number; maxCount: number; maxMs: number },
): { stop: () => Promise<{ sent: number; errors: unknown[]; seconds: number }> } {
  const startedAt = Date.now();
  let stopped = false;
  let sent = 0;
  const errors: unknown[] = [];
  // Two lanes with disjoint senders: a wallet's nonces are counted locally, one send at a time.
  const lanes = [0, 1].map(async (lane) => {
    const senders = [0, 2, 4, 6, 8].map((w) => w + lane);
    const gapMs = 2000 / options.txPerSecond;
    for (let i = 0; !stopped && sent < options.maxCount && Date.now() - startedAt < options.maxMs; i++) {
      const slot = startedAt + (i + 1) * gapMs;
      const from = senders[i % senders.length] as number;
      const to = chain.address((from + 1 + (i % 3)) % 10);
      try {
        await chain.transfer(from, to, BigInt(1_000 + i));
        sent++;
      } catch (error) {
        if (errors.length < 10) errors.push(error);
      }
      // Pacing, not synchronisation: hold the rate.
      const wait = slot - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  });
  return {
    stop: async () => {
      stopped = true;
      await Promise.all(lanes);
      return { sent, errors, seconds: (Date.now() - startedAt) / 1000 };
    },
  };
}

/**
 * A loopback TCP proxy whose `freeze()` stops forwarding on every connection, open or new,
 * without closing any: the link of a phone that walked into a lift.
 */
class FreezingProxy {
  readonly #pairs = new Set<[Socket, Socket]>();
  #frozen = false;

  private constructor(
    readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<FreezingProxy> {
    let proxy: FreezingProxy | undefined;
    const server = createServer((client) => proxy?.accept(client, targetPort));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const address = server.address();
    proxy = new FreezingProxy(server, typeof address === 'object' && address !== null ? address.port : 0);
    return proxy;
  }

  accept(client: Socket, targetPort: number): void {
    const upstream = new (client.constructor as typeof Socket)();
    const pair: [Socket, Socket] = [client, upstream];
    this.#pairs.add(pair);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      this.#pairs.delete(pair);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
    if (this.#frozen) return; // accepted, never forwarded
    upstream.connect(targetPort, '127.0.0.1', () => {
      if (this.#frozen) return;
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  freeze(): void {
    this.#frozen = true;
    for (const [client, upstream] of this.#pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }

  /** New connections forward again; the frozen ones are dropped. */
  thaw(): void {
    this.#frozen = false;
    for (const [client, upstream] of [...this.#pairs]) {
      client.destroy();
      upstream.destroy();
    }
  }

  async close(): Promise<void> {
    this.thaw();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

describe('the client SDK across a lost connection while traffic flows', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let proxy: TcpProxy;
  let freezer: FreezingProxy;
  let chain: TestChain;
  let watched: string[];

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: 1 });
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--poll-interval-ms', '100']);
    proxy = await TcpProxy.start(gateway.port);
    freezer = await FreezingProxy.start(gateway.port);
    chain = new TestChain(anvil.httpUrl);
    watched = [chain.address(0), chain.address(1)];
  });

  afterAll(async () => {
    chain?.close();
    await proxy?.close();
    await freezer?.close();
    await gateway?.stop();
    await anvil?.close();
  });

  it.each([
    ['cut', 1000],
    ['cut', 10_000],
    ['stalled', 1000],
    ['stalled', 10_000],
    ['frozen', 3000],
  ] as const)(
    'a link %s for %i ms: the app ends with every event of the watched addresses exactly once',
    {
      timeout: 90_000,
    },
    async (mode, outageMs) => {
      const traffic = startTraffic(chain, { txPerSecond: 10, maxCount: 1000, maxMs: 60_000 });
      const port = mode === 'frozen' ? freezer.port : proxy.port;
      const app = new App(`ws://127.0.0.1:${port}/v1`, watched, 'msgpack');
      try {
        // Traffic reaches the app: blocks, and activity of the watched addresses.
        await app.waiter.until(
          () => app.blocks.filter((m) => m.type === 'block').length >= 2 && app.activity.length >= 2,
          () => 'blocks and activity before the outage',
        );
        const before = Number(await rpc<string>(anvil.httpUrl, 'eth_blockNumber'));
        if (mode === 'cut') await proxy.cut();
        else if (mode === 'stalled') proxy.stall();
        else freezer.freeze();
        // The outage itself is what is under test: the chain and the traffic go on without the app.
        await new Promise((resolve) => setTimeout(resolve, outageMs));
        const during = Number(await rpc<string>(anvil.httpUrl, 'eth_blockNumber'));
        if (mode === 'frozen') freezer.thaw();
        else await proxy.restore();
        await app.status('recovered', 1);

        const { sent, errors, seconds } = await traffic.stop();
        expect(errors).toEqual([]);
        expect(sent / seconds).toBeGreaterThanOrEqual(5);
        // Every block up to the node's head after the last transfer, then one more: its messages
        // come after everything of the blocks before it.
        const head = Number(await rpc<string>(anvil.httpUrl, 'eth_blockNumber'));
        await app.waiter.until(
          () => app.blocks.some((m) => m.type === 'block' && m.number > head),
          () => `a block past ${head}`,
        );

        expect(app.errors).toEqual([]);
        expect(app.count('lost')).toBe(0);
        expect(app.count('resuming')).toBeGreaterThanOrEqual(1);
        if (mode !== 'cut') {
          // Nothing closed the link: only the heartbeat can have noticed.
          expect(app.statuses).toContainEqual(expect.objectContaining({ status: 'closed', code: 1006 }));
          const closes = app.statuses.filter((s) => s.status === 'closed');
          expect(closes.some((s) => s.status === 'closed' && s.reason.startsWith('heartbeat'))).toBe(true);
        }
        const range = { from: app.firstHeight(), to: head };
        const { blocks, activity } = app.views();
        await expectCanonical(blocks, anvil.httpUrl, range);
        expect(activity.violations).toEqual([]);
        const held = new Map([...activity.activity].filter(([, a]) => a.number >= range.from && a.number <= range.to));
        const truth = await receiptActivity(anvil.httpUrl, watched, range.from, range.to);
        expect(held).toEqual(truth);
        // The outage did hide activity of the watched addresses, which the resume brought back.
        const missed = [...truth.values()].filter((a) => a.number > before && a.number <= during);
        if (outageMs >= 3000) expect(missed.length).toBeGreaterThan(0);
      } finally {
        app.client.close();
        await traffic.stop();
        await proxy.restore();
        freezer.thaw();
      }
    },
  );
});

describe('the client SDK across a reorg while it is away', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let proxy: TcpProxy;
  let chain: TestChain;
  let watched: string[];
  /** Connected to the gateway directly: tells when the gateway has followed the node. */
  let observer: TestClient;
  let observerSub: string;

  beforeAll(async () => {
    anvil = await startAnvil({ noMining: true });
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--poll-interval-ms', '50']);
    proxy = await TcpProxy.start(gateway.port);
    chain = new TestChain(anvil.httpUrl);
    watched = [chain.address(0), chain.address(1)];
    observer = await TestClient.connect(gateway.url, 'json');
    observerSub = await observer.subscribe({ channel: 'blocks' });
  });

  afterAll(async () => {
    observer?.close();
    chain?.close();
    await proxy?.close();
    await gateway?.stop();
    await anvil?.close();
  });

  /** Mines `count` blocks, each with a transfer between the watched accounts; returns the head. */
  async function mineActive(count: number): Promise<{ number: number; hash: string }> {
    for (let i = 0; i < count; i++) {
      await chain.transfer(i % 2, watched[(i + 1) % 2] as string, BigInt(1000 + i));
      await chain.mine();
    }
    return nodeHead();
  }

  async function nodeHead(): Promise<{ number: number; hash: string }> {
    const head = await rpc<{ number: string; hash: string }>(anvil.httpUrl, 'eth_getBlockByNumber', ['latest', false]);
    return { number: Number(head.number), hash: head.hash };
  }

  it.each([
    [1, 'msgpack'],
    [4, 'json'],
  ] as const)(
    'a reorg of depth %i while cut off (%s): removed for what it saw, then the canonical blocks',
    async (depth, encoding) => {
      const app = new App(`ws://127.0.0.1:${proxy.port}/v1`, watched, encoding);
      try {
        await app.status('open', 1);
        await app.waiter.until(
          () => app.blocks.length >= 1 && app.activity.length >= 1,
          () => 'subscribed',
        );
        const seen = await mineActive(depth + 2);
        await app.holds(seen.hash);
        const orphaned = app.blocks.flatMap((m) => (m.type === 'block' && m.number > seen.number - depth ? [m] : []));
        expect(orphaned).toHaveLength(depth);
        const heldBefore = app.blocks.length;
        const activityBefore = app.activity.length;

        await proxy.cut();
        await app.status('closed', 1);
        const txs = Array.from({ length: depth }, (_, i) => [
          { from: watched[1], to: watched[0], value: `0x${(70_000 + i).toString(16)}` },
          i,
        ]);
        await rpc(anvil.httpUrl, 'anvil_reorg', [depth, txs]);
        chain.resetNonces();
        const head = await mineActive(1);
        // Back only once the gateway has followed the reorg (a client straight to it has the new head).
        await observer.next((m) => m['sub'] === observerSub && m['hash'] === head.hash, 15_000);
        await proxy.restore();
        await app.status('recovered', 1);
        await app.holds(head.hash);

        // Removals for exactly the blocks it had seen of the old branch, newest first, before any
        // block of the new one.
        const after = app.blocks.slice(heldBefore).filter((m) => m.type !== 'subscribed');
        const removed = after.filter((m) => m.type === 'removed');
        expect(removed.map((m) => m.type === 'removed' && m.block.hash)).toEqual(orphaned.map((m) => m.hash).reverse());
        expect(after.slice(0, depth).every((m) => m.type === 'removed')).toBe(true);
        const activityRemoved = app.activity.slice(activityBefore).filter((m) => m.type === 'removed');
        expect(activityRemoved).toHaveLength(depth);
        const range = { from: app.firstHeight(), to: head.number };
        const { blocks, activity } = app.views();
        await expectCanonical(blocks, anvil.httpUrl, range);
        await expectCanonical(activity, anvil.httpUrl, range, watched);
        expect(app.errors).toEqual([]);
      } finally {
        app.client.close();
        await proxy.restore();
      }
    },
  );
});

describe('the client SDK after a resume, when a reorg comes', () => {
  it('gets removed for blocks it held from before the resume', async () => {
    const anvil = await startAnvil({ noMining: true });
    const gateway = await startGateway(['--rpc', anvil.httpUrl, '--poll-interval-ms', '50']);
    const proxy = await TcpProxy.start(gateway.port);
    const chain = new TestChain(anvil.httpUrl);
    const watched = [chain.address(0), chain.address(1)];
    const app = new App(`ws://127.0.0.1:${proxy.port}/v1`, watched, 'msgpack');
    const mineActive = async (count: number): Promise<{ number: number; hash: string }> => {
      for (let i = 0; i < count; i++) {
        await chain.transfer(i % 2, watched[(i + 1) % 2] as string, BigInt(1000 + i));
        await chain.mine();
      }
      const head = await rpc<{ number: string; hash: string }>(anvil.httpUrl, 'eth_getBlockByNumber', [
        'latest',
        false,
      ]);
      return { number: Number(head.number), hash: head.hash };
    };
    try {
      await app.waiter.until(
        () => app.blocks.length >= 1 && app.activity.length >= 1,
        () => 'subscribed',
      );
      const seen = await mineActive(4);
      await app.holds(seen.hash);
      // A resume with nothing to replay: the client is back at its cursor.
      await proxy.cut();
      await app.status('closed', 1);
      await proxy.restore();
      await app.status('recovered', 1);
      const heldBefore = app.blocks.length;
      const activityBefore = app.activity.length;
      const orphaned = app.blocks.flatMap((m) => (m.type === 'block' && m.number > seen.number - 2 ? [m.hash] : []));
      await rpc(anvil.httpUrl, 'anvil_reorg', [2, [[{ from: watched[1], to: watched[0], value: '0x1234' }, 0]]]);
      chain.resetNonces();
      const head = await mineActive(1);
      await app.holds(head.hash);
      const removed = app.blocks.slice(heldBefore).flatMap((m) => (m.type === 'removed' ? [m.block.hash] : []));
      expect(removed).toEqual(orphaned.reverse());
      expect(app.activity.slice(activityBefore).filter((m) => m.type === 'removed')).toHaveLength(2);
      const range = { from: app.firstHeight(), to: head.number };
      const { blocks, activity } = app.views();
      await expectCanonical(blocks, anvil.httpUrl, range);
      await expectCanonical(activity, anvil.httpUrl, range, watched);
    } finally {
      app.client.close();
      chain.close();
      await proxy.close();
      await gateway.stop();
      await anvil.close();
    }
  });
});

describe('the client SDK away for longer than the replay window', () => {
  it('tells the app recovery failed (lost, recovered:false) and continues live', async () => {
    const anvil = await startAnvil({ noMining: true });
    const gateway = await startGateway([
      '--rpc',
      anvil.httpUrl,
      '--poll-interval-ms',
      '50',
      '--history-window-blocks',
      '8',
      '--max-confirmations',
      '4',
    ]);
    const proxy = await TcpProxy.start(gateway.port);
    const chain = new TestChain(anvil.httpUrl);
    const watched = [chain.address(0), chain.address(1)];
    const app = new App(`ws://127.0.0.1:${proxy.port}/v1`, watched, 'msgpack');
    const mineActive = async (count: number): Promise<string> => {
      for (let i = 0; i < count; i++) {
        await chain.transfer(i % 2, watched[(i + 1) % 2] as string, BigInt(1000 + i));
        await chain.mine();
      }
      return (await rpc<{ hash: string }>(anvil.httpUrl, 'eth_getBlockByNumber', ['latest', false])).hash;
    };
    try {
      await app.status('open', 1);
      await app.waiter.until(
        () => app.blocks.length >= 1 && app.activity.length >= 1,
        () => 'subscribed',
      );
      await app.holds(await mineActive(3));
      // A client straight to the gateway shows when it has applied what was mined meanwhile.
      const probe = await TestClient.connect(gateway.url, 'json');
      const probeSub = await probe.subscribe({ channel: 'blocks', full: true });
      await proxy.cut();
      await app.status('closed', 1);
      const away = await mineActive(20);
      await probe.next((m) => m['sub'] === probeSub && m['hash'] === away, 15_000);
      probe.close();
      await proxy.restore();
      await app.status('lost', 1);
      expect(app.statuses.find((s) => s.status === 'lost')).toEqual({ status: 'lost', subscriptions: 2, lost: 2 });
      for (const list of [app.blocks, app.activity]) {
        expect(list.filter((m) => m.type === 'subscribed').map((m) => m.type === 'subscribed' && m.recovered)).toEqual([
          undefined,
          false,
        ]);
      }
      // Live again: the next blocks and their activity arrive.
      const blocksBefore = app.blocks.length;
      const activityBefore = app.activity.length;
      const head = await mineActive(2);
      await app.holds(head);
      await app.waiter.until(
        () => app.activity.slice(activityBefore).filter((m) => m.type === 'activity').length >= 2,
        () => 'live activity',
      );
      expect(app.blocks.slice(blocksBefore).filter((m) => m.type === 'block')).toHaveLength(2);
      expect(app.client.status).toBe('lost');
      expect(app.errors).toEqual([]);
    } finally {
      app.client.close();
      chain.close();
      await proxy.close();
      await gateway.stop();
      await anvil.close();
    }
  });
});

describe('the client SDK changing the watched addresses in place', () => {
  it('update swaps the set on the live subscription, and the resume after a cut watches the new set', async () => {
    const anvil = await startAnvil({ noMining: true });
    const gateway = await startGateway(['--rpc', anvil.httpUrl, '--poll-interval-ms', '50']);
    const proxy = await TcpProxy.start(gateway.port);
    const chain = new TestChain(anvil.httpUrl);
    // Neither sends anything: only the transfers below, from dev wallet 0, touch them.
    const [a, b, c] = [chain.address(3), chain.address(4), chain.address(5)] as [string, string, string];
    const waiter = new Waiter();
    const statuses: StatusEvent[] = [];
    const errors: ClientError[] = [];
    const activity: ActivitySubscriptionMessage[] = [];
    const client = createClient({
      url: `ws://127.0.0.1:${proxy.port}/v1`,
      WebSocket,
      heartbeatIntervalMs: HEARTBEAT_MS,
      backoff: BACKOFF,
      onStatus: (event) => {
        statuses.push(event);
        waiter.poke();
      },
      onError: (error) => {
        errors.push(error);
        waiter.poke();
      },
    });
    const watch = client.watchAddresses([a], {}, (m) => {
      activity.push(m);
      waiter.poke();
    });
    const seen = (): Set<string> =>
      new Set(activity.flatMap((m) => (m.type === 'activity' ? m.events.map((e) => e.txHash) : [])));
    const arrived = (txHash: string): Promise<void> =>
      waiter.until(
        () => seen().has(txHash),
        () => `activity with ${txHash}; have ${[...seen()].join(', ')}`,
      );
    const status = (name: StatusEvent['status']): Promise<void> =>
      waiter.until(
        () => statuses.some((s) => s.status === name),
        () => `status ${name}; got ${statuses.map((s) => s.status).join(' ')}`,
      );
    const sendAndMine = async (to: string, wei: bigint): Promise<string> => {
      const txHash = await chain.transfer(0, to, wei);
      mined = await chain.mine();
      return txHash;
    };
    let mined = 0;
    // Straight to the gateway: tells when it has taken in what was mined while the app was away.
    const probe = await TestClient.connect(gateway.url, 'json');
    const probeSub = await probe.subscribe({ channel: 'blocks', full: true });
    try {
      await waiter.until(
        () => activity.some((m) => m.type === 'subscribed'),
        () => 'subscribed',
      );
      await arrived(await sendAndMine(a, 1000n));

      // Live: B in, A out, on the same subscription.
      expect(await watch.update([b], [a])).toEqual({ addresses: 1 });
      expect(watch.addresses).toEqual([b]);
      const toA = await sendAndMine(a, 1001n);
      const toB = await sendAndMine(b, 1002n);
      await arrived(toB);
      // One message per block, in block order: A's block came before B's, so nothing of it is still to come.
      expect(seen().has(toA)).toBe(false);
      expect(activity.filter((m) => m.type === 'subscribed')).toHaveLength(1);

      // Cut: the chain moves on, and C is added while the link is down.
      await proxy.cut();
      await status('closed');
      const awayToA = await sendAndMine(a, 1003n);
      const awayToB = await sendAndMine(b, 1004n);
      const addC = watch.update([c]);
      const awayToC = await sendAndMine(c, 1005n);
      await probe.next((m) => m['sub'] === probeSub && m['number'] === mined, 15_000);
      await proxy.restore();
      await status('recovered');
      // The resumed subscribe carried {B, C}: its replay brings B's and C's transfers, not A's.
      expect(await addC).toEqual({ addresses: 2 });
      expect(watch.addresses).toEqual([b, c]);
      await arrived(awayToB);
      await arrived(awayToC);
      expect(seen().has(awayToA)).toBe(false);
      expect(
        activity.filter((m) => m.type === 'subscribed').map((m) => m.type === 'subscribed' && m.recovered),
      ).toEqual([undefined, true]);
      expect(errors).toEqual([]);
    } finally {
      client.close();
      probe.close();
      chain.close();
      await proxy.close();
      await gateway.stop();
      await anvil.close();
    }
  });
});
