import type { EventKind, Hex } from '../domain/types.ts';

/**
 * What a subscription asks for (PROTOCOL.md `subscribe`), once validated. `confirmations`
 * (default 0) delays delivery until the block has that many confirmations.
 */
export type SubscriptionFilter =
  | { readonly channel: 'blocks'; readonly full: boolean; readonly fullInput: boolean; readonly confirmations?: number }
  | {
      readonly channel: 'activity';
      readonly kinds: ReadonlySet<EventKind>;
      readonly confirmations?: number;
      /** Also deliver matching mempool transactions as `pending` messages. @default false */
      readonly pending?: boolean;
    };

/** One subscription of one connection (`owner`), as the index holds it. */
export interface Subscription<O> {
  /** The server's id of the subscription, unique on its connection. */
  readonly sid: string;
  readonly owner: O;
  readonly chainId: number;
  readonly filter: SubscriptionFilter;
  /** Watched addresses (activity only); change them through the index. */
  readonly addresses: ReadonlySet<Hex>;
}

const NONE: ReadonlySet<never> = new Set();

/**
 * Which subscription watches what: chain → block subscribers, chain → address → activity
 * subscriptions. Pure and synchronous; insertion order is kept, so delivery order is stable.
 */
export class SubscriptionIndex<O> {
  readonly #blocks = new Map<number, Set<Subscription<O>>>();
  readonly #byAddress = new Map<number, Map<Hex, Set<Subscription<O>>>>();
  readonly #live = new WeakSet<Subscription<O>>();
  readonly #pendingByChain = new Map<number, number>();
  /** chain → confirmation depth → number of subscriptions using it. */
  readonly #depths = new Map<number, Map<number, number>>();
  #subscriptions = 0;
  #watchedAddresses = 0;

  /** Number of subscriptions held. */
  get size(): number {
    return this.#subscriptions;
  }

  /** Number of (subscription, address) pairs held. */
  get watchedAddresses(): number {
    return this.#watchedAddresses;
  }

  /** Creates a subscription and indexes it (and its addresses). */
  add(
    owner: O,
    sid: string,
    chainId: number,
    filter: SubscriptionFilter,
    addresses: Iterable<Hex> = [],
  ): Subscription<O> {
    const sub: Subscription<O> = { sid, owner, chainId, filter, addresses: new Set() };
    this.#live.add(sub);
    this.#subscriptions++;
    this.#countDepth(sub, 1);
    if (filter.channel === 'blocks') {
      let set = this.#blocks.get(chainId);
      if (set === undefined) {
        set = new Set();
        this.#blocks.set(chainId, set);
      }
      set.add(sub);
    } else {
      this.watch(sub, addresses);
      if (filter.pending === true) this.#pendingByChain.set(chainId, this.pendingSubscriptions(chainId) + 1);
    }
    return sub;
  }

  /** Removes a subscription and all its addresses; removing it again does nothing. */
  remove(sub: Subscription<O>): void {
    if (!this.#live.delete(sub)) return;
    this.#subscriptions--;
    this.#countDepth(sub, -1);
    if (sub.filter.channel === 'blocks') {
      this.#blocks.get(sub.chainId)?.delete(sub);
    } else {
      this.unwatch(sub, [...sub.addresses]);
      if (sub.filter.pending === true) {
        this.#pendingByChain.set(sub.chainId, this.pendingSubscriptions(sub.chainId) - 1);
      }
    }
  }

  #countDepth(sub: Subscription<O>, delta: number): void {
    const depth = sub.filter.confirmations ?? 0;
    if (depth === 0) return;
    let depths = this.#depths.get(sub.chainId);
    if (depths === undefined) {
      depths = new Map();
      this.#depths.set(sub.chainId, depths);
    }
    const count = (depths.get(depth) ?? 0) + delta;
    if (count > 0) depths.set(depth, count);
    else depths.delete(depth);
  }

  /** Adds addresses to an activity subscription; returns how many were new. */
  watch(sub: Subscription<O>, addresses: Iterable<Hex>): number {
    let chain = this.#byAddress.get(sub.chainId);
    if (chain === undefined) {
      chain = new Map();
      this.#byAddress.set(sub.chainId, chain);
    }
    const own = sub.addresses as Set<Hex>;
    let added = 0;
    for (const address of addresses) {
      if (own.has(address)) continue;
      own.add(address);
      let subs = chain.get(address);
      if (subs === undefined) {
        subs = new Set();
        chain.set(address, subs);
      }
      subs.add(sub);
      added++;
    }
    this.#watchedAddresses += added;
    return added;
  }

  /** Removes addresses from an activity subscription; returns how many it had. */
  unwatch(sub: Subscription<O>, addresses: Iterable<Hex>): number {
    const chain = this.#byAddress.get(sub.chainId);
    const own = sub.addresses as Set<Hex>;
    let removed = 0;
    for (const address of addresses) {
      if (!own.delete(address)) continue;
      removed++;
      const subs = chain?.get(address);
      subs?.delete(sub);
      if (subs?.size === 0) chain?.delete(address);
    }
    this.#watchedAddresses -= removed;
    return removed;
  }

  /** Whether `sub` is held (added and not removed). */
  has(sub: Subscription<O>): boolean {
    return this.#live.has(sub);
  }

  /** The confirmation depths in use on a chain (0 always). */
  confirmationDepths(chainId: number): readonly number[] {
    const depths = this.#depths.get(chainId);
    return depths === undefined ? [0] : [0, ...[...depths.keys()].filter((d) => d > 0).sort((a, b) => a - b)];
  }

  /** The `blocks` subscriptions of a chain. */
  blockSubscribers(chainId: number): ReadonlySet<Subscription<O>> {
    return this.#blocks.get(chainId) ?? NONE;
  }

  /** The activity subscriptions of a chain that watch `address` (lowercase). */
  watchers(chainId: number, address: Hex): ReadonlySet<Subscription<O>> {
    return this.#byAddress.get(chainId)?.get(address) ?? NONE;
  }

  /** Number of activity subscriptions of a chain that asked for `pending` transactions. */
  pendingSubscriptions(chainId: number): number {
    return this.#pendingByChain.get(chainId) ?? 0;
  }

  /** Number of subscriptions per channel. */
  countByChannel(): { blocks: number; activity: number } {
    let blocks = 0;
    for (const set of this.#blocks.values()) blocks += set.size;
    return { blocks, activity: this.#subscriptions - blocks };
  }
}
