import { AbiCoder, Interface, id as keccakText, toBeHex, zeroPadValue } from 'ethers';
import { describe, expect, it } from 'vitest';
import type { Hex } from '../domain/types.ts';
import {
  decodeTransfers,
  type RpcLog,
  type SkipReason,
  TRANSFER_BATCH_TOPIC,
  TRANSFER_SINGLE_TOPIC,
  TRANSFER_TOPIC,
} from './decodeTransfers.ts';

const TX: Hex = '0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060';
const TOKEN = '0x5FbDB2315678afecb367f032d93F642f64180aa3';
const ALICE = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';
const BOB = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8';
const OPERATOR = '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC';

const erc20 = new Interface(['event Transfer(address indexed from, address indexed to, uint256 value)']);
const erc721 = new Interface(['event Transfer(address indexed from, address indexed to, uint256 indexed tokenId)']);
const erc1155 = new Interface([
  'event TransferSingle(address indexed operator, address indexed from, address indexed to, uint256 id, uint256 value)',
  'event TransferBatch(address indexed operator, address indexed from, address indexed to, uint256[] ids, uint256[] values)',
]);
const abi = AbiCoder.defaultAbiCoder();

function log(topics: string[], data: string, logIndex = 7, address = TOKEN): RpcLog {
  return { address, topics, data, logIndex: toBeHex(logIndex) };
}

function encoded(iface: Interface, event: string, args: unknown[], logIndex = 7): RpcLog {
  const { topics, data } = iface.encodeEventLog(event, args);
  return log(topics, data, logIndex);
}

/** What ethers decodes from a log: the event's arguments. */
function parseArgs(iface: Interface, raw: RpcLog): unknown[] {
  const parsed = iface.parseLog(raw);
  if (parsed === null) throw new Error('ethers did not recognise the log');
  return [...parsed.args];
}

function decodeWithSkips(logs: unknown): { events: ReturnType<typeof decodeTransfers>; skipped: SkipReason[] } {
  const skipped: SkipReason[] = [];
  const events = decodeTransfers(TX, logs, (_, reason) => skipped.push(reason));
  return { events, skipped };
}

function topicOf(address: string): string {
  return zeroPadValue(address, 32);
}

function hex(n: bigint): string {
  return `0x${n.toString(16)}`;
}

