import type { ChainHistory } from '../chainlog/ChainHistory.ts';
import { type CursorPosition, toCursor } from '../domain/cursor.ts';
import type { BlockRef, ChainBlock } from '../domain/types.ts';
import type { Subscription, SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import { DeliveryLedger } from './DeliveryLedger.ts';
import type { Fanout, FanoutResult, Peer } from './Fanout.ts';
import { ResumeJob } from './ResumeJob.ts';

/** Called after each fan-out pass with what it sent and how long it took, in seconds. */
export type FanoutObserver = (result: FanoutResult, seconds: number, kind: 'publish' | 'retract') => void;

/**
 * The canonical stream of one chain as subscribers see it: applies ingest's blocks and
 * retractions to the chain's history and drives fan-out for every confirmation depth in use.
 * A subscription of depth N gets block b once the head reaches b + N - 1; a block retracted
 * before that is never delivered to it; one retracted after gets `removed`. What each
 * subscription was sent is this chain's own ledger.
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

  #run(kind: 'publish' | 'retract', block: ChainBlock, depth: number): void {
    const started = performance.now();
    const result =
      kind === 'publish'
        ? this.#fanout.publishBlock(block, depth, this.ledger)
        : this.#fanout.retractBlock(block, depth, this.ledger);
    this.#observe?.(result, (performance.now() - started) / 1000, kind);
  }

  /** A new canonical block: record it, then deliver every block that reached its depth. */
  apply(block: ChainBlock): void {
    this.history.apply(block);
    const depths = this.#index.confirmationDepths(this.chainId);
    for (const depth of this.#delivered.keys()) if (!depths.includes(depth)) this.#delivered.delete(depth);
    for (const depth of depths) {
      const target = block.number - Math.max(depth, 1) + 1;
      // A depth new in use starts with the block that just reached it, never older ones.
      const from = (this.#delivered.get(depth) ?? target - 1) + 1;
      for (let n = from; n <= target; n++) {
        const confirmed = this.history.at(n);
        if (confirmed !== undefined) this.#run('publish', confirmed, depth);
      }
      if (target >= from - 1) this.#delivered.set(depth, target);
    }
    this.ledger.trim(block.number);
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
  }

  /** Forgets everything of a subscription that ended (what it was sent, where it resumed). */
  release(sub: Subscription<O>): void {
    this.ledger.release(sub);
  }

  /** The number of the last block sent at a confirmation depth (or that would have been). */
  #through(depth: number): number | undefined {
    const head = this.history.head;
    return this.#delivered.get(depth) ?? (head === undefined ? undefined : head.number - Math.max(depth, 1) + 1);
  }

  /** The cursor of the last block sent at the subscription's depth: its position in the stream. */
  position(sub: Subscription<O>): string | undefined {
    const through = this.#through(sub.filter.confirmations ?? 0);
    const block = through === undefined ? undefined : this.history.at(through);
    return block === undefined ? undefined : toCursor(this.chainId, block);
  }

  /** A block left the canonical chain (newest first): retract it wherever it was delivered. */
  retract(ref: BlockRef): void {
    const block = this.history.retract(ref.hash);
    if (block === undefined) return;
    for (const [depth, through] of this.#delivered) {
      if (block.number > through) continue;
      this.#run('retract', block, depth);
      this.#delivered.set(depth, block.number - 1);
    }
  }
}
