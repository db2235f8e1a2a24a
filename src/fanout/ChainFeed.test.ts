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
    for (const frame of frames) {
      const m = JSON.parse(frame as string);
      owner.frames.push({ type: m.type, sub: m.sub, number: m.number ?? m.block.number, hash: m.hash ?? m.block.hash });
    }
  };
  const feed = new ChainFeed(CHAIN, new ChainHistory(16), new Fanout(index, deliver), index);
  feed.history.apply(block(0));
  const owner: Owner = { encoding: 'json', frames: [] };
  const head = index.add(owner, 'head', CHAIN, { channel: 'blocks', full: false, fullInput: false });
  const deep = index.add(owner, 'deep', CHAIN, { channel: 'blocks', full: false, fullInput: false, confirmations: 3 });
  const seen = (sid: string) =>
    owner.frames
      .filter((f) => f.sub === sid)
      .map((f) => `${f.type === 'block' ? '+' : '-'}${f.number}${f.hash.slice(2, 4)}`);
  return { index, feed, owner, head, deep, seen };
}

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
