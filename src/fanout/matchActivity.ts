import { blockActivity } from '../domain/events.ts';
import type { ChainBlock, EventKind, Hex } from '../domain/types.ts';
import { deliveryDepth, type Subscription, type SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import { EncodedValue } from './encode.ts';

/** A block's activity events, each encoded at most once per encoding, with its match addresses. */
export interface EncodedActivity {
  readonly kind: EventKind;
  readonly addresses: readonly Hex[];
  readonly encoded: EncodedValue;
}

const cache = new WeakMap<ChainBlock, readonly EncodedActivity[]>();
const valuesCache = new WeakMap<ChainBlock, readonly EncodedValue[]>();
const byAddressCache = new WeakMap<ChainBlock, ReadonlyMap<Hex, readonly number[]>>();

/** The block's activity events ready to splice into frames; computed once per block. */
export function encodedActivity(block: ChainBlock): readonly EncodedActivity[] {
  let entries = cache.get(block);
  if (entries === undefined) {
    entries = blockActivity(block).map((entry) => ({
      kind: entry.event.kind,
      addresses: entry.addresses,
      encoded: new EncodedValue(entry.event),
    }));
    cache.set(block, entries);
  }
  return entries;
}

/**
 * The encoded events of {@link encodedActivity}, by the same indexes: what a frame picks a
 * subscription's matches from (`buildFrame(…, encodedValues(block), indexes)`).
 */
export function encodedValues(block: ChainBlock): readonly EncodedValue[] {
  let values = valuesCache.get(block);
  if (values === undefined) {
    values = encodedActivity(block).map((entry) => entry.encoded);
    valuesCache.set(block, values);
  }
  return values;
}

/** address → indexes of the block's events that name it, ascending; built once per block, on first use. */
function eventsByAddress(block: ChainBlock): ReadonlyMap<Hex, readonly number[]> {
  let map = byAddressCache.get(block);
  if (map === undefined) {
    const built = new Map<Hex, number[]>();
    encodedActivity(block).forEach((entry, i) => {
      for (const address of entry.addresses) {
        const list = built.get(address);
        if (list === undefined) built.set(address, [i]);
        else if (list[list.length - 1] !== i) list.push(i);
      }
    });
    map = built;
    byAddressCache.set(block, map);
  }
  return map;
}

/**
 * Matches a block against every activity subscription of the index whose confirmation depth is
 * `confirmations`: each subscription's events, as indexes into {@link encodedActivity}, in block
 * order, each event at most once.
 */
export function matchActivity<O>(
  index: SubscriptionIndex<O>,
  block: ChainBlock,
  confirmations: number,
): Map<Subscription<O>, number[]> {
  const matches = new Map<Subscription<O>, number[]>();
  // A block names popular addresses many times: look each up in the (large, cache-cold) index once.
  const looked = new Map<Hex, Iterable<Subscription<O>>>();
  const entries = encodedActivity(block);
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i] as EncodedActivity;
    for (const address of entry.addresses) {
      let watchers = looked.get(address);
      if (watchers === undefined) {
        watchers = index.watchers(block.chainId, address);
        looked.set(address, watchers);
      }
      for (const sub of watchers) {
        const filter = sub.filter;
        if (filter.channel !== 'activity' || deliveryDepth(filter) !== confirmations) continue;
        if (!filter.kinds.has(entry.kind)) continue;
        const list = matches.get(sub);
        if (list === undefined) matches.set(sub, [i]);
        // An event matched on several of one subscription's addresses is sent once.
        else if (list[list.length - 1] !== i) list.push(i);
      }
    }
  }
  return matches;
}

/**
 * The events of a block for one activity subscription (for replay and retraction), as indexes
 * into {@link encodedActivity}, ascending. Costs one lookup per watched address when the
 * subscription watches fewer addresses than the block has events, one per event address otherwise.
 */
export function matchSubscription<O>(sub: Subscription<O>, block: ChainBlock): number[] {
  const filter = sub.filter;
  if (filter.channel !== 'activity') return [];
  const entries = encodedActivity(block);
  if (entries.length === 0) return [];
  const out: number[] = [];
  if (sub.addresses.size < entries.length) {
    const byAddress = eventsByAddress(block);
    let sorted = true;
    for (const address of sub.addresses) {
      const found = byAddress.get(address);
      if (found === undefined) continue;
      for (const i of found) {
        if (!filter.kinds.has((entries[i] as EncodedActivity).kind)) continue;
        if (out.length > 0 && i <= (out[out.length - 1] as number)) sorted = false;
        out.push(i);
      }
    }
    if (sorted) return out;
    return [...new Set(out)].sort((a, b) => a - b);
  }
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i] as EncodedActivity;
    if (filter.kinds.has(entry.kind) && entry.addresses.some((a) => sub.addresses.has(a))) out.push(i);
  }
  return out;
}
