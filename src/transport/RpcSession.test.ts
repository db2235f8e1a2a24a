import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ChainBlock, ChainLog, Hex } from '../domain/types.ts';
import type { Channel, Grant } from './createAuth.ts';
import { RpcHub } from './RpcHub.ts';
import { type RpcChain, RpcSession, type RpcSessionLimits, readLogFilter } from './RpcSession.ts';
import type { RpcOutcome } from './rpcProtocol.ts';

const CHAIN = 31_337;
const TOKEN = '0x00000000000000000000000000000000000000aa' as Hex;
const OTHER = '0x00000000000000000000000000000000000000bb' as Hex;
const THIRD = '0x00000000000000000000000000000000000000cc' as Hex;
const TRANSFER = word(0xd1);
const APPROVAL = word(0xd2);
const SUBSCRIPTION_ID = /^0x[0-9a-f]{32}$/;

const LIMITS: RpcSessionLimits = {
  maxSubscriptions: 10,
  maxAddresses: 10,
  maxRequestsPerSecond: 1000,
  maxBatch: 20,
  maxForwardsInFlight: 4,
  maxBackfillLogs: 100,
};

const FORWARDABLE = new Set(['eth_call', 'eth_getBalance', 'eth_getBlockByNumber', 'eth_getBlockByHash']);

function word(n: number): Hex {
  return `0x${n.toString(16).padStart(64, '0')}`;
}

function blockHash(number: number): Hex {
  return word(0xb10c_0000 + number);
}

function log(number: number, logIndex: number, address: Hex, topics: Hex[]): ChainLog {
  return {
    address,
    topics,
    raw: {
      address,
      topics,
      data: '0x',
      blockNumber: `0x${number.toString(16)}`,
      blockHash: blockHash(number),
      transactionHash: word(0x7000 + number * 16 + logIndex),
      transactionIndex: '0x0',
      logIndex: `0x${logIndex.toString(16)}`,
    },
  };
}

/** A block whose logs are one transfer of TOKEN and one approval of OTHER. */
function block(number: number): ChainBlock {
  const hash = blockHash(number);
  const parentHash = blockHash(number - 1);
  return {
    chainId: CHAIN,
    number,
    hash,
    parentHash,
    timestamp: 1_700_000_000 + number,
    miner: '0x00000000000000000000000000000000000000c0',
    gasUsed: '0x0',
    gasLimit: '0x1c9c380',
    transactions: [],
    header: { number: `0x${number.toString(16)}`, hash, parentHash, extraData: '0x01', transactions: [] },
    logs: [log(number, 0, TOKEN, [TRANSFER]), log(number, 1, OTHER, [APPROVAL])],
  };
}

interface Forwarded {
  readonly method: string;
  readonly params: readonly unknown[];
  readonly resolve: (outcome: RpcOutcome) => void;
  readonly reject: (error: unknown) => void;
}

/** A chain over a real hub that holds the blocks applied to it (the oldest are dropped past `window`). */
class FakeChain implements RpcChain {
  readonly chainId = CHAIN;
  readonly hub = new RpcHub(CHAIN, 64);
  readonly blocks = new Map<number, ChainBlock>();
  readonly forwarded: Forwarded[] = [];
  /** How the node answers at once; `undefined`: calls wait for `resolve`. */
  answer: ((method: string, params: readonly unknown[]) => RpcOutcome) | undefined = (method) => ({
    result: `${method} from the node`,
  });
  #head: ChainBlock | undefined;

  constructor(readonly window = 16) {}

  apply(b: ChainBlock): void {
    this.blocks.set(b.number, b);
    this.blocks.delete(b.number - this.window);
    this.#head = b;
    this.hub.onBlock(b);
  }

  readonly head = (): ChainBlock | undefined => this.#head;
  readonly at = (number: number): ChainBlock | undefined => this.blocks.get(number);
  readonly byHash = (hash: Hex): ChainBlock | undefined => [...this.blocks.values()].find((b) => b.hash === hash);
  readonly forward = (method: string, params: readonly unknown[]): Promise<RpcOutcome> =>
    new Promise((resolve, reject) => {
      this.forwarded.push({ method, params, resolve, reject });
      if (this.answer !== undefined) resolve(this.answer(method, params));
    });
}

type Json = Record<string, unknown>;
type Written = { readonly sent: Json | Json[] } | { readonly delivered: Json[] };

interface HarnessOptions {
  readonly limits?: Partial<RpcSessionLimits>;
  readonly forwardable?: ReadonlySet<string>;
  readonly grant?: Grant;
  readonly chain?: FakeChain;
  /** Room left in the gateway for watched addresses. */
  readonly capacity?: number;
}

/** A session with everything it writes recorded, in order, across `send` and `deliver`. */
class Harness {
  readonly chain: FakeChain;
  readonly session: RpcSession;
  readonly written: Written[] = [];
  readonly closes: Array<[number, string, string]> = [];
  readonly errors: number[] = [];
  reserved = 0;
  capacity: number;
  #id = 0;

