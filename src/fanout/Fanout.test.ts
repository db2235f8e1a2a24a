import { describe, expect, it } from 'vitest';
import { toCursor } from '../domain/cursor.ts';
import type { ChainBlock, ChainTx, EventKind, Hex } from '../domain/types.ts';
import {
  HEADER_DEPTH,
  type Subscription,
  type SubscriptionFilter,
  SubscriptionIndex,
} from '../index/SubscriptionIndex.ts';
import { DeliveryLedger } from './DeliveryLedger.ts';
import { type Encoding, type Frame, unpack } from './encode.ts';
import { Fanout } from './Fanout.ts';

/** The delivery depths of a block at the head: plain blocks (from the header), then everything else. */
const AT_HEAD = [HEADER_DEPTH, 0];

interface Owner {
  readonly encoding: Encoding;
}

type Message = Record<string, unknown>;

const CHAIN = 31_337;
const ALICE: Hex = '0x00000000000000000000000000000000000000a1';
const BOB: Hex = '0x00000000000000000000000000000000000000b0';
const CAROL: Hex = '0x00000000000000000000000000000000000000c0';
const DAVE: Hex = '0x00000000000000000000000000000000000000d0';
const CREATED: Hex = '0x00000000000000000000000000000000000000ce';
const LONG_INPUT: Hex = `0xa9059cbb${'00'.repeat(32)}${'11'.repeat(32)}`;

function hash(n: number): Hex {
  return `0x${n.toString(16).padStart(64, '0')}`;
}

function tx(index: number, from: Hex, to: Hex | null, extra: Partial<ChainTx> = {}): ChainTx {
  return {
    hash: hash(0x1000 + index),
    index,
    from,
    to,
    value: '0xde0b6b3a7640000',
    nonce: index,
    status: 1,
    gas: '0x5208',
    maxFeePerGas: '0x77359400',
    maxPriorityFeePerGas: '0x3b9aca00',
    input: '0x',
    ...extra,
  };
}

/** A copy of a transaction without some optional fields (as a legacy or receipt-less tx has). */
function omit(transaction: ChainTx, ...keys: ReadonlyArray<keyof ChainTx>): ChainTx {
  const copy: Record<string, unknown> = { ...transaction };
  for (const key of keys) delete copy[key];
  return copy as unknown as ChainTx;
}

function block(transactions: readonly ChainTx[], chainId = CHAIN): ChainBlock {
  return {
    chainId,
    number: 42,
    hash: hash(42),
    parentHash: hash(41),
    timestamp: 1_700_000_000,
    miner: CAROL,
    gasUsed: '0xa410',
    gasLimit: '0x1c9c380',
    baseFeePerGas: '0x7',
    transactions,
  };
}

const LEDGER = new DeliveryLedger<Subscription<Owner>>();

const BLOCKS: SubscriptionFilter = { channel: 'blocks', full: false, fullInput: false };
const FULL: SubscriptionFilter = { channel: 'blocks', full: true, fullInput: false };
const FULL_INPUT: SubscriptionFilter = { channel: 'blocks', full: true, fullInput: true };
const ACTIVITY: SubscriptionFilter = { channel: 'activity', kinds: new Set<EventKind>(['tx']) };

function decode(frame: Frame): Message {
  return (typeof frame === 'string' ? JSON.parse(frame) : unpack(frame)) as Message;
}

/** A fan-out over a real index whose deliveries are recorded, decoded, per call. */
function setup(): {
  index: SubscriptionIndex<Owner>;
  fanout: Fanout<Owner>;
  calls: Array<{ owner: Owner; frames: readonly Frame[] }>;
  received: (owner: Owner) => Message[];
} {
  const index = new SubscriptionIndex<Owner>();
  const calls: Array<{ owner: Owner; frames: readonly Frame[] }> = [];
  const fanout = new Fanout(index, (owner, frames) => {
    calls.push({ owner, frames });
  });
  const received = (owner: Owner): Message[] =>
    calls.filter((call) => call.owner === owner).flatMap((call) => call.frames.map(decode));
  return { index, fanout, calls, received };
}

