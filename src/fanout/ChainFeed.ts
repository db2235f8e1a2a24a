import type { BlockRef, ChainBlock } from '../domain/types.ts';
import type { ChainHistory } from '../history/ChainHistory.ts';
import type { SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import type { Fanout, FanoutResult, Peer } from './Fanout.ts';

/** Called after each fan-out pass with what it sent and how long it took, in seconds. */
export type FanoutObserver = (result: FanoutResult, seconds: number, kind: 'publish' | 'retract') => void;

/**
 * The canonical stream of one chain as subscribers see it: applies ingest's blocks and
 * retractions to the chain's history and drives fan-out for every confirmation depth in use.
 * A subscription of depth N gets block b once the head reaches b + N - 1; a block retracted
 * before that is never delivered to it; one retracted after gets `removed`.
 */
export class ChainFeed<O extends Peer> {
  readonly chainId: number;
  readonly history: ChainHistory;
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
  }

  #run(kind: 'publish' | 'retract', block: ChainBlock, depth: number): void {
    const started = performance.now();
    const result =
      kind === 'publish' ? this.#fanout.publishBlock(block, depth) : this.#fanout.retractBlock(block, depth);
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
