import { describe, expect, it } from 'vitest';
import type { EventKind, Hex } from '../domain/types.ts';
import { type SubscriptionFilter, SubscriptionIndex } from './SubscriptionIndex.ts';

interface Owner {
  readonly name: string;
}

const A: Hex = '0x00000000000000000000000000000000000000aa';
const B: Hex = '0x00000000000000000000000000000000000000bb';
const C: Hex = '0x00000000000000000000000000000000000000cc';

const BLOCKS: SubscriptionFilter = { channel: 'blocks', full: false, fullInput: false };
const ACTIVITY: SubscriptionFilter = { channel: 'activity', kinds: new Set<EventKind>(['tx']) };

function setup(): { index: SubscriptionIndex<Owner>; alice: Owner; bob: Owner } {
  return { index: new SubscriptionIndex<Owner>(), alice: { name: 'alice' }, bob: { name: 'bob' } };
}

describe('SubscriptionIndex', () => {
  it('keeps the watchers of an address in order as they grow past a few and shrink again', () => {
    const { index, alice } = setup();
    const subs = Array.from({ length: 12 }, (_, i) => index.add(alice, `s${i}`, 1, ACTIVITY, [A]));
    expect([...index.watchers(1, A)]).toEqual(subs);
    for (const i of [0, 5, 11]) index.remove(subs[i] as (typeof subs)[number]);
    expect([...index.watchers(1, A)]).toEqual(subs.filter((_, i) => ![0, 5, 11].includes(i)));
    for (const sub of subs) index.remove(sub);
    expect([...index.watchers(1, A)]).toEqual([]);
    expect(index.watchedAddresses).toBe(0);
  });

  it('ignores a second remove of the same subscription', () => {
    const { index, alice } = setup();
    const sub = index.add(alice, 's1', 1, ACTIVITY, [A, B]);
    index.remove(sub);
    index.remove(sub);
    expect(index.size).toBe(0);
    expect(index.watchedAddresses).toBe(0);
    expect(index.countByChannel()).toEqual({ blocks: 0, activity: 0 });
  });

  it('starts empty', () => {
    const { index } = setup();
    expect(index.size).toBe(0);
    expect(index.watchedAddresses).toBe(0);
    expect(index.countByChannel()).toEqual({ blocks: 0, activity: 0 });
    expect(index.blockSubscribers(1).size).toBe(0);
    expect([...index.watchers(1, A)].length).toBe(0);
  });

  it('adds a blocks subscription to the block subscribers of its chain only', () => {
    const { index, alice } = setup();
    const sub = index.add(alice, 's1', 1, BLOCKS);
    expect(sub).toMatchObject({ sid: 's1', owner: alice, chainId: 1, filter: BLOCKS });
    expect(sub.addresses.size).toBe(0);
    expect([...index.blockSubscribers(1)]).toEqual([sub]);
    expect(index.blockSubscribers(2).size).toBe(0);
    expect(index.size).toBe(1);
    expect(index.countByChannel()).toEqual({ blocks: 1, activity: 0 });
  });

  it('adds an activity subscription with its addresses, deduplicated', () => {
    const { index, alice } = setup();
    const sub = index.add(alice, 's1', 1, ACTIVITY, [A, B, A]);
    expect([...sub.addresses]).toEqual([A, B]);
    expect(index.watchedAddresses).toBe(2);
    expect([...index.watchers(1, A)]).toEqual([sub]);
    expect([...index.watchers(1, B)]).toEqual([sub]);
    expect([...index.watchers(1, C)].length).toBe(0);
    expect(index.blockSubscribers(1).size).toBe(0);
    expect(index.countByChannel()).toEqual({ blocks: 0, activity: 1 });
  });

  it('counts blocks and activity subscriptions of several owners and chains', () => {
    const { index, alice, bob } = setup();
    index.add(alice, 's1', 1, BLOCKS);
    index.add(alice, 's2', 1, ACTIVITY, [A]);
    index.add(bob, 's1', 2, BLOCKS);
    index.add(bob, 's2', 2, ACTIVITY, [A, B]);
    index.add(bob, 's3', 1, ACTIVITY, []);
    expect(index.size).toBe(5);
    expect(index.countByChannel()).toEqual({ blocks: 2, activity: 3 });
    expect(index.watchedAddresses).toBe(3);
  });

  it('keeps the watchers of each chain separate', () => {
    const { index, alice, bob } = setup();
    const onMainnet = index.add(alice, 's1', 1, ACTIVITY, [A]);
    const onOther = index.add(bob, 's1', 10, ACTIVITY, [A]);
    expect([...index.watchers(1, A)]).toEqual([onMainnet]);
    expect([...index.watchers(10, A)]).toEqual([onOther]);
    expect([...index.watchers(5, A)].length).toBe(0);
  });

  it('lists several watchers of one address in the order they were added', () => {
    const { index, alice, bob } = setup();
    const first = index.add(bob, 's1', 1, ACTIVITY, [A]);
    const second = index.add(alice, 's1', 1, ACTIVITY, [B, A]);
    expect([...index.watchers(1, A)]).toEqual([first, second]);
    expect(index.watchedAddresses).toBe(3);
  });

  it('watch returns how many addresses were new and counts only those', () => {
    const { index, alice } = setup();
    const sub = index.add(alice, 's1', 1, ACTIVITY, [A]);
    expect(index.watch(sub, [A, B, B, C])).toBe(2);
    expect(index.watchedAddresses).toBe(3);
    expect([...sub.addresses]).toEqual([A, B, C]);
    expect(index.watch(sub, [A])).toBe(0);
    expect(index.watchedAddresses).toBe(3);
  });

  it('unwatch returns how many addresses the subscription had and stops their matching', () => {
    const { index, alice } = setup();
    const sub = index.add(alice, 's1', 1, ACTIVITY, [A, B]);
    expect(index.unwatch(sub, [A, C])).toBe(1);
    expect(index.watchedAddresses).toBe(1);
    expect([...index.watchers(1, A)].length).toBe(0);
    expect([...index.watchers(1, B)]).toEqual([sub]);
    expect([...sub.addresses]).toEqual([B]);
  });

  it('unwatch of an address not watched returns 0 and changes nothing', () => {
    const { index, alice, bob } = setup();
    const sub = index.add(alice, 's1', 1, ACTIVITY, [A]);
    const other = index.add(bob, 's1', 1, ACTIVITY, [B]);
    expect(index.unwatch(sub, [B])).toBe(0);
    expect(index.unwatch(sub, [C])).toBe(0);
    expect(index.watchedAddresses).toBe(2);
    expect([...index.watchers(1, B)]).toEqual([other]);
    expect([...index.watchers(1, A)]).toEqual([sub]);
  });

  it('unwatch of one watcher leaves the other watchers of the address', () => {
    const { index, alice, bob } = setup();
    const sub = index.add(alice, 's1', 1, ACTIVITY, [A]);
    const other = index.add(bob, 's1', 1, ACTIVITY, [A]);
    expect(index.unwatch(sub, [A])).toBe(1);
    expect([...index.watchers(1, A)]).toEqual([other]);
  });

  it('removing an activity subscription clears its addresses from watchers and the counts', () => {
    const { index, alice, bob } = setup();
    const sub = index.add(alice, 's1', 1, ACTIVITY, [A, B]);
    const other = index.add(bob, 's1', 1, ACTIVITY, [B]);
    index.remove(sub);
    expect([...index.watchers(1, A)].length).toBe(0);
    expect([...index.watchers(1, B)]).toEqual([other]);
    expect(index.size).toBe(1);
    expect(index.watchedAddresses).toBe(1);
    expect(index.countByChannel()).toEqual({ blocks: 0, activity: 1 });
  });

  it('removing a blocks subscription takes it out of the block subscribers', () => {
    const { index, alice, bob } = setup();
    const sub = index.add(alice, 's1', 1, BLOCKS);
    const other = index.add(bob, 's1', 1, BLOCKS);
    index.remove(sub);
    expect([...index.blockSubscribers(1)]).toEqual([other]);
    expect(index.size).toBe(1);
    expect(index.countByChannel()).toEqual({ blocks: 1, activity: 0 });
  });

  it('returns to empty after every subscription is removed', () => {
    const { index, alice } = setup();
    const subs = [
      index.add(alice, 's1', 1, BLOCKS),
      index.add(alice, 's2', 1, ACTIVITY, [A, B]),
      index.add(alice, 's3', 2, ACTIVITY, [A]),
    ];
    for (const sub of subs) index.remove(sub);
    expect(index.size).toBe(0);
    expect(index.watchedAddresses).toBe(0);
    expect(index.countByChannel()).toEqual({ blocks: 0, activity: 0 });
    expect(index.blockSubscribers(1).size).toBe(0);
    expect([...index.watchers(1, A)].length).toBe(0);
    expect([...index.watchers(2, A)].length).toBe(0);
  });
});
