import type { BlockRef, ChainBlock, ChainTx, Hex } from '../domain/types.ts';

/**
 * What became of a pending transaction that was tracked, told once. `id` is its hash; `from`,
 * `to` and `nonce` are its own, so that the fate can be routed to whoever watches those addresses.
 * - `replaced`: another transaction of the same sender and nonce, `by`, was mined in `block`.
 *   `cancel` when `by` is a 0-value self-send without data and the replaced one was not;
 *   `speedup` otherwise (the same intent, usually a higher fee).
 * - `dropped`: the node did not know it for `dropAfterMs` and it was not mined meanwhile.
 */
export type TxFate =
  | {
      readonly status: 'replaced';
      readonly id: Hex;
      readonly from: Hex;
      readonly to: Hex | null;
      readonly nonce: number;
      readonly by: Hex;
      readonly reason: 'speedup' | 'cancel';
      readonly block: BlockRef;
    }
  | {
      readonly status: 'dropped';
      readonly id: Hex;
      readonly from: Hex;
      readonly to: Hex | null;
      readonly nonce: number;
    };

/** A pending transaction as {@link TxLifecycle.pending} takes it: the fields of a pending `tx` event, plus its input when known. */
export interface PendingTx {
  readonly hash: Hex;
  readonly from: Hex;
  /** `null` for a contract creation. */
  readonly to: Hex | null;
  /** Wei, as 0x hex. */
  readonly value: Hex;
  readonly nonce: number;
  /** Call data, as 0x hex; unknown (`undefined`) counts as empty. */
  readonly input?: Hex | undefined;
}

/** Options of {@link TxLifecycle}. */
export interface TxLifecycleOptions {
  /** Transactions tracked at most; past it the oldest (first seen) is forgotten, with no fate. @default 100_000 */
  readonly maxTracked?: number;
  /**
   * How long a tracked transaction may be unknown to the node before it is dropped, in ms,
   * measured from the first `false` answer after it was last seen (pending or `true`). @default 600_000
   */
  readonly dropAfterMs?: number;
  /** How often one tracked transaction is handed out by {@link TxLifecycle.due} to be asked of the node, in ms. @default 30_000 */
  readonly checkEveryMs?: number;
  /** The clock, in ms; must not go backwards. @default performance.now */
  readonly now?: () => number;
}

const DEFAULTS = Object.freeze({
  maxTracked: 100_000,
  dropAfterMs: 600_000,
  checkEveryMs: 30_000,
});

/** Stale queue entries (of transactions no longer tracked) tolerated before the queue is rebuilt, at least. */
const MIN_STALE_BEFORE_COMPACTION = 1024;

interface Tracked {
  readonly hash: Hex;
  from: Hex;
  to: Hex | null;
  nonce: number;
  /** `from:nonce`, the key of the sender-and-nonce index. */
  key: string;
  /** Whether it is itself a 0-value self-send without data (a cancellation). */
  cancelShaped: boolean;
  /** When it is next handed out by `due`, in ms. */
  checkAt: number;
  /** When the node first said it did not know it, since it was last seen; `undefined` while known. */
  missingSince: number | undefined;
}

/** Recent blocks whose mined watched transactions are kept, to track them again after a reorg. */
const MINED_BLOCKS_KEPT = 128;

function senderNonceKey(from: Hex, nonce: number): string {
  return `${from}:${nonce}`;
}

const ZERO_QUANTITY = /^0x0*$/;

