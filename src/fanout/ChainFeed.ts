import type { ChainHistory } from '../chainlog/ChainHistory.ts';
import { type CursorPosition, toCursor } from '../domain/cursor.ts';
import type { BlockRef, ChainBlock, ChainFeatures, Finality } from '../domain/types.ts';
import {
  deliveryDepth,
  HEADER_DEPTH,
  SAFE_DEPTH,
  type Subscription,
  type SubscriptionIndex,
} from '../index/SubscriptionIndex.ts';
import { DeliveryLedger } from './DeliveryLedger.ts';
import type { BlockPass, Fanout, FanoutResult, FinalityMove, Peer } from './Fanout.ts';
import { ResumeJob } from './ResumeJob.ts';

/** Called after each fan-out pass with what it sent and how long it took, in seconds. */
export type FanoutObserver = (result: FanoutResult, seconds: number, kind: 'publish' | 'retract') => void;

/**
 * The canonical stream of one chain as subscribers see it: applies ingest's blocks and
 * retractions to the chain's history and drives fan-out for every confirmation depth in use.
 * A subscription of depth N gets block b once the head reaches b + N - 1; one waiting for a
 * finality tag gets it once the node's tag (as ingest read it with a later block) reached b; a
 * `blocks` subscription without transactions at the head ({@link HEADER_DEPTH}) gets it from its
 * header, as soon as ingest announced it. A block retracted before that is never delivered to it;
 * one retracted after gets `removed`. What each subscription was sent is this chain's own ledger.
 */
export class ChainFeed<O extends Peer> {
  readonly chainId: number;
  readonly history: ChainHistory;
  /** What this chain's subscriptions were sent, within the history window. */
  readonly ledger: DeliveryLedger<Subscription<O>>;
  readonly #fanout: Fanout<O>;
  readonly #index: SubscriptionIndex<O>;
  readonly #observe: FanoutObserver | undefined;
  /** Confirmation depth → number of the last block delivered at that depth. */
  readonly #delivered = new Map<number, number>();
  /** The node's finality tags as the newest block carried them; never going back. */
  #finality: Finality | undefined;

  constructor(
    chainId: number,
    history: ChainHistory,
    fanout: Fanout<O>,
    index: SubscriptionIndex<O>,
    observe?: FanoutObserver,
  ) {
    this.chainId = chainId;
    this.history = history;
    this.#fanout = fanout;
    this.#index = index;
    this.#observe = observe;
    this.ledger = new DeliveryLedger(history.windowBlocks);
  }