describe('Fanout.publishBlock: activity', () => {
  it('delivers one message with the event once when a tx has from and to both watched by one subscription', () => {
    const { index, fanout, received } = setup();
    const owner: Owner = { encoding: 'json' };
    index.add(owner, 's1', CHAIN, ACTIVITY, [ALICE, BOB]);
    const result = fanout.publishBlock(block([tx(0, ALICE, BOB)]), AT_HEAD, LEDGER);
    const messages = received(owner);
    expect(messages).toHaveLength(1);
    expect(messages[0]?.['events']).toHaveLength(1);
    expect(result.activityMessages).toBe(1);
  });

  it('delivers one message per subscription per block, holding every match of the block', () => {
    const { index, fanout, received } = setup();
    const owner: Owner = { encoding: 'msgpack' };
    index.add(owner, 's1', CHAIN, ACTIVITY, [ALICE]);
    fanout.publishBlock(
      block([tx(0, ALICE, BOB), tx(1, CAROL, ALICE), tx(2, BOB, CAROL), tx(3, ALICE, ALICE)]),
      AT_HEAD,
      LEDGER,
    );
    const messages = received(owner);
    expect(messages).toHaveLength(1);
    const events = messages[0]?.['events'] as Array<{ txIndex: number }>;
    expect(events.map((e) => e.txIndex)).toEqual([0, 1, 3]);
  });

  it('gives the exact activity message of PROTOCOL.md', () => {
    const { index, fanout, received } = setup();
    const owner: Owner = { encoding: 'json' };
    index.add(owner, 's7', CHAIN, ACTIVITY, [BOB]);
    const b = block([tx(0, ALICE, BOB, { status: 0 })]);
    fanout.publishBlock(b, AT_HEAD, LEDGER);
    expect(received(owner)).toStrictEqual([
      {
        type: 'activity',
        sub: 's7',
        chainId: CHAIN,
        block: { number: 42, hash: hash(42), timestamp: 1_700_000_000 },
        cursor: toCursor(CHAIN, b),
        events: [
          {
            kind: 'tx',
            id: hash(0x1000),
            txHash: hash(0x1000),
            txIndex: 0,
            from: ALICE,
            to: BOB,
            value: '0xde0b6b3a7640000',
            nonce: 0,
            status: 0,
          },
        ],
      },
    ]);
  });

  it('orders events by tx index, not by the order the addresses were watched', () => {
    const { index, fanout, received } = setup();
    const owner: Owner = { encoding: 'json' };
    index.add(owner, 's1', CHAIN, ACTIVITY, [DAVE, BOB, ALICE]);
    fanout.publishBlock(block([tx(0, ALICE, CAROL), tx(1, CAROL, BOB), tx(2, DAVE, CAROL)]), AT_HEAD, LEDGER);
    const events = received(owner)[0]?.['events'] as Array<{ txIndex: number }>;
    expect(events.map((e) => e.txIndex)).toEqual([0, 1, 2]);
  });

  it('sends nothing to a subscriber watching an unrelated address', () => {
    const { index, fanout, calls } = setup();
    const watcher: Owner = { encoding: 'json' };
    const bystander: Owner = { encoding: 'msgpack' };
    index.add(watcher, 's1', CHAIN, ACTIVITY, [ALICE]);
    index.add(bystander, 's1', CHAIN, ACTIVITY, [DAVE]);
    const result = fanout.publishBlock(block([tx(0, ALICE, BOB)]), AT_HEAD, LEDGER);
    expect(calls.map((call) => call.owner)).toEqual([watcher]);
    expect(result.connections).toBe(1);
  });

  it('sends nothing to a watcher of the same address on another chain', () => {
    const { index, fanout, calls } = setup();
    index.add({ encoding: 'json' }, 's1', CHAIN + 1, ACTIVITY, [ALICE]);
    index.add({ encoding: 'json' }, 's2', CHAIN + 1, BLOCKS);
    const result = fanout.publishBlock(block([tx(0, ALICE, BOB)]), AT_HEAD, LEDGER);
    expect(calls).toEqual([]);
    expect(result).toEqual({
      blockMessages: 0,
      activityMessages: 0,
      blockBytes: 0,
      activityBytes: 0,
      finalityMessages: 0,
      finalityBytes: 0,
      connections: 0,
    });
  });

  it('sends nothing to an activity subscription whose kinds leave out tx', () => {
    const { index, fanout, calls } = setup();
    index.add({ encoding: 'json' }, 's1', CHAIN, { channel: 'activity', kinds: new Set<EventKind>(['erc20']) }, [
      ALICE,
    ]);
    fanout.publishBlock(block([tx(0, ALICE, BOB)]), AT_HEAD, LEDGER);
    expect(calls).toEqual([]);
  });

  it('matches a contract creation (to null) to a watcher of the created contract', () => {
    const { index, fanout, received } = setup();
    const owner: Owner = { encoding: 'msgpack' };
    index.add(owner, 's1', CHAIN, ACTIVITY, [CREATED]);
    fanout.publishBlock(block([tx(0, ALICE, null, { contractAddress: CREATED, input: LONG_INPUT })]), AT_HEAD, LEDGER);
    const events = received(owner)[0]?.['events'];
    expect(events).toStrictEqual([
      {
        kind: 'tx',
        id: hash(0x1000),
        txHash: hash(0x1000),
        txIndex: 0,
        from: ALICE,
        to: null,
        value: '0xde0b6b3a7640000',
        nonce: 0,
        status: 1,
        contractAddress: CREATED,
      },
    ]);
  });

  it('gives a creation watched by its sender and its contract one event', () => {
    const { index, fanout, received } = setup();
    const owner: Owner = { encoding: 'json' };
    index.add(owner, 's1', CHAIN, ACTIVITY, [ALICE, CREATED]);
    fanout.publishBlock(block([tx(0, ALICE, null, { contractAddress: CREATED })]), AT_HEAD, LEDGER);
    expect(received(owner)[0]?.['events']).toHaveLength(1);
  });

  it('delivers to every subscription watching a matched address', () => {
    const { index, fanout, received } = setup();
    const one: Owner = { encoding: 'json' };
    const two: Owner = { encoding: 'msgpack' };
    index.add(one, 's1', CHAIN, ACTIVITY, [ALICE]);
    index.add(two, 's1', CHAIN, ACTIVITY, [BOB]);
    fanout.publishBlock(block([tx(0, ALICE, BOB)]), AT_HEAD, LEDGER);
    expect(received(one)).toHaveLength(1);
    expect(received(two)).toHaveLength(1);
  });
});

