import { describe, expect, it } from 'vitest';
import type { ChainBlock, ChainTx, Hex } from '../domain/types.ts';
import { type PendingTx, type TxFate, TxLifecycle, type TxLifecycleOptions } from './TxLifecycle.ts';

const ALICE = `0x${'a'.repeat(40)}` as Hex;
const BOB = `0x${'b'.repeat(40)}` as Hex;
const CAROL = `0x${'c'.repeat(40)}` as Hex;

/** A 32-byte hash from a number, distinct per number. */
function hash(seed: number): Hex {
  return `0x${seed.toString(16).padStart(64, '0')}` as Hex;
}

function address(seed: number): Hex {
  return `0x${seed.toString(16).padStart(40, '0')}` as Hex;
}

function pendingTx(seed: number, fields: Partial<PendingTx> = {}): PendingTx {
  return { hash: hash(seed), from: ALICE, to: BOB, value: '0xde0b6b3a7640000', nonce: 7, input: '0x', ...fields };
}

function minedTx(tx: PendingTx, fields: Partial<ChainTx> = {}): ChainTx {
  return {
    hash: tx.hash,
    index: 0,
    from: tx.from,
    to: tx.to,
    value: tx.value,
    nonce: tx.nonce,
    gas: '0x5208',
    input: tx.input ?? '0x',
    ...fields,
  };
}

function block(number: number, transactions: readonly ChainTx[]): ChainBlock {
  return {
    chainId: 31_337,
    number,
    hash: hash(1_000_000 + number),
    parentHash: hash(1_000_000 + number - 1),
    timestamp: 1_700_000_000 + number * 12,
    miner: CAROL,
    gasUsed: '0x0',
    gasLimit: '0x1c9c380',
    transactions: transactions.map((tx, index) => ({ ...tx, index })),
  };
}

/** A tracker on a clock the test moves by hand. */
function createTracker(options: Omit<TxLifecycleOptions, 'now'> = {}): {
  tracker: TxLifecycle;
  advance: (ms: number) => void;
} {
  let now = 1_000;
  const tracker = new TxLifecycle({ ...options, now: () => now });
  return {
    tracker,
    advance: (ms) => {
      now += ms;
    },
  };
}

