import { describe, expect, it } from 'vitest';
import type { ChainBlock, ChainTx, EventKind, Hex, TokenTransferEvent } from '../domain/types.ts';
import { SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import { DeliveryLedger } from './DeliveryLedger.ts';
import { type Encoding, type Frame, unpack } from './encode.ts';
import { Fanout } from './Fanout.ts';

interface Owner {
  readonly encoding: Encoding;
}

const CHAIN = 31_337;
const ALICE: Hex = '0x00000000000000000000000000000000000000a1';
const BOB: Hex = '0x00000000000000000000000000000000000000b0';
const OPERATOR: Hex = '0x00000000000000000000000000000000000000c0';
const TOKEN: Hex = '0x0000000000000000000000000000000000000070';

const hashOf = (n: number): Hex => `0x${n.toString(16).padStart(64, '0')}`;

function tx(index: number, from: Hex, to: Hex, transfers: TokenTransferEvent[] = []): ChainTx {
  return {
    hash: hashOf(0x1000 + index),
    index,
    from,
    to,
    value: '0x0',
    nonce: index,
    status: 1,
    gas: '0x5208',
    input: '0x',
    ...(transfers.length === 0 ? {} : { transfers }),
  };
}

function block(transactions: ChainTx[]): ChainBlock {
  return {
    chainId: CHAIN,
    number: 7,
    hash: hashOf(7),
    parentHash: hashOf(6),
    timestamp: 1_700_000_000,
    miner: ALICE,
    gasUsed: '0x0',
    gasLimit: '0x0',
    transactions,
  };
}

const txHash = hashOf(0x1001);
const erc20: TokenTransferEvent = {
  kind: 'erc20',
  id: `${txHash}:0`,
  txHash,
  logIndex: 0,
  token: TOKEN,
  from: ALICE,
  to: BOB,
  value: '0xde0b6b3a7640000',
};
const erc721: TokenTransferEvent = {
  kind: 'erc721',
  id: `${txHash}:1`,
  txHash,
  logIndex: 1,
  token: TOKEN,
  from: BOB,
  to: ALICE,
  tokenId: '0x7',
};
const batchItem = (i: number): TokenTransferEvent => ({
  kind: 'erc1155',
  id: `${txHash}:2:${i}`,
  txHash,
  logIndex: 2,
  token: TOKEN,
  operator: OPERATOR,
  from: ALICE,
  to: BOB,
  tokenId: `0x${i + 1}`,
  value: '0x1',
});

describe.each(['json', 'msgpack'] as const)('token activity fan-out (%s)', (encoding) => {
  function run(kinds: EventKind[], addresses: Hex[]): Array<Record<string, unknown>> {
    const index = new SubscriptionIndex<Owner>();
    const frames: Frame[] = [];
    const fanout = new Fanout<Owner>(index, (_, f) => frames.push(...f));
    index.add({ encoding }, 's1', CHAIN, { channel: 'activity', kinds: new Set(kinds) }, addresses);
    fanout.publishBlock(
      block([tx(0, ALICE, BOB), tx(1, OPERATOR, TOKEN, [erc20, erc721, batchItem(0), batchItem(1)])]),
      0,
      new DeliveryLedger(),
    );
    return frames.map((f) => (typeof f === 'string' ? JSON.parse(f) : unpack(f)) as Record<string, unknown>);
  }

  it('puts a block’s tx and token events for a watcher into one message, in block order', () => {
    const messages = run(['tx', 'erc20', 'erc721', 'erc1155'], [BOB]);
    expect(messages).toHaveLength(1);
    const events = messages[0]?.['events'] as Array<Record<string, unknown>>;
    expect(events.map((e) => e['id'])).toEqual([hashOf(0x1000), erc20.id, erc721.id, `${txHash}:2:0`, `${txHash}:2:1`]);
    expect(events[1]).toStrictEqual(erc20);
    expect(events[3]).toStrictEqual(batchItem(0));
  });

  it('filters by kind', () => {
    const messages = run(['erc721'], [ALICE, BOB]);
    expect((messages[0]?.['events'] as unknown[]) ?? []).toStrictEqual([erc721]);
  });

  it('does not match the operator of an ERC-1155 transfer or the token contract on token events', () => {
    expect(run(['erc20', 'erc721', 'erc1155'], [OPERATOR, TOKEN])).toEqual([]);
  });
});