  constructor(options: HarnessOptions = {}) {
    this.chain = options.chain ?? new FakeChain();
    this.capacity = options.capacity ?? 1_000;
    this.session = new RpcSession({
      chain: this.chain,
      limits: { ...LIMITS, ...options.limits },
      forwardable: options.forwardable ?? FORWARDABLE,
      ...(options.grant === undefined ? {} : { grant: options.grant }),
      send: (text) => this.written.push({ sent: JSON.parse(text) as Json | Json[] }),
      deliver: (frames) =>
        this.written.push({
          delivered: frames.map((f) => JSON.parse(typeof f === 'string' ? f : Buffer.from(f).toString('utf8')) as Json),
        }),
      close: (code, reason, metric) => this.closes.push([code, reason, metric]),
      reserveAddresses: (more) => {
        if (this.reserved + more > this.capacity) return false;
        this.reserved += more;
        return true;
      },
      releaseAddresses: (count) => {
        this.reserved -= count;
      },
      onError: (code) => this.errors.push(code),
    });
  }

  /** Answers sent, in order. */
  get answers(): Array<Json | Json[]> {
    return this.written.flatMap((w) => ('sent' in w ? [w.sent] : []));
  }

  /** Notifications delivered, in order, each `deliver` call flattened. */
  get notifications(): Array<{ subscription: string; result: unknown }> {
    return this.written.flatMap((w) =>
      'delivered' in w ? w.delivered.map((n) => n['params'] as { subscription: string; result: unknown }) : [],
    );
  }

  /** Results delivered to one subscription. */
  results(id: string): unknown[] {
    return this.notifications.filter((n) => n.subscription === id).map((n) => n.result);
  }

  /** Sends a call; returns the answer written at once, or `undefined`. */
  request(method: string, params?: unknown[]): Json | undefined {
    const before = this.written.length;
    const id = ++this.#id;
    this.session.handle(JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }));
    const written = this.written.slice(before).find((w) => 'sent' in w);
    if (written === undefined || !('sent' in written)) return undefined;
    const sent = written.sent as Json;
    expect(sent['id']).toBe(id);
    return sent;
  }

  /** Sends a call and awaits its answer (after forwarded calls settle). */
  async call(method: string, params?: unknown[]): Promise<Json> {
    const before = this.answers.length;
    this.request(method, params);
    await settle();
    const answer = this.answers[before];
    if (answer === undefined || Array.isArray(answer)) throw new Error(`no answer to ${method}`);
    return answer;
  }

  /** The result of a call answered at once; fails on an error. */
  result(method: string, params?: unknown[]): unknown {
    const answer = this.request(method, params);
    expect(answer).toHaveProperty('result');
    return answer?.['result'];
  }

  /** The error of a call answered at once. */
  error(method: string, params?: unknown[]): { code: number; message: string; data?: unknown } {
    const answer = this.request(method, params);
    expect(answer).toHaveProperty('error');
    return answer?.['error'] as { code: number; message: string };
  }

  subscribe(...params: unknown[]): string {
    const id = this.result('eth_subscribe', params);
    expect(id).toMatch(SUBSCRIPTION_ID);
    return id as string;
  }
}

/** Lets every pending promise and microtask run (no time passes). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function grant(restrictions: { addresses?: Hex[]; channels?: Channel[] }): Grant {
  return {
    profile: {
      name: 'key',
      origins: [],
      limits: { maxConnections: 0, maxSubscriptions: 10, maxAddresses: 10, maxRequestsPerSecond: 1000 },
    },
    quotaKey: 'key',
    ...(restrictions.addresses === undefined ? {} : { addresses: new Set(restrictions.addresses) }),
    ...(restrictions.channels === undefined ? {} : { channels: new Set(restrictions.channels) }),
  };
}

/** A harness whose chain holds blocks 1 to `head`. */
function withBlocks(head: number, options: HarnessOptions = {}): Harness {
  const chain = options.chain ?? new FakeChain();
  for (let n = 1; n <= head; n++) chain.apply(block(n));
  return new Harness({ ...options, chain });
}

function withRemoved(l: ChainLog | undefined, removed: boolean): Json {
  return { ...l?.raw, removed };
}

