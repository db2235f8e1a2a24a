import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { type Encoding, TestClient, tryUpgrade } from './helpers/client.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';

const GOOD = '0x70997970c51812dc3a010c7d01b50e0d17dc79c8';
const MAX_ADDRESSES = 5;
const MAX_MESSAGE_BYTES = 4096;
const MAX_SUBSCRIPTIONS = 10;
const RATE = 40;

/** Messages that must each get an `error` with the code, on a connection that stays open. */
const CASES: Array<{ name: string; message: unknown; code: string }> = [
  { name: 'JSON that is not an object: an array', message: [1, 2], code: 'BAD_REQUEST' },
  { name: 'JSON that is not an object: a string', message: 'subscribe', code: 'BAD_REQUEST' },
  { name: 'JSON that is not an object: null', message: null, code: 'BAD_REQUEST' },
  { name: 'a map without op', message: { channel: 'blocks' }, code: 'BAD_REQUEST' },
  { name: 'an unknown op', message: { op: 'subscrbe', channel: 'blocks' }, code: 'BAD_REQUEST' },
  { name: 'a subscribe without channel', message: { op: 'subscribe' }, code: 'BAD_REQUEST' },
  {
    name: 'an activity subscribe without addresses',
    message: { op: 'subscribe', channel: 'activity' },
    code: 'BAD_REQUEST',
  },
  { name: 'a mistyped full', message: { op: 'subscribe', channel: 'blocks', full: 'yes' }, code: 'BAD_REQUEST' },
  {
    name: 'a mistyped chainId',
    message: { op: 'subscribe', channel: 'blocks', chainId: '31337' },
    code: 'BAD_REQUEST',
  },
  {
    name: 'addresses that are not a list',
    message: { op: 'subscribe', channel: 'activity', addresses: GOOD },
    code: 'BAD_REQUEST',
  },
  { name: 'an unknown field', message: { op: 'subscribe', channel: 'blocks', ful: true }, code: 'BAD_REQUEST' },
  {
    name: 'an unknown kind',
    message: { op: 'subscribe', channel: 'activity', addresses: [GOOD], kinds: ['nft'] },
    code: 'BAD_REQUEST',
  },
  { name: 'an object id', message: { op: 'ping', id: { a: 1 } }, code: 'BAD_REQUEST' },
  {
    name: 'an address one digit short',
    message: { op: 'subscribe', channel: 'activity', addresses: [GOOD.slice(0, -1)] },
    code: 'BAD_ADDRESS',
  },
  {
    name: 'an address with a non-hex digit',
    message: { op: 'subscribe', channel: 'activity', addresses: [`${GOOD.slice(0, -1)}g`] },
    code: 'BAD_ADDRESS',
  },
  {
    name: 'an address that is a number',
    message: { op: 'subscribe', channel: 'activity', addresses: [12] },
    code: 'BAD_ADDRESS',
  },
  { name: 'a bad address in update', message: { op: 'update', sub: 's1', add: ['0x12'] }, code: 'BAD_ADDRESS' },
  {
    name: 'an unknown sub in update',
    message: { op: 'update', sub: 'nope', add: [GOOD] },
    code: 'UNKNOWN_SUBSCRIPTION',
  },
  { name: 'an unknown sub in unsubscribe', message: { op: 'unsubscribe', sub: 'nope' }, code: 'UNKNOWN_SUBSCRIPTION' },
  { name: 'an unknown chain', message: { op: 'subscribe', channel: 'blocks', chainId: 999 }, code: 'UNKNOWN_CHAIN' },
  { name: 'an unknown channel', message: { op: 'subscribe', channel: 'mempool' }, code: 'UNSUPPORTED' },
  {
    name: 'too many addresses',
    message: {
      op: 'subscribe',
      channel: 'activity',
      addresses: Array.from({ length: MAX_ADDRESSES + 1 }, (_, i) => `0x${String(i + 1).padStart(40, '0')}`),
    },
    code: 'TOO_MANY_ADDRESSES',
  },
];