describe('Fanout.publishBlock: blocks', () => {
  it('gives the exact block message of PROTOCOL.md without transactions', () => {
    const { index, fanout, received } = setup();
    const owner: Owner = { encoding: 'json' };
    index.add(owner, 'b1', CHAIN, BLOCKS);
    const b = block([tx(0, ALICE, BOB), tx(1, BOB, ALICE)]);
    fanout.publishBlock(b, AT_HEAD, LEDGER);
    expect(received(owner)).toStrictEqual([
      {
        type: 'block',
        sub: 'b1',
        chainId: CHAIN,
        number: 42,
        hash: hash(42),
        parentHash: hash(41),
        timestamp: 1_700_000_000,
        miner: CAROL,
        gasUsed: '0xa410',
        gasLimit: '0x1c9c380',
        baseFeePerGas: '0x7',
        txCount: 2,
        cursor: toCursor(CHAIN, b),
      },
    ]);
  });

  it('leaves out baseFeePerGas of a block without one', () => {
    const { index, fanout, received } = setup();
    const owner: Owner = { encoding: 'msgpack' };
    index.add(owner, 'b1', CHAIN, BLOCKS);
    const { baseFeePerGas: _, ...legacy } = block([]);
    fanout.publishBlock(legacy, AT_HEAD, LEDGER);
    expect(received(owner)[0]).not.toHaveProperty('baseFeePerGas');
  });

  it('full:true carries the transactions with input cut to 0x + 4 bytes', () => {
    const { index, fanout, received } = setup();
    const owner: Owner = { encoding: 'json' };
    index.add(owner, 'b1', CHAIN, FULL);
    fanout.publishBlock(block([tx(0, ALICE, BOB, { input: LONG_INPUT }), tx(1, BOB, ALICE)]), AT_HEAD, LEDGER);
    const transactions = received(owner)[0]?.['transactions'] as Array<Record<string, unknown>>;
    expect(transactions).toHaveLength(2);
    expect(transactions[0]?.['input']).toBe('0xa9059cbb');
    expect(transactions[1]?.['input']).toBe('0x');
    expect(transactions[0]).toStrictEqual({
      txHash: hash(0x1000),
      txIndex: 0,
      from: ALICE,
      to: BOB,
      value: '0xde0b6b3a7640000',
      nonce: 0,
      status: 1,
      gas: '0x5208',
      maxFeePerGas: '0x77359400',
      maxPriorityFeePerGas: '0x3b9aca00',
      input: '0xa9059cbb',
    });
  });

  it('fullInput:true keeps the whole input', () => {
    const { index, fanout, received } = setup();
    const owner: Owner = { encoding: 'msgpack' };
    index.add(owner, 'b1', CHAIN, FULL_INPUT);
    fanout.publishBlock(block([tx(0, ALICE, BOB, { input: LONG_INPUT })]), AT_HEAD, LEDGER);
    const transactions = received(owner)[0]?.['transactions'] as Array<Record<string, unknown>>;
    expect(transactions[0]?.['input']).toBe(LONG_INPUT);
  });

  it('gives full, fullInput and plain subscribers of one block each their own shape', () => {
    const { index, fanout, received } = setup();
    const plain: Owner = { encoding: 'json' };
    const full: Owner = { encoding: 'json' };
    const fullInput: Owner = { encoding: 'json' };
    index.add(plain, 'b1', CHAIN, BLOCKS);
    index.add(full, 'b1', CHAIN, FULL);
    index.add(fullInput, 'b1', CHAIN, FULL_INPUT);
    index.add({ encoding: 'json' }, 'b2', CHAIN, BLOCKS);
    const result = fanout.publishBlock(block([tx(0, ALICE, BOB, { input: LONG_INPUT })]), AT_HEAD, LEDGER);
    expect(received(plain)[0]).not.toHaveProperty('transactions');
    const cut = received(full)[0]?.['transactions'] as Array<Record<string, unknown>>;
    const whole = received(fullInput)[0]?.['transactions'] as Array<Record<string, unknown>>;
    expect(cut[0]?.['input']).toBe('0xa9059cbb');
    expect(whole[0]?.['input']).toBe(LONG_INPUT);
    expect(result.blockMessages).toBe(4);
  });

  it('ignores fullInput without full', () => {
    const { index, fanout, received } = setup();
    const owner: Owner = { encoding: 'json' };
    index.add(owner, 'b1', CHAIN, { channel: 'blocks', full: false, fullInput: true });
    fanout.publishBlock(block([tx(0, ALICE, BOB)]), AT_HEAD, LEDGER);
    expect(received(owner)[0]).not.toHaveProperty('transactions');
  });

  it('full:true on a block without transactions carries an empty list', () => {
    const { index, fanout, received } = setup();
    const owner: Owner = { encoding: 'msgpack' };
    index.add(owner, 'b1', CHAIN, FULL);
    fanout.publishBlock(block([]), AT_HEAD, LEDGER);
    expect(received(owner)[0]).toMatchObject({ txCount: 0, transactions: [] });
  });
});

