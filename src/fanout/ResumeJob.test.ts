import { describe, expect, it } from 'vitest';
import { ChainHistory } from '../chainlog/ChainHistory.ts';
import type { CursorPosition } from '../domain/cursor.ts';
import type { ChainBlock, EventKind, Hex } from '../domain/types.ts';
import { type Subscription, SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import { ChainFeed } from './ChainFeed.ts';
import type { Frame } from './encode.ts';
import { Fanout } from './Fanout.ts';

interface Owner {
  readonly encoding: 'json';
  readonly got: string[];
  /** Bytes of every frame received. */
  bytes?: number;
}

const CHAIN = 5;
const ALICE: Hex = '0x00000000000000000000000000000000000000a1';
const BOB: Hex = '0x00000000000000000000000000000000000000b0';

const hash = (n: number, branch: string): Hex => `0x${branch}${n.toString(16).padStart(62, '0')}` as Hex;

/** Block `n` of a branch; `active` blocks carry a transfer from ALICE to BOB. */
function block(n: number, branch = 'aa', parentBranch = branch, active = true): ChainBlock {
  return {
    chainId: CHAIN,
    number: n,
    hash: hash(n, branch),
    parentHash: hash(n - 1, parentBranch),
    timestamp: 1_700_000_000 + n,
    miner: BOB,
    gasUsed: '0x0',
    gasLimit: '0x1',
    transactions: active
      ? [
          {
            hash: hash(n, `${branch.slice(0, 1)}f`),
            index: 0,
            from: ALICE,
            to: BOB,
            value: '0x1',
            nonce: n,
            status: 1,
            gas: '0x1',
            input: '0x',
          },
        ]
      : [],
  };
}

const cursorOf = (b: ChainBlock): CursorPosition => ({ chainId: CHAIN, number: b.number, hash: b.hash });

/** A feed over a real index and fan-out whose deliveries are recorded as `+N..`/`-N..` per owner. */
function setup(blocks = 10) {
  const index = new SubscriptionIndex<Owner>();
  const deliver = (owner: Owner, frames: readonly Frame[]) => {
    for (const frame of frames) {
      owner.bytes = (owner.bytes ?? 0) + Buffer.byteLength(frame as string);
      const m = JSON.parse(frame as string);
      const number = m.number ?? m.block.number;
      const branch = (m.hash ?? m.block.hash).slice(2, 4);
      owner.got.push(`${m.type === 'removed' ? '-' : '+'}${number}${branch}`);
    }
  };
  const feed = new ChainFeed(CHAIN, new ChainHistory(64), new Fanout(index, deliver), index);
  feed.history.apply(block(0));
  for (let n = 1; n <= blocks; n++) feed.apply(block(n));
  const activity = (owner: Owner): Subscription<Owner> =>
    index.create(owner, 's1', CHAIN, { channel: 'activity', kinds: new Set<EventKind>(['tx']) }, [ALICE]);
  return { index, feed, activity };
}

describe('ResumeJob', () => {
  it('replays what the subscription missed, then hands it over to go live', () => {
    const { index, feed, activity } = setup();
    const owner: Owner = { encoding: 'json', got: [] };
    const sub = activity(owner);
    const done: boolean[] = [];
    const job = feed.resume(sub, cursorOf(block(7)), 1_000_000, (recovered) => {
      done.push(recovered);
      index.activate(sub);
    });
    expect(job.step(Number.POSITIVE_INFINITY)).toBe(true);
    expect(done).toEqual([true]);
    expect(owner.got).toEqual(['+8aa', '+9aa', '+10aa']);
    feed.apply(block(11));
    expect(owner.got.at(-1)).toBe('+11aa');
  });

  it('takes in blocks that arrive between its slices, each once, in order', () => {
    const { index, feed, activity } = setup();
    const owner: Owner = { encoding: 'json', got: [] };
    const sub = activity(owner);
    const job = feed.resume(sub, cursorOf(block(2)), 1_000_000, () => index.activate(sub));
    // A deadline in the past: one block per slice.
    expect(job.step(0)).toBe(false);
    expect(owner.got).toEqual([]);
    feed.apply(block(11));
    feed.apply(block(12));
    let slices = 1;
    while (!job.step(0)) slices++;
    expect(slices).toBeGreaterThan(5);
    expect(owner.got).toEqual(['+3aa', '+4aa', '+5aa', '+6aa', '+7aa', '+8aa', '+9aa', '+10aa', '+11aa', '+12aa']);
    feed.apply(block(13));
    expect(owner.got.at(-1)).toBe('+13aa');
  });

  it('starts again when blocks it matched are reorganised away while it runs, sending only the new branch', () => {
    const { index, feed, activity } = setup();
    const owner: Owner = { encoding: 'json', got: [] };
    const sub = activity(owner);
    const job = feed.resume(sub, cursorOf(block(4)), 1_000_000, () => index.activate(sub));
    for (let i = 0; i < 4; i++) expect(job.step(0)).toBe(false);
    // Blocks 7..10 leave the chain (newest first); a branch bb replaces them.
    for (let n = 10; n >= 7; n--) feed.retract(block(n));
    for (let n = 7; n <= 11; n++) feed.apply(block(n, 'bb', n === 7 ? 'aa' : 'bb'));
    while (!job.step(0));
    expect(owner.got).toEqual(['+5aa', '+6aa', '+7bb', '+8bb', '+9bb', '+10bb', '+11bb']);
  });

  it('sends removed for the blocks after the cursor that were orphaned, then the canonical ones', () => {
    const { index, feed, activity } = setup();
    for (let n = 10; n >= 9; n--) feed.retract(block(n));
    for (let n = 9; n <= 10; n++) feed.apply(block(n, 'bb', n === 9 ? 'aa' : 'bb'));
    const owner: Owner = { encoding: 'json', got: [] };
    const sub = activity(owner);
    const job = feed.resume(sub, cursorOf(block(10)), 1_000_000, () => index.activate(sub));
    expect(job.step(Number.POSITIVE_INFINITY)).toBe(true);
    expect(owner.got).toEqual(['-10aa', '-9aa', '+9bb', '+10bb']);
  });

  it('gives up, sending nothing, when the catch-up would pass the byte limit; an orphan without events counts nothing', () => {
    const { feed, activity } = setup(3);
    feed.retract(block(3));
    feed.apply(block(3, 'bb', 'aa', false));
    // The only frame: the `removed` of the orphan 3aa (3bb has nothing for ALICE).
    const probe: Owner = { encoding: 'json', got: [] };
    feed.resume(activity(probe), cursorOf(block(3)), 1_000_000, () => undefined).step(Number.POSITIVE_INFINITY);
    expect(probe.got).toEqual(['-3aa']);
    const exact = probe.bytes ?? 0;
    const owner: Owner = { encoding: 'json', got: [] };
    const results: boolean[] = [];
    feed.resume(activity(owner), cursorOf(block(3)), exact, (r) => results.push(r)).step(Number.POSITIVE_INFINITY);
    feed.resume(activity(owner), cursorOf(block(3)), exact - 1, (r) => results.push(r)).step(Number.POSITIVE_INFINITY);
    expect(results).toEqual([true, false]);
    expect(owner.got).toEqual(['-3aa']);
  });

  it('answers false at once for a cursor of another chain, an unknown block, or a number that does not match', () => {
    const { feed, activity } = setup();
    const owner: Owner = { encoding: 'json', got: [] };
    const results: boolean[] = [];
    for (const cursor of [
      { ...cursorOf(block(5)), chainId: CHAIN + 1 },
      { ...cursorOf(block(5)), hash: hash(5, 'ee') },
      { ...cursorOf(block(5)), number: 6 },
    ]) {
      expect(feed.resume(activity(owner), cursor, 1_000_000, (r) => results.push(r)).step(0)).toBe(true);
    }
    expect(results).toEqual([false, false, false]);
    expect(owner.got).toEqual([]);
  });

  it('makes the blocks a resumed subscription held from before count as sent: a later reorg retracts them', () => {
    const { index, feed, activity } = setup();
    const owner: Owner = { encoding: 'json', got: [] };
    const sub = activity(owner);
    feed.resume(sub, cursorOf(block(10)), 1_000_000, () => index.activate(sub)).step(Number.POSITIVE_INFINITY);
    expect(owner.got).toEqual([]);
    feed.retract(block(10));
    feed.retract(block(9));
    expect(owner.got).toEqual(['-10aa', '-9aa']);
  });

  it('leaves nothing of a released subscription in the ledger', () => {
    const { index, feed, activity } = setup();
    const owner: Owner = { encoding: 'json', got: [] };
    const sub = activity(owner);
    feed.resume(sub, cursorOf(block(2)), 1_000_000, () => index.activate(sub)).step(Number.POSITIVE_INFINITY);
    expect(feed.ledger.size.subscriptions).toBe(1);
    index.remove(sub);
    feed.release(sub);
    expect(feed.ledger.size.subscriptions).toBe(0);
  });
});
