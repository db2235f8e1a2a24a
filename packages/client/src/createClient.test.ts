import type { AddressInfo } from 'node:net';
import { Packr } from 'msgpackr';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import type { Encoding } from './codec.ts';
import { type Client, type ClientOptions, createClient, type StatusEvent } from './createClient.ts';
import type { ClientError } from './errors.ts';
import type { ActivitySubscriptionMessage, BlocksSubscriptionMessage, Hex } from './messages.ts';

const packr = new Packr({ useRecords: false, variableMapSize: true });
type Msg = Record<string, unknown>;

/** Resolves when `predicate` holds, checking on every call of `poke`; rejects after `timeoutMs`. */
class Signal {
  #waiters: Array<{ check: () => boolean; resolve: () => void }> = [];

  poke(): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.check()) return true;
      w.resolve();
      return false;
    });
  }

  until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const waiter = {
        check,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.#waiters.push(waiter);
    });
  }
}

/** One connection to the scripted server, seen from the server. */
class ServerSide {
  readonly received: Msg[] = [];
  closed: { code: number } | undefined;
  /** Answer `ping` with `pong`. */
  autoPong = true;

  constructor(
    readonly ws: WebSocket,
    readonly encoding: Encoding,
    readonly signal: Signal,
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const message = (isBinary ? packr.unpack(data) : JSON.parse(data.toString())) as Msg;
      this.received.push(message);
      if (message['op'] === 'ping' && this.autoPong) this.send({ type: 'pong', id: message['id'] });
      signal.poke();
    });
    ws.on('close', (code: number) => {
      this.closed = { code };
      signal.poke();
    });
    ws.on('error', () => undefined);
  }

  send(message: Msg): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(this.encoding === 'json' ? JSON.stringify(message) : packr.pack(message), {
      binary: this.encoding === 'msgpack',
    });
  }

  welcome(): void {
    this.send({
      type: 'welcome',
      protocol: 1,
      chains: [{ chainId: 31_337, head: { number: 1, hash: hash(1) } }],
      limits: { maxAddresses: 10_000, maxSubscriptions: 100, maxMessageBytes: 1_048_576 },
    });
  }

  /** The subscribe requests received so far. */
  subscribes(): Msg[] {
    return this.received.filter((m) => m['op'] === 'subscribe');
  }

  async nextSubscribes(count: number): Promise<Msg[]> {
    await this.signal.until(() => this.subscribes().length >= count, `${count} subscribe requests`);
    return this.subscribes();
  }

  /** The update requests received so far. */
  updates(): Msg[] {
    return this.received.filter((m) => m['op'] === 'update');
  }

  async nextUpdates(count: number): Promise<Msg[]> {
    await this.signal.until(() => this.updates().length >= count, `${count} update requests`);
    return this.updates();
  }

  subscribed(request: Msg, sub: string, extra: Msg = {}): void {
    this.send({
      type: 'subscribed',
      id: request['id'],
      sub,
      channel: request['channel'],
      chainId: 31_337,
      head: { number: 1, hash: hash(1) },
      ...extra,
    });
  }
}

/** A `ws` server on 127.0.0.1 port 0 whose every step a test scripts. */
class ScriptedServer {
  readonly connections: ServerSide[] = [];
  readonly signal = new Signal();
  /** Send `welcome` as soon as a connection opens. */
  autoWelcome = true;

  private constructor(readonly wss: WebSocketServer) {
    wss.on('connection', (ws, request) => {
      const encoding = new URL(request.url ?? '/', 'http://x').searchParams.get('encoding') === 'json';
      const side = new ServerSide(ws, encoding ? 'json' : 'msgpack', this.signal);
      this.connections.push(side);
      if (this.autoWelcome) side.welcome();
      this.signal.poke();
    });
  }

  static async start(): Promise<ScriptedServer> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    return new ScriptedServer(wss);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.wss.address() as AddressInfo).port}/v1`;
  }

  async connection(index: number): Promise<ServerSide> {
    await this.signal.until(() => this.connections.length > index, `connection #${index + 1}`);
    return this.connections[index] as ServerSide;
  }

  async close(): Promise<void> {
    for (const side of this.connections) side.ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}

function hash(n: number, branch = 0): Hex {
  return `0x${(n * 16 + branch).toString(16).padStart(64, '0')}`;
}

function blockMsg(sub: string, n: number, branch = 0): Msg {
  return {
    type: 'block',
    sub,
    chainId: 31_337,
    number: n,
    hash: hash(n, branch),
    parentHash: hash(n - 1),
    timestamp: 1_700_000_000 + n,
    miner: `0x${'0'.repeat(40)}`,
    gasUsed: '0x5208',
    gasLimit: '0x1c9c380',
    txCount: 1,
    cursor: `31337:${n}:${hash(n, branch)}`,
  };
}

const WATCHED = '0x70997970c51812dc3a010c7d01b50e0d17dc79c8';
const OTHER = '0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc';
const THIRD = '0x90f79bf6eb2c4f870365e785982e1f101e93b906';

function txEvent(id: string): Msg {
  return { kind: 'tx', id, txHash: id, txIndex: 0, from: WATCHED, to: WATCHED, value: '0x1', nonce: 0, status: 1 };
}

function activityMsg(sub: string, n: number, ids: string[], branch = 0): Msg {
  return {
    type: 'activity',
    sub,
    chainId: 31_337,
    block: { number: n, hash: hash(n, branch), timestamp: 1_700_000_000 + n },
    cursor: `31337:${n}:${hash(n, branch)}`,
    events: ids.map(txEvent),
  };
}

function finalityMsg(sub: string, safe: number, finalized: number): Msg {
  return {
    type: 'finality',
    sub,
    chainId: 31_337,
    safe: { number: safe, hash: hash(safe) },
    finalized: { number: finalized, hash: hash(finalized) },
  };
}

function removedMsg(sub: string, n: number, ids?: string[], branch = 0): Msg {
  return {
    type: 'removed',
    sub,
    chainId: 31_337,
    block: { number: n, hash: hash(n, branch) },
    cursor: `31337:${n - 1}:${hash(n - 1)}`,
    ...(ids === undefined ? {} : { events: ids.map(txEvent) }),
  };
}