describe('decodeTransfers', () => {
  it('uses the standard event topics', () => {
    expect(TRANSFER_TOPIC).toBe(keccakText('Transfer(address,address,uint256)'));
    expect(TRANSFER_SINGLE_TOPIC).toBe(keccakText('TransferSingle(address,address,address,uint256,uint256)'));
    expect(TRANSFER_BATCH_TOPIC).toBe(keccakText('TransferBatch(address,address,address,uint256[],uint256[])'));
  });

  it('decodes an ERC-20 Transfer as ethers does, with lowercase addresses and a minimal quantity', () => {
    const value = 1_000_000_000_000_000_000_000n;
    const raw = encoded(erc20, 'Transfer', [ALICE, BOB, value], 12);
    const parsed = parseArgs(erc20, raw);
    expect(decodeWithSkips([raw])).toEqual({
      events: [
        {
          kind: 'erc20',
          id: `${TX}:12`,
          txHash: TX,
          logIndex: 12,
          token: TOKEN.toLowerCase(),
          from: String(parsed[0]).toLowerCase(),
          to: String(parsed[1]).toLowerCase(),
          value: hex(parsed[2] as bigint),
        },
      ],
      skipped: [],
    });
  });

  it('writes a zero amount as 0x0 and keeps a mint from the zero address', () => {
    const raw = encoded(erc20, 'Transfer', ['0x0000000000000000000000000000000000000000', BOB, 0n]);
    const [event] = decodeTransfers(TX, [raw]);
    expect(event).toMatchObject({ kind: 'erc20', from: `0x${'0'.repeat(40)}`, value: '0x0' });
  });

  it('decodes an ERC-721 Transfer (tokenId in the fourth topic)', () => {
    const tokenId = 2n ** 255n + 5n;
    const raw = encoded(erc721, 'Transfer', [ALICE, BOB, tokenId], 3);
    expect(decodeTransfers(TX, [raw])).toEqual([
      {
        kind: 'erc721',
        id: `${TX}:3`,
        txHash: TX,
        logIndex: 3,
        token: TOKEN.toLowerCase(),
        from: ALICE.toLowerCase(),
        to: BOB.toLowerCase(),
        tokenId: hex(tokenId),
      },
    ]);
  });

  it('decodes an ERC-1155 TransferSingle with its operator', () => {
    const raw = encoded(erc1155, 'TransferSingle', [OPERATOR, ALICE, BOB, 42n, 10n ** 30n], 0);
    expect(decodeTransfers(TX, [raw])).toEqual([
      {
        kind: 'erc1155',
        id: `${TX}:0`,
        txHash: TX,
        logIndex: 0,
        token: TOKEN.toLowerCase(),
        operator: OPERATOR.toLowerCase(),
        from: ALICE.toLowerCase(),
        to: BOB.toLowerCase(),
        tokenId: '0x2a',
        value: hex(10n ** 30n),
      },
    ]);
  });

  it('decodes each item of an ERC-1155 TransferBatch as ethers does, with ids txHash:logIndex:i', () => {
    const ids = [1n, 2n, 2n ** 200n];
    const values = [5n, 0n, 7n];
    const raw = encoded(erc1155, 'TransferBatch', [OPERATOR, ALICE, BOB, ids, values], 9);
    const parsed = parseArgs(erc1155, raw);
    const parsedIds = parsed[3] as bigint[];
    const parsedValues = parsed[4] as bigint[];
    const events = decodeTransfers(TX, [raw]);
    expect(events.map((e) => e.id)).toEqual([`${TX}:9:0`, `${TX}:9:1`, `${TX}:9:2`]);
    expect(events).toEqual(
      parsedIds.map((tokenId, i) =>
        expect.objectContaining({
          kind: 'erc1155',
          logIndex: 9,
          operator: OPERATOR.toLowerCase(),
          from: ALICE.toLowerCase(),
          to: BOB.toLowerCase(),
          tokenId: hex(tokenId),
          value: hex(parsedValues[i] as bigint),
        }),
      ),
    );
  });

  it('gives no event for an empty TransferBatch', () => {
    expect(decodeWithSkips([encoded(erc1155, 'TransferBatch', [OPERATOR, ALICE, BOB, [], []])])).toEqual({
      events: [],
      skipped: [],
    });
  });

  it('accepts a valid non-canonical batch layout (values array before ids) as an ABI decoder does', () => {
    // Head: offset(ids)=0xa0, offset(values)=0x40; values [3] at 0x40, ids [8] at 0xa0 after a gap word.
    const words = ['a0', '40', '1', '3', '0', '1', '8'].map((w) => w.padStart(64, '0'));
    const raw = log([TRANSFER_BATCH_TOPIC, topicOf(OPERATOR), topicOf(ALICE), topicOf(BOB)], `0x${words.join('')}`);
    const parsed = parseArgs(erc1155, raw);
    expect(decodeTransfers(TX, [raw])).toMatchObject([
      {
        tokenId: hex((parsed[3] as bigint[])[0] as bigint),
        value: hex((parsed[4] as bigint[])[0] as bigint),
      },
    ]);
  });

  it('passes over logs of other events without a reason', () => {
    const approval = new Interface(['event Approval(address indexed owner, address indexed spender, uint256 value)']);
    expect(
      decodeWithSkips([encoded(approval, 'Approval', [ALICE, BOB, 1n]), log([], '0x'), log([keccakText('X()')], '0x')]),
    ).toEqual({ events: [], skipped: [] });
  });

  const word = (n: bigint | number): string => BigInt(n).toString(16).padStart(64, '0');
  const transfer3 = [TRANSFER_TOPIC, topicOf(ALICE), topicOf(BOB)];
  const batchTopics = [TRANSFER_BATCH_TOPIC, topicOf(OPERATOR), topicOf(ALICE), topicOf(BOB)];
  const dirty = `0x${'ff'.repeat(12)}${ALICE.slice(2).toLowerCase()}`;

  it.each<[string, unknown, SkipReason]>([
    [
      'Transfer with nothing indexed (1 topic, 96 bytes)',
      log([TRANSFER_TOPIC], `0x${word(1)}${word(2)}${word(3)}`),
      'transfer-topics',
    ],
    [
      'Transfer with only from indexed (2 topics)',
      log([TRANSFER_TOPIC, topicOf(ALICE)], `0x${word(1)}${word(2)}`),
      'transfer-topics',
    ],
    ['ERC-20 Transfer with short data', log(transfer3, `0x${'00'.repeat(31)}`), 'erc20-data'],
    ['ERC-20 Transfer with empty data', log(transfer3, '0x'), 'erc20-data'],
    ['ERC-20 Transfer with two data words', log(transfer3, `0x${word(1)}${word(2)}`), 'erc20-data'],
    ['ERC-721 Transfer with data', log([...transfer3, topicOf(ALICE)], `0x${word(1)}`), 'erc721-data'],
    [
      'Transfer whose from topic is not an address',
      log([TRANSFER_TOPIC, dirty, topicOf(BOB)], `0x${word(1)}`),
      'address-topic',
    ],
    [
      'TransferSingle with 3 topics',
      log([TRANSFER_SINGLE_TOPIC, topicOf(ALICE), topicOf(BOB)], `0x${word(1)}${word(2)}`),
      'erc1155-topics',
    ],
    [
      'TransferSingle with one data word',
      log([TRANSFER_SINGLE_TOPIC, topicOf(OPERATOR), topicOf(ALICE), topicOf(BOB)], `0x${word(1)}`),
      'erc1155-data',
    ],
    [
      'TransferBatch whose operator topic is not an address',
      log(
        [TRANSFER_BATCH_TOPIC, dirty, topicOf(ALICE), topicOf(BOB)],
        `0x${word(0x40)}${word(0x60)}${word(0)}${word(0)}`,
      ),
      'address-topic',
    ],
    [
      'TransferBatch with arrays of unequal length',
      log(batchTopics, `0x${word(0x40)}${word(0xa0)}${word(2)}${word(1)}${word(2)}${word(1)}${word(9)}`),
      'erc1155-batch-data',
    ],
    [
      'TransferBatch claiming 2^255 items',
      log(batchTopics, `0x${word(0x40)}${word(0x60)}${word(2n ** 255n)}${word(0)}`),
      'erc1155-batch-data',
    ],
    [
      'TransferBatch claiming 2^40 items',
      log(batchTopics, `0x${word(0x40)}${word(0x60)}${word(2n ** 40n)}${word(0)}`),
      'erc1155-batch-data',
    ],
    [
      'TransferBatch with an offset past the data',
      log(batchTopics, `0x${word(0x40)}${word(0x1000)}${word(0)}`),
      'erc1155-batch-data',
    ],
    [
      'TransferBatch with a huge offset',
      log(batchTopics, `0x${word(2n ** 250n)}${word(0x40)}${word(0)}`),
      'erc1155-batch-data',
    ],
    [
      'TransferBatch with an unaligned offset',
      log(batchTopics, `0x${word(0x41)}${word(0x40)}${word(0)}${word(0)}`),
      'erc1155-batch-data',
    ],
    [
      'TransferBatch with data that is not whole words',
      log(batchTopics, `0x${word(0x40)}${word(0x60)}${word(0)}${word(0)}00`),
      'erc1155-batch-data',
    ],
    ['TransferBatch with no data', log(batchTopics, '0x'), 'erc1155-batch-data'],
    ['a removed log', { ...log(transfer3, `0x${word(1)}`), removed: true }, 'malformed'],
    ['a topic that is not 32 bytes', log([TRANSFER_TOPIC, '0x1234', topicOf(BOB)], `0x${word(1)}`), 'malformed'],
    ['data of odd length', log(transfer3, '0x123'), 'malformed'],
    ['data that is not hex', log(transfer3, `0x${'zz'.repeat(32)}`), 'malformed'],
    ['a bad emitter address', log(transfer3, `0x${word(1)}`, 1, '0x1234'), 'malformed'],
    ['a missing logIndex', { address: TOKEN, topics: transfer3, data: `0x${word(1)}` }, 'malformed'],
    [
      'a topic that is not a string',
      log([TRANSFER_TOPIC, 42 as unknown as string, topicOf(BOB)], `0x${word(1)}`),
      'malformed',
    ],
  ])('skips %s (%s) and decodes the logs around it', (_, bad, reason) => {
    const before = encoded(erc20, 'Transfer', [ALICE, BOB, 1n], 1);
    const after = encoded(erc721, 'Transfer', [BOB, ALICE, 2n], 3);
    const { events, skipped } = decodeWithSkips([before, bad, after]);
    expect(skipped).toEqual([reason]);
    expect(events.map((e) => [e.kind, e.logIndex])).toEqual([
      ['erc20', 1],
      ['erc721', 3],
    ]);
  });

  it('never throws on entries that are not logs, and ignores a missing log list', () => {
    expect(decodeWithSkips([null, 42, 'x', { topics: 'nope' }])).toEqual({
      events: [],
      skipped: ['malformed', 'malformed', 'malformed', 'malformed'],
    });
    expect(decodeTransfers(TX, undefined)).toEqual([]);
    expect(decodeTransfers(TX, { length: 3 })).toEqual([]);
  });

  it('classifies a well-formed Transfer by its shape, whoever emitted it', () => {
    const notAToken = '0x000000000000000000000000000000000000dead';
    const raw = { ...encoded(erc20, 'Transfer', [ALICE, BOB, 5n]), address: notAToken };
    expect(decodeTransfers(TX, [raw])).toMatchObject([{ kind: 'erc20', token: notAToken, value: '0x5' }]);
  });

  it('accepts topics and addresses in upper case', () => {
    const raw = encoded(erc20, 'Transfer', [ALICE, BOB, 255n]);
    const upper = {
      ...raw,
      address: TOKEN.toUpperCase().replace('0X', '0x'),
      topics: raw.topics.map((t) => t.toUpperCase().replace('0X', '0x')),
    };
    expect(decodeTransfers(TX, [upper])).toMatchObject([
      { token: TOKEN.toLowerCase(), from: ALICE.toLowerCase(), value: '0xff' },
    ]);
  });

  it('decodes a TransferBatch of many items in bounded time', () => {
    const n = 2000;
    const ids = Array.from({ length: n }, (_, i) => BigInt(i));
    const raw = encoded(erc1155, 'TransferBatch', [OPERATOR, ALICE, BOB, ids, ids]);
    const events = decodeTransfers(TX, [raw]);
    expect(events).toHaveLength(n);
    expect(events[n - 1]).toMatchObject({ id: `${TX}:7:${n - 1}`, tokenId: hex(BigInt(n - 1)) });
    expect(abi.decode(['uint256[]', 'uint256[]'], raw.data)[0]).toHaveLength(n);
  });
});