describe('RpcSession own answers', () => {
  it('answers eth_chainId and net_version', () => {
    const h = new Harness();
    expect(h.request('eth_chainId')).toEqual({ jsonrpc: '2.0', id: 1, result: '0x7a69' });
    expect(h.result('net_version', [])).toBe('31337');
    expect(h.chain.forwarded).toEqual([]);
  });

  it('answers eth_blockNumber from the head it holds', () => {
    const h = withBlocks(0x2a);
    expect(h.result('eth_blockNumber')).toBe('0x2a');
    expect(h.chain.forwarded).toEqual([]);
  });

  it('asks the node for eth_blockNumber before it holds a block, even when the method is not in the list', async () => {
    const h = new Harness({ forwardable: new Set() });
    h.chain.answer = () => ({ result: '0x99' });
    expect(await h.call('eth_blockNumber')).toMatchObject({ result: '0x99' });
    expect(h.chain.forwarded.map((f) => f.method)).toEqual(['eth_blockNumber']);
  });

  it('answers eth_getBlockByNumber for latest and a number it holds, without full transactions', () => {
    const h = withBlocks(5);
    expect(h.result('eth_getBlockByNumber', ['latest', false])).toEqual(block(5).header);
    expect(h.result('eth_getBlockByNumber', ['0x3', false])).toEqual(block(3).header);
    expect(h.result('eth_getBlockByNumber', ['0x3'])).toEqual(block(3).header);
    expect(h.chain.forwarded).toEqual([]);
  });

  it('answers eth_getBlockByHash for a block it holds, in any case', () => {
    const h = withBlocks(5);
    expect(h.result('eth_getBlockByHash', [blockHash(4), false])).toEqual(block(4).header);
    expect(h.result('eth_getBlockByHash', [blockHash(4).toUpperCase().replace('0X', '0x')])).toEqual(block(4).header);
    expect(h.chain.forwarded).toEqual([]);
  });

  it('forwards eth_getBlockBy* with full transactions, out of its window, or a tag it does not follow', async () => {
    const h = withBlocks(5);
    const asked: unknown[][] = [
      ['latest', true],
      ['0x3', true],
      ['0x64', false],
      ['earliest', false],
      ['0x3', 'yes'],
    ];
    for (const params of asked) {
      expect(await h.call('eth_getBlockByNumber', params)).toMatchObject({
        result: 'eth_getBlockByNumber from the node',
      });
    }
    expect(await h.call('eth_getBlockByHash', [blockHash(4), true])).toMatchObject({
      result: 'eth_getBlockByHash from the node',
    });
    expect(await h.call('eth_getBlockByHash', [word(0x404), false])).toMatchObject({
      result: 'eth_getBlockByHash from the node',
    });
    expect(h.chain.forwarded.map((f) => [f.method, f.params])).toEqual([
      ...asked.map((params) => ['eth_getBlockByNumber', params]),
      ['eth_getBlockByHash', [blockHash(4), true]],
      ['eth_getBlockByHash', [word(0x404), false]],
    ]);
  });

  it('refuses eth_getBlockByNumber it does not hold when the list does not name it', () => {
    const h = withBlocks(5, { forwardable: new Set() });
    expect(h.result('eth_getBlockByNumber', ['0x5', false])).toEqual(block(5).header);
    expect(h.error('eth_getBlockByNumber', ['0x5', true]).code).toBe(-32_601);
    expect(h.chain.forwarded).toEqual([]);
  });
});

describe('RpcSession subscriptions', () => {
  it('makes subscriptions of every kind with distinct ids of 16 random bytes', () => {
    const h = new Harness();
    const ids = [
      h.subscribe('newHeads'),
      h.subscribe('newHeads'),
      h.subscribe('logs', { address: TOKEN }),
      h.subscribe('logs'),
      h.subscribe('newPendingTransactions'),
      h.subscribe('newPendingTransactions', true),
    ];
    expect(new Set(ids).size).toBe(ids.length);
    expect(h.session.subscriptions).toBe(6);
    expect(h.chain.hub.pendingSubscriptions).toBe(2);
  });

  it('delivers heads and matching logs of live blocks, and hashes or transactions of the mempool', () => {
    const h = new Harness();
    const heads = h.subscribe('newHeads');
    const token = h.subscribe('logs', { address: TOKEN });
    const approvals = h.subscribe('logs', { topics: [APPROVAL] });
    const hashes = h.subscribe('newPendingTransactions');
    const full = h.subscribe('newPendingTransactions', true);
    const b = block(1);
    h.chain.apply(b);
    expect(h.results(heads)).toEqual([b.header]);
    expect(h.results(token)).toEqual([withRemoved(b.logs?.[0], false)]);
    expect(h.results(approvals)).toEqual([withRemoved(b.logs?.[1], false)]);
    h.chain.hub.onPending([
      { kind: 'tx', id: 'x', txHash: word(0x77), txIndex: null, from: TOKEN, to: null, value: '0x0', nonce: 1 },
    ]);
    expect(h.results(hashes)).toEqual([word(0x77)]);
    expect(h.results(full)).toEqual([expect.objectContaining({ hash: word(0x77), to: null, nonce: '0x1' })]);
  });

  it.each([
    ['an unknown kind', ['syncing']],
    ['a kind that is not a string', [42]],
    ['no kind', []],
    ['newHeads with options', ['newHeads', { includeTransactions: true }]],
    ['newPendingTransactions with a non-boolean option', ['newPendingTransactions', 'yes']],
    ['newPendingTransactions with two options', ['newPendingTransactions', true, true]],
    ['logs with two filters', ['logs', {}, {}]],
    ['logs with a filter that is a list', ['logs', [TOKEN]]],
  ])('refuses %s with -32602', (_what, params) => {
    const h = new Harness();
    expect(h.error('eth_subscribe', params).code).toBe(-32_602);
    expect(h.session.subscriptions).toBe(0);
    expect(h.errors).toEqual([-32_602]);
  });

  it('unsubscribes with true, then answers -32000 subscription not found for the same or an unknown id', () => {
    const h = new Harness();
    const heads = h.subscribe('newHeads');
    expect(h.result('eth_unsubscribe', [heads])).toBe(true);
    expect(h.error('eth_unsubscribe', [heads])).toEqual({ code: -32_000, message: 'subscription not found' });
    expect(h.error('eth_unsubscribe', ['0x0123456789abcdef0123456789abcdef']).code).toBe(-32_000);
    expect(h.session.subscriptions).toBe(0);
    h.chain.apply(block(1));
    expect(h.notifications).toEqual([]);
  });

  it.each([
    ['no id', []],
    ['a number', [1]],
    ['two ids', ['0x1', '0x2']],
  ])('refuses eth_unsubscribe with %s', (_what, params) => {
    expect(new Harness().error('eth_unsubscribe', params).code).toBe(-32_602);
  });

  it('gives back the addresses of a logs subscription it ends', () => {
    const h = new Harness();
    const sub = h.subscribe('logs', { address: [TOKEN, OTHER] });
    expect(h.session.addresses).toBe(2);
    expect(h.reserved).toBe(2);
    h.result('eth_unsubscribe', [sub]);
    expect(h.session.addresses).toBe(0);
    expect(h.reserved).toBe(0);
  });
});

