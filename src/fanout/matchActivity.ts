import { blockActivity } from '../domain/events.ts';
import type { ChainBlock, EventKind, Hex } from '../domain/types.ts';
import type { Subscription, SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import { EncodedValue } from './encode.ts';

/** A block's activity events, each encoded at most once per encoding, with its match addresses. */
export interface EncodedActivity {
  readonly kind: EventKind;
  readonly addresses: readonly Hex[];
  readonly encoded: EncodedValue;
}

const cache = new WeakMap<ChainBlock, readonly EncodedActivity[]>();

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
 * Matches a block against every activity subscription of the index whose confirmation depth is
 * `confirmations`: each subscription's events, in block order, each event at most once.
 */
export function matchActivity<O>(
  index: SubscriptionIndex<O>,
  block: ChainBlock,
  confirmations: number,
): Map<Subscription<O>, EncodedValue[]> {
  const matches = new Map<Subscription<O>, EncodedValue[]>();
  // A block names popular addresses many times: look each up in the (large, cache-cold) index once.
  const looked = new Map<Hex, Iterable<Subscription<O>>>();
  for (const entry of encodedActivity(block)) {
    for (const address of entry.addresses) {
      let watchers = looked.get(address);
      if (watchers === undefined) {
        watchers = index.watchers(block.chainId, address);
        looked.set(address, watchers);
      }
      for (const sub of watchers) {
        const filter = sub.filter;
        if (filter.channel !== 'activity' || (filter.confirmations ?? 0) !== confirmations) continue;
        if (!filter.kinds.has(entry.kind)) continue;
        const list = matches.get(sub);
        if (list === undefined) matches.set(sub, [entry.encoded]);
        // An event matched on several of one subscription's addresses is sent once.
        else if (list[list.length - 1] !== entry.encoded) list.push(entry.encoded);
      }
    }
  }
  return matches;
}

/** The events of a block for one activity subscription (for replay and retraction). */
export function matchSubscription<O>(sub: Subscription<O>, block: ChainBlock): EncodedValue[] {
  const filter = sub.filter;
  if (filter.channel !== 'activity') return [];
  const out: EncodedValue[] = [];
  for (const entry of encodedActivity(block)) {
    if (filter.kinds.has(entry.kind) && entry.addresses.some((a) => sub.addresses.has(a))) {
      out.push(entry.encoded);
    }
  }
  return out;
}
