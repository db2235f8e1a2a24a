import { describe, expect, it } from 'vitest';
import type { EventKind, Hex, TxEvent } from '../domain/types.ts';
import { type SubscriptionFilter, SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import { type Encoding, type Frame, unpack } from './encode.ts';
import { Fanout } from './Fanout.ts';
import { matchPending } from './matchPending.ts';

interface Owner {
  readonly encoding: Encoding;
}

const CHAIN = 31_337;
const ALICE: Hex = '0x00000000000000000000000000000000000000a1';
const BOB: Hex = '0x00000000000000000000000000000000000000b0';
const CAROL: Hex = '0x00000000000000000000000000000000000000c0';

function pendingTx(n: number, from: Hex, to: Hex | null): TxEvent {
  const hash: Hex = `0x${n.toString(16).padStart(64, '0')}`;
  return { kind: 'tx', id: hash, txHash: hash, txIndex: null, from, to, value: '0x1', nonce: n };
}

const PENDING: SubscriptionFilter = { channel: 'activity', kinds: new Set<EventKind>(['tx', 'erc20']), pending: true };
const MINED_ONLY: SubscriptionFilter = { channel: 'activity', kinds: new Set<EventKind>(['tx']) };
const TOKENS_ONLY: SubscriptionFilter = { channel: 'activity', kinds: new Set<EventKind>(['erc20']), pending: true };

function decode(frame: Frame): Record<string, unknown> {
  return (typeof frame === 'string' ? JSON.parse(frame) : unpack(frame)) as Record<string, unknown>;
}

describe('Fanout.publishPending', () => {
  it('sends one pending message per subscription per batch, in both encodings', () => {
    const index = new SubscriptionIndex<Owner>();
    const calls: Array<{ owner: Owner; frames: readonly Frame[] }> = [];
    const fanout = new Fanout(index, (owner, frames) => {
      calls.push({ owner, frames });
    });
    const json: Owner = { encoding: 'json' };
    const msgpack: Owner = { encoding: 'msgpack' };
    index.add(json, 's1', CHAIN, PENDING, [ALICE]);
    index.add(json, 's2', CHAIN, PENDING, [BOB]);
    index.add(msgpack, 's1', CHAIN, PENDING, [ALICE, BOB]);
    const batch = [pendingTx(1, ALICE, BOB), pendingTx(2, CAROL, BOB), pendingTx(3, CAROL, null)];
    const result = fanout.publishPending(CHAIN, batch);

    expect(result).toMatchObject({ messages: 3, connections: 2 });
    // The events some subscription was sent, for the life of watched transactions (the third: nobody's).
    expect(result.watched).toEqual([batch[0], batch[1]]);
    expect(calls).toHaveLength(2);
    const jsonMessages = calls.filter((c) => c.owner === json).flatMap((c) => c.frames.map(decode));
    expect(jsonMessages).toStrictEqual([
      { type: 'pending', sub: 's1', chainId: CHAIN, events: [batch[0]] },
      { type: 'pending', sub: 's2', chainId: CHAIN, events: [batch[0], batch[1]] },
    ]);
    const [binary] = calls.filter((c) => c.owner === msgpack).flatMap((c) => c.frames);
    expect(binary).toBeInstanceOf(Uint8Array);
    // From and to both watched by one subscription: the transaction is listed once.
    expect(decode(binary as Frame)).toStrictEqual({
      type: 'pending',
      sub: 's1',
      chainId: CHAIN,
      events: [batch[0], batch[1]],
    });
  });

  it('sends nothing without pending:true, without the tx kind, on another chain, or to other addresses', () => {
    const index = new SubscriptionIndex<Owner>();
    const calls: unknown[] = [];
    const fanout = new Fanout(index, (_, frames) => calls.push(frames));
    index.add({ encoding: 'json' }, 's1', CHAIN, MINED_ONLY, [ALICE]);
    index.add({ encoding: 'json' }, 's2', CHAIN, TOKENS_ONLY, [ALICE]);
    index.add({ encoding: 'json' }, 's3', CHAIN + 1, PENDING, [ALICE]);
    index.add({ encoding: 'json' }, 's4', CHAIN, PENDING, [CAROL]);
    index.add({ encoding: 'json' }, 's5', CHAIN, { channel: 'blocks', full: true, fullInput: false });
    expect(fanout.publishPending(CHAIN, [pendingTx(1, ALICE, BOB)])).toEqual({
      messages: 0,
      bytes: 0,
      connections: 0,
      watched: [],
    });
    expect(calls).toEqual([]);
  });

  it('encodes each event once for all subscriptions', () => {
    const index = new SubscriptionIndex<Owner>();
    index.add({ encoding: 'json' }, 's1', CHAIN, PENDING, [ALICE]);
    index.add({ encoding: 'json' }, 's2', CHAIN, PENDING, [BOB]);
    const matches = [...matchPending(index, CHAIN, [pendingTx(1, ALICE, BOB)]).values()];
    expect(matches).toHaveLength(2);
    expect(matches[0]?.[0]).toBe(matches[1]?.[0]);
  });
});

describe('SubscriptionIndex.pendingSubscriptions', () => {
  it('counts the activity subscriptions of a chain that asked for pending', () => {
    const index = new SubscriptionIndex<Owner>();
    const a = index.add({ encoding: 'json' }, 's1', CHAIN, PENDING, [ALICE]);
    const b = index.add({ encoding: 'json' }, 's2', CHAIN, PENDING, [BOB]);
    index.add({ encoding: 'json' }, 's3', CHAIN, MINED_ONLY, [BOB]);
    expect(index.pendingSubscriptions(CHAIN)).toBe(2);
    expect(index.pendingSubscriptions(CHAIN + 1)).toBe(0);
    index.remove(a);
    index.remove(a);
    expect(index.pendingSubscriptions(CHAIN)).toBe(1);
    index.remove(b);
    expect(index.pendingSubscriptions(CHAIN)).toBe(0);
  });
});