describe('readLogFilter', () => {
  it('reads no filter as every log', () => {
    expect(readLogFilter(undefined)).toEqual({ filter: { addresses: new Set(), topics: [] } });
    expect(readLogFilter(null)).toEqual({ filter: { addresses: new Set(), topics: [] } });
    expect(readLogFilter({})).toEqual({ filter: { addresses: new Set(), topics: [] } });
  });

  it('reads addresses and topics in lowercase, null and null alternatives as any', () => {
    const upper = `0x${'AB'.repeat(20)}`;
    const topic = `0x${'CD'.repeat(32)}`;
    expect(readLogFilter({ address: upper, topics: [topic, null, [TRANSFER, null], [APPROVAL, TRANSFER]] })).toEqual({
      filter: {
        addresses: new Set([upper.toLowerCase()]),
        topics: [new Set([topic.toLowerCase()]), null, null, new Set([APPROVAL, TRANSFER])],
      },
    });
    expect(readLogFilter({ address: [TOKEN, OTHER] })).toMatchObject({
      filter: { addresses: new Set([TOKEN, OTHER]) },
    });
  });

  it('reads fromBlock as a number; latest as none', () => {
    expect(readLogFilter({ fromBlock: '0x1f' })).toMatchObject({ fromBlock: 31 });
    expect(readLogFilter({ fromBlock: 'latest' })).not.toHaveProperty('fromBlock');
  });

  it.each([
    ['a filter that is a string', 'x', /must be an object/],
    ['a bad address', { address: '0x12' }, /not an address/],
    ['a bad address among good ones', { address: [TOKEN, 7] }, /not an address: 7/],
    ['five topic positions', { topics: [null, null, null, null, null] }, /at most 4 positions/],
    ['topics that are not a list', { topics: TRANSFER }, /at most 4 positions/],
    ['17 alternatives', { topics: [Array.from({ length: 17 }, (_, i) => word(i))] }, /at most 16 alternatives/],
    ['a short topic', { topics: ['0x12'] }, /not a topic/],
    ['toBlock', { toBlock: '0x10' }, /toBlock and blockHash/],
    ['blockHash', { blockHash: word(1) }, /toBlock and blockHash/],
    ['an unknown field', { addresses: [TOKEN] }, /unknown filter field "addresses"/],
    ['fromBlock earliest', { fromBlock: 'earliest' }, /fromBlock/],
    ['fromBlock with leading zeros', { fromBlock: '0x01' }, /fromBlock/],
  ])('refuses %s', (_what, raw, message) => {
    expect(readLogFilter(raw)).toMatch(message);
  });

  it('accepts 16 alternatives at a position', () => {
    expect(readLogFilter({ topics: [Array.from({ length: 16 }, (_, i) => word(i))] })).not.toBeTypeOf('string');
  });

  it('refuses each bad filter in eth_subscribe with -32602 and watches nothing', () => {
    const h = new Harness();
    for (const raw of [
      { address: '0x12' },
      { topics: [null, null, null, null, null] },
      { topics: [Array.from({ length: 17 }, (_, i) => word(i))] },
      { toBlock: 'latest' },
      { blockHash: word(1) },
      { other: 1 },
    ]) {
      expect(h.error('eth_subscribe', ['logs', raw]).code).toBe(-32_602);
    }
    expect(h.session.subscriptions).toBe(0);
    expect(h.reserved).toBe(0);
  });
});