/** What a test client saw: statuses, errors, and each subscription's messages. */
class Recorder {
  readonly statuses: StatusEvent[] = [];
  readonly errors: ClientError[] = [];
  readonly blocks: BlocksSubscriptionMessage[] = [];
  readonly activity: ActivitySubscriptionMessage[] = [];
  readonly signal = new Signal();

  options(): Pick<ClientOptions, 'onStatus' | 'onError'> {
    return {
      onStatus: (event) => {
        this.statuses.push(event);
        this.signal.poke();
      },
      onError: (error) => {
        this.errors.push(error);
        this.signal.poke();
      },
    };
  }

  onBlocks = (m: BlocksSubscriptionMessage): void => {
    this.blocks.push(m);
    this.signal.poke();
  };

  onActivity = (m: ActivitySubscriptionMessage): void => {
    this.activity.push(m);
    this.signal.poke();
  };

  names(): string[] {
    return this.statuses.map((s) => s.status);
  }

  status(name: StatusEvent['status'], count = 1): Promise<void> {
    return this.signal.until(
      () => this.statuses.filter((s) => s.status === name).length >= count,
      `status ${name} ×${count} (have ${this.names().join(', ')})`,
    );
  }

  /** A compact trace of the messages delivered to the app. */
  trace(messages: readonly (BlocksSubscriptionMessage | ActivitySubscriptionMessage)[]): string[] {
    return messages.map((m) => {
      switch (m.type) {
        case 'block':
          return `block ${m.number}`;
        case 'activity':
          return `activity ${m.block.number} ${m.events.map((e) => e.id).join(',')}`;
        case 'removed':
          return `removed ${m.block.number}${m.events === undefined ? '' : ` ${m.events.map((e) => e.id).join(',')}`}`;
        case 'subscribed':
          return `subscribed ${m.sub}${m.recovered === undefined ? '' : ` recovered:${m.recovered}`}`;
        case 'finality':
          return `finality ${m.safe.number}/${m.finalized.number}`;
        case 'replaced':
          return `replaced ${m.id} by ${m.by} ${m.reason}`;
        case 'dropped':
          return `dropped ${m.id}`;
        default:
          return `pending ${m.events.map((e) => e.id).join(',')}`;
      }
    });
  }
}

const FAST = { initialMs: 20, maxMs: 200, factor: 2, jitter: 0 };

let server: ScriptedServer;
let client: Client | undefined;

beforeEach(async () => {
  server = await ScriptedServer.start();
});

afterEach(async () => {
  client?.close();
  client = undefined;
  vi.useRealTimers();
  await server.close();
});

