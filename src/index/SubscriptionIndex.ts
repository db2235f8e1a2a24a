import type { FinalityLevel } from '../../packages/client/src/protocol.ts';
import type { EventKind, Hex } from '../domain/types.ts';

/**
 * What a subscription asks for (PROTOCOL.md `subscribe`), once validated. `confirmations`
 * (default 0) delays delivery until the block has that many confirmations; `finality`, until the
 * node's `safe` or `finalized` tag has reached it (then `confirmations` is 0).
 */
export type SubscriptionFilter =
  | {
      readonly channel: 'blocks';
      readonly full: boolean;
      readonly fullInput: boolean;
      readonly confirmations?: number;
      readonly finality?: FinalityLevel;
    }
  | {
      readonly channel: 'activity';
      readonly kinds: ReadonlySet<EventKind>;
      readonly confirmations?: number;
      readonly finality?: FinalityLevel;
      /** Also deliver matching mempool transactions as `pending` messages. @default false */
      readonly pending?: boolean;
    };

/** The delivery depth of `safe` subscriptions (depths of confirmations are 0 and up). */
export const SAFE_DEPTH = -1;
/** The delivery depth of `finalized` subscriptions. */
export const FINALIZED_DEPTH = -2;
/**
 * The delivery depth of `blocks` subscriptions without transactions at the head (0 or 1
 * confirmations): their message is all in the block's header, so they get it from the header,
 * as soon as the node announced the block, before its transactions are fetched.
 */
export const HEADER_DEPTH = -3;

/**
 * When a subscription is delivered a block, as one number: its confirmations (0 and up),
 * {@link SAFE_DEPTH} / {@link FINALIZED_DEPTH} when it waits for a finality tag, or
 * {@link HEADER_DEPTH}. Fan-out passes go by this depth: each block is delivered once per depth in use.
 */
export function deliveryDepth(filter: SubscriptionFilter): number {
  if (filter.finality === 'safe') return SAFE_DEPTH;
  if (filter.finality === 'finalized') return FINALIZED_DEPTH;
  const confirmations = filter.confirmations ?? 0;
  return filter.channel === 'blocks' && !filter.full && confirmations <= 1 ? HEADER_DEPTH : confirmations;
}

/** One subscription of one connection (`owner`), as the index holds it. */
export interface Subscription<O> {
  /** The server's id of the subscription, unique on its connection. */
  readonly sid: string;
  readonly owner: O;
  readonly chainId: number;
  readonly filter: SubscriptionFilter;
  /** Watched addresses (activity only), in the order they were added; change them through the index. */
  readonly addresses: AddressSet;
}

/** The addresses of a subscription: how many, whether one is among them, and each in turn. */
export interface AddressSet extends Iterable<Hex> {
  readonly size: number;
  has(address: Hex): boolean;
}

const NONE: readonly never[] = [];
const NO_SUBSCRIPTIONS: ReadonlySet<never> = new Set();

/**
 * The watchers of one address. Most addresses have one: the subscription itself is the value;
 * a few are an array; many become a Set (a Set costs several times an array's memory).
 */
type Watchers<O> = Subscription<O> | Subscription<O>[] | Set<Subscription<O>>;

function includes<O>(watchers: Watchers<O> | undefined, sub: Subscription<O>): boolean {
  if (watchers === undefined) return false;
  if (watchers instanceof Set) return watchers.has(sub);
  return Array.isArray(watchers) ? watchers.includes(sub) : watchers === sub;
}

/**
 * A subscription's own list of addresses: an array (membership is asked of the index, which
 * has it anyway), so each watched address costs one slot here and one entry there. A detached
 * subscription (made, not yet live) answers membership from a Set of its own until it goes live.
 */
class AddressList implements AddressSet {
  list: Hex[] = [];
  /** Membership while the subscription is detached; dropped when it goes live. */
  detached: Set<Hex> | undefined;
  readonly #has: (address: Hex) => boolean;

  constructor(has: (address: Hex) => boolean) {
    this.#has = has;
  }

  get size(): number {
    return this.list.length;
  }

  has(address: Hex): boolean {
    return this.detached === undefined ? this.#has(address) : this.detached.has(address);
  }

  [Symbol.iterator](): Iterator<Hex> {
    return this.list[Symbol.iterator]();
  }
}

/** Watchers of one address held in an array; more become a Set (constant-time removal). */
const SMALL_WATCHERS = 8;

/**
 * Which subscription watches what: chain → block subscribers, chain → address → activity
 * subscriptions. Pure and synchronous; insertion order is kept, so delivery order is stable.
 */
export class SubscriptionIndex<O> {
  readonly #blocks = new Map<number, Set<Subscription<O>>>();
  /**
   * chain → address → its watchers. Most addresses have one or a few: they are held in a small
   * array (a Set costs several times the memory), which becomes a Set past {@link SMALL_WATCHERS}.
   */
  readonly #byAddress = new Map<number, Map<Hex, Watchers<O>>>();
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