describe('bad input', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let observer: TestClient;
  let observerSub: string;

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: 1 });
    gateway = await startGateway([
      '--rpc',
      anvil.httpUrl,
      '--poll-interval-ms',
      '100',
      '--max-addresses',
      String(MAX_ADDRESSES),
      '--max-message-bytes',
      String(MAX_MESSAGE_BYTES),
      '--max-subscriptions',
      String(MAX_SUBSCRIPTIONS),
      '--max-requests-per-second',
      String(RATE),
    ]);
    // A well-behaved client that keeps receiving blocks while others misbehave.
    observer = await TestClient.connect(gateway.url, 'msgpack');
    observerSub = await observer.subscribe({ channel: 'blocks' });
  });

  afterAll(async () => {
    observer?.close();
    await gateway?.stop();
    await anvil?.close();
  });

  async function expectStillOpen(client: TestClient): Promise<void> {
    const pong = await client.request({ op: 'ping' });
    expect(pong.type).toBe('pong');
    expect(client.closed).toBeUndefined();
  }

  describe.each(['json', 'msgpack'] as const)('on %s connections', (encoding: Encoding) => {
    it.each(CASES)('answers $name with $code and keeps the connection open', async ({ message, code }) => {
      const client = await TestClient.connect(gateway.url, encoding);
      await client.subscribe({ channel: 'activity', addresses: [GOOD] });
      const from = client.messages.length;
      client.send(message);
      const error = await client.next((m) => m.type === 'error', 10_000, from);
      expect(error['code']).toBe(code);
      expect(error['message']).toBeTypeOf('string');
      await expectStillOpen(client);
      client.close();
    });

    it('echoes the id of a request it rejects', async () => {
      const client = await TestClient.connect(gateway.url, encoding);
      const reply = await client.request({ op: 'unsubscribe', sub: 'nope' });
      expect(reply).toMatchObject({ type: 'error', code: 'UNKNOWN_SUBSCRIPTION' });
      client.close();
    });

    it('refuses an update past the address limit and keeps the subscription as it was', async () => {
      const client = await TestClient.connect(gateway.url, encoding);
      const sub = await client.subscribe({ channel: 'activity', addresses: [GOOD] });
      const many = Array.from({ length: MAX_ADDRESSES }, (_, i) => `0x${String(i + 1).padStart(40, 'a')}`);
      const refused = await client.request({ op: 'update', sub, add: many });
      expect(refused).toMatchObject({ type: 'error', code: 'TOO_MANY_ADDRESSES' });
      const kept = await client.request({ op: 'update', sub, add: many.slice(0, MAX_ADDRESSES - 1) });
      expect(kept).toMatchObject({ type: 'updated', sub, addresses: MAX_ADDRESSES });
      client.close();
    });
  });

  it('answers bytes that are not MessagePack with BAD_REQUEST', async () => {
    const client = await TestClient.connect(gateway.url, 'msgpack');
    for (const bytes of [Buffer.from([0xc1]), Buffer.from([0x82, 0xa2, 0x6f, 0x70]), Buffer.from('hello world')]) {
      const from = client.messages.length;
      client.sendRaw(bytes, true);
      expect(await client.next((m) => m.type === 'error', 10_000, from)).toMatchObject({ code: 'BAD_REQUEST' });
    }
    await expectStillOpen(client);
    client.close();
  });

  it('answers text that is not JSON with BAD_REQUEST', async () => {
    const client = await TestClient.connect(gateway.url, 'json');
    client.sendRaw('{"op":"ping"', false);
    expect(await client.next((m) => m.type === 'error')).toMatchObject({ code: 'BAD_REQUEST' });
    await expectStillOpen(client);
    client.close();
  });

  it('refuses a subscription past the limit with TOO_MANY_SUBSCRIPTIONS', async () => {
    const client = await TestClient.connect(gateway.url, 'json');
    const limit = MAX_SUBSCRIPTIONS;
    for (let i = 0; i < limit; i++) client.send({ op: 'subscribe', channel: 'blocks', id: i });
    await client.next((m) => m['id'] === limit - 1 && m.type === 'subscribed', 10_000);
    const reply = await client.request({ op: 'subscribe', channel: 'blocks' });
    expect(reply).toMatchObject({ type: 'error', code: 'TOO_MANY_SUBSCRIPTIONS' });
    client.close();
  });

  it('reports its limits in welcome', async () => {
    const client = await TestClient.connect(gateway.url, 'json');
    expect(client.messages[0]).toMatchObject({
      type: 'welcome',
      protocol: 1,
      limits: { maxAddresses: MAX_ADDRESSES, maxMessageBytes: MAX_MESSAGE_BYTES },
    });
    client.close();
  });

  it('closes a connection that sends an oversized frame with 1009', async () => {
    for (const encoding of ['json', 'msgpack'] as const) {
      const client = await TestClient.connect(gateway.url, encoding);
      client.send({ op: 'ping', id: 'x'.repeat(MAX_MESSAGE_BYTES + 100) });
      expect((await client.waitClose()).code).toBe(1009);
    }
  });

  it('cuts off a frame far past the limit without reading it', async () => {
    const client = await TestClient.connect(gateway.url, 'msgpack');
    client.sendRaw(Buffer.alloc(MAX_MESSAGE_BYTES * 64), true);
    expect((await client.waitClose()).code).not.toBe(1000);
  });

  it('answers a burst past the request rate with RATE_LIMITED and stays open', async () => {
    const client = await TestClient.connect(gateway.url, 'json');
    for (let i = 0; i < RATE + 10; i++) client.send({ op: 'ping', id: i });
    const limited = await client.next((m) => m['code'] === 'RATE_LIMITED');
    expect(limited.type).toBe('error');
    const pongs = await client.next((m) => m.type === 'pong' && m['id'] === RATE - 1);
    expect(pongs.type).toBe('pong');
    expect(client.closed).toBeUndefined();
    client.close();
  });

  it('closes a client that keeps flooding with 4029', async () => {
    const client = await TestClient.connect(gateway.url, 'json');
    for (let i = 0; i < RATE * 5; i++) client.send({ op: 'ping', id: i });
    expect((await client.waitClose()).code).toBe(4029);
  });

  it('kept delivering every block to the other client throughout', async () => {
    const before = observer.of(observerSub, 'block').length;
    await observer.next((m) => m['sub'] === observerSub && m.type === 'block', 10_000, observer.messages.length);
    const numbers = observer.of(observerSub, 'block').map((m) => m['number'] as number);
    expect(numbers.length).toBeGreaterThan(before);
    expect(numbers).toEqual(numbers.map((_, i) => (numbers[0] as number) + i));
    expect(observer.closed).toBeUndefined();
  });
});

describe('connections per address', () => {
  it('refuses the upgrade past the limit with HTTP 429, and admits again once one closes', async () => {
    const anvil = await startAnvil({ noMining: true });
    const gateway = await startGateway(['--rpc', anvil.httpUrl, '--max-connections-per-ip', '2']);
    try {
      const first = await TestClient.connect(gateway.url, 'json');
      const second = await TestClient.connect(gateway.url, 'json');
      expect(first.messages[0]).toMatchObject({ limits: { maxConnectionsPerIp: 2 } });
      expect(await upgradeStatus(gateway.url)).toBe(429);
      first.close();
      await first.waitClose();
      // The server handles the close on its own turn: try again until it has (bounded).
      let status = 0;
      for (let attempt = 0; attempt < 50 && status !== 101; attempt++) status = await upgradeStatus(gateway.url);
      expect(status).toBe(101);
      second.close();
    } finally {
      await gateway.stop();
      await anvil.close();
    }
  });
});

/** The HTTP status of a WebSocket upgrade to `url` (101 when it opened; closed at once). */
async function upgradeStatus(url: string): Promise<number> {
  const upgrade = await tryUpgrade(url);
  upgrade.ws?.close();
  return upgrade.status;
}