  #run(kind: 'publish' | 'retract', pass: () => FanoutResult): void {
    const started = performance.now();
    const result = pass();
    this.#observe?.(result, (performance.now() - started) / 1000, kind);
  }

  /**
   * What the chain offers its subscriptions, as its newest block says: finality where the node
   * has the tags and its finalized block is among the blocks kept (a chain whose finality lags
   * further, as an L2 following its L1's, cannot be served from this window).
   */
  features(): ChainFeatures {
    const head = this.#wholeHead();
    const internal = head === undefined ? undefined : head.traced === true;
    const finality = this.#finality;
    if (head === undefined) return { finality: undefined, internal };
    if (finality === undefined) return { finality: false, internal };
    const lag = head.number - finality.finalized.number;
    if (lag >= this.history.windowBlocks) {
      return {
        finality: false,
        finalityOff: `its finalized block is ${lag} blocks behind the head, more than the ${this.history.windowBlocks} blocks this gateway keeps (--history-window-blocks)`,
        internal,
      };
    }
    return { finality: true, internal };
  }

  /** The node's finality tags as last handed over (`undefined` where it has none). */
  get finality(): Finality | undefined {
    return this.#finality;
  }

  /** The newest canonical block held whole (the head, unless only its header is in yet). */
  #wholeHead(): ChainBlock | undefined {
    const head = this.history.head;
    return head?.headerOnly === true ? this.history.at(head.number - 1) : head;
  }

  /**
   * A new canonical block, or the header of one (`headerOnly`): record it, then deliver every
   * block that reached its depth. A header reaches only {@link HEADER_DEPTH}; its block (the same
   * hash) follows and reaches the rest, or a retraction takes the header back.
   */
  apply(block: ChainBlock): void {
    this.history.apply(block);
    const whole = block.headerOnly !== true;
    const finalizedBefore = this.#finality?.finalized.number;
    this.#noteFinality(block.finality);
    const depths = this.#index.confirmationDepths(this.chainId);
    for (const depth of this.#delivered.keys()) if (!depths.includes(depth)) this.#delivered.delete(depth);
    const passes: BlockPass[] = [];
    for (const depth of depths) {
      if (!whole && depth !== HEADER_DEPTH) continue;
      const target = this.#reached(depth, block);
      if (target === undefined) continue;
      // A depth new in use starts with the block that just reached it, never older ones.
      const from = (this.#delivered.get(depth) ?? target - 1) + 1;
      for (let n = from; n <= target; n++) {
        const confirmed = this.history.at(n);
        if (confirmed !== undefined) passes.push({ block: confirmed, depth });
      }
      if (target >= from - 1) this.#delivered.set(depth, target);
    }
    const finality = this.#finality;
    // A chain whose finality lags past the window has it off (`features`): no messages either.
    let move: FinalityMove<O> | undefined;
    if (
      finality !== undefined &&
      finality.finalized.number !== finalizedBefore &&
      block.number - finality.finalized.number < this.history.windowBlocks
    ) {
      const from = Math.max(finalizedBefore ?? -1, block.number - this.history.windowBlocks) + 1;
      move = { chainId: this.chainId, finality, sentActivity: this.#sentActivity(from, finality.finalized.number) };
    }
    // Every depth and the finality message in one pass: one write per connection for the block.
    if (passes.length > 0 || move !== undefined)
      this.#run('publish', () => this.#fanout.publish(passes, this.ledger, move));
    if (whole) this.ledger.trim(block.number);
  }

  /** The subscriptions that were sent activity for a block numbered `from` to `to` (canonical, held). */
  #sentActivity(from: number, to: number): Set<Subscription<O>> {
    const subs = new Set<Subscription<O>>();
    for (let n = from; n <= to; n++) {
      const block = this.history.at(n);
      const sent = block === undefined ? undefined : this.ledger.sentAt(block.hash);
      if (sent !== undefined) for (const sub of sent.keys()) subs.add(sub);
    }
    return subs;
  }

  /** Takes the tags a block carried: each only forward, a finalized block never above the safe one. */
  #noteFinality(read: Finality | undefined): void {
    if (read === undefined) return;
    const held = this.#finality;
    if (held !== undefined && read.safe.number <= held.safe.number && read.finalized.number <= held.finalized.number) {
      return;
    }
    const safe = held !== undefined && held.safe.number >= read.safe.number ? held.safe : read.safe;
    const finalized =
      held !== undefined && held.finalized.number >= read.finalized.number ? held.finalized : read.finalized;
    this.#finality = { safe, finalized: finalized.number > safe.number ? safe : finalized };
  }

  /**
   * The newest block that has reached `depth` now that `head` is the head (whole, but for
   * {@link HEADER_DEPTH}): `head - depth + 1` for confirmations, the tag's block (never above the
   * head) for finality; `undefined` when the tag is not known.
   */
  #reached(depth: number, head: BlockRef): number | undefined {
    if (depth === HEADER_DEPTH) return head.number;
    if (depth >= 0) return head.number - Math.max(depth, 1) + 1;
    const finality = this.#finality;
    if (finality === undefined) return undefined;
    const tag = depth === SAFE_DEPTH ? finality.safe : finality.finalized;
    return Math.min(tag.number, head.number);
  }

  /**
   * A resume of a new (not yet live) subscription from a client's cursor, as a job to run in
   * slices (see {@link ResumeJob}): it ends with `onDone(true)` once everything the subscription
   * missed was written, or `onDone(false)` having written nothing.
   */
  resume(
    sub: Subscription<O>,
    cursor: CursorPosition,
    maxBytes: number,
    onDone: (recovered: boolean) => void,
  ): ResumeJob<O> {
    const context = {
      chainId: this.chainId,
      history: this.history,
      fanout: this.#fanout,
      ledger: this.ledger,
      through: (depth: number) => this.#through(depth),
    };
    return new ResumeJob(context, sub, cursor, maxBytes, onDone);
  }

  /**
   * The chain log was reset (or trimmed past this gateway): the history starts over from its next
   * entry. Live subscriptions go on; a resume from before finds nothing and gets `recovered: false`.
   */
  reset(): void {
    this.history.clear();
    this.#delivered.clear();
    this.#finality = undefined;
  }

  /** Forgets everything of a subscription that ended (what it was sent, where it resumed). */
  release(sub: Subscription<O>): void {
    this.ledger.release(sub);
  }

  /** The number of the last block sent at a confirmation depth (or that would have been). */
  #through(depth: number): number | undefined {
    const head = depth === HEADER_DEPTH ? this.history.head : this.#wholeHead();
    return this.#delivered.get(depth) ?? (head === undefined ? undefined : this.#reached(depth, head));
  }

  /** The cursor of the last block sent at the subscription's depth: its position in the stream. */
  position(sub: Subscription<O>): string | undefined {
    const through = this.#through(deliveryDepth(sub.filter));
    const block = through === undefined ? undefined : this.history.at(through);
    return block === undefined ? undefined : toCursor(this.chainId, block);
  }

  /** A block left the canonical chain (newest first): retract it wherever it was delivered. */
  retract(ref: BlockRef): void {
    const block = this.history.retract(ref.hash);
    if (block === undefined) return;
    for (const [depth, through] of this.#delivered) {
      if (block.number > through) continue;
      this.#run('retract', () => this.#fanout.retractBlock(block, depth, this.ledger));
      this.#delivered.set(depth, block.number - 1);
    }
  }
}