describe('RpcSession logs with fromBlock', () => {
  it('sends the matching logs of held blocks after the answer, in a microtask, before later live blocks', async () => {
    const h = withBlocks(5);
    const sub = h.subscribe('logs', { address: TOKEN, fromBlock: '0x3' });
    expect(h.written).toHaveLength(1);
    await Promise.resolve();
    expect(h.written).toHaveLength(2);
    expect(h.results(sub)).toEqual([3, 4, 5].map((n) => withRemoved(block(n).logs?.[0], false)));
    h.chain.apply(block(6));
    expect(h.results(sub)).toEqual([3, 4, 5, 6].map((n) => withRemoved(block(n).logs?.[0], false)));
  });

  it('retracts a backfilled block to the subscription', async () => {
    const h = withBlocks(5);
    const sub = h.subscribe('logs', { address: OTHER, fromBlock: '0x5' });
    await Promise.resolve();
    h.chain.hub.onRetract(block(5));
    expect(h.results(sub)).toEqual([withRemoved(block(5).logs?.[1], false), withRemoved(block(5).logs?.[1], true)]);
  });

  it('does not retract a block older than the subscription made without fromBlock', async () => {
    const h = withBlocks(5);
    const sub = h.subscribe('logs', { address: OTHER });
    await Promise.resolve();
    h.chain.hub.onRetract(block(5));
    expect(h.results(sub)).toEqual([]);
  });

  it('sends nothing more for fromBlock after the head, or latest', async () => {
    const h = withBlocks(5);
    h.subscribe('logs', { fromBlock: '0x9' });
    h.subscribe('logs', { fromBlock: 'latest' });
    await Promise.resolve();
    expect(h.notifications).toEqual([]);
  });

  it('refuses a fromBlock older than the blocks it holds', () => {
    const h = withBlocks(20, { chain: new FakeChain(8) });
    const error = h.error('eth_subscribe', ['logs', { address: TOKEN, fromBlock: '0x2' }]);
    expect(error.code).toBe(-32_602);
    expect(error.message).toMatch(/fromBlock 2 is older/);
    expect(h.session.subscriptions).toBe(0);
    expect(h.reserved).toBe(0);
  });

  it('refuses a backfill of more logs than its limit', () => {
    const h = withBlocks(5, { limits: { maxBackfillLogs: 4 } });
    expect(h.error('eth_subscribe', ['logs', { fromBlock: '0x1' }]).code).toBe(-32_005);
    expect(h.session.subscriptions).toBe(0);
    h.subscribe('logs', { fromBlock: '0x4' });
  });
});

describe('RpcSession forwarding', () => {
  it('forwards an allowed method with its params and passes its result on', async () => {
    const h = new Harness();
    h.chain.answer = () => ({ result: { balance: '0x10' } });
    const params = [TOKEN, 'latest'];
    expect(await h.call('eth_getBalance', params)).toEqual({ jsonrpc: '2.0', id: 1, result: { balance: '0x10' } });
    expect(h.chain.forwarded.map((f) => [f.method, f.params])).toEqual([['eth_getBalance', params]]);
  });

  it("passes the node's error on with its code, message and data", async () => {
    const h = new Harness();
    h.chain.answer = () => ({ error: { code: 3, message: 'execution reverted: no', data: '0x08c379a0' } });
    expect(await h.call('eth_call', [{ to: TOKEN, data: '0x' }, 'latest'])).toEqual({
      jsonrpc: '2.0',
      id: 1,
      error: { code: 3, message: 'execution reverted: no', data: '0x08c379a0' },
    });
    expect(h.errors).toEqual([3]);
  });

  it('answers -32603 when the node could not be asked', async () => {
    const h = new Harness();
    h.chain.answer = undefined;
    h.request('eth_call', []);
    h.chain.forwarded[0]?.reject(new Error('socket hang up'));
    await settle();
    expect(h.answers).toEqual([{ jsonrpc: '2.0', id: 1, error: { code: -32_603, message: expect.any(String) } }]);
  });

  it.each([['eth_sendRawTransaction'], ['debug_traceTransaction'], ['anvil_setBalance'], ['evm_mine'], ['foo_bar']])(
    'refuses %s, which the list does not name, with -32601 and never asks the node',
    (method) => {
      const h = new Harness();
      expect(h.error(method, []).code).toBe(-32_601);
      expect(h.chain.forwarded).toEqual([]);
    },
  );

  it('forwards debug_ methods only when the list names them', async () => {
    const h = new Harness({ forwardable: new Set(['debug_traceTransaction']) });
    expect(await h.call('debug_traceTransaction', [word(1)])).toMatchObject({
      result: 'debug_traceTransaction from the node',
    });
  });

  it('never forwards eth_subscribe or eth_unsubscribe, even when the list names them', () => {
    const h = new Harness({ forwardable: new Set(['eth_subscribe', 'eth_unsubscribe', 'eth_chainId']) });
    expect(h.error('eth_subscribe', ['syncing']).code).toBe(-32_602);
    expect(h.error('eth_unsubscribe', ['0x1']).code).toBe(-32_000);
    expect(h.result('eth_chainId')).toBe('0x7a69');
    expect(h.chain.forwarded).toEqual([]);
  });

  it('refuses a forward past maxForwardsInFlight with -32005 while the others wait', async () => {
    const h = new Harness({ limits: { maxForwardsInFlight: 2 } });
    h.chain.answer = undefined;
    expect(h.request('eth_call', ['a'])).toBeUndefined();
    expect(h.request('eth_call', ['b'])).toBeUndefined();
    expect(h.error('eth_call', ['c']).code).toBe(-32_005);
    expect(h.chain.forwarded).toHaveLength(2);
    h.chain.forwarded[0]?.resolve({ result: 'a' });
    await settle();
    expect(h.answers.at(-1)).toEqual({ jsonrpc: '2.0', id: 1, result: 'a' });
    // One came back: there is room for one more.
    expect(h.request('eth_call', ['d'])).toBeUndefined();
    expect(h.error('eth_call', ['e']).code).toBe(-32_005);
    h.chain.forwarded[1]?.resolve({ result: 'b' });
    h.chain.forwarded[2]?.resolve({ result: 'd' });
    await settle();
    expect(h.answers.slice(-2)).toEqual([
      { jsonrpc: '2.0', id: 2, result: 'b' },
      { jsonrpc: '2.0', id: 4, result: 'd' },
    ]);
  });
});