  /** Creates a subscription and indexes it (and its addresses): it is live at once. */
  add(
    owner: O,
    sid: string,
    chainId: number,
    filter: SubscriptionFilter,
    addresses: Iterable<Hex> = [],
  ): Subscription<O> {
    const sub = this.create(owner, sid, chainId, filter, addresses);
    this.activate(sub);
    return sub;
  }

  /**
   * Creates a subscription without indexing it: it matches nothing live (a resume replays to it
   * first) and is not counted until {@link activate}. Its addresses are deduplicated.
   */
  create(
    owner: O,
    sid: string,
    chainId: number,
    filter: SubscriptionFilter,
    addresses: Iterable<Hex> = [],
  ): Subscription<O> {
    const own = new AddressList((address) => includes(this.#byAddress.get(chainId)?.get(address), sub));
    const sub: Subscription<O> = { sid, owner, chainId, filter, addresses: own };
    if (filter.channel === 'activity') {
      own.detached = new Set(addresses);
      own.list = [...own.detached];
    }
    return sub;
  }

  /** Indexes a subscription made by {@link create}: from now on it is live. Activating it again does nothing. */
  activate(sub: Subscription<O>): void {
    if (this.#live.has(sub)) return;
    const own = sub.addresses as AddressList;
    const addresses = own.list;
    own.list = [];
    own.detached = undefined;
    this.#live.add(sub);
    this.#subscriptions++;
    this.#countDepth(sub, 1);
    const { chainId, filter } = sub;
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
  }

  /** Removes a subscription and all its addresses; removing it again (or one never activated) does nothing. */
  remove(sub: Subscription<O>): void {
    if (!this.#live.delete(sub)) return;
    this.#subscriptions--;
    this.#countDepth(sub, -1);
    if (sub.filter.channel === 'blocks') {
      this.#blocks.get(sub.chainId)?.delete(sub);
    } else {
      this.unwatch(sub, (sub.addresses as AddressList).list);
      if (sub.filter.pending === true) {
        this.#pendingByChain.set(sub.chainId, this.pendingSubscriptions(sub.chainId) - 1);
      }
    }
  }

  #countDepth(sub: Subscription<O>, delta: number): void {
    const depth = deliveryDepth(sub.filter);
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
    const own = sub.addresses as AddressList;
    let added = 0;
    for (const address of addresses) {
      const watchers = chain.get(address);
      if (includes(watchers, sub)) continue;
      own.list.push(address);
      if (watchers === undefined) chain.set(address, sub);
      else if (watchers instanceof Set) watchers.add(sub);
      else if (!Array.isArray(watchers)) chain.set(address, [watchers, sub]);
      else if (watchers.length < SMALL_WATCHERS) watchers.push(sub);
      else chain.set(address, new Set([...watchers, sub]));
      added++;
    }
    this.#watchedAddresses += added;
    return added;
  }

  /** Removes addresses from an activity subscription; returns how many it had. */
  unwatch(sub: Subscription<O>, addresses: Iterable<Hex>): number {
    const chain = this.#byAddress.get(sub.chainId);
    const own = sub.addresses as AddressList;
    if (chain === undefined) return 0;
    const removed = new Set<Hex>();
    for (const address of addresses) {
      const watchers = chain.get(address);
      if (!includes(watchers, sub) || removed.has(address)) continue;
      removed.add(address);
      if (watchers instanceof Set) {
        watchers.delete(sub);
        if (watchers.size === 0) chain.delete(address);
      } else if (Array.isArray(watchers)) {
        watchers.splice(watchers.indexOf(sub), 1);
        if (watchers.length === 0) chain.delete(address);
      } else {
        chain.delete(address);
      }
    }
    if (removed.size > 0) own.list = removed.size === own.list.length ? [] : own.list.filter((a) => !removed.has(a));
    this.#watchedAddresses -= removed.size;
    return removed.size;
  }

  /** Whether `sub` is held (added and not removed). */
  has(sub: Subscription<O>): boolean {
    return this.#live.has(sub);
  }

  /**
   * The delivery depths in use on a chain ({@link deliveryDepth}): {@link HEADER_DEPTH} where in
   * use, 0 always, then confirmations ascending, then the finality tags in use (safe before finalized).
   */
  confirmationDepths(chainId: number): readonly number[] {
    const depths = this.#depths.get(chainId);
    if (depths === undefined) return [0];
    const used = [...depths.keys()];
    const confirmations = used.filter((d) => d > 0).sort((a, b) => a - b);
    const header = depths.has(HEADER_DEPTH) ? [HEADER_DEPTH] : [];
    return [...header, 0, ...confirmations, ...[SAFE_DEPTH, FINALIZED_DEPTH].filter((d) => depths.has(d))];
  }

  /** The `blocks` subscriptions of a chain. */
  blockSubscribers(chainId: number): ReadonlySet<Subscription<O>> {
    return this.#blocks.get(chainId) ?? NO_SUBSCRIPTIONS;
  }

  /** The activity subscriptions of a chain that watch `address` (lowercase), in the order they came. */
  watchers(chainId: number, address: Hex): Iterable<Subscription<O>> {
    const watchers = this.#byAddress.get(chainId)?.get(address);
    if (watchers === undefined) return NONE;
    return watchers instanceof Set || Array.isArray(watchers) ? watchers : [watchers];
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