describe.each(['msgpack', 'json'] as const)('createClient over %s', (encoding) => {
  it('subscribes once welcomed and delivers typed messages', async () => {
    const rec = new Recorder();
    client = createClient({ url: server.url, encoding, WebSocket, backoff: FAST, ...rec.options() });
    client.subscribeBlocks({ full: true }, rec.onBlocks);
    client.watchAddresses([WATCHED.toUpperCase().replace('0X', '0x')], { kinds: ['tx', 'erc20'] }, rec.onActivity);
    const side = await server.connection(0);
    expect(side.encoding).toBe(encoding);
    const [blocksReq, activityReq] = await side.nextSubscribes(2);
    expect(blocksReq).toMatchObject({ op: 'subscribe', channel: 'blocks', full: true });
    expect(blocksReq).not.toHaveProperty('from');
    expect(activityReq).toMatchObject({ channel: 'activity', kinds: ['tx', 'erc20'] });
    side.subscribed(blocksReq as Msg, 's1');
    side.subscribed(activityReq as Msg, 's2');
    side.send(blockMsg('s1', 2));
    side.send(activityMsg('s2', 2, ['0xaa']));
    side.send({ type: 'pending', sub: 's2', chainId: 31_337, events: [{ ...txEvent('0xbb'), txIndex: null }] });
    await rec.signal.until(() => rec.activity.length >= 3, 'activity messages');
    expect(rec.trace(rec.blocks)).toEqual(['subscribed s1', 'block 2']);
    expect(rec.trace(rec.activity)).toEqual(['subscribed s2', 'activity 2 0xaa', 'pending 0xbb']);
    const block = rec.blocks[1];
    if (block?.type !== 'block') throw new Error('expected a block');
    expect(block.hash).toBe(hash(2));
    expect(rec.names()).toEqual(['connecting', 'open']);
    expect(client.status).toBe('open');
    expect(rec.errors).toEqual([]);
  });

  it('resumes every subscription from its last cursor, buffering the replay until subscribed', async () => {
    const rec = new Recorder();
    client = createClient({ url: server.url, encoding, WebSocket, backoff: FAST, ...rec.options() });
    client.subscribeBlocks({ confirmations: 2 }, rec.onBlocks);
    client.watchAddresses([WATCHED], {}, rec.onActivity);
    const first = await server.connection(0);
    const [b1, a1] = await first.nextSubscribes(2);
    first.subscribed(b1 as Msg, 's1');
    first.subscribed(a1 as Msg, 's2');
    first.send(blockMsg('s1', 2));
    first.send(blockMsg('s1', 3));
    first.send(activityMsg('s2', 2, ['0xaa']));
    await rec.signal.until(() => rec.blocks.length >= 3 && rec.activity.length >= 2, 'first messages');
    first.ws.close(1001, 'going away');

    const second = await server.connection(1);
    const [b2, a2] = await second.nextSubscribes(2);
    expect(b2).toMatchObject({ op: 'subscribe', channel: 'blocks', confirmations: 2, from: `31337:3:${hash(3)}` });
    expect(a2).toMatchObject({ channel: 'activity', addresses: [WATCHED], from: `31337:2:${hash(2)}` });
    expect(b2?.['id']).not.toBe(b1?.['id']);
    // The replay of both, interleaved, before either `subscribed`; at-least-once: 3 and 0xaa again.
    second.send(blockMsg('s7', 3));
    second.send(activityMsg('s8', 2, ['0xaa']));
    second.send(blockMsg('s7', 4));
    second.send(activityMsg('s8', 4, ['0xcc']));
    second.subscribed(a2 as Msg, 's8', { recovered: true });
    second.subscribed(b2 as Msg, 's7', { recovered: true });
    second.send(blockMsg('s7', 5));
    await rec.status('recovered');
    await rec.signal.until(() => rec.blocks.length >= 6, 'block 5');
    expect(rec.trace(rec.blocks)).toEqual([
      'subscribed s1',
      'block 2',
      'block 3',
      'block 4',
      'subscribed s7 recovered:true',
      'block 5',
    ]);
    expect(rec.trace(rec.activity)).toEqual([
      'subscribed s2',
      'activity 2 0xaa',
      'activity 4 0xcc',
      'subscribed s8 recovered:true',
    ]);
    expect(rec.names()).toEqual(['connecting', 'open', 'closed', 'connecting', 'open', 'resuming', 'recovered']);
    expect(rec.statuses[2]).toMatchObject({ status: 'closed', code: 1001, reconnectInMs: 20 });
    expect(rec.statuses[5]).toEqual({ status: 'resuming', subscriptions: 2 });

    // The cursor of a dropped duplicate and of a `removed` count too.
    second.send(removedMsg('s7', 5));
    second.send(blockMsg('s7', 5, 1));
    await rec.signal.until(() => rec.blocks.length >= 8, 'the new block 5');
    second.ws.close(4008, 'slow consumer');
    const third = await server.connection(2);
    const [b3] = await third.nextSubscribes(2);
    expect(b3).toMatchObject({ from: `31337:5:${hash(5, 1)}` });
  });

  it('updates the watched addresses in place, and a resume watches the new set from its cursor', async () => {
    const rec = new Recorder();
    client = createClient({ url: server.url, encoding, WebSocket, backoff: FAST, ...rec.options() });
    const watch = client.watchAddresses([WATCHED], {}, rec.onActivity);
    const first = await server.connection(0);
    const [a1] = await first.nextSubscribes(1);
    first.subscribed(a1 as Msg, 's1');
    first.send(activityMsg('s1', 2, ['0xaa']));
    await rec.signal.until(() => rec.activity.length >= 2, 'activity');

    const updated = watch.update([OTHER.toUpperCase().replace('0X', '0x')], [WATCHED]);
    const [update] = await first.nextUpdates(1);
    expect(update).toEqual({ op: 'update', id: expect.any(Number), sub: 's1', add: [OTHER], remove: [WATCHED] });
    first.send({ type: 'updated', id: update?.['id'], sub: 's1', addresses: 1 });
    await expect(updated).resolves.toEqual({ addresses: 1 });
    expect(watch.addresses).toEqual([OTHER]);
    expect(first.subscribes()).toHaveLength(1); // in place: no new subscription
    first.send(activityMsg('s1', 3, ['0xbb']));
    await rec.signal.until(() => rec.activity.length >= 3, 'activity after the update');

    first.ws.close(1001, 'going away');
    const second = await server.connection(1);
    const [a2] = await second.nextSubscribes(1);
    expect(a2).toMatchObject({ channel: 'activity', addresses: [OTHER], from: `31337:3:${hash(3)}` });
    second.subscribed(a2 as Msg, 's2', { recovered: true });
    await rec.status('recovered');
    expect(rec.errors).toEqual([]);
    // The handle still stops the subscription, as the plain function did.
    watch();
    await server.signal.until(() => second.received.some((m) => m['op'] === 'unsubscribe'), 'unsubscribe');
    expect(second.received.find((m) => m['op'] === 'unsubscribe')).toMatchObject({ sub: 's2' });
  });

  it('asks for finality, and passes finality, replaced and dropped on without moving the cursor or the dedupe', async () => {
    const rec = new Recorder();
    client = createClient({ url: server.url, encoding, WebSocket, backoff: FAST, ...rec.options() });
    client.subscribeBlocks({ finality: 'finalized' }, rec.onBlocks);
    client.watchAddresses([WATCHED], { pending: true, finality: 'safe', confirmations: 0 }, rec.onActivity);
    const first = await server.connection(0);
    const [b1, a1] = await first.nextSubscribes(2);
    expect(b1).toMatchObject({ op: 'subscribe', channel: 'blocks', finality: 'finalized' });
    expect(a1).toMatchObject({ channel: 'activity', pending: true, finality: 'safe', confirmations: 0 });
    first.subscribed(b1 as Msg, 's1');
    first.subscribed(a1 as Msg, 's2');
    first.send(blockMsg('s1', 2));
    first.send(activityMsg('s2', 2, ['0xaa']));
    first.send(finalityMsg('s1', 2, 1));
    first.send(finalityMsg('s2', 2, 1));
    const sender = WATCHED as Hex;
    first.send({ type: 'pending', sub: 's2', chainId: 31_337, events: [{ ...txEvent('0xbb'), txIndex: null }] });
    first.send({
      type: 'replaced',
      sub: 's2',
      chainId: 31_337,
      id: '0xbb',
      from: sender,
      nonce: 0,
      by: '0xcc',
      reason: 'cancel',
      block: { number: 3, hash: hash(3) },
    });
    first.send({ type: 'dropped', sub: 's2', chainId: 31_337, id: '0xdd', from: sender, nonce: 1 });
    // The same finality twice: no block of its own, so nothing to deduplicate.
    first.send(finalityMsg('s2', 2, 1));
    await rec.signal.until(() => rec.activity.length >= 7 && rec.blocks.length >= 3, 'the new messages');
    expect(rec.trace(rec.blocks)).toEqual(['subscribed s1', 'block 2', 'finality 2/1']);
    expect(rec.trace(rec.activity)).toEqual([
      'subscribed s2',
      'activity 2 0xaa',
      'finality 2/1',
      'pending 0xbb',
      'replaced 0xbb by 0xcc cancel',
      'dropped 0xdd',
      'finality 2/1',
    ]);
    const replaced = rec.activity[4];
    if (replaced?.type !== 'replaced') throw new Error('expected replaced');
    expect(replaced.block).toEqual({ number: 3, hash: hash(3) });

    // None of them moved a cursor: the resume starts after block 2, with the same finality asked.
    first.ws.close(1001, 'going away');
    const second = await server.connection(1);
    const [b2, a2] = await second.nextSubscribes(2);
    expect(b2).toMatchObject({ finality: 'finalized', from: `31337:2:${hash(2)}` });
    expect(a2).toMatchObject({ finality: 'safe', pending: true, from: `31337:2:${hash(2)}` });
    // A finality message before `subscribed` waits with the replay; the replayed 0xaa is a duplicate.
    second.send(activityMsg('s8', 2, ['0xaa']));
    second.send(finalityMsg('s8', 3, 2));
    second.send(activityMsg('s8', 3, ['0xcc']));
    second.subscribed(a2 as Msg, 's8', { recovered: true });
    second.subscribed(b2 as Msg, 's7', { recovered: true });
    await rec.status('recovered');
    expect(rec.trace(rec.activity).slice(7)).toEqual([
      'finality 3/2',
      'activity 3 0xcc',
      'subscribed s8 recovered:true',
    ]);
    expect(rec.errors).toEqual([]);
  });
});