describe('RpcSession batches', () => {
  it('answers a batch with one array in call order, without entries for notifications', () => {
    const h = new Harness();
    h.session.handle(
      JSON.stringify([
        { jsonrpc: '2.0', id: 'a', method: 'eth_chainId' },
        { jsonrpc: '2.0', method: 'net_version' },
        { jsonrpc: '2.0', id: 'b', method: 'no_such_method' },
        7,
        { jsonrpc: '2.0', id: 'c', method: 'net_version', params: [] },
      ]),
    );
    expect(h.answers).toEqual([
      [
        { jsonrpc: '2.0', id: 'a', result: '0x7a69' },
        { jsonrpc: '2.0', id: 'b', error: { code: -32_601, message: expect.any(String) } },
        { jsonrpc: '2.0', id: null, error: { code: -32_600, message: expect.any(String) } },
        { jsonrpc: '2.0', id: 'c', result: '31337' },
      ],
    ]);
    expect(h.errors).toEqual([-32_601, -32_600]);
  });

  it('waits for forwarded calls and answers the whole batch in call order', async () => {
    const h = new Harness();
    h.chain.answer = undefined;
    h.session.handle(
      JSON.stringify([
        { jsonrpc: '2.0', id: 1, method: 'eth_call', params: ['first'] },
        { jsonrpc: '2.0', id: 2, method: 'eth_chainId' },
        { jsonrpc: '2.0', id: 3, method: 'eth_getBalance', params: ['third'] },
      ]),
    );
    expect(h.answers).toEqual([]);
    h.chain.forwarded[1]?.resolve({ result: 'third' });
    await settle();
    expect(h.answers).toEqual([]);
    h.chain.forwarded[0]?.resolve({ error: { code: -32_000, message: 'first failed' } });
    await settle();
    expect(h.answers).toEqual([
      [
        { jsonrpc: '2.0', id: 1, error: { code: -32_000, message: 'first failed' } },
        { jsonrpc: '2.0', id: 2, result: '0x7a69' },
        { jsonrpc: '2.0', id: 3, result: 'third' },
      ],
    ]);
  });

  it('sends nothing for a batch of notifications, and runs them', () => {
    const h = new Harness();
    h.session.handle(JSON.stringify([{ jsonrpc: '2.0', method: 'eth_subscribe', params: ['newHeads'] }]));
    expect(h.answers).toEqual([]);
    expect(h.session.subscriptions).toBe(1);
  });

  it('answers a frame error with id null', () => {
    const h = new Harness({ limits: { maxBatch: 2 } });
    h.session.handle('[]');
    h.session.handle(JSON.stringify([1, 2, 3]));
    h.session.handle('{');
    expect(h.answers).toEqual([
      { jsonrpc: '2.0', id: null, error: { code: -32_600, message: 'empty batch' } },
      { jsonrpc: '2.0', id: null, error: { code: -32_005, message: 'a batch of 3 requests: at most 2' } },
      { jsonrpc: '2.0', id: null, error: { code: -32_700, message: 'not JSON' } },
    ]);
  });

  it('answers a subscription made in a batch that waits for the node before its backfill and live notifications', async () => {
    const h = withBlocks(3);
    h.chain.answer = undefined;
    h.session.handle(
      JSON.stringify([
        { jsonrpc: '2.0', id: 1, method: 'eth_call', params: [] },
        { jsonrpc: '2.0', id: 2, method: 'eth_subscribe', params: ['logs', { address: TOKEN, fromBlock: '0x2' }] },
      ]),
    );
    await settle();
    h.chain.apply(block(4));
    h.chain.forwarded[0]?.resolve({ result: '0x' });
    await settle();
    const [first, ...rest] = h.written;
    expect(first).toEqual({ sent: [expect.objectContaining({ id: 1 }), expect.objectContaining({ id: 2 })] });
    const sub = ((first as { sent: Json[] }).sent[1] as Json)['result'] as string;
    expect(rest.every((w) => 'delivered' in w)).toBe(true);
    expect(h.results(sub)).toEqual([2, 3, 4].map((n) => withRemoved(block(n).logs?.[0], false)));
  });

  it('holds what other subscriptions are sent until a batch that subscribed is answered, in order', async () => {
    const h = new Harness();
    const heads = h.subscribe('newHeads');
    h.chain.answer = undefined;
    h.session.handle(
      JSON.stringify([
        { jsonrpc: '2.0', id: 'call', method: 'eth_call', params: [] },
        { jsonrpc: '2.0', id: 'sub', method: 'eth_subscribe', params: ['newHeads'] },
      ]),
    );
    h.chain.apply(block(1));
    h.chain.apply(block(2));
    const before = h.written.length;
    expect(before).toBe(1);
    h.chain.forwarded[0]?.resolve({ result: '0x' });
    await settle();
    expect(h.written.slice(before).map((w) => Object.keys(w)[0])).toEqual(['sent', 'delivered', 'delivered']);
    expect(h.results(heads)).toEqual([block(1).header, block(2).header]);
    h.chain.apply(block(3));
    expect(h.results(heads)).toHaveLength(3);
  });

  it('holds nothing for a batch that waits for the node without subscribing', () => {
    const h = new Harness();
    const heads = h.subscribe('newHeads');
    h.chain.answer = undefined;
    h.session.handle(
      JSON.stringify([
        { jsonrpc: '2.0', id: 1, method: 'eth_call', params: [] },
        { jsonrpc: '2.0', id: 2, method: 'eth_subscribe', params: ['syncing'] },
      ]),
    );
    h.chain.apply(block(1));
    expect(h.results(heads)).toEqual([block(1).header]);
  });
});

