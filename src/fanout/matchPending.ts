import { txAddresses } from '../domain/events.ts';
import type { Hex, TxEvent } from '../domain/types.ts';
import type { Subscription, SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import { EncodedValue } from './encode.ts';

/**
 * Matches a batch of mempool transactions against the activity subscriptions of a chain that
 * asked for `pending` and the `tx` kind: each subscription's events in batch order, each event
 * encoded at most once per encoding and listed at most once per subscription. The events that
 * matched some subscription are added to `watched`, in batch order, when it is given.
 */
export function matchPending<O>(
  index: SubscriptionIndex<O>,
  chainId: number,
  events: readonly TxEvent[],
  watched?: TxEvent[],
): Map<Subscription<O>, EncodedValue[]> {
  const matches = new Map<Subscription<O>, EncodedValue[]>();
  for (const event of events) {
    let encoded: EncodedValue | undefined;
    for (const address of txAddresses(event)) {
      for (const sub of index.watchers(chainId, address)) {
        const filter = sub.filter;
        if (filter.channel !== 'activity' || filter.pending !== true || !filter.kinds.has('tx')) continue;
        encoded ??= new EncodedValue(event);
        const list = matches.get(sub);
        if (list === undefined) matches.set(sub, [encoded]);
        // A transaction from and to two addresses of one subscription is sent once.
        else if (list[list.length - 1] !== encoded) list.push(encoded);
      }
    }
    if (encoded !== undefined) watched?.push(event);
  }
  return matches;
}

/**
 * The activity subscriptions of a chain that asked for `pending` (and the `tx` kind) and watch
 * `from` or `to`: who was sent a pending transaction between these two addresses, and so follows
 * what becomes of it (each once).
 */
export function pendingWatchers<O>(
  index: SubscriptionIndex<O>,
  chainId: number,
  from: Hex,
  to: Hex | null,
): Set<Subscription<O>> {
  const found = new Set<Subscription<O>>();
  for (const address of to === null || to === from ? [from] : [from, to]) {
    for (const sub of index.watchers(chainId, address)) {
      const filter = sub.filter;
      if (filter.channel === 'activity' && filter.pending === true && filter.kinds.has('tx')) found.add(sub);
    }
  }
  return found;
}
