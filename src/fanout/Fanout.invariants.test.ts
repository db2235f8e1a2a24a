import { describe, expect, it } from 'vitest';
import { blockActivity } from '../domain/events.ts';
import type { ChainBlock, ChainTx, Erc20TransferEvent, EventKind, Hex } from '../domain/types.ts';
import { HEADER_DEPTH, type Subscription, SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import { DeliveryLedger } from './DeliveryLedger.ts';
import { type Encoding, type Frame, unpack } from './encode.ts';
import { Fanout } from './Fanout.ts';

/** The delivery depths of a block at the head: plain blocks (from the header), then everything else. */
const AT_HEAD = [HEADER_DEPTH, 0];

interface Owner {
  readonly name: string;
  readonly encoding: Encoding;
}

type Message = Record<string, unknown>;

const CHAIN = 1;
const KINDS: readonly EventKind[] = ['tx', 'erc20'];

/** Deterministic uniform numbers in [0, 1). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 4_294_967_296;
  };
}

function address(n: number): Hex {
  return `0x${n.toString(16).padStart(40, '0')}`;
}

function hash(n: number): Hex {
  return `0x${n.toString(16).padStart(64, '0')}`;
}

/** A block whose transactions and transfers move between a few addresses, so matches collide. */
function randomBlock(number: number, next: () => number, universe: number): ChainBlock {
  const pick = (): Hex => address(1 + Math.floor(next() * universe));
  const transactions: ChainTx[] = [];
  for (let i = 0; i < 1 + Math.floor(next() * 12); i++) {
    const txHash = hash(number * 1000 + i);
    const transfers: Erc20TransferEvent[] = [];
    for (let t = 0; t < Math.floor(next() * 3); t++) {
      const logIndex = i * 10 + t;
      transfers.push({
        kind: 'erc20',
        id: `${txHash}:${logIndex}`,
        txHash,
        logIndex,
        token: address(0xfeed),
        from: pick(),
        to: pick(),
        value: '0x1',
      });
    }
    transactions.push({
      hash: txHash,
      index: i,
      from: pick(),
      to: next() < 0.1 ? null : pick(),
      value: '0x0',
      nonce: i,
      status: 1,
      gas: '0x5208',
      gasPrice: '0x1',
      input: '0x',
      ...(transfers.length > 0 ? { transfers } : {}),
    });
  }
  return {
    chainId: CHAIN,
    number,
    hash: hash(number),
    parentHash: hash(number - 1),
    timestamp: 1_700_000_000 + number,
    miner: address(0xc0),
    gasUsed: '0x0',
    gasLimit: '0x1c9c380',
    transactions,
  };
}

function decode(frame: Frame): Message {
  return (typeof frame === 'string' ? JSON.parse(frame) : unpack(frame)) as Message;
}

/** The ids of the events `sub` should get for `block`, in block order, each once. */
const LEDGER = new DeliveryLedger<Subscription<Owner>>();

function expectedIds(sub: Subscription<Owner>, block: ChainBlock): string[] {
  const filter = sub.filter;
  if (filter.channel !== 'activity') return [];
  return blockActivity(block)
    .filter((entry) => filter.kinds.has(entry.event.kind) && entry.addresses.some((a) => sub.addresses.has(a)))
    .map((entry) => entry.event.id);
}

describe('Fanout.publishBlock invariants', () => {
  it('gives every subscription at most one message per block, holding exactly its matches, and each connection one delivery', () => {
    const next = random(42);
    const universe = 40;
    const index = new SubscriptionIndex<Owner>();
    const subs: Array<Subscription<Owner>> = [];
    for (let o = 0; o < 150; o++) {
      const owner: Owner = { name: `c${o}`, encoding: next() < 0.5 ? 'msgpack' : 'json' };
      const count = 1 + Math.floor(next() * 3);
      for (let s = 1; s <= count; s++) {
        if (next() < 0.4) {
          const full = next() < 0.3;
          subs.push(index.add(owner, `s${s}`, CHAIN, { channel: 'blocks', full, fullInput: full && next() < 0.5 }));
        } else {
          const addresses = Array.from({ length: 1 + Math.floor(next() * 4) }, () =>
            address(1 + Math.floor(next() * universe)),
          );
          const kinds = new Set<EventKind>(next() < 0.7 ? KINDS : [KINDS[Math.floor(next() * 2)] as EventKind]);
          subs.push(index.add(owner, `s${s}`, CHAIN, { channel: 'activity', kinds }, addresses));
        }
      }
    }

    let calls: Array<{ owner: Owner; frames: readonly Frame[] }> = [];
    const fanout = new Fanout<Owner>(index, (owner, frames) => {
      calls.push({ owner, frames });
    });

    for (let number = 1; number <= 40; number++) {
      calls = [];
      const block = randomBlock(number, next, universe);
      const result = fanout.publishBlock(block, AT_HEAD, LEDGER);

      const owners = calls.map((call) => call.owner);
      expect(new Set(owners).size).toBe(owners.length);
      const received = new Map<string, Message[]>();
      for (const { owner, frames } of calls) {
        for (const frame of frames) {
          expect(typeof frame === 'string').toBe(owner.encoding === 'json');
          const message = decode(frame);
          const key = `${owner.name}/${String(message['sub'])}`;
          received.set(key, [...(received.get(key) ?? []), message]);
        }
      }
      let messages = 0;
      for (const sub of subs) {
        const got = received.get(`${sub.owner.name}/${sub.sid}`) ?? [];
        if (sub.filter.channel === 'blocks') {
          expect(got).toHaveLength(1);
          expect(got[0]).toMatchObject({ type: 'block', number, hash: block.hash });
          expect('transactions' in (got[0] as Message)).toBe(sub.filter.full);
        } else {
          const ids = expectedIds(sub, block);
          expect(got).toHaveLength(ids.length > 0 ? 1 : 0);
          if (ids.length > 0) {
            const events = (got[0] as Message)['events'] as Array<{ id: string }>;
            expect(events.map((e) => e.id)).toEqual(ids);
          }
        }
        messages += got.length;
      }
      expect(result.blockMessages + result.activityMessages).toBe(messages);
      expect(result.connections).toBe(calls.length);
    }
  });

  it('gives subscriptions that share one frame their own ids when ids and encodings interleave', () => {
    const index = new SubscriptionIndex<Owner>();
    const owners: Owner[] = [];
    for (let i = 0; i < 12; i++) {
      const owner: Owner = { name: `c${i}`, encoding: i % 3 === 0 ? 'json' : 'msgpack' };
      owners.push(owner);
      // Ids s1 or s2 in an order that changes from one subscriber to the next.
      if (i % 2 === 1) index.add(owner, 's1', CHAIN, { channel: 'activity', kinds: new Set(KINDS) }, [address(99)]);
      index.add(owner, `s${(i % 2) + 1}`, CHAIN, { channel: 'blocks', full: false, fullInput: false });
    }
    const got = new Map<Owner, Message[]>();
    const fanout = new Fanout<Owner>(index, (owner, frames) => got.set(owner, frames.map(decode)));
    fanout.publishBlock(randomBlock(7, random(1), 10), AT_HEAD, LEDGER);
    for (const [i, owner] of owners.entries()) {
      const blocks = (got.get(owner) ?? []).filter((m) => m['type'] === 'block');
      expect(blocks.map((m) => m['sub'])).toEqual([`s${(i % 2) + 1}`]);
    }
  });

  it('gives subscriptions matched by the same single event their own ids when ids and encodings interleave', () => {
    const index = new SubscriptionIndex<Owner>();
    const watched = address(7);
    const owners: Array<{ owner: Owner; sid: string }> = [];
    for (let i = 0; i < 12; i++) {
      const owner: Owner = { name: `c${i}`, encoding: i % 3 === 0 ? 'json' : 'msgpack' };
      const sid = `s${(i % 2) + 1}`;
      if (sid === 's2') index.add(owner, 's1', CHAIN, { channel: 'blocks', full: false, fullInput: false });
      index.add(owner, sid, CHAIN, { channel: 'activity', kinds: new Set(KINDS) }, [watched]);
      owners.push({ owner, sid });
    }
    const got = new Map<Owner, Message[]>();
    const fanout = new Fanout<Owner>(index, (owner, frames) => got.set(owner, frames.map(decode)));
    const block = randomBlock(9, random(3), 1000);
    const tx = { ...(block.transactions[0] as ChainTx), from: watched, to: address(8) };
    const { transfers: _none, ...plain } = tx;
    fanout.publishBlock({ ...block, transactions: [plain] }, AT_HEAD, LEDGER);
    for (const { owner, sid } of owners) {
      const activity = (got.get(owner) ?? []).filter((m) => m['type'] === 'activity');
      expect(activity.map((m) => m['sub'])).toEqual([sid]);
      const events = (activity[0]?.['events'] ?? []) as Array<{ id: string }>;
      expect(events.map((e) => e.id)).toEqual([plain.hash]);
    }
  });
});
