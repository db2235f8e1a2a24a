import { describe, expect, it } from 'vitest';
import { DedupeWindow } from './DedupeWindow.ts';
import type { ActivityEvent, ActivityMessage, BlockMessage, Hex, RemovedMessage } from './messages.ts';

const hash = (n: number, branch = 0): Hex => `0x${(n * 16 + branch).toString(16).padStart(64, '0')}`;

function block(n: number, branch = 0): BlockMessage {
  return {
    type: 'block',
    sub: 's1',
    chainId: 31_337,
    number: n,
    hash: hash(n, branch),
    parentHash: hash(n - 1),
    timestamp: 1_700_000_000 + n,
    miner: `0x${'0'.repeat(40)}`,
    gasUsed: '0x0',
    gasLimit: '0x1c9c380',
    txCount: 0,
    cursor: `31337:${n}:${hash(n, branch)}`,
  };
}

function tx(id: string): ActivityEvent {
  return { kind: 'tx', id, txHash: id as Hex, txIndex: 0, from: '0x01', to: '0x02', value: '0x1', nonce: 0 };
}

function activity(n: number, ids: string[], branch = 0): ActivityMessage {
  return {
    type: 'activity',
    sub: 's2',
    chainId: 31_337,
    block: { number: n, hash: hash(n, branch), timestamp: 1_700_000_000 + n },
    cursor: `31337:${n}:${hash(n, branch)}`,
    events: ids.map(tx),
  };
}

function removed(n: number, ids?: string[], branch = 0): RemovedMessage {
  return {
    type: 'removed',
    sub: 's2',
    chainId: 31_337,
    block: { number: n, hash: hash(n, branch) },
    cursor: `31337:${n - 1}:${hash(n - 1)}`,
    ...(ids === undefined ? {} : { events: ids.map(tx) }),
  };
}

describe('DedupeWindow', () => {
  it('drops a block whose hash it holds, and keeps another block at the same height', () => {
    const window = new DedupeWindow();
    expect(window.block(block(1))).toEqual(block(1));
    expect(window.block(block(1))).toBeUndefined();
    expect(window.block(block(1, 1))).toEqual(block(1, 1));
  });

  it('passes only the events of a block it does not hold yet', () => {
    const window = new DedupeWindow();
    expect(window.activity(activity(5, ['a', 'b']))).toEqual(activity(5, ['a', 'b']));
    expect(window.activity(activity(5, ['a', 'b']))).toBeUndefined();
    expect(window.activity(activity(5, ['b', 'c']))?.events.map((e) => e.id)).toEqual(['c']);
    // The same ids in a block of another branch are other events.
    expect(window.activity(activity(5, ['a'], 1))?.events.map((e) => e.id)).toEqual(['a']);
  });

  it('passes removed with the events it held and forgets them, so a re-delivery passes', () => {
    const window = new DedupeWindow();
    window.activity(activity(7, ['a', 'b']));
    expect(window.removed(removed(7, ['a', 'b', 'x']))?.events?.map((e) => e.id)).toEqual(['a', 'b']);
    expect(window.activity(activity(7, ['a', 'b']))).toEqual(activity(7, ['a', 'b']));
    window.block(block(3));
    expect(window.removed(removed(3))).toEqual(removed(3));
    expect(window.block(block(3))).toEqual(block(3));
  });

  it('drops a removed for a block it never delivered', () => {
    const window = new DedupeWindow();
    window.activity(activity(7, ['a']));
    expect(window.removed(removed(8, ['z']))).toBeUndefined();
    expect(window.removed(removed(7, ['a'], 1))).toBeUndefined();
  });

  it('remembers a bounded number of blocks, and passes removed for ones it forgot', () => {
    const window = new DedupeWindow(4);
    for (let n = 1; n <= 10; n++) window.block(block(n));
    expect(window.size).toBe(4);
    expect(window.block(block(10))).toBeUndefined();
    expect(window.removed(removed(5))).toEqual(removed(5));
    expect(window.removed(removed(11))).toBeUndefined();
  });
});
