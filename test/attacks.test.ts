import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { TestClient } from './helpers/client.ts';
import { sharedGraph } from './helpers/fuzzFrames.ts';
import { percentile, rssMB } from './helpers/fuzzSession.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';

const standard = new Packr({ useRecords: false, variableMapSize: true });
const TRIES = 20;
/** The bound of issue 10 on the median time from sending an attack frame to its error reply. */
const MEDIAN_REPLY_MS = 10;
/** RSS growth allowed over all tries of one attack. */
const RSS_GROWTH_MB = 8;

/** `{op:"subscribe", channel:"activity", addresses: <raw>}` as MessagePack, with `raw` as it is. */
function subscribeWith(raw: readonly number[]): Buffer {
  const prefix = standard.pack({ op: 'subscribe', channel: 'activity' });
  return Buffer.from([0x83, ...prefix.subarray(1), ...standard.pack('addresses'), ...raw]);
}

/** A ~120-byte subscribe whose value is a chain of 16 array 32 headers, each claiming 5,000,000 elements. */
function nestedClaims(): Buffer {
  const chain: number[] = [];
  for (let i = 0; i < 16; i++) chain.push(0xdd, 0x00, 0x4c, 0x4b, 0x40);
  return subscribeWith(chain);
}

/** A ~470-byte subscribe of msgpackr structured-clone references: 29 arrays, a tree 2^29 wide. */
function sharedReferences(): Buffer {
  const packr = new Packr({ structuredClone: true });
  return Buffer.from(packr.pack({ op: 'subscribe', channel: 'activity', addresses: sharedGraph(29) }));
}

const ATTACKS: ReadonlyArray<{ name: string; frame: () => Buffer | string; binary: boolean; size: [number, number] }> =
  [
    { name: 'nested array 32 headers claiming millions', frame: nestedClaims, binary: true, size: [100, 140] },
    { name: 'msgpackr structured-clone shared references', frame: sharedReferences, binary: true, size: [440, 500] },
    {
      name: 'JSON nested 100,000 deep',
      frame: () => `{"op":"subscribe","channel":"activity","addresses":${'['.repeat(100_000)}`,
      binary: false,
      size: [100_000, 100_100],
    },
    {
      name: 'a JSON map of 5,000 keys',
      frame: () => `{"op":"ping",${Array.from({ length: 5_000 }, (_, i) => `"k${i}":0`).join(',')}}`,
      binary: false,
      size: [40_000, 50_000],
    },
  ];

describe('single-frame attacks', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let observer: TestClient;
  let observerSub: string;

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: 1 });
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--max-requests-per-second', '1000']);
    // A well-behaved client that must keep receiving every block.
    observer = await TestClient.connect(gateway.url, 'msgpack');
    observerSub = await observer.subscribe({ channel: 'blocks' });
    await observer.next((m) => m['sub'] === observerSub && m.type === 'block', 10_000);
  });

  afterAll(async () => {
    observer?.close();
    await gateway?.stop();
    await anvil?.close();
  });

  it.each(ATTACKS)('answers $name with BAD_REQUEST in under 10 ms, stays open and does not grow', async (attack) => {
    const frame = attack.frame();
    const size = typeof frame === 'string' ? Buffer.byteLength(frame) : frame.length;
    expect(size).toBeGreaterThanOrEqual(attack.size[0]);
    expect(size).toBeLessThanOrEqual(attack.size[1]);
    const pid = gateway.process.pid as number;
    const client = await TestClient.connect(gateway.url, attack.binary ? 'msgpack' : 'json');
    const rssBefore = rssMB(pid);
    const replyMs: number[] = [];
    for (let i = 0; i < TRIES; i++) {
      const from = client.messages.length;
      const sent = performance.now();
      client.sendRaw(frame, attack.binary);
      const error = await client.next((m) => m.type === 'error', 10_000, from);
      replyMs.push(performance.now() - sent);
      expect(error['code']).toBe('BAD_REQUEST');
      expect((error['message'] as string).length).toBeLessThanOrEqual(200);
      // The connection stays open: a ping gets its pong (and resets the count of malformed frames).
      expect((await client.request({ op: 'ping' })).type).toBe('pong');
    }
    const rssAfter = rssMB(pid);
    console.log(
      `${attack.name}: ${size} bytes, error after ${percentile(replyMs, 50).toFixed(2)} ms (median of ${TRIES}), max ${Math.max(...replyMs).toFixed(2)} ms, RSS ${(rssAfter - rssBefore).toFixed(1)} MB`,
    );
    expect(client.closed).toBeUndefined();
    expect(percentile(replyMs, 50)).toBeLessThan(MEDIAN_REPLY_MS);
    expect(rssAfter - rssBefore).toBeLessThan(RSS_GROWTH_MB);
    client.close();
  });

  it('closes with 1008 a connection that sends one attack frame after another', async () => {
    const client = await TestClient.connect(gateway.url, 'msgpack');
    const frame = nestedClaims();
    for (let i = 0; i < 40 && client.closed === undefined; i++) {
      client.sendRaw(frame, true);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const closed = await client.waitClose();
    expect(closed.code).toBe(1008);
    expect(client.messages.filter((m) => m['code'] === 'BAD_REQUEST')).toHaveLength(16);
  });

  it('kept delivering every block to the observer, and the gateway is still up', async () => {
    const from = observer.messages.length;
    await observer.next((m) => m['sub'] === observerSub && m.type === 'block', 10_000, from);
    const numbers = observer.of(observerSub, 'block').map((m) => m['number'] as number);
    expect(numbers.length).toBeGreaterThan(1);
    expect(numbers).toEqual(numbers.map((_, i) => (numbers[0] as number) + i));
    expect(observer.closed).toBeUndefined();
    expect((await fetch(`${gateway.httpUrl}/healthz`)).status).toBe(200);
    const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/^blockcast_transport_server_closes_total\{endpoint="v1",reason="malformed"\} 1$/m);
  });
});