describe('createClient', () => {
  it('drops duplicate events by id and passes removed, forgetting what it retracts', async () => {
    const rec = new Recorder();
    client = createClient({ url: server.url, WebSocket, backoff: FAST, ...rec.options() });
    client.watchAddresses([WATCHED], {}, rec.onActivity);
    client.subscribeBlocks({}, rec.onBlocks);
    const side = await server.connection(0);
    const [a, b] = await side.nextSubscribes(2);
    side.subscribed(a as Msg, 's1');
    side.subscribed(b as Msg, 's2');
    side.send(activityMsg('s1', 5, ['0x01', '0x02']));
    side.send(activityMsg('s1', 5, ['0x01', '0x02', '0x03']));
    side.send(activityMsg('s1', 5, ['0x02']));
    side.send(removedMsg('s1', 9, ['0x09'])); // never delivered: dropped
    side.send(removedMsg('s1', 5, ['0x01', '0x02', '0x03']));
    side.send(activityMsg('s1', 5, ['0x01'])); // a re-delivery after the removal passes
    side.send(blockMsg('s2', 5));
    side.send(blockMsg('s2', 5));
    side.send(removedMsg('s2', 5));
    side.send(blockMsg('s2', 5, 1));
    side.send(blockMsg('s2', 5));
    await rec.signal.until(() => rec.blocks.length >= 5, 'block messages');
    expect(rec.trace(rec.activity)).toEqual([
      'subscribed s1',
      'activity 5 0x01,0x02',
      'activity 5 0x03',
      'removed 5 0x01,0x02,0x03',
      'activity 5 0x01',
    ]);
    expect(rec.trace(rec.blocks)).toEqual(['subscribed s2', 'block 5', 'removed 5', 'block 5', 'block 5']);
  });

  it('ignores message types it does not know, passes events of unknown kinds and fields on, and keeps its cursor', async () => {
    const rec = new Recorder();
    client = createClient({ url: server.url, WebSocket, backoff: FAST, ...rec.options() });
    client.watchAddresses([WATCHED], {}, rec.onActivity);
    const first = await server.connection(0);
    const [a1] = await first.nextSubscribes(1);
    first.subscribed(a1 as Msg, 's1');
    first.send(activityMsg('s1', 2, ['0xaa']));
    // A newer gateway's messages: an unknown type for the subscription (even one with a cursor),
    // one for nobody, and an event of an unknown kind with unknown fields.
    first.send({ type: 'prophecy', sub: 's1', chainId: 31_337, cursor: `31337:99:${hash(99)}` });
    first.send({ type: 'weather', sunny: true });
    first.send({
      ...activityMsg('s1', 3, []),
      events: [{ kind: 'teleport', id: '0xee', txHash: '0xee', from: WATCHED, to: OTHER, colour: 'blue' }],
      mood: 'calm',
    });
    first.send(activityMsg('s1', 4, ['0xff']));
    await rec.signal.until(() => rec.activity.length >= 4, 'the activity after the unknown messages');
    expect(rec.trace(rec.activity)).toEqual(['subscribed s1', 'activity 2 0xaa', 'activity 3 0xee', 'activity 4 0xff']);
    expect(rec.errors).toEqual([]);
    first.ws.close(1001);
    const second = await server.connection(1);
    const [a2] = await second.nextSubscribes(1);
    expect(a2).toMatchObject({ from: `31337:4:${hash(4)}` });
  });

  it('reports lost when a resume is answered recovered:false', async () => {
    const rec = new Recorder();
    client = createClient({ url: server.url, WebSocket, backoff: FAST, ...rec.options() });
    client.subscribeBlocks({}, rec.onBlocks);
    client.watchAddresses([WATCHED], {}, rec.onActivity);
    const first = await server.connection(0);
    const [b1, a1] = await first.nextSubscribes(2);
    first.subscribed(b1 as Msg, 's1');
    first.subscribed(a1 as Msg, 's2');
    first.send(blockMsg('s1', 2));
    first.send(activityMsg('s2', 2, ['0xaa']));
    await rec.signal.until(() => rec.activity.length >= 2, 'activity');
    first.ws.terminate();
    const second = await server.connection(1);
    const [b2, a2] = await second.nextSubscribes(2);
    second.subscribed(b2 as Msg, 's3', { recovered: true });
    second.subscribed(a2 as Msg, 's4', { recovered: false });
    second.send(blockMsg('s3', 30));
    await rec.status('lost');
    expect(rec.statuses.at(-1)).toEqual({ status: 'lost', subscriptions: 2, lost: 1 });
    expect(rec.trace(rec.activity).at(-1)).toBe('subscribed s4 recovered:false');
    await rec.signal.until(() => rec.blocks.length >= 4, 'live block');
    expect(rec.trace(rec.blocks).slice(2)).toEqual(['subscribed s3 recovered:true', 'block 30']);
    expect(client.status).toBe('lost');
  });

  it('asks again, from the same cursor, after the delay a TRY_AGAIN gives, and recovers', async () => {
    const rec = new Recorder();
    client = createClient({ url: server.url, WebSocket, backoff: FAST, ...rec.options() });
    client.watchAddresses([WATCHED], {}, rec.onActivity);
    const first = await server.connection(0);
    const [a1] = await first.nextSubscribes(1);
    first.subscribed(a1 as Msg, 's1');
    first.send(activityMsg('s1', 2, ['0xaa']));
    await rec.signal.until(() => rec.activity.length >= 2, 'activity');
    first.ws.terminate();
    const second = await server.connection(1);
    const [a2] = await second.nextSubscribes(1);
    expect(a2?.['from']).toBeTypeOf('string');
    const refusedAt = Date.now();
    second.send({ type: 'error', id: a2?.['id'], code: 'TRY_AGAIN', message: 'queue full', retryAfterMs: 200 });
    const [, again] = await second.nextSubscribes(2);
    expect(Date.now() - refusedAt).toBeGreaterThanOrEqual(190);
    expect(again?.['from']).toBe(a2?.['from']);
    expect(rec.errors).toEqual([]);
    second.subscribed(again as Msg, 's2', { recovered: true });
    await rec.status('recovered');
    expect(second.closed).toBeUndefined();
  });

  it('reports lost for a subscription that had no cursor to resume from', async () => {
    const rec = new Recorder();
    client = createClient({ url: server.url, WebSocket, backoff: FAST, ...rec.options() });
    client.watchAddresses([WATCHED], {}, rec.onActivity);
    const first = await server.connection(0);
    const [a1] = await first.nextSubscribes(1);
    first.subscribed(a1 as Msg, 's1');
    await rec.signal.until(() => rec.activity.length >= 1, 'subscribed');
    first.ws.close(1001);
    const second = await server.connection(1);
    const [a2] = await second.nextSubscribes(1);
    expect(a2).not.toHaveProperty('from');
    second.subscribed(a2 as Msg, 's2');
    await rec.status('lost');
    expect(rec.trace(rec.activity)).toEqual(['subscribed s1', 'subscribed s2']);
    expect(rec.names()).toEqual(['connecting', 'open', 'closed', 'connecting', 'open', 'resuming', 'lost']);
    expect(rec.statuses.at(-1)).toEqual({ status: 'lost', subscriptions: 1, lost: 1 });
  });

  it('resumes a quiet subscription from the position its subscribed and pongs gave', async () => {
    const rec = new Recorder();
    client = createClient({ url: server.url, WebSocket, backoff: FAST, ...rec.options() });
    client.watchAddresses([WATCHED], {}, rec.onActivity);
    const first = await server.connection(0);
    const [a1] = await first.nextSubscribes(1);
    first.subscribed(a1 as Msg, 's1', { cursor: `31337:5:${hash(5)}` });
    await rec.signal.until(() => rec.activity.length >= 1, 'subscribed');
    // No activity since: the pong moves the quiet subscription's position on.
    first.send({ type: 'pong', cursors: { s1: `31337:9:${hash(9)}`, other: `31337:1:${hash(1)}` } });
    first.send({ type: 'pong', cursors: {} });
    first.ws.close(1001);
    const second = await server.connection(1);
    const [a2] = await second.nextSubscribes(1);
    expect(a2).toMatchObject({ from: `31337:9:${hash(9)}` });
    second.subscribed(a2 as Msg, 's2', { recovered: true, cursor: `31337:12:${hash(12)}` });
    await rec.status('recovered');
  });

  it('detects a link that goes silent by heartbeat and reconnects', async () => {
    const rec = new Recorder();
    const heartbeatIntervalMs = 100;
    client = createClient({ url: server.url, WebSocket, heartbeatIntervalMs, backoff: FAST, ...rec.options() });
    const first = await server.connection(0);
    await server.signal.until(() => first.received.some((m) => m['op'] === 'ping'), 'a ping');
    first.autoPong = false; // still open, never closes: a link that stopped forwarding
    const silentSince = Date.now();
    const second = await server.connection(1);
    const closed = rec.statuses.find((s) => s.status === 'closed');
    expect(closed).toMatchObject({ code: 1006, reason: expect.stringContaining('heartbeat') });
    expect(Date.now() - silentSince).toBeGreaterThanOrEqual(heartbeatIntervalMs);
    await rec.status('open', 2);
    await server.signal.until(() => first.closed !== undefined, 'the dead socket closed');
    expect(second.closed).toBeUndefined();
  });

  it('gives up on a connection that never says welcome within two heartbeat intervals', async () => {
    const rec = new Recorder();
    server.autoWelcome = false;
    const startedAt = Date.now();
    client = createClient({
      url: server.url,
      WebSocket,
      heartbeatIntervalMs: 100,
      backoff: FAST,
      ...rec.options(),
    });
    const second = await server.connection(1);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(200);
    expect(rec.statuses[1]).toMatchObject({ status: 'closed', code: 1006, reason: expect.stringContaining('welcome') });
    second.welcome();
    await rec.status('open');
  });

  it('backs off exponentially while the server refuses, and resets after a healthy connection', async () => {
    const rec = new Recorder();
    server.autoWelcome = false;
    server.wss.on('connection', (ws) => {
      if (server.connections.length <= 5) ws.close(1001, 'not now');
    });
    client = createClient({
      url: server.url,
      WebSocket,
      heartbeatIntervalMs: 150,
      backoff: { initialMs: 10, maxMs: 80, factor: 2, jitter: 0 },
      ...rec.options(),
    });
    const sixth = await server.connection(5);
    const delays = rec.statuses.flatMap((s) => (s.status === 'closed' ? [s.reconnectInMs] : []));
    expect(delays).toEqual([10, 20, 40, 80, 80]);
    expect(
      rec.statuses.filter((s) => s.status === 'connecting').map((s) => (s as { attempt: number }).attempt),
    ).toEqual([1, 2, 3, 4, 5, 6]);
    sixth.welcome();
    // Healthy: open for a whole heartbeat interval (the first ping proves it).
    await server.signal.until(() => sixth.received.some((m) => m['op'] === 'ping'), 'a ping');
    sixth.ws.close(1001, 'deploy');
    await server.connection(6);
    expect(rec.statuses.filter((s) => s.status === 'closed').at(-1)).toMatchObject({ code: 1001, reconnectInMs: 10 });
  });

  it('waits the longest backoff after a 4029 close', async () => {
    const rec = new Recorder();
    client = createClient({
      url: server.url,
      WebSocket,
      backoff: { initialMs: 10, maxMs: 300, factor: 2, jitter: 0 },
      ...rec.options(),
    });
    const first = await server.connection(0);
    await rec.status('open');
    first.ws.close(4029, 'too many requests');
    await rec.status('closed');
    expect(rec.statuses.at(-1)).toMatchObject({ code: 4029, reconnectInMs: 300 });
    await server.connection(1);
  });

  it('stops with MESSAGE_TOO_BIG on 1009 instead of reconnecting', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] });
    const rec = new Recorder();
    client = createClient({ url: server.url, WebSocket, backoff: FAST, ...rec.options() });
    const unsubscribe = client.subscribeBlocks({}, rec.onBlocks);
    const first = await server.connection(0);
    await rec.status('open');
    first.ws.close(1009, 'message too big');
    await rec.status('closed');
    expect(rec.statuses.at(-1)).toEqual({
      status: 'closed',
      code: 1009,
      reason: 'message too big',
      reconnectInMs: null,
    });
    expect(rec.errors.map((e) => [e.code, e.closeCode])).toEqual([['MESSAGE_TOO_BIG', 1009]]);
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(server.connections).toHaveLength(1);
    expect(client.status).toBe('closed');
    unsubscribe(); // harmless after the end
    expect(() => client?.subscribeBlocks({}, rec.onBlocks)).toThrow(/closed/);
  });

  it('surfaces a refused subscription as an error, keeps the connection, and does not resend it', async () => {
    const rec = new Recorder();
    const refused: ClientError[] = [];
    client = createClient({ url: server.url, WebSocket, backoff: FAST, ...rec.options() });
    client.watchAddresses([WATCHED], { onError: (e) => refused.push(e) }, rec.onActivity);
    client.subscribeBlocks({}, rec.onBlocks);
    const first = await server.connection(0);
    const [a, b] = await first.nextSubscribes(2);
    first.send({ type: 'error', id: a?.['id'], code: 'BAD_ADDRESS', message: 'not an address' });
    first.subscribed(b as Msg, 's1');
    first.send({ type: 'error', code: 'BAD_REQUEST', message: 'unparseable' });
    await rec.signal.until(() => rec.errors.length >= 1 && refused.length >= 1, 'errors');
    expect(refused.map((e) => e.code)).toEqual(['BAD_ADDRESS']);
    expect(rec.errors.map((e) => e.code)).toEqual(['BAD_REQUEST']);
    expect(first.closed).toBeUndefined();
    first.ws.close(1001);
    const second = await server.connection(1);
    await second.nextSubscribes(1);
    await rec.status('open', 2);
    expect(second.subscribes().map((m) => m['channel'])).toEqual(['blocks']);
    expect(rec.activity).toEqual([]);
  });

  it('unsubscribes: sends unsubscribe and delivers nothing more, also when asked mid-request', async () => {
    const rec = new Recorder();
    client = createClient({ url: server.url, WebSocket, backoff: FAST, ...rec.options() });
    const stopBlocks = client.subscribeBlocks({}, rec.onBlocks);
    const stopActivity = client.watchAddresses([WATCHED], {}, rec.onActivity);
    const side = await server.connection(0);
    const [b, a] = await side.nextSubscribes(2);
    side.subscribed(b as Msg, 's1');
    await rec.signal.until(() => rec.blocks.length >= 1, 'subscribed');
    stopBlocks();
    stopActivity(); // its subscribe is still unanswered
    side.send(blockMsg('s1', 2));
    side.subscribed(a as Msg, 's2');
    side.send(activityMsg('s2', 2, ['0xaa']));
    await server.signal.until(() => side.received.filter((m) => m['op'] === 'unsubscribe').length >= 2, 'unsubscribes');
    expect(side.received.filter((m) => m['op'] === 'unsubscribe').map((m) => m['sub'])).toEqual(['s1', 's2']);
    expect(rec.trace(rec.blocks)).toEqual(['subscribed s1']);
    expect(rec.activity).toEqual([]);
  });

  it('close() closes the socket with 1000 and stops every timer', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] });
    const rec = new Recorder();
    const c = createClient({ url: server.url, WebSocket, heartbeatIntervalMs: 50, backoff: FAST, ...rec.options() });
    c.subscribeBlocks({}, rec.onBlocks);
    const side = await server.connection(0);
    await side.nextSubscribes(1);
    c.close();
    expect(rec.statuses.at(-1)).toEqual({ status: 'closed', code: 1000, reason: 'client closed', reconnectInMs: null });
    const statuses = rec.statuses.length;
    const received = side.received.length;
    // Ten minutes later: no ping, no reconnect, no status, and no timer left (ws's own close timer included).
    await vi.advanceTimersByTimeAsync(600_000);
    expect(vi.getTimerCount()).toBe(0);
    vi.useRealTimers();
    await server.signal.until(() => side.closed !== undefined, 'the server side closed');
    expect(side.closed?.code).toBe(1000);
    expect(side.received).toHaveLength(received);
    expect(rec.statuses).toHaveLength(statuses);
    expect(server.connections).toHaveLength(1);
  });

  it('refuses impossible options with a TypeError', () => {
    const base = { url: 'ws://127.0.0.1:1/v1', WebSocket };
    expect(() => createClient({ ...base, url: 'http://127.0.0.1/v1' })).toThrow(TypeError);
    expect(() => createClient({ ...base, url: 'nonsense' })).toThrow(TypeError);
    expect(() => createClient({ ...base, heartbeatIntervalMs: 0 })).toThrow(/heartbeatIntervalMs/);
    expect(() => createClient({ ...base, backoff: { maxMs: 1 } })).toThrow(/backoff.maxMs/);
    expect(() => createClient({ ...base, encoding: 'cbor' as Encoding })).toThrow(/encoding/);
    expect(() => createClient({ url: base.url, WebSocket: undefined as never })).toThrow(/WebSocket/);
  });

  it('refuses impossible subscription options with a TypeError', async () => {
    client = createClient({ url: server.url, WebSocket, backoff: FAST, onError: () => undefined });
    const c = client;
    expect(() => c.watchAddresses([], {}, () => undefined)).toThrow(/addresses/);
    expect(() => c.watchAddresses(['0x12'], {}, () => undefined)).toThrow(/not an address/);
    expect(() => c.watchAddresses([WATCHED], { kinds: ['erc777' as 'tx'] }, () => undefined)).toThrow(/kinds/);
    expect(() => c.subscribeBlocks({ confirmations: -1 }, () => undefined)).toThrow(/confirmations/);
    expect(() => c.subscribeBlocks({ chainId: 1.5 }, () => undefined)).toThrow(/chainId/);
    expect(() => c.subscribeBlocks({ finality: 'latest' as 'safe' }, () => undefined)).toThrow(/finality: must be/);
    expect(() => c.subscribeBlocks({ finality: 'safe', confirmations: 2 }, () => undefined)).toThrow(
      /finality, confirmations/,
    );
    expect(() => c.watchAddresses([WATCHED], { finality: 'finalized', confirmations: 1 }, () => undefined)).toThrow(
      /finality, confirmations/,
    );
    expect(() => c.watchAddresses([WATCHED], { kinds: ['internal'], finality: 'safe' }, () => undefined)).not.toThrow();
  });
});