describe('Fanout.publishBlock: per connection', () => {
  it('hands a connection with several subscriptions all its frames in ONE deliver call', () => {
    const { index, fanout, calls } = setup();
    const owner: Owner = { encoding: 'json' };
    index.add(owner, 'b1', CHAIN, BLOCKS);
    index.add(owner, 'a1', CHAIN, ACTIVITY, [ALICE]);
    index.add(owner, 'a2', CHAIN, ACTIVITY, [BOB]);
    index.add(owner, 'a3', CHAIN, ACTIVITY, [DAVE]);
    const result = fanout.publishBlock(block([tx(0, ALICE, BOB)]), AT_HEAD, LEDGER);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.owner).toBe(owner);
    expect(calls[0]?.frames.map((frame) => decode(frame)['sub'])).toEqual(['b1', 'a1', 'a2']);
    expect(result).toMatchObject({ blockMessages: 1, activityMessages: 2, connections: 1 });
  });

  it('calls deliver once per connection when several connections match', () => {
    const { index, fanout, calls } = setup();
    const one: Owner = { encoding: 'json' };
    const two: Owner = { encoding: 'msgpack' };
    index.add(one, 'b1', CHAIN, BLOCKS);
    index.add(two, 'a1', CHAIN, ACTIVITY, [ALICE]);
    index.add(one, 'a1', CHAIN, ACTIVITY, [BOB]);
    fanout.publishBlock(block([tx(0, ALICE, BOB)]), AT_HEAD, LEDGER);
    expect(calls.map((call) => call.owner)).toEqual([one, two]);
    expect(calls[0]?.frames).toHaveLength(2);
  });

  it('gives every message of a block the cursor toCursor(chainId, block)', () => {
    const { index, fanout, received } = setup();
    const owner: Owner = { encoding: 'msgpack' };
    index.add(owner, 'b1', CHAIN, FULL);
    index.add(owner, 'a1', CHAIN, ACTIVITY, [ALICE]);
    const b = block([tx(0, ALICE, BOB)]);
    fanout.publishBlock(b, AT_HEAD, LEDGER);
    const cursors = received(owner).map((message) => message['cursor']);
    expect(cursors).toEqual([toCursor(CHAIN, b), toCursor(CHAIN, b)]);
  });

  it('counts the bytes of the frames it delivered', () => {
    const { index, fanout, calls } = setup();
    const json: Owner = { encoding: 'json' };
    const msgpack: Owner = { encoding: 'msgpack' };
    index.add(json, 'b1', CHAIN, BLOCKS);
    index.add(msgpack, 'a1', CHAIN, ACTIVITY, [ALICE]);
    const result = fanout.publishBlock(block([tx(0, ALICE, BOB)]), AT_HEAD, LEDGER);
    const sizeOf = (owner: Owner): number =>
      calls
        .filter((call) => call.owner === owner)
        .flatMap((call) => call.frames)
        .reduce((sum, frame) => sum + (typeof frame === 'string' ? Buffer.byteLength(frame) : frame.byteLength), 0);
    expect(result.blockBytes).toBe(sizeOf(json));
    expect(result.activityBytes).toBe(sizeOf(msgpack));
    expect(result.blockBytes).toBeGreaterThan(0);
  });

  it('sends json owners text frames and msgpack owners binary frames', () => {
    const { index, fanout, calls } = setup();
    const json: Owner = { encoding: 'json' };
    const msgpack: Owner = { encoding: 'msgpack' };
    index.add(json, 'b1', CHAIN, BLOCKS);
    index.add(msgpack, 'b1', CHAIN, BLOCKS);
    fanout.publishBlock(block([]), AT_HEAD, LEDGER);
    expect(typeof calls.find((call) => call.owner === json)?.frames[0]).toBe('string');
    expect(calls.find((call) => call.owner === msgpack)?.frames[0]).toBeInstanceOf(Uint8Array);
  });

  it('gives msgpack and json owners equal decoded activity and block messages', () => {
    const { index, fanout, received } = setup();
    const json: Owner = { encoding: 'json' };
    const msgpack: Owner = { encoding: 'msgpack' };
    for (const owner of [json, msgpack]) {
      index.add(owner, 'b1', CHAIN, BLOCKS);
      index.add(owner, 'a1', CHAIN, ACTIVITY, [ALICE, CREATED]);
    }
    fanout.publishBlock(
      block([
        tx(0, ALICE, BOB, { status: 0 }),
        tx(1, ALICE, null, { contractAddress: CREATED }),
        omit(tx(2, CAROL, ALICE, { gasPrice: '0x1' }), 'maxFeePerGas', 'maxPriorityFeePerGas'),
      ]),
      AT_HEAD,
      LEDGER,
    );
    expect(received(msgpack)).toHaveLength(2);
    expect(received(msgpack)).toStrictEqual(received(json));
  });

  it('gives msgpack and json owners equal decoded full blocks when every optional tx field is set', () => {
    const { index, fanout, received } = setup();
    const json: Owner = { encoding: 'json' };
    const msgpack: Owner = { encoding: 'msgpack' };
    index.add(json, 'b1', CHAIN, FULL_INPUT);
    index.add(msgpack, 'b1', CHAIN, FULL_INPUT);
    fanout.publishBlock(
      block([tx(0, ALICE, BOB, { input: LONG_INPUT, contractAddress: CREATED, gasPrice: '0x1', status: 0 })]),
      AT_HEAD,
      LEDGER,
    );
    expect(received(msgpack)).toStrictEqual(received(json));
  });

  it('gives msgpack and json owners equal decoded full blocks when optional tx fields are absent', () => {
    const { index, fanout, received } = setup();
    const json: Owner = { encoding: 'json' };
    const msgpack: Owner = { encoding: 'msgpack' };
    index.add(json, 'b1', CHAIN, FULL);
    index.add(msgpack, 'b1', CHAIN, FULL);
    // No status (no receipt), no contractAddress, no gasPrice (EIP-1559 tx).
    fanout.publishBlock(block([omit(tx(0, ALICE, BOB), 'status')]), AT_HEAD, LEDGER);
    expect(received(msgpack)).toStrictEqual(received(json));
  });
});