describe('TxLifecycle', () => {
  it('tells a sped-up transaction replaced by the mined one, with its block', () => {
    const { tracker } = createTracker();
    const original = pendingTx(1);
    const faster = pendingTx(2, { input: '0x' });
    tracker.pending(original);
    const mined = block(10, [minedTx(faster, { maxFeePerGas: '0x77359400' })]);
    expect(tracker.mined(mined)).toEqual<TxFate[]>([
      {
        status: 'replaced',
        id: original.hash,
        from: ALICE,
        to: BOB,
        nonce: 7,
        by: faster.hash,
        reason: 'speedup',
        block: { number: 10, hash: mined.hash },
      },
    ]);
    expect(tracker.size).toBe(0);
  });

  it('tells a transaction replaced by a 0-value self-send as cancelled', () => {
    const { tracker } = createTracker();
    const original = pendingTx(1);
    tracker.pending(original);
    const cancel = minedTx(pendingTx(2, { to: ALICE, value: '0x0', input: '0x' }));
    const [fate] = tracker.mined(block(11, [cancel]));
    expect(fate).toMatchObject({ status: 'replaced', id: original.hash, by: cancel.hash, reason: 'cancel' });
  });

  it('tells a self-send with data, or with value, replaced as sped up, not cancelled', () => {
    const { tracker } = createTracker();
    tracker.pending(pendingTx(1));
    tracker.pending(pendingTx(2, { nonce: 8 }));
    const withData = minedTx(pendingTx(3, { to: ALICE, value: '0x0', input: '0x1234' }));
    const withValue = minedTx(pendingTx(4, { to: ALICE, value: '0x1', nonce: 8 }));
    const fates = tracker.mined(block(12, [withData, withValue]));
    expect(fates.map((fate) => fate.status === 'replaced' && fate.reason)).toEqual(['speedup', 'speedup']);
  });

  it('tells a cancellation replaced by a faster cancellation as sped up', () => {
    const { tracker } = createTracker();
    const cancel = pendingTx(1, { to: ALICE, value: '0x0', input: undefined });
    tracker.pending(cancel);
    const fasterCancel = minedTx(pendingTx(2, { to: ALICE, value: '0x0' }));
    const [fate] = tracker.mined(block(13, [fasterCancel]));
    expect(fate).toMatchObject({ status: 'replaced', id: cancel.hash, reason: 'speedup' });
  });

  it('tells every other pending transaction of a mined nonce replaced, and nothing of the mined one', () => {
    const { tracker } = createTracker();
    const first = pendingTx(1);
    const second = pendingTx(2);
    const third = pendingTx(3);
    for (const tx of [first, second, third]) tracker.pending(tx);
    const fates = tracker.mined(block(14, [minedTx(second)]));
    expect(fates.map((fate) => fate.id).sort()).toEqual([first.hash, third.hash].sort());
    expect(fates.every((fate) => fate.status === 'replaced' && fate.by === second.hash)).toBe(true);
    expect(tracker.size).toBe(0);
    expect(tracker.mined(block(15, [minedTx(second)]))).toEqual([]);
  });

  it('still tells the rest replaced after rivals of one nonce left one by one', () => {
    const { tracker } = createTracker({ dropAfterMs: 0, maxTracked: 2 });
    for (let seed = 1; seed <= 2; seed++) tracker.pending(pendingTx(seed));
    // Both gone from the mempool: dropped together, whichever is asked about first.
    expect(tracker.checked(hash(1), false)).toBeUndefined();
    expect(tracker.checked(hash(2), false)?.status).toBe('dropped');
    expect(tracker.checked(hash(1), false)?.status).toBe('dropped');
    tracker.pending(pendingTx(3));
    tracker.pending(pendingTx(4, { nonce: 8 }));
    tracker.pending(pendingTx(6)); // evicts hash(3), the oldest
    tracker.pending(pendingTx(7)); // evicts hash(4)
    const fates = tracker.mined(block(15, [minedTx(pendingTx(5))]));
    expect(fates.map((fate) => fate.id)).toEqual([hash(6), hash(7)]);
    expect(tracker.size).toBe(0);
  });

  it('does not drop a transaction replaced in the mempool while its replacement waits there, and tells it replaced once that is mined', () => {
    const { tracker, advance } = createTracker({ dropAfterMs: 1_000 });
    tracker.pending(pendingTx(1));
    tracker.pending(pendingTx(2)); // the same sender and nonce: the node keeps only this one
    expect(tracker.checked(hash(1), false)).toBeUndefined();
    advance(5_000);
    expect(tracker.checked(hash(2), true)).toBeUndefined();
    expect(tracker.checked(hash(1), false)).toBeUndefined();
    const fates = tracker.mined(block(9, [minedTx(pendingTx(2))]));
    expect(fates).toEqual([expect.objectContaining({ status: 'replaced', id: hash(1), by: hash(2) })]);
    expect(tracker.size).toBe(0);
  });

  it('tells nothing when a tracked transaction is mined itself', () => {
    const { tracker } = createTracker();
    const tx = pendingTx(1);
    tracker.pending(tx);
    expect(tracker.mined(block(16, [minedTx(tx)]))).toEqual([]);
    expect(tracker.size).toBe(0);
    expect(tracker.checked(tx.hash, false)).toBeUndefined();
  });

  it('leaves a lower nonce tracked when a higher nonce of its sender is mined', () => {
    const { tracker } = createTracker();
    const low = pendingTx(1, { nonce: 5 });
    tracker.pending(low);
    expect(tracker.mined(block(17, [minedTx(pendingTx(2, { nonce: 6 }))]))).toEqual([]);
    expect(tracker.size).toBe(1);
  });

  it('leaves other senders of the same nonce alone', () => {
    const { tracker } = createTracker();
    tracker.pending(pendingTx(1, { from: BOB, to: ALICE }));
    expect(tracker.mined(block(18, [minedTx(pendingTx(2))]))).toEqual([]);
    expect(tracker.size).toBe(1);
  });

  it('drops a transaction only after dropAfterMs of the node not knowing it', () => {
    const { tracker, advance } = createTracker({ dropAfterMs: 600_000 });
    const tx = pendingTx(1);
    tracker.pending(tx);
    expect(tracker.checked(tx.hash, false)).toBeUndefined();
    advance(599_999);
    expect(tracker.checked(tx.hash, false)).toBeUndefined();
    advance(1);
    expect(tracker.checked(tx.hash, false)).toEqual<TxFate>({
      status: 'dropped',
      id: tx.hash,
      from: ALICE,
      to: BOB,
      nonce: 7,
    });
    expect(tracker.size).toBe(0);
    expect(tracker.checked(tx.hash, false)).toBeUndefined();
  });

  it('restarts the drop clock when the node knows the transaction again', () => {
    const { tracker, advance } = createTracker({ dropAfterMs: 600_000 });
    const tx = pendingTx(1);
    tracker.pending(tx);
    tracker.checked(tx.hash, false);
    advance(500_000);
    expect(tracker.checked(tx.hash, true)).toBeUndefined();
    advance(200_000);
    expect(tracker.checked(tx.hash, false)).toBeUndefined();
    advance(599_999);
    expect(tracker.checked(tx.hash, false)).toBeUndefined();
    advance(1);
    expect(tracker.checked(tx.hash, false)?.status).toBe('dropped');
  });

  it('restarts the drop clock when the transaction is seen pending again', () => {
    const { tracker, advance } = createTracker({ dropAfterMs: 1_000 });
    const tx = pendingTx(1);
    tracker.pending(tx);
    tracker.checked(tx.hash, false);
    advance(900);
    tracker.pending(tx);
    advance(900);
    expect(tracker.checked(tx.hash, false)).toBeUndefined();
    expect(tracker.size).toBe(1);
  });

  it('ends a transaction behind a nonce gap that is never filled as dropped', () => {
    const { tracker, advance } = createTracker({ dropAfterMs: 1_000 });
    const stuck = pendingTx(1, { nonce: 9 });
    tracker.pending(stuck);
    expect(tracker.mined(block(19, [minedTx(pendingTx(2, { nonce: 7 }))]))).toEqual([]);
    tracker.checked(stuck.hash, false);
    advance(1_000);
    expect(tracker.checked(stuck.hash, false)?.status).toBe('dropped');
  });

  it('hands each tracked hash out at most every checkEveryMs', () => {
    const { tracker, advance } = createTracker({ checkEveryMs: 30_000 });
    tracker.pending(pendingTx(1));
    advance(10_000);
    tracker.pending(pendingTx(2, { nonce: 8 }));
    expect(tracker.due(10)).toEqual([]);
    advance(20_000);
    expect(tracker.due(10)).toEqual([hash(1)]);
    expect(tracker.due(10)).toEqual([]);
    advance(10_000);
    expect(tracker.due(10)).toEqual([hash(2)]);
    advance(20_000);
    expect(tracker.due(10)).toEqual([hash(1)]);
    advance(100_000);
    expect(tracker.due(1)).toEqual([hash(2)]);
    expect(tracker.due(1)).toEqual([hash(1)]);
    expect(tracker.due(1)).toEqual([]);
  });

  it('stops handing out hashes that were mined, replaced or dropped', () => {
    const { tracker, advance } = createTracker({ checkEveryMs: 10, dropAfterMs: 0 });
    const mined = pendingTx(1);
    const replaced = pendingTx(2, { nonce: 8 });
    const dropped = pendingTx(3, { nonce: 9 });
    const kept = pendingTx(4, { nonce: 10 });
    for (const tx of [mined, replaced, dropped, kept]) tracker.pending(tx);
    tracker.mined(block(20, [minedTx(mined), minedTx(pendingTx(5, { nonce: 8 }))]));
    expect(tracker.checked(dropped.hash, false)?.status).toBe('dropped');
    advance(10);
    expect(tracker.due(10)).toEqual([kept.hash]);
  });

  it('forgets the oldest transaction past maxTracked, with no fate', () => {
    const { tracker, advance } = createTracker({ maxTracked: 3, checkEveryMs: 1 });
    for (let seed = 1; seed <= 4; seed++) tracker.pending(pendingTx(seed, { nonce: seed }));
    expect(tracker.size).toBe(3);
    expect(tracker.checked(hash(1), false)).toBeUndefined();
    expect(tracker.mined(block(21, [minedTx(pendingTx(99, { nonce: 1 }))]))).toEqual([]);
    advance(1);
    expect(tracker.due(10)).toEqual([hash(2), hash(3), hash(4)]);
    const fates = tracker.mined(block(22, [minedTx(pendingTx(98, { nonce: 2 }))]));
    expect(fates.map((fate) => fate.id)).toEqual([hash(2)]);
  });

  it('tracks the watched transactions of a retracted block again, and keeps a told fate', () => {
    const { tracker, advance } = createTracker({ checkEveryMs: 1, dropAfterMs: 5 });
    const original = pendingTx(1);
    const faster = pendingTx(2);
    const other = pendingTx(3, { nonce: 8 });
    tracker.pending(original);
    tracker.pending(other);
    const orphaned = block(23, [minedTx(faster), minedTx(other)]);
    expect(tracker.mined(orphaned).map((fate) => fate.id)).toEqual([original.hash]);
    expect(tracker.size).toBe(0);
    tracker.retracted(orphaned);
    // Back to pending: `other` (watched, mined in the orphan); not `faster`, which nobody watched.
    expect(tracker.size).toBe(1);
    advance(1);
    expect(tracker.due(10)).toEqual([other.hash]);
    // Retracted once: a second retraction of the same block changes nothing.
    tracker.retracted(orphaned);
    expect(tracker.size).toBe(1);
    // The replacement mined again in the new branch: the fate is not told twice.
    expect(tracker.mined({ ...block(23, [minedTx(faster)]), hash: hash(77) })).toEqual([]);
    // A rival of `other`'s nonce mined in the new branch replaces it.
    const fates = tracker.mined(block(24, [minedTx(pendingTx(4, { nonce: 8 }))]));
    expect(fates.map((fate) => fate.id)).toEqual([other.hash]);
    expect(tracker.size).toBe(0);
  });

  it('drops a transaction of a retracted block that the node no longer knows', () => {
    const { tracker, advance } = createTracker({ checkEveryMs: 1, dropAfterMs: 5 });
    const tx = pendingTx(5, { nonce: 3 });
    tracker.pending(tx);
    const orphaned = block(30, [minedTx(tx)]);
    tracker.mined(orphaned);
    tracker.retracted(orphaned);
    advance(1);
    expect(tracker.due(10)).toEqual([tx.hash]);
    expect(tracker.checked(tx.hash, false)).toBeUndefined();
    advance(6);
    expect(tracker.due(10)).toEqual([tx.hash]);
    expect(tracker.checked(tx.hash, false)).toMatchObject({ status: 'dropped', id: tx.hash });
  });

  it('refuses impossible options', () => {
    expect(() => new TxLifecycle({ maxTracked: 0 })).toThrow(TypeError);
    expect(() => new TxLifecycle({ checkEveryMs: 0 })).toThrow(/checkEveryMs/);
    expect(() => new TxLifecycle({ dropAfterMs: -1 })).toThrow(/dropAfterMs/);
  });

  it('hands out 100k tracked hashes in bounded slices as they come due', () => {
    const count = 100_000;
    const { tracker, advance } = createTracker({ checkEveryMs: 30_000 });
    for (let seed = 0; seed < count; seed++) tracker.pending(pendingTx(seed, { from: address(seed), nonce: 0 }));
    expect(tracker.due(100)).toEqual([]);
    advance(30_000);
    const seen = new Set<Hex>();
    for (let round = 0; round < count / 100 + 10; round++) {
      const due = tracker.due(100);
      if (due.length === 0) break;
      expect(due.length).toBeLessThanOrEqual(100);
      for (const dueHash of due) seen.add(dueHash);
    }
    expect(seen.size).toBe(count);
    expect(tracker.due(100)).toEqual([]);
  });

  it('stays bounded when most tracked transactions are mined between due calls', () => {
    const count = 20_000;
    const { tracker, advance } = createTracker({ checkEveryMs: 1_000, maxTracked: count });
    for (let round = 0; round < 3; round++) {
      const base = round * count;
      for (let seed = base; seed < base + count; seed++) {
        tracker.pending(pendingTx(seed, { from: address(seed), nonce: 0 }));
      }
      const minedTxs: ChainTx[] = [];
      for (let seed = base; seed < base + count - 100; seed++) {
        minedTxs.push(minedTx(pendingTx(seed, { from: address(seed), nonce: 0 })));
      }
      expect(tracker.mined(block(100 + round, minedTxs))).toEqual([]);
      expect(tracker.size).toBe(100);
      advance(1_000);
      expect(tracker.due(1_000)).toHaveLength(100);
    }
  });
});