describe('createClient: watchAddresses(…).update', () => {
  /** Watches WATCHED on a fresh client; returns the handle once `subscribed` s1 (and a cursor) arrived. */
  async function watching(rec: Recorder, cursorBlock?: number) {
    client = createClient({ url: server.url, WebSocket, backoff: FAST, ...rec.options() });
    const watch = client.watchAddresses([WATCHED], {}, rec.onActivity);
    const side = await server.connection(0);
    const [request] = await side.nextSubscribes(1);
    side.subscribed(request as Msg, 's1');
    if (cursorBlock !== undefined) side.send(activityMsg('s1', cursorBlock, ['0xaa']));
    const wanted = cursorBlock === undefined ? 1 : 2;
    await rec.signal.until(() => rec.activity.length >= wanted, 'subscribed');
    return { watch, side };
  }

  /** Tracks a promise's outcome (poking the server's signal, which every wait here goes through), rejections included. */
  function track<T>(promise: Promise<T>): { value?: T; error?: ClientError } {
    const state: { value?: T; error?: ClientError } = {};
    promise.then(
      (value) => {
        state.value = value;
        server.signal.poke();
      },
      (error: ClientError) => {
        state.error = error;
        server.signal.poke();
      },
    );
    return state;
  }

  /** Waits until a tracked promise settled. */
  function settled(state: { value?: unknown; error?: ClientError }, what: string): Promise<void> {
    return server.signal.until(() => state.value !== undefined || state.error !== undefined, what);
  }

  it('keeps a change made while the link is down and sends it in the resumed subscribe; resolves once subscribed', async () => {
    const rec = new Recorder();
    const { watch, side } = await watching(rec, 4);
    side.ws.terminate();
    await rec.status('closed');
    const outcome = track(watch.update([OTHER]));
    const second = await server.connection(1);
    const [resume] = await second.nextSubscribes(1);
    expect(resume).toMatchObject({ addresses: [WATCHED, OTHER], from: `31337:4:${hash(4)}` });
    expect(outcome).toEqual({});
    expect(watch.addresses).toEqual([WATCHED]); // not confirmed yet
    second.subscribed(resume as Msg, 's2', { recovered: true });
    await rec.status('recovered');
    await settled(outcome, 'the update resolved');
    expect(outcome.value).toEqual({ addresses: 2 });
    expect(watch.addresses).toEqual([WATCHED, OTHER]);
    expect(second.updates()).toEqual([]); // the subscribe carried it
    // And the next reconnect resumes with that set too.
    second.ws.close(1001);
    const third = await server.connection(2);
    const [again] = await third.nextSubscribes(1);
    expect(again).toMatchObject({ addresses: [WATCHED, OTHER] });
  });

  it('holds a change until the subscription is confirmed, then sends it as update', async () => {
    const rec = new Recorder();
    server.autoWelcome = false;
    client = createClient({ url: server.url, WebSocket, backoff: FAST, ...rec.options() });
    const watch = client.watchAddresses([WATCHED], {}, rec.onActivity);
    // Before welcome: it rides on the first subscribe.
    const beforeWelcome = track(watch.update([OTHER], []));
    const side = await server.connection(0);
    side.welcome();
    const [request] = await side.nextSubscribes(1);
    expect(request).toMatchObject({ addresses: [WATCHED, OTHER] });
    // While the subscribe is unanswered: no `sub` to name yet, so it waits for `subscribed`.
    const whileSubscribing = track(watch.update([THIRD], [WATCHED]));
    side.subscribed(request as Msg, 's1');
    const [update] = await side.nextUpdates(1);
    expect(beforeWelcome.value).toEqual({ addresses: 2 });
    expect(update).toMatchObject({ sub: 's1', add: [THIRD], remove: [WATCHED] });
    expect(whileSubscribing).toEqual({});
    side.send({ type: 'updated', id: update?.['id'], sub: 's1', addresses: 2 });
    await settled(whileSubscribing, 'the second update');
    expect(whileSubscribing.value).toEqual({ addresses: 2 });
    expect(watch.addresses).toEqual([OTHER, THIRD]);
  });

  it('rejects a refused update with its code, one change at a time, and keeps the set the gateway has', async () => {
    const rec = new Recorder();
    const { watch, side } = await watching(rec, 4);
    const codes = ['TOO_MANY_ADDRESSES', 'FORBIDDEN', 'OVERLOADED'] as const;
    const outcomes = codes.map(() => track(watch.update([OTHER])));
    const accepted = track(watch.update([THIRD], [WATCHED]));
    for (const [i, code] of codes.entries()) {
      // One in flight at a time: the next is sent only once this one is answered.
      const updates = await side.nextUpdates(i + 1);
      expect(updates).toHaveLength(i + 1);
      side.send({ type: 'error', id: updates[i]?.['id'], code, message: 'no' });
    }
    const updates = await side.nextUpdates(4);
    expect(updates[3]).toMatchObject({ add: [THIRD], remove: [WATCHED] });
    side.send({ type: 'updated', id: updates[3]?.['id'], sub: 's1', addresses: 1 });
    await settled(accepted, 'the accepted update');
    expect(outcomes.map((o) => [o.error?.name, o.error?.code])).toEqual(codes.map((code) => ['ClientError', code]));
    expect(watch.addresses).toEqual([THIRD]);
    expect(rec.errors).toEqual([]); // the promise carries the refusal; the subscription goes on
    side.ws.close(1001);
    const second = await server.connection(1);
    const [resume] = await second.nextSubscribes(1);
    expect(resume).toMatchObject({ addresses: [THIRD], from: `31337:4:${hash(4)}` });
  });

  it('sends an update again after the delay a TRY_AGAIN gives', async () => {
    const rec = new Recorder();
    const { watch, side } = await watching(rec);
    const outcome = track(watch.update([OTHER]));
    const [first] = await side.nextUpdates(1);
    const refusedAt = Date.now();
    side.send({ type: 'error', id: first?.['id'], code: 'TRY_AGAIN', message: 'still resuming', retryAfterMs: 200 });
    const [, again] = await side.nextUpdates(2);
    expect(Date.now() - refusedAt).toBeGreaterThanOrEqual(190);
    expect(again).toMatchObject({ sub: 's1', add: [OTHER], remove: [] });
    expect(again?.['id']).not.toBe(first?.['id']);
    expect(outcome).toEqual({});
    side.send({ type: 'updated', id: again?.['id'], sub: 's1', addresses: 2 });
    await settled(outcome, 'the update');
    expect(outcome.value).toEqual({ addresses: 2 });
  });

  it('an update the link lost on the way is carried by the resumed subscribe', async () => {
    const rec = new Recorder();
    const { watch, side } = await watching(rec, 4);
    const outcome = track(watch.update([OTHER], [WATCHED]));
    await side.nextUpdates(1);
    side.ws.terminate(); // never answered
    const second = await server.connection(1);
    const [resume] = await second.nextSubscribes(1);
    expect(resume).toMatchObject({ addresses: [OTHER], from: `31337:4:${hash(4)}` });
    second.subscribed(resume as Msg, 's2', { recovered: true });
    await settled(outcome, 'the update');
    expect(outcome.value).toEqual({ addresses: 1 });
    expect(watch.addresses).toEqual([OTHER]);
  });

  it('when a resumed subscribe carrying a change is refused, resumes with the confirmed set and sends the change alone', async () => {
    const rec = new Recorder();
    const { watch, side } = await watching(rec, 4);
    side.ws.terminate();
    await rec.status('closed');
    const outcome = track(watch.update([OTHER]));
    const second = await server.connection(1);
    const [carrying] = await second.nextSubscribes(1);
    expect(carrying).toMatchObject({ addresses: [WATCHED, OTHER] });
    second.send({ type: 'error', id: carrying?.['id'], code: 'FORBIDDEN', message: 'not yours: 0x3c44…' });
    const [, plain] = await second.nextSubscribes(2);
    expect(plain).toMatchObject({ addresses: [WATCHED], from: `31337:4:${hash(4)}` });
    second.subscribed(plain as Msg, 's2', { recovered: true });
    await rec.status('recovered');
    const [update] = await second.nextUpdates(1);
    expect(update).toMatchObject({ sub: 's2', add: [OTHER] });
    second.send({ type: 'error', id: update?.['id'], code: 'FORBIDDEN', message: 'not yours: 0x3c44…' });
    await settled(outcome, 'the refusal');
    expect(outcome.error?.code).toBe('FORBIDDEN');
    expect(watch.addresses).toEqual([WATCHED]);
    expect(rec.errors).toEqual([]);
    second.send(activityMsg('s2', 5, ['0xcc']));
    await rec.signal.until(() => rec.trace(rec.activity).includes('activity 5 0xcc'), 'live activity');
  });

  it('rejects with SUBSCRIPTION_ENDED after unsubscribe and CLIENT_CLOSED after close, also what was waiting', async () => {
    const rec = new Recorder();
    const { watch, side } = await watching(rec);
    const inFlight = track(watch.update([OTHER]));
    await side.nextUpdates(1);
    watch();
    await settled(inFlight, 'the rejection');
    expect(inFlight.error?.code).toBe('SUBSCRIPTION_ENDED');
    await expect(watch.update([OTHER])).rejects.toMatchObject({ name: 'ClientError', code: 'SUBSCRIPTION_ENDED' });

    const other = client?.watchAddresses([WATCHED], {}, rec.onActivity);
    if (other === undefined) throw new Error('no client');
    const waiting = track(other.update([THIRD])); // its subscribe is unanswered: the change waits
    client?.close();
    await settled(waiting, 'the rejection');
    expect(waiting.error?.code).toBe('CLIENT_CLOSED');
    await expect(other.update([THIRD])).rejects.toMatchObject({ code: 'CLIENT_CLOSED' });
    expect(side.updates()).toHaveLength(1);
  });

  it('refuses anything but arrays of 0x addresses with a TypeError', async () => {
    const rec = new Recorder();
    const { watch, side } = await watching(rec);
    expect(() => watch.update(['0x12'])).toThrow(TypeError);
    expect(() => watch.update([OTHER], ['nope'])).toThrow(/remove: not an address/);
    expect(() => watch.update(OTHER as unknown as string[])).toThrow(/add: must be an array/);
    expect(() => watch.update([OTHER], null as unknown as string[])).toThrow(TypeError);
    expect(() => watch.update([42 as unknown as string])).toThrow(/not an address: 42/);
    // Nothing was queued or sent: the next good one is the first update.
    const outcome = track(watch.update([], [WATCHED]));
    const [update] = await side.nextUpdates(1);
    expect(update).toMatchObject({ add: [], remove: [WATCHED] });
    side.send({ type: 'updated', id: update?.['id'], sub: 's1', addresses: 0 });
    await settled(outcome, 'the update');
    expect(watch.addresses).toEqual([]);
  });
});