/** A transfer of nothing from a sender to itself with no call data: how wallets cancel a pending transaction. */
function isCancelShaped(from: Hex, to: Hex | null, value: Hex, input: Hex | undefined): boolean {
  return to === from && ZERO_QUANTITY.test(value) && (input === undefined || input === '0x');
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(`TxLifecycle option ${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

function nonNegativeNumber(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new TypeError(`TxLifecycle option ${name} must be a finite number of ms >= 0, got ${String(value)}`);
  }
  return value;
}

/**
 * Decides what became of pending transactions: mined, replaced (sped up or cancelled) or
 * dropped. Pure: no timers, no I/O; time comes from `now`, the node is asked by the owner, which
 * calls {@link due} on its own schedule and reports each answer to {@link checked}.
 *
 * - A transaction is tracked from its first {@link pending} sighting until it is mined (no fate:
 *   its block says it), replaced, dropped, or evicted past `maxTracked` (oldest first seen first;
 *   an evicted one is simply forgotten, with no fate).
 * - Replaced only when exactly its (sender, nonce) is mined under another hash: every tracked
 *   hash of that (sender, nonce) is then replaced by the mined one. A higher nonce of the same
 *   sender mined says nothing by itself; a transaction behind a nonce gap that is never filled is
 *   never mined, and ends as `dropped` once the node forgets it (or stays tracked while the node
 *   keeps it).
 * - Reorgs: the watched transactions of a retracted block are tracked again ({@link retracted}).
 *   Fates are final; a `replaced` fate names the block it came from, so a reader that follows
 *   reorgs can tell when that block left the chain.
 * - A transaction first seen after its block was handed to {@link mined} is not known to be
 *   mined here: the owner {@link forget}s it when the node says it is mined.
 *
 * Costs: {@link pending} and {@link checked} O(1); {@link mined} O(transactions of the block +
 * fates); {@link due} O(limit) amortised (a queue in order of next check time, never a scan).
 * Hashes and addresses are compared as given: lowercase, as every domain value is.
 */
export class TxLifecycle {
  readonly #maxTracked: number;
  readonly #dropAfterMs: number;
  readonly #checkEveryMs: number;
  readonly #now: () => number;
  /** Tracked transactions by hash, in order of first sighting (the eviction order). */
  readonly #byHash = new Map<Hex, Tracked>();
  /**
   * Tracked hashes by `from:nonce`: several pending transactions can compete for one nonce. One
   * hash (the common case) is kept as itself, not in a set of one.
   */
  readonly #bySenderNonce = new Map<string, Hex | Set<Hex>>();
  /**
   * Tracked transactions in order of `checkAt` (from `#head` on): each tracked one is in it
   * exactly once; ones no longer tracked are left behind and skipped (stale) when reached.
   * Non-decreasing because `checkAt` is always now + `checkEveryMs` and the clock is monotone.
   */
  #queue: Tracked[] = [];
  #head = 0;
  /**
   * The tracked transactions each recent block mined, by block hash (oldest block first, at most
   * {@link MINED_BLOCKS_KEPT}): tracked again if that block is retracted.
   */
  readonly #minedBy = new Map<Hex, Tracked[]>();

  constructor(options: TxLifecycleOptions = {}) {
    this.#maxTracked = positiveInteger('maxTracked', options.maxTracked ?? DEFAULTS.maxTracked);
    this.#dropAfterMs = nonNegativeNumber('dropAfterMs', options.dropAfterMs ?? DEFAULTS.dropAfterMs);
    this.#checkEveryMs = nonNegativeNumber('checkEveryMs', options.checkEveryMs ?? DEFAULTS.checkEveryMs);
    if (this.#checkEveryMs === 0) throw new TypeError('TxLifecycle option checkEveryMs must be above 0 ms, got 0');
    this.#now = options.now ?? (() => performance.now());
  }

  /** How many transactions are tracked. */
  get size(): number {
    return this.#byHash.size;
  }

  /**
   * A pending transaction was seen: tracked from now on, first due for a check `checkEveryMs`
   * from now. Seen again: it counts as known to the node now (its missing clock stops).
   */
  pending(tx: PendingTx): void {
    const cancelShaped = isCancelShaped(tx.from, tx.to, tx.value, tx.input);
    const known = this.#byHash.get(tx.hash);
    if (known !== undefined) {
      this.#refresh(known, tx, cancelShaped);
      return;
    }
    if (this.#byHash.size >= this.#maxTracked) this.#evictOldest();
    const tracked: Tracked = {
      hash: tx.hash,
      from: tx.from,
      to: tx.to,
      nonce: tx.nonce,
      key: senderNonceKey(tx.from, tx.nonce),
      cancelShaped,
      checkAt: this.#now() + this.#checkEveryMs,
      missingSince: undefined,
    };
    this.#byHash.set(tx.hash, tracked);
    this.#index(tracked);
    this.#queue.push(tracked);
  }

  /**
   * A canonical block: its transactions are mined, and no longer tracked (no fate). Every other
   * tracked transaction of a (sender, nonce) the block mined is replaced: its fate is returned.
   */
  mined(block: ChainBlock): TxFate[] {
    const fates: TxFate[] = [];
    const ref: BlockRef = { number: block.number, hash: block.hash };
    const minedHere: Tracked[] = [];
    for (const tx of block.transactions) {
      const self = this.#byHash.get(tx.hash);
      if (self !== undefined) {
        this.#untrack(self);
        minedHere.push(self);
      }
      const rivals = this.#bySenderNonce.get(senderNonceKey(tx.from, tx.nonce));
      if (rivals === undefined) continue;
      // Copied: untracking changes the set.
      for (const hash of typeof rivals === 'string' ? [rivals] : [...rivals]) {
        const rival = this.#byHash.get(hash);
        if (rival === undefined) continue;
        this.#untrack(rival);
        fates.push(replacedFate(rival, tx, ref));
      }
    }
    if (minedHere.length > 0) {
      this.#minedBy.set(block.hash, minedHere);
      if (this.#minedBy.size > MINED_BLOCKS_KEPT) this.#minedBy.delete(this.#minedBy.keys().next().value as Hex);
    }
    this.#compactIfStale();
    return fates;
  }

  /**
   * A block left the canonical chain: the watched transactions it had mined are tracked again,
   * as pending (a reorg puts them back in the mempool, or the node forgets them): the block of the
   * new branch that mines one untracks it, a rival mined for its nonce replaces it, and a node
   * that no longer knows it drops it. A fate already told stays told (a `replaced` fate names the
   * block it came from, so a reader that follows reorgs can tell that block left the chain).
   */
  retracted(block: BlockRef): void {
    const mined = this.#minedBy.get(block.hash);
    if (mined === undefined) return;
    this.#minedBy.delete(block.hash);
    for (const earlier of mined) {
      if (this.#byHash.has(earlier.hash)) continue;
      if (this.#byHash.size >= this.#maxTracked) this.#evictOldest();
      const tracked: Tracked = { ...earlier, checkAt: this.#now() + this.#checkEveryMs, missingSince: undefined };
      this.#byHash.set(tracked.hash, tracked);
      this.#index(tracked);
      this.#queue.push(tracked);
    }
  }

  /**
   * The tracked hashes due to be asked of the node now, oldest check first, at most `limit`;
   * each is due again `checkEveryMs` after it was handed out (answered or not).
   */
  due(limit: number): Hex[] {
    const hashes: Hex[] = [];
    if (!(limit >= 1)) return hashes;
    const now = this.#now();
    while (hashes.length < limit && this.#head < this.#queue.length) {
      const next = this.#queue[this.#head] as Tracked;
      if (this.#byHash.get(next.hash) !== next) {
        this.#head++;
        continue;
      }
      if (next.checkAt > now) break;
      this.#head++;
      next.checkAt = now + this.#checkEveryMs;
      this.#queue.push(next);
      hashes.push(next.hash);
    }
    this.#compactIfStale();
    return hashes;
  }

  /**
   * The node's answer for a hash: `known` when it is in its mempool (or mined), not otherwise.
   * Returns the `dropped` fate once the transaction has been unknown for `dropAfterMs` since the
   * first `false` after it was last seen, while no rival of its sender and nonce is in the
   * mempool (a replacement waiting for its block keeps it from being dropped: it is replaced
   * when the rival is mined, or dropped with the rival); then it is no longer tracked. An untracked hash: `undefined`.
   */
  checked(hash: Hex, known: boolean): TxFate | undefined {
    const tracked = this.#byHash.get(hash);
    if (tracked === undefined) return undefined;
    if (known) {
      tracked.missingSince = undefined;
      return undefined;
    }
    const now = this.#now();
    if (tracked.missingSince === undefined) tracked.missingSince = now;
    if (now - tracked.missingSince < this.#dropAfterMs) return undefined;
    // Replaced in the mempool by a rival of the same sender and nonce that the node still holds:
    // not gone, but waiting for the rival's block (then `mined` tells it replaced).
    if (this.#hasPresentRival(tracked)) return undefined;
    this.#untrack(tracked);
    this.#compactIfStale();
    return { status: 'dropped', id: tracked.hash, from: tracked.from, to: tracked.to, nonce: tracked.nonce };
  }

  /**
   * Stops tracking a transaction with no fate to tell: the node says it is mined, in a block
   * this tracker saw before the transaction (a sighting that came late).
   */
  forget(hash: Hex): void {
    const tracked = this.#byHash.get(hash);
    if (tracked === undefined) return;
    this.#untrack(tracked);
    this.#compactIfStale();
  }

  #refresh(tracked: Tracked, tx: PendingTx, cancelShaped: boolean): void {
    tracked.missingSince = undefined;
    tracked.to = tx.to;
    tracked.cancelShaped = cancelShaped;
    // One hash has one sender and nonce; a node that says otherwise is believed last.
    if (tracked.from !== tx.from || tracked.nonce !== tx.nonce) {
      this.#unindex(tracked);
      tracked.from = tx.from;
      tracked.nonce = tx.nonce;
      tracked.key = senderNonceKey(tx.from, tx.nonce);
      this.#index(tracked);
    }
  }

  /** Whether another tracked transaction of the same sender and nonce is not missing from the mempool. */
  #hasPresentRival(tracked: Tracked): boolean {
    const hashes = this.#bySenderNonce.get(tracked.key);
    if (hashes === undefined || typeof hashes === 'string') return false;
    for (const hash of hashes) {
      const rival = this.#byHash.get(hash);
      if (rival !== undefined && rival !== tracked && rival.missingSince === undefined) return true;
    }
    return false;
  }

  #evictOldest(): void {
    const oldest = this.#byHash.values().next();
    if (oldest.done !== true) this.#untrack(oldest.value);
  }

  #index(tracked: Tracked): void {
    const hashes = this.#bySenderNonce.get(tracked.key);
    if (hashes === undefined) this.#bySenderNonce.set(tracked.key, tracked.hash);
    else if (typeof hashes !== 'string') hashes.add(tracked.hash);
    else if (hashes !== tracked.hash) this.#bySenderNonce.set(tracked.key, new Set([hashes, tracked.hash]));
  }

  #unindex(tracked: Tracked): void {
    const hashes = this.#bySenderNonce.get(tracked.key);
    if (hashes === undefined) return;
    if (typeof hashes === 'string') {
      if (hashes === tracked.hash) this.#bySenderNonce.delete(tracked.key);
      return;
    }
    hashes.delete(tracked.hash);
    if (hashes.size === 1) this.#bySenderNonce.set(tracked.key, hashes.values().next().value as Hex);
  }

  /** Forgets a transaction; its queue entry goes stale and is skipped or compacted away. */
  #untrack(tracked: Tracked): void {
    this.#byHash.delete(tracked.hash);
    this.#unindex(tracked);
  }

  /**
   * Rebuilds the queue once stale entries (and the consumed head) outnumber the live ones, so it
   * stays O(tracked) however many transactions come and go between two `due` calls; the rebuild
   * costs O(queue) and is paid for by the removals that made the entries stale.
   */
  #compactIfStale(): void {
    const waste = this.#queue.length - this.#byHash.size;
    if (waste < MIN_STALE_BEFORE_COMPACTION || waste < this.#byHash.size) return;
    const live: Tracked[] = [];
    for (let index = this.#head; index < this.#queue.length; index++) {
      const entry = this.#queue[index] as Tracked;
      if (this.#byHash.get(entry.hash) === entry) live.push(entry);
    }
    this.#queue = live;
    this.#head = 0;
  }
}

function replacedFate(replaced: Tracked, by: ChainTx, block: BlockRef): TxFate {
  const cancel = !replaced.cancelShaped && isCancelShaped(by.from, by.to, by.value, by.input);
  return {
    status: 'replaced',
    id: replaced.hash,
    from: replaced.from,
    to: replaced.to,
    nonce: replaced.nonce,
    by: by.hash,
    reason: cancel ? 'cancel' : 'speedup',
    block,
  };
}