describe('RpcSession limits', () => {
  it('refuses a subscription past maxSubscriptions with -32005', () => {
    const h = new Harness({ limits: { maxSubscriptions: 2 } });
    const first = h.subscribe('newHeads');
    h.subscribe('logs');
    expect(h.error('eth_subscribe', ['newHeads'])).toMatchObject({
      code: -32_005,
      message: expect.stringMatching(/2/),
    });
    expect(h.session.subscriptions).toBe(2);
    h.result('eth_unsubscribe', [first]);
    h.subscribe('newPendingTransactions');
  });

  it('counts addresses over all logs subscriptions against maxAddresses', () => {
    const h = new Harness({ limits: { maxAddresses: 3 } });
    h.subscribe('logs', { address: [TOKEN, OTHER] });
    expect(h.error('eth_subscribe', ['logs', { address: [THIRD, word(1).slice(0, 42)] }]).code).toBe(-32_005);
    h.subscribe('logs', { address: THIRD });
    expect(h.error('eth_subscribe', ['logs', { address: TOKEN }]).code).toBe(-32_005);
    // A filter of any address watches none.
    h.subscribe('logs');
    expect(h.session.addresses).toBe(3);
    expect(h.reserved).toBe(3);
  });

  it('refuses with -32005 when the gateway has no room for more addresses', () => {
    const h = new Harness({ capacity: 1 });
    expect(h.error('eth_subscribe', ['logs', { address: [TOKEN, OTHER] }]).code).toBe(-32_005);
    expect(h.session.subscriptions).toBe(0);
    expect(h.session.addresses).toBe(0);
    expect(h.reserved).toBe(0);
    h.chain.apply(block(1));
    expect(h.notifications).toEqual([]);
    h.subscribe('logs', { address: TOKEN });
  });

  it('closes with 1008 after 17 malformed frames in a row; a valid one resets the count', () => {
    const h = new Harness();
    for (let i = 0; i < 16; i++) h.session.handle('not json');
    h.result('eth_chainId');
    for (let i = 0; i < 16; i++) h.session.handle(i % 2 === 0 ? '{"id":1}' : '[]');
    expect(h.closes).toEqual([]);
    h.session.handle('{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":{}}');
    expect(h.closes).toEqual([[1008, expect.any(String), 'malformed']]);
    expect(h.answers).toHaveLength(34);
  });

  it('counts a batch of only invalid calls as malformed, and one with a valid call as valid', () => {
    const h = new Harness();
    for (let i = 0; i < 16; i++) h.session.handle('[1, 2]');
    h.session.handle(JSON.stringify([1, { jsonrpc: '2.0', id: 1, method: 'eth_chainId' }]));
    for (let i = 0; i < 16; i++) h.session.handle('[1, 2]');
    expect(h.closes).toEqual([]);
    h.session.handle('[{}]');
    expect(h.closes).toEqual([[1008, expect.any(String), 'malformed']]);
  });

  describe('rate', () => {
    beforeEach(() => {
      vi.useFakeTimers({ toFake: ['performance'] });
    });
    afterEach(() => {
      vi.useRealTimers();
    });

    it('refuses calls past maxRequestsPerSecond with -32005, and takes them again as time passes', () => {
      const h = new Harness({ limits: { maxRequestsPerSecond: 3 } });
      for (let i = 0; i < 3; i++) h.result('eth_chainId');
      expect(h.error('eth_chainId').code).toBe(-32_005);
      vi.advanceTimersByTime(340);
      h.result('eth_chainId');
      expect(h.error('eth_chainId').code).toBe(-32_005);
      vi.advanceTimersByTime(10_000);
      for (let i = 0; i < 3; i++) h.result('eth_chainId');
      expect(h.error('eth_chainId').code).toBe(-32_005);
      expect(h.closes).toEqual([]);
    });

    it('closes with 4029 after more than maxRequestsPerSecond refusals in a row', () => {
      const h = new Harness({ limits: { maxRequestsPerSecond: 3 } });
      for (let i = 0; i < 3; i++) h.result('eth_chainId');
      for (let i = 0; i < 3; i++) expect(h.error('eth_chainId').code).toBe(-32_005);
      expect(h.closes).toEqual([]);
      h.error('eth_chainId');
      expect(h.closes).toEqual([[4029, expect.any(String), 'rate_limited']]);
    });

    it('starts the refusals in a row again after a call it takes', () => {
      const h = new Harness({ limits: { maxRequestsPerSecond: 3 } });
      for (let i = 0; i < 3; i++) h.result('eth_chainId');
      for (let i = 0; i < 3; i++) h.error('eth_chainId');
      vi.advanceTimersByTime(340);
      h.result('eth_chainId');
      for (let i = 0; i < 3; i++) h.error('eth_chainId');
      expect(h.closes).toEqual([]);
    });

    it('counts each call of a batch, and not a batch as one', () => {
      const h = new Harness({ limits: { maxRequestsPerSecond: 3 } });
      h.session.handle(
        JSON.stringify(Array.from({ length: 4 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'eth_chainId' }))),
      );
      const [answers] = h.answers as Json[][];
      expect(answers?.map((a) => ('result' in a ? 'ok' : (a['error'] as Json)['code']))).toEqual([
        'ok',
        'ok',
        'ok',
        -32_005,
      ]);
      expect(h.error('eth_chainId').code).toBe(-32_005);
    });

    it('does not count calls it could not read', () => {
      const h = new Harness({ limits: { maxRequestsPerSecond: 1 } });
      h.session.handle('{"id":1}');
      h.result('eth_chainId');
    });
  });
});

