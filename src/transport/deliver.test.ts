import { afterEach, describe, expect, it } from 'vitest';
import { type Message, TestClient } from '../../test/helpers/client.ts';
import type { ChainBlock, Hex } from '../domain/types.ts';
import { DeliveryLedger } from '../fanout/DeliveryLedger.ts';
import { Fanout } from '../fanout/Fanout.ts';
import { SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import { createMetrics } from '../metrics/metrics.ts';
import { type Connection, createServer, type Server } from './createServer.ts';

const CHAIN = 31_337;
const MAX_BACKPRESSURE_BYTES = 262_144;
/** Each block message carries this much transaction input (hex characters), so buffers fill fast. */
const INPUT_CHARS = 131_072;
/** Blocks published at most before the slow reader must have been closed. */
const MAX_BLOCKS = 300;

function hash(n: number): Hex {
  return `0x${n.toString(16).padStart(64, '0')}`;
}

function bigBlock(number: number): ChainBlock {
  return {
    chainId: CHAIN,
    number,
    hash: hash(number),
    parentHash: hash(number - 1),
    timestamp: 1_700_000_000 + number,
    miner: '0x00000000000000000000000000000000000000c0',
    gasUsed: '0x5208',
    gasLimit: '0x1c9c380',
    transactions: [
      {
        hash: hash(0x10_000 + number),
        index: 0,
        from: '0x00000000000000000000000000000000000000a1',
        to: '0x00000000000000000000000000000000000000b0',
        value: '0x1',
        nonce: number,
        status: 1,
        gas: '0x5208',
        gasPrice: '0x1',
        input: `0x${'ab'.repeat(INPUT_CHARS / 2)}`,
      },
    ],
  };
}

function blockNumbers(client: TestClient, sub: string): number[] {
  return client.of(sub, 'block').map((m: Message) => m['number'] as number);
}

describe('Server.deliver with a subscriber that stops reading', () => {
  let server: Server | undefined;
  const clients: TestClient[] = [];

  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
    server?.close();
    server = undefined;
  });

  it('keeps writing every block to the reader that reads, and closes the one that stopped with 4008', async () => {
    const index = new SubscriptionIndex<Connection>();
    const metrics = createMetrics();
    server = await createServer({
      host: '127.0.0.1',
      port: 0,
      idleTimeoutSec: 120,
      maxConfirmations: 64,
      limits: {
        maxAddresses: 100,
        maxSubscriptions: 10,
        maxMessageBytes: 65_536,
        maxBackpressureBytes: MAX_BACKPRESSURE_BYTES,
        maxRequestsPerSecond: 100,
        maxConnectionsPerIp: 0,
      },
      capacity: { maxConnections: 1000, maxWatchedAddresses: 1000 },
      index,
      metrics,
      chains: {
        chainIds: () => [CHAIN],
        head: () => undefined,
        unready: () => undefined,
        resume: (_sub, _cursor, _maxBytes, onDone) => {
          onDone(false);
          return { status: 'done', cancel: () => undefined };
        },
        release: () => undefined,
        features: () => ({ finality: undefined, internal: undefined }),
        retryAfterMs: () => 1000,
        position: () => undefined,
      },
    });
    const fanout = new Fanout(index, server.deliver);
    const url = `ws://127.0.0.1:${server.port}/v1`;

    // The slow reader subscribes first, so fan-out writes to it before the fast one every block.
    const slow = await TestClient.connect(url, 'msgpack');
    const fast = await TestClient.connect(url, 'msgpack');
    clients.push(slow, fast);
    const slowSub = await slow.subscribe({ channel: 'blocks', full: true, fullInput: true });
    const fastSub = await fast.subscribe({ channel: 'blocks', full: true, fullInput: true });
    slow.ws.pause();

    let published = 0;
    for (let n = 1; n <= MAX_BLOCKS && index.blockSubscribers(CHAIN).size === 2; n++) {
      fanout.publishBlock(bigBlock(n), 0, new DeliveryLedger());
      published = n;
      // The fast reader has each block before the next is published: nothing waits on the slow one.
      await fast.next((m) => m.type === 'block' && m['number'] === n, 10_000);
    }
    expect(index.blockSubscribers(CHAIN).size).toBe(1);
    expect(published).toBeLessThan(MAX_BLOCKS);

    // A few more blocks after the close: the fast reader still gets them, the closed one nothing.
    for (let n = published + 1; n <= published + 3; n++) {
      fanout.publishBlock(bigBlock(n), 0, new DeliveryLedger());
      await fast.next((m) => m.type === 'block' && m['number'] === n, 10_000);
    }
    expect(blockNumbers(fast, fastSub)).toEqual(Array.from({ length: published + 3 }, (_, i) => i + 1));

    // Once it reads again, the slow reader finds what it was sent, in order, then the close frame.
    slow.ws.resume();
    const closed = await slow.waitClose(10_000);
    expect(closed.code).toBe(4008);
    const got = blockNumbers(slow, slowSub);
    expect(got).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
    expect(got.length).toBeLessThan(published);

    const closes = await metrics.closes.get();
    expect(closes.values.find((v) => v.labels['reason'] === 'slow_consumer')?.value).toBe(1);
  });
});
