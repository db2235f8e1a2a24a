import { describe, expect, it } from 'vitest';
import type { Hex } from '../domain/types.ts';
import { DeliveryLedger, sentList } from './DeliveryLedger.ts';

const hash = (n: number): Hex => `0x${n.toString(16).padStart(64, '0')}`;
const ref = (n: number) => ({ number: n, hash: hash(n) });

describe('DeliveryLedger', () => {
  it('keeps one event as its index and several as a list', () => {
    const ledger = new DeliveryLedger<string>(8);
    ledger.record(
      ref(1),
      new Map([
        ['a', [3]],
        ['b', [0, 2]],
      ]),
    );
    expect(ledger.sentAt(hash(1))?.get('a')).toBe(3);
    expect(sentList(ledger.sentAt(hash(1))?.get('b') ?? [])).toEqual([0, 2]);
  });

  it('forgets a block once it is older than the window', () => {
    const ledger = new DeliveryLedger<string>(4);
    for (let n = 1; n <= 6; n++) ledger.recordOne(ref(n), 'a', [0]);
    ledger.trim(6);
    expect(ledger.sentAt(hash(2))).toBeUndefined();
    expect(ledger.sentAt(hash(3))?.get('a')).toBe(0);
    expect(ledger.size.blocks).toBe(4);
  });

  it('releases everything of a subscription that ended, and nothing of the others', () => {
    const ledger = new DeliveryLedger<string>(256);
    for (let n = 1; n <= 100; n++) {
      ledger.record(
        ref(n),
        new Map([
          ['gone', [0]],
          ['kept', [1]],
        ]),
      );
    }
    ledger.setHeldThrough('gone', 50);
    ledger.setFirstBlock('gone', 1);
    ledger.release('gone');
    for (let n = 1; n <= 100; n++) {
      expect(ledger.sentAt(hash(n))?.has('gone')).toBe(false);
      expect(ledger.sentAt(hash(n))?.get('kept')).toBe(1);
    }
    expect(ledger.held().has('gone')).toBe(false);
    expect(ledger.firstBlock('gone')).toBeUndefined();
    expect(ledger.size.subscriptions).toBe(1);
    ledger.release('kept');
    expect(ledger.size).toEqual({ blocks: 0, subscriptions: 0 });
  });

  it('keeps the per-subscription list of blocks bounded for a subscription matched in every block', () => {
    const ledger = new DeliveryLedger<string>(8);
    for (let n = 1; n <= 1000; n++) {
      ledger.recordOne(ref(n), 'busy', [0]);
      ledger.trim(n);
    }
    ledger.release('busy');
    expect(ledger.size).toEqual({ blocks: 0, subscriptions: 0 });
  });

  it('keeps the first block of a blocks subscription unless one is set', () => {
    const ledger = new DeliveryLedger<string>(8);
    ledger.noteFirstBlock('s', 5);
    ledger.noteFirstBlock('s', 6);
    expect(ledger.firstBlock('s')).toBe(5);
    ledger.setFirstBlock('s', 2);
    expect(ledger.firstBlock('s')).toBe(2);
  });

  it('drops resume points that left the window', () => {
    const ledger = new DeliveryLedger<string>(4);
    ledger.setHeldThrough('old', 1);
    ledger.setHeldThrough('new', 30);
    for (let n = 1; n <= 32; n++) ledger.trim(n);
    expect([...ledger.held().keys()]).toEqual(['new']);
  });
});