describe('RpcSession grants', () => {
  it('refuses a logs filter outside the addresses of the grant with -32003, and one with no address', () => {
    const h = new Harness({ grant: grant({ addresses: [TOKEN, OTHER] }) });
    expect(h.error('eth_subscribe', ['logs', { address: THIRD }])).toMatchObject({
      code: -32_003,
      message: expect.stringContaining(THIRD),
    });
    expect(h.error('eth_subscribe', ['logs', { address: [TOKEN, THIRD] }]).code).toBe(-32_003);
    expect(h.error('eth_subscribe', ['logs', { topics: [TRANSFER] }])).toMatchObject({
      code: -32_003,
      message: expect.stringContaining('any address'),
    });
    expect(h.error('eth_subscribe', ['logs']).code).toBe(-32_003);
    expect(h.error('eth_subscribe', ['newPendingTransactions']).code).toBe(-32_003);
    h.subscribe('logs', { address: [TOKEN, OTHER] });
    h.subscribe('newHeads');
    expect(h.errors).toEqual([-32_003, -32_003, -32_003, -32_003, -32_003]);
  });

  it('refuses newHeads without the blocks channel, and logs and the mempool without activity', () => {
    const blocksOnly = new Harness({ grant: grant({ channels: ['blocks'] }) });
    blocksOnly.subscribe('newHeads');
    expect(blocksOnly.error('eth_subscribe', ['logs', { address: TOKEN }]).code).toBe(-32_003);
    expect(blocksOnly.error('eth_subscribe', ['newPendingTransactions']).code).toBe(-32_003);
    const activityOnly = new Harness({ grant: grant({ channels: ['activity'] }) });
    expect(activityOnly.error('eth_subscribe', ['newHeads']).code).toBe(-32_003);
    activityOnly.subscribe('logs', { address: TOKEN });
    activityOnly.subscribe('newPendingTransactions');
  });
});

describe('RpcSession.close', () => {
  it('removes every subscription from the hub and gives back its addresses', () => {
    const h = new Harness();
    h.subscribe('newHeads');
    h.subscribe('logs', { address: [TOKEN, OTHER] });
    h.subscribe('logs', { address: THIRD });
    h.subscribe('logs');
    h.subscribe('newPendingTransactions');
    expect(h.reserved).toBe(3);
    h.session.close();
    expect(h.reserved).toBe(0);
    expect(h.session.subscriptions).toBe(0);
    expect(h.session.addresses).toBe(0);
    expect(h.chain.hub.pendingSubscriptions).toBe(0);
    const written = h.written.length;
    h.chain.apply(block(1));
    h.chain.hub.onPending([
      { kind: 'tx', id: 'x', txHash: word(1), txIndex: null, from: TOKEN, to: null, value: '0x0', nonce: 0 },
    ]);
    expect(h.written).toHaveLength(written);
    // Twice is once.
    h.session.close();
    expect(h.reserved).toBe(0);
  });

  it('sends nothing after close: no answer to a waiting call or batch, no backfill, no new frame read', async () => {
    const h = withBlocks(3);
    h.chain.answer = undefined;
    h.request('eth_call', []);
    h.session.handle(JSON.stringify([{ jsonrpc: '2.0', id: 9, method: 'eth_getBalance', params: [] }]));
    h.subscribe('logs', { fromBlock: '0x1' });
    const written = h.written.length;
    h.session.close();
    for (const f of h.chain.forwarded) f.resolve({ result: 'late' });
    h.session.handle('{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}');
    h.session.handle('not json');
    h.session.deliver(['{}']);
    await settle();
    expect(h.written).toHaveLength(written);
    expect(h.closes).toEqual([]);
  });
});
