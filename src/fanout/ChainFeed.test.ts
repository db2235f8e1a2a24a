import { describe, expect, it } from 'vitest';
import { ChainHistory } from '../chainlog/ChainHistory.ts';
import type { ChainBlock, Hex } from '../domain/types.ts';
import { SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import { ChainFeed } from './ChainFeed.ts';
import type { Frame } from './encode.ts';
import { Fanout } from './Fanout.ts';

interface Owner {
  readonly encoding: 'json';
  readonly frames: Array<{ type: string; sub: string; number: number; hash: string }>;
  /** Frames per write to the connection, in order. */
  readonly writes?: number[];
}

const CHAIN = 7;

function hash(n: number, branch: string): Hex {
  return `0x${branch.repeat(2)}${n.toString(16).padStart(62, '0')}` as Hex;
}

function block(n: number, branch = 'aa', parentBranch = branch): ChainBlock {
  return {
    chainId: CHAIN,
    number: n,
    hash: hash(n, branch),
    parentHash: hash(n - 1, parentBranch),
    timestamp: 1_700_000_000 + n,
    miner: '0x0000000000000000000000000000000000000000',
    gasUsed: '0x0',
    gasLimit: '0x1',
    transactions: [],
  };
}

function setup() {
  const index = new SubscriptionIndex<Owner>();
  const deliver = (owner: Owner, frames: readonly Frame[]) => {
    owner.writes?.push(frames.length);
    for (const frame of frames) {
      const m = JSON.parse(frame as string);
      const at = m.number === undefined ? (m.block ?? m.finalized) : m;
      owner.frames.push({ type: m.type, sub: m.sub, number: at.number, hash: at.hash });
    }
  };
  const feed = new ChainFeed(CHAIN, new ChainHistory(16), new Fanout(index, deliver), index);
  feed.history.apply(block(0));
  const owner: Owner = { encoding: 'json', frames: [], writes: [] };
  const head = index.add(owner, 'head', CHAIN, { channel: 'blocks', full: false, fullInput: false });
  const deep = index.add(owner, 'deep', CHAIN, { channel: 'blocks', full: false, fullInput: false, confirmations: 3 });
  const seen = (sid: string) =>
    owner.frames
      .filter((f) => f.sub === sid)
      .map((f) => `${{ block: '+', removed: '-', finality: 'final ' }[f.type]}${f.number}${f.hash.slice(2, 4)}`);
  return { index, feed, owner, head, deep, seen };
}

/** Block n carrying the node's tags: safe two blocks and finalized four blocks behind it (anvil's with 2 slots an epoch). */
function tagged(n: number): ChainBlock {
  const at = (k: number) => ({ number: Math.max(k, 0), hash: hash(Math.max(k, 0), 'aa') });
  return { ...block(n), finality: { safe: at(n - 2), finalized: at(n - 4) } };
}

describe('ChainFeed: finality', () => {
  it("delivers a block to safe and finalized subscriptions once the node's tag reached it, and tells the others when the finalized block moves", () => {
    const { feed, index, owner, seen } = setup();
    expect(feed.features().finality).toBe(false);
    index.add(owner, 'safe', CHAIN, { channel: 'blocks', full: false, fullInput: false, finality: 'safe' });
    index.add(owner, 'final', CHAIN, { channel: 'blocks', full: false, fullInput: false, finality: 'finalized' });
    for (let n = 1; n <= 8; n++) feed.apply(tagged(n));
    expect(feed.features()).toEqual({ finality: true, internal: false });
    expect(seen('safe')).toEqual(['+0aa', '+1aa', '+2aa', '+3aa', '+4aa', '+5aa', '+6aa']);
    expect(seen('final')).toEqual(['+0aa', '+1aa', '+2aa', '+3aa', '+4aa']);
    // The plain subscription: one finality message each time the finalized block moved.
    expect(seen('head').filter((f) => f.startsWith('final'))).toEqual([
      'final 0aa',
      'final 1aa',
      'final 2aa',
      'final 3aa',
      'final 4aa',
    ]);
    expect(owner.frames.filter((f) => f.type === 'finality' && (f.sub === 'safe' || f.sub === 'final'))).toEqual([]);
  });

  it('tells an activity subscription only when a block it was sent activity for became final', () => {
    const { feed, index, owner } = setup();
    const watched = '0x00000000000000000000000000000000000000aa' as Hex;
    index.add(owner, 'wallet', CHAIN, { channel: 'activity', kinds: new Set(['tx']) }, [watched]);
    const payment = (n: number): ChainBlock => ({
      ...tagged(n),
      transactions: [
        {
          hash: hash(n, 'cc'),
          index: 0,
          from: '0x00000000000000000000000000000000000000bb' as Hex,
          to: watched,
          value: '0x1',
          nonce: n,
          gas: '0x5208',
          input: '0x',
        },
      ],
    });
    for (let n = 1; n <= 12; n++) feed.apply(n === 6 ? payment(n) : tagged(n));
    const told = owner.frames.filter((f) => f.sub === 'wallet');
    // Its activity at block 6, then one finality message: when block 6 became final (at block 10).
    expect(told.map((f) => `${f.type} ${f.number}`)).toEqual(['activity 6', 'finality 6']);
  });

  it('never retracts from a finalized subscription what its tag passed, and tags never go back', () => {
    const { feed, index, owner, seen } = setup();
    index.add(owner, 'final', CHAIN, { channel: 'blocks', full: false, fullInput: false, finality: 'finalized' });
    for (let n = 1; n <= 8; n++) feed.apply(tagged(n));
    feed.retract(block(8));
    feed.retract(block(7));
    // A node answering older tags after a failover: finality stays where it was.
    feed.apply({
      ...block(7, 'bb', 'aa'),
      finality: { safe: { number: 1, hash: hash(1, 'aa') }, finalized: { number: 0, hash: hash(0, 'aa') } },
    });
    expect(feed.finality?.finalized.number).toBe(4);
    expect(seen('final')).toEqual(['+0aa', '+1aa', '+2aa', '+3aa', '+4aa']);
  });
});

describe('ChainFeed', () => {
  it('delivers a block at depth N once the head reaches number + N - 1', () => {
    const { feed, seen } = setup();
    for (let n = 1; n <= 5; n++) feed.apply(block(n));
    expect(seen('head')).toEqual(['+1aa', '+2aa', '+3aa', '+4aa', '+5aa']);
    // Subscribed at head 0: block 0 reaches 3 confirmations at head 2.
    expect(seen('deep')).toEqual(['+0aa', '+1aa', '+2aa', '+3aa']);
  });

  it('retracts what each depth was sent, newest first, then sends the new branch', () => {
    const { feed, seen } = setup();
    for (let n = 1; n <= 5; n++) feed.apply(block(n));
    feed.retract(block(5));
    feed.retract(block(4));
    feed.apply(block(4, 'bb', 'aa'));
    feed.apply(block(5, 'bb'));
    feed.apply(block(6, 'bb'));
    expect(seen('head')).toEqual(['+1aa', '+2aa', '+3aa', '+4aa', '+5aa', '-5aa', '-4aa', '+4bb', '+5bb', '+6bb']);
    // Depth 3 had block 3 at most: blocks 4 and 5 were retracted before it was sent them.
    expect(seen('deep')).toEqual(['+0aa', '+1aa', '+2aa', '+3aa', '+4bb']);
  });

  it('sends removed to a blocks subscription only for blocks it was sent', () => {
    const { feed, index, owner, seen } = setup();
    for (let n = 1; n <= 3; n++) feed.apply(block(n));
    index.add(owner, 'late', CHAIN, { channel: 'blocks', full: false, fullInput: false });
    feed.apply(block(4));
    feed.retract(block(4));
    feed.retract(block(3));
    expect(seen('late')).toEqual(['+4aa', '-4aa']);
  });

  it('starts a depth newly in use at the block that just reached it, never older ones', () => {
    const { feed, index, owner, seen } = setup();
    for (let n = 1; n <= 6; n++) feed.apply(block(n));
    index.add(owner, 'two', CHAIN, { channel: 'blocks', full: false, fullInput: false, confirmations: 2 });
    feed.apply(block(7));
    expect(seen('two')).toEqual(['+6aa']);
  });
});

describe('ChainFeed: blocks from their header', () => {
  const header = (n: number, branch = 'aa', parentBranch = branch): ChainBlock => ({
    ...block(n, branch, parentBranch),
    headerOnly: true,
    txCount: 2,
  });

  it('sends a plain subscription the block from its header, the others with the whole block, nobody twice', () => {
    const { feed, index, owner, head, seen } = setup();
    const full = index.add(owner, 'full', CHAIN, { channel: 'blocks', full: true, fullInput: false });
    index.add(owner, 'one', CHAIN, { channel: 'blocks', full: false, fullInput: false, confirmations: 1 });
    feed.apply(header(1));
    expect(seen('head')).toEqual(['+1aa']);
    expect(seen('one')).toEqual(['+1aa']);
    expect(seen('full')).toEqual([]);
    // The cursor of a plain subscription is at the header; a full one's stays at the whole head.
    expect(feed.position(head)).toMatch(/^7:1:/);
    expect(feed.position(full)).toMatch(/^7:0:/);
    feed.apply(block(1));
    expect(seen('head')).toEqual(['+1aa']);
    expect(seen('full')).toEqual(['+1aa']);
    // A whole block without a header first reaches every depth at once.
    feed.apply(block(2));
    expect(seen('head')).toEqual(['+1aa', '+2aa']);
    expect(seen('full')).toEqual(['+1aa', '+2aa']);
    expect(seen('deep')).toEqual(['+0aa']);
  });

  it('takes a header back with removed for those it was sent to, and goes on with the block that replaced it', () => {
    const { feed, index, owner, seen } = setup();
    index.add(owner, 'full', CHAIN, { channel: 'blocks', full: true, fullInput: false });
    feed.apply(block(1));
    feed.apply(header(2));
    feed.retract(header(2));
    feed.apply(block(2, 'bb', 'aa'));
    expect(seen('head')).toEqual(['+1aa', '+2aa', '-2aa', '+2bb']);
    expect(seen('full')).toEqual(['+1aa', '+2bb']);
    expect(feed.history.head?.hash).toBe(hash(2, 'bb'));
  });
});

describe('ChainFeed: one write per connection per block', () => {
  it('writes a block at every depth and the finality message it brought in one go', () => {
    const { feed, index, owner } = setup();
    index.add(owner, 'full', CHAIN, { channel: 'blocks', full: true, fullInput: false });
    for (let n = 1; n <= 6; n++) feed.apply(tagged(n));
    // Plain, full and (from block 2, whose third confirmation block 0 then has) the deep block;
    // a finality message to each of the three where the finalized block moved: to 0 with block 1,
    // to 1 with block 5, to 2 with block 6.
    expect(owner.writes).toEqual([5, 3, 3, 3, 6, 6]);
    expect(owner.frames.filter((f) => f.type === 'finality')).toHaveLength(9);
  });
});
