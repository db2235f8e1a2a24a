import { zeroPadValue } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TRANSFER_BATCH_TOPIC, TRANSFER_SINGLE_TOPIC, TRANSFER_TOPIC } from '../src/ingest/decodeTransfers.ts';
import type { TestChain } from './helpers/chain.ts';
import { artifact, call, deploy, deployedAddress } from './helpers/contracts.ts';
import type { GatewayProcess } from './helpers/gateway.ts';
import { type Stack, startStack } from './helpers/stack.ts';
import { Watcher } from './helpers/watcher.ts';

const word = (n: bigint | number): string => BigInt(n).toString(16).padStart(64, '0');
const data = (...words: Array<bigint | number>): string => `0x${words.map(word).join('')}`;

// The rule under test (docs/PROTOCOL.md, "Token transfers"): a log is classified by its shape
// alone; one with a token signature and any other shape gives no event; nothing stops ingest.
describe.each([
  ['json', 'http'],
  ['msgpack', 'ws'],
] as const)('malformed and look-alike token logs (%s frames, %s RPC)', (encoding, transport) => {
  let stack: Stack;
  let gateway: GatewayProcess;
  let chain: TestChain;
  let emitter: string;

  beforeAll(async () => {
    artifact('LogEmitter');
    stack = await startStack({ node: { noMining: true }, transport });
    ({ gateway, chain } = stack);
    const hash = await deploy(chain, 9, 'LogEmitter');
    await chain.mine();
    emitter = await deployedAddress(chain, hash);
  });

  afterAll(async () => {
    await stack?.close();
  });

  it('delivers well-formed look-alikes by shape, skips every malformed log, and keeps ingesting', async () => {
    const [x, y] = [chain.address(0), chain.address(1)];
    const tx = zeroPadValue(x, 32);
    const ty = zeroPadValue(y, 32);
    const dirtyX = `0x${'ff'.repeat(12)}${x.slice(2)}`;
    const operator = zeroPadValue(emitter, 32);
    const logs: Array<{ topics: string[]; data: string; expect: 'event' | 'skipped' | 'other' }> = [
      // 0: a well-formed Transfer from a contract that is no token: classified as erc20 by shape.
      { topics: [TRANSFER_TOPIC, tx, ty], data: data(5), expect: 'event' },
      { topics: [TRANSFER_TOPIC], data: data(BigInt(x), BigInt(y), 5), expect: 'skipped' },
      { topics: [TRANSFER_TOPIC, tx], data: data(BigInt(y), 5), expect: 'skipped' },
      { topics: [TRANSFER_TOPIC, tx, ty], data: `0x${'00'.repeat(16)}`, expect: 'skipped' },
      { topics: [TRANSFER_TOPIC, tx, ty], data: data(5, 6), expect: 'skipped' },
      { topics: [TRANSFER_TOPIC, tx, ty, zeroPadValue('0x09', 32)], data: data(1), expect: 'skipped' },
      { topics: [TRANSFER_TOPIC, dirtyX, ty], data: data(5), expect: 'skipped' },
      { topics: [TRANSFER_SINGLE_TOPIC, operator, tx], data: data(1, 2), expect: 'skipped' },
      { topics: [TRANSFER_SINGLE_TOPIC, operator, tx, ty], data: data(1), expect: 'skipped' },
      // TransferBatch with ids [1, 2] and values [3]; one claiming 2^255 items; one pointing past its data.
      {
        topics: [TRANSFER_BATCH_TOPIC, operator, tx, ty],
        data: data(0x40, 0xa0, 2, 1, 2, 1, 3),
        expect: 'skipped',
      },
      { topics: [TRANSFER_BATCH_TOPIC, operator, tx, ty], data: data(0x40, 0x60, 2n ** 255n, 0), expect: 'skipped' },
      { topics: [TRANSFER_BATCH_TOPIC, operator, tx, ty], data: data(0x40, 0x1000, 0), expect: 'skipped' },
      // 12: a well-formed ERC-721 Transfer; 13: a well-formed TransferBatch of two items.
      { topics: [TRANSFER_TOPIC, tx, ty, zeroPadValue('0x09', 32)], data: '0x', expect: 'event' },
      {
        topics: [TRANSFER_BATCH_TOPIC, operator, tx, ty],
        data: data(0x40, 0xa0, 2, 1, 2, 2, 3, 4),
        expect: 'event',
      },
      // 14: no topics at all; 15: some other event about x and y.
      { topics: [], data: data(1), expect: 'other' },
      { topics: [zeroPadValue('0x1234', 32), tx, ty], data: data(1), expect: 'other' },
    ];
    const a = await Watcher.start(gateway.url, encoding, [x]);
    const b = await Watcher.start(gateway.url, encoding, [y]);
    const emitted = await call(chain, 5, 'LogEmitter', emitter, 'emitLogs', [
      logs.map((l) => ({ topics: l.topics, data: l.data })),
    ]);
    const block = await chain.mine();
    const receipt = await chain.receipt(emitted);
    expect(receipt.status).toBe(1);
    expect(receipt.logs).toHaveLength(logs.length);
    const logIndex = (i: number): number => (receipt.logs[i] as { index: number }).index;

    // Ingest goes on: the next block, a plain transfer, arrives as usual.
    const after = await chain.transfer(0, y, 77n);
    const next = await chain.mine();
    const barrier = await chain.mine();
    await Promise.all([a.through(barrier), b.through(barrier)]);

    const expected = [
      {
        kind: 'erc20',
        id: `${emitted}:${logIndex(0)}`,
        txHash: emitted,
        logIndex: logIndex(0),
        token: emitter,
        from: x,
        to: y,
        value: '0x5',
      },
      {
        kind: 'erc721',
        id: `${emitted}:${logIndex(12)}`,
        txHash: emitted,
        logIndex: logIndex(12),
        token: emitter,
        from: x,
        to: y,
        tokenId: '0x9',
      },
      ...[0, 1].map((i) => ({
        kind: 'erc1155',
        id: `${emitted}:${logIndex(13)}:${i}`,
        txHash: emitted,
        logIndex: logIndex(13),
        token: emitter,
        operator: emitter,
        from: x,
        to: y,
        tokenId: `0x${i + 1}`,
        value: `0x${i + 3}`,
      })),
    ];
    // The emitting transaction is neither x's nor y's: they get the decoded events only.
    expect(a.eventsAt(block)).toEqual(expected);
    expect(b.eventsAt(block)).toEqual(expected);
    expect(logs.filter((l) => l.expect === 'event')).toHaveLength(3);
    for (const watcher of [a, b]) {
      expect(watcher.eventsAt(next)).toEqual([expect.objectContaining({ kind: 'tx', txHash: after, value: '0x4d' })]);
      const numbers = watcher.client.of(watcher.blocksSub, 'block').map((m) => m['number'] as number);
      expect(numbers.filter((n) => n >= block)).toEqual([block, next, barrier]);
      watcher.close();
    }
  });
});
