import { type CursorPosition, toCursor } from '../domain/cursor.ts';
import type { BlockRef, ChainBlock } from '../domain/types.ts';
import type { ChainHistory } from '../history/ChainHistory.ts';
import type { Subscription, SubscriptionIndex } from '../index/SubscriptionIndex.ts';
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
  readonly #windowBlocks: number;

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
    this.#windowBlocks = history.windowBlocks;
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

  /**
   * Resumes a new subscription from a client's cursor (PROTOCOL.md, Resume): `removed` for the
   * blocks between the cursor and the canonical chain that were orphaned meanwhile, then every
   * message the subscription would have had since, up to what its depth has been sent. Returns
   * false, sending nothing, when the cursor is of another chain, unknown, older than the window,
   * or the catch-up would not fit in `maxBytes`.
   */
  resume(sub: Subscription<O>, cursor: CursorPosition, maxBytes: number): boolean {
    const head = this.history.head;
    if (cursor.chainId !== this.chainId || head === undefined) return false;
    const through = this.#through(sub.filter.confirmations ?? 0) ?? head.number;
    let at = this.history.byHash(cursor.hash);
    if (at === undefined || at.block.number !== cursor.number) return false;
    const orphans: ChainBlock[] = [];
    // Orphans link to their parents; the walk ends at a canonical block or fails (bounded by the window).
    for (let steps = 0; !at.canonical; steps++) {
      orphans.push(at.block);
      const parent = this.history.byHash(at.block.parentHash);
      if (parent === undefined || steps > this.#windowBlocks) return false;
      at = parent;
    }
    const blocks: ChainBlock[] = [];
    for (let n = at.block.number + 1; n <= through; n++) {
      const block = this.history.at(n);
      if (block === undefined) return false;
      blocks.push(block);
    }
    // What the client may hold from before the resume point: it must be retractable too.
    const held: ChainBlock[] = [];
    for (let n = this.history.oldestNumber ?? at.block.number; n <= at.block.number; n++) {
      const block = this.history.at(n);
      if (block !== undefined) held.push(block);
    }
    return this.#fanout.catchUp(sub, orphans, blocks, held, maxBytes);
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
